"""A wrong config fails before any job starts, in one line naming the key: for Snakemake and for peftlab."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pipeline_helpers import PROJECT, TINY, copy_project, snakemake

from peftlab.cli import main as peftlab_main


def _tiny_with(change) -> dict:
    config = yaml.safe_load((PROJECT / TINY).read_text())
    change(config)
    return config


BAD_CONFIGS = {
    "unknown_method": (lambda c: c["study"]["methods"].append("lorax"), "study.methods", "lorax"),
    "negative_epochs": (lambda c: c["training"].update(epochs=-1), "training.epochs", "-1"),
    "wrong_type": (lambda c: c["training"].update(batch_size="64"), "training.batch_size",
                   "'64' is not of type 'integer' (write 64 unquoted)"),
    "unknown_key": (lambda c: c["training"].update(epochz=3), "training", "epochz"),
    "nan_lr": (lambda c: c["search"].update(lr=[float("nan")]), "search.lr.0", "nan is not a finite number"),
    "infinite_weight_decay": (lambda c: c["search"].update(weight_decay=[float("inf")]), "search.weight_decay.0",
                              "inf is not a finite number"),
    "duplicate_grid_value": (lambda c: c["search"].update(lr=[1.0e-3, 1.0e-3]), "search.lr",
                             "[0.001] listed more than once"),
    "unknown_mini_task": (lambda c: c["study"]["tasks"].append("digitz"), "study.tasks", "['digitz'] not in"),
    "yaml_float_string": (lambda c: c["search"].update(lr=["1e-2"]), "search.lr.0", "write 1.0e-2"),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("errors") / "project", git=False)
    for name, (change, _, _) in BAD_CONFIGS.items():
        (project / "config" / f"{name}.yaml").write_text(yaml.safe_dump(_tiny_with(change)))
    return project


def _assert_one_line_naming(text: str, key: str, value: str) -> None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("peftlab: error: ") and f"key '{key}'" in lines[0] and value in lines[0], lines[0]


@pytest.mark.parametrize("name", ["unknown_method", "negative_epochs"])
def test_snakemake_stops_before_any_job(project, name):
    _, key, value = BAD_CONFIGS[name]
    result = snakemake(project, "--cores", "1", config=f"config/{name}.yaml", check=False)
    assert result.returncode != 0
    _assert_one_line_naming(result.stderr + result.stdout, key, value)
    assert not (project / "logs").exists() and not (project / "data").exists()


def test_snakemake_stops_when_the_paper_study_has_no_data_root(project):
    result = snakemake(project, "--cores", "1", config="config/paper.yaml", check=False)
    assert result.returncode != 0
    _assert_one_line_naming(result.stderr + result.stdout, "data.root", "data/vtab-1k")
    assert not (project / "logs").exists()


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", [["config", "check"], ["pipeline", "dvc-yaml", "--check"],
                                     ["search", "--task", "digits", "--method", "linear", "--out", "x"]])
def test_peftlab_commands_stop_with_the_key(project, name, command, capsys, monkeypatch):
    monkeypatch.chdir(project)
    _, key, value = BAD_CONFIGS[name]
    assert peftlab_main([*command, "--config", f"config/{name}.yaml"]) == 2
    _assert_one_line_naming(capsys.readouterr().err, key, value)
    assert not (project / "x").exists()


def test_peftlab_pipeline_commands_need_the_paper_data_root(project, capsys, monkeypatch):
    monkeypatch.chdir(project)
    for command in (["config", "check"], ["pipeline", "dvc-yaml", "--out", "paper.dvc.yaml"]):
        assert peftlab_main([*command, "--config", "config/paper.yaml"]) == 2
        _assert_one_line_naming(capsys.readouterr().err, "data.root", "data/vtab-1k")
    assert not (project / "paper.dvc.yaml").exists()


def test_analysis_methods_must_be_study_methods(project, capsys, monkeypatch):
    monkeypatch.chdir(project)
    config = _tiny_with(lambda c: c["manyshot"]["methods"].append("full"))
    (project / "config" / "manyshot_extra.yaml").write_text(yaml.safe_dump(config))
    assert peftlab_main(["config", "check", "--config", "config/manyshot_extra.yaml"]) == 2
    _assert_one_line_naming(capsys.readouterr().err, "manyshot.methods", "full")


def test_snakemake_refuses_config_overrides_the_jobs_would_not_see(project):
    result = snakemake(project, "--dry-run", "--config", "study={}", check=False)
    assert result.returncode != 0 and "--config study: not supported" in result.stderr
