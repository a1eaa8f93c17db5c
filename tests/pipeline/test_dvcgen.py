"""dvc.yaml is generated from the step table: up to date, exact per-stage keys, and read by DVC as intended."""

from __future__ import annotations

import pytest
import yaml
from pipeline_helpers import PROJECT, TINY, copy_project, dvc_edges, dvc_plan

from peftlab.cli import main as peftlab_main
from peftlab.pipeline.checks import load_study
from peftlab.pipeline.dvcgen import render_dvc_yaml, stale_reason
from peftlab.pipeline.steps import all_jobs

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_committed_dvc_yaml_is_generated_from_params_yaml():
    study = load_study(PROJECT / "params.yaml", PROJECT)
    assert stale_reason(study, PROJECT / "dvc.yaml") is None, (
        "dvc.yaml is stale: run `peftlab pipeline dvc-yaml` and commit it")


def test_check_mode_reports_a_stale_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(PROJECT)
    stale = tmp_path / "dvc.yaml"
    stale.write_text("stages: {}\n")
    assert peftlab_main(["pipeline", "dvc-yaml", "--out", str(stale), "--check"]) == 1
    assert "regenerate" in capsys.readouterr().out


def test_stages_list_exactly_their_keys_from_the_named_params_file():
    study = load_study(PROJECT / TINY, PROJECT)
    stages = yaml.safe_load(render_dvc_yaml(study))["stages"]
    assert stages["search-digits-lora"]["params"] == [{TINY: [
        "search", "grids.lora", "training.epochs", "training.warmup_epochs",
        "training.batch_size", "training.eval_batch_size", "training.lr_min", "training.warmup_lr_init",
        "training.drop_path", "training.label_smoothing", "training.head_init", "training.compile",
        "training.precision", "backbone.name", "data.normalize"]}]
    assert not any("grids.lora" in str(stage.get("params")) for name, stage in stages.items()
                   if not name.startswith("search-") or not name.endswith("-lora"))
    assert stages["train-digits-lora"]["metrics"] == ["results/final/digits/lora/metrics.json"]
    assert stages["robustness-digits-lora"]["plots"] == ["results/robustness/digits/lora/wise.csv"]


def test_dvc_reads_the_stages_and_edges_of_the_step_table(tmp_path):
    project = copy_project(tmp_path / "project")
    study = load_study(project / TINY, project)
    (project / "dvc.yaml").write_text(render_dvc_yaml(study))
    plan = dvc_plan(project)
    jobs = {job.id: job for job in all_jobs(study)}
    assert set(plan) == set(jobs)
    for job_id, job in jobs.items():
        assert plan[job_id].outputs == set(job.output_paths), job_id
        assert plan[job_id].inputs == set(job.inputs), job_id
        assert plan[job_id].cmd == job.command, job_id
    produced_by = {output: job.id for job in jobs.values() for output in job.output_paths}
    expected_edges = {(produced_by[item], job.id) for job in jobs.values() for item in job.inputs}
    assert dvc_edges(project) == expected_edges
