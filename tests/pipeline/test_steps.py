"""The step table as a specification: which jobs a study has, what each reads and writes, and its command."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import PROJECT, TINY

from peftlab import paths
from peftlab.config import validate_schema
from peftlab.pipeline.steps import STEPS, Study, all_jobs, normalize_config_path


@pytest.fixture(scope="module")
def tiny() -> Study:
    config = yaml.safe_load((PROJECT / TINY).read_text())
    return Study(config, PROJECT / TINY, PROJECT)


@pytest.fixture(scope="module")
def default() -> Study:
    config = yaml.safe_load((PROJECT / "params.yaml").read_text())
    return Study(config, PROJECT / "params.yaml", PROJECT)


def test_job_ids_are_unique(default):
    ids = [job.id for job in all_jobs(default)]
    assert len(ids) == len(set(ids))


def test_one_search_and_one_final_job_per_task_and_method(default):
    jobs = all_jobs(default)
    pairs = len(default.tasks) * len(default.methods)
    assert sum(job.step == "search" for job in jobs) == pairs
    assert sum(job.step == "train" for job in jobs) == pairs


def test_outputs_never_overlap(default):
    """DVC refuses an output inside another; Snakemake would be ambiguous."""
    outputs = sorted(Path(p) for job in all_jobs(default) for p in job.output_paths)
    assert len(outputs) == len(set(outputs))
    for first, second in zip(outputs, outputs[1:], strict=False):
        assert first not in second.parents, (first, second)


def test_every_input_is_an_earlier_output_or_a_user_file(tiny):
    produced: set[str] = set()
    for job in all_jobs(tiny):
        for item in job.inputs:
            assert item in produced, f"{job.id} reads {item} before any job writes it"
        produced.update(job.output_paths)


def test_search_jobs_read_only_their_own_methods_grid(default):
    for job in all_jobs(default):
        grid_keys = [key for key in job.keys if key.startswith("grids.")]
        if job.step == "search":
            expected = [f"grids.{job.wildcards['method']}"] if job.wildcards["method"] in default.config["grids"] else []
            assert grid_keys == expected, job.id
        else:
            assert grid_keys == [], job.id


def test_execution_settings_are_not_tracked_keys(default):
    assert all("training.threads" not in job.keys for job in all_jobs(default))
    assert "training.epochs" in STEPS["train"].jobs(default)[0].keys


def test_every_listed_key_exists_in_the_config(default):
    for job in all_jobs(default):
        for key in job.keys:
            default.value(key)  # raises KeyError


def test_paths_come_from_the_layout(tiny):
    job = STEPS["train"].job(tiny, {"task": "digits", "method": "lora"})
    assert str(paths.path(paths.FINAL_METRICS, task="digits", method="lora")) in job.output_paths
    assert str(paths.path(paths.BEST, task="digits", method="lora")) in job.inputs
    assert job.argv[job.argv.index("--out") + 1] == str(paths.path(paths.FINAL_DIR, task="digits", method="lora"))


def test_commands_name_the_config_file_relative_to_the_project(tiny):
    assert normalize_config_path(PROJECT / TINY, PROJECT) == TINY
    assert normalize_config_path(f"./{TINY}", ".") == TINY
    job = STEPS["search"].job(tiny, {"task": "digits", "method": "lora"})
    assert job.command == ("peftlab search --task digits --method lora --config config/tiny.yaml "
                           "--out results/search/digits/lora")


def test_training_jobs_ask_for_a_gpu_and_the_configured_threads(tiny):
    for name in ("pretrain", "search", "train", "manyshot", "robustness"):
        job = STEPS[name].jobs(tiny)[0]
        assert job.resources.gpu == 1 and job.threads == tiny.config["training"]["threads"]
    assert STEPS["prepare"].jobs(tiny)[0].resources.gpu == 0


def test_a_study_with_its_own_weights_and_data_has_no_generate_or_pretrain(tiny, tmp_path):
    config = copy.deepcopy(tiny.config)
    config["data"].update(root=str(tmp_path / "vtab"), generate=None)
    config["backbone"]["weights"] = "weights/vit.safetensors"
    validate_schema(config, "test")
    study = Study(config, PROJECT / TINY, PROJECT)
    steps = {job.step for job in all_jobs(study)}
    assert "generate" not in steps and "pretrain" not in steps
    search = STEPS["search"].jobs(study)[0]
    assert "weights/vit.safetensors" in search.inputs
    assert STEPS["prepare"].jobs(study)[0].inputs == (str(tmp_path / "vtab" / "digits"),)


def test_training_jobs_depend_on_the_head_file_of_head_init_file(tiny):
    """The head file is an input (DVC dep, Snakemake input) of every job that trains or reads the runs, so a new
    head re-runs them; its path alone is a tracked key, as every training key is."""
    from peftlab.pipeline.dvcgen import dvc_document

    config = copy.deepcopy(tiny.config)
    config["training"].update(head_init="file", head_init_file="weights/head.safetensors")
    validate_schema(config, "test")
    study = Study(config, PROJECT / TINY, PROJECT)
    trained = {"search", "train", "manyshot", "robustness"}
    assert trained <= {job.step for job in all_jobs(study)}
    for job in all_jobs(study):
        assert ("weights/head.safetensors" in job.inputs) == (job.step in trained), job.id
        if job.step in trained:
            assert "training.head_init_file" in job.keys
            assert "weights/head.safetensors" in dvc_document(study)["stages"][job.id]["deps"]
    assert not any("weights/head.safetensors" in job.inputs for job in all_jobs(tiny))


def test_a_missing_head_file_stops_the_pipeline_naming_the_key(tiny, tmp_path):
    from peftlab.errors import PeftlabError
    from peftlab.pipeline.checks import check_study

    config = copy.deepcopy(tiny.config)
    config["training"].update(head_init="file", head_init_file="weights/head.safetensors")
    with pytest.raises(PeftlabError, match="key 'training.head_init_file': file weights/head.safetensors does not"):
        check_study(Study(config, PROJECT / TINY, tmp_path), "tiny.yaml")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "head.safetensors").write_bytes(b"")
    check_study(Study(config, PROJECT / TINY, tmp_path), "tiny.yaml")


def test_generate_lists_only_the_settings_that_shape_its_task(tiny):
    by_task = {job.wildcards["task"]: job for job in STEPS["generate"].jobs(tiny)}
    assert by_task["digits"].keys == ("data.generate.seed", "data.generate.test_size")
    assert "data.generate.manyshot_size" in by_task["textures"].keys
    assert by_task["upstream"].keys == ("data.generate.seed", "data.generate.upstream_size")
