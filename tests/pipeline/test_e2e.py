"""End to end on config/tiny.yaml: Snakemake runs everything, DVC agrees, and a grid change re-runs only its part.

Times are printed (run with ``-s`` to see them), never asserted.
"""

from __future__ import annotations

import json

import pytest
import yaml
from pipeline_helpers import TINY, copy_built, dvc, dvc_repro_ran, dvc_stale_stages, snakemake_plan

from peftlab import paths
from peftlab.pipeline.checks import load_study
from peftlab.pipeline.steps import all_jobs

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def test_snakemake_runs_every_step_and_leaves_dvc_clean(tiny_study):
    project = tiny_study.project
    print(f"\n[timing] tiny study, snakemake --cores 2 end to end: {tiny_study.snakemake_seconds:.1f} s")
    assert "dvc commit: recorded the outputs" in tiny_study.snakemake_log
    study = load_study(project / TINY, project)
    for job in all_jobs(study):
        for output in job.output_paths:
            assert (project / output).exists(), f"{job.id} left no {output}"
    assert dvc_stale_stages(project) == set()
    assert "up to date" in dvc(project, "status").stdout


def test_dvc_repro_has_nothing_to_do(tiny_study, tmp_path):
    project = copy_built(tiny_study.project, tmp_path / "project")
    ran, seconds = dvc_repro_ran(project)
    print(f"\n[timing] dvc repro after the Snakemake run (no-op): {seconds:.2f} s")
    assert ran == set()


def test_one_methods_learning_rate_grid_reruns_only_that_method_and_what_depends_on_it(tiny_study, tmp_path):
    project = copy_built(tiny_study.project, tmp_path / "project")
    config_path = project / TINY
    config = yaml.safe_load(config_path.read_text())
    config["grids"]["lora"]["lr"] = [5.0e-3]  # lora's own learning-rate grid; the other methods keep search.lr
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    study = load_study(config_path, project)
    expected = {f"{step}-{task}-lora" for step in ("search", "train") for task in study.tasks}
    expected |= {"manyshot-textures-200-lora", "robustness-digits-lora", "report"}
    expected |= {f"ensembles-{task}" for task in study.tasks}

    snakemake_jobs = set(snakemake_plan(project))
    stale = dvc_stale_stages(project)  # the stages whose own inputs changed
    would_run = dvc_repro_ran(project, "--dry", "--force-downstream")[0]  # ... and everything downstream
    ran, seconds = dvc_repro_ran(project)
    print(f"\n[counts] grid change: snakemake -n {len(snakemake_jobs)} jobs; dvc status {len(stale)} stale stages "
          f"(directly changed), {len(would_run)} with downstream; dvc repro ran {len(ran)} stages in {seconds:.1f} s: "
          f"{sorted(ran)}")
    assert snakemake_jobs == expected
    assert stale == {f"search-{task}-lora" for task in study.tasks}
    assert would_run == expected
    assert ran == expected
    assert dvc_stale_stages(project) == set()
    trials = json.loads((project / "results/search/digits/lora/best.json").read_text())["trials"]
    assert {trial["hparams"]["lr"] for trial in trials} == {5.0e-3}


def _peft_methods(study) -> list[str]:
    from peftlab.methods import get_method
    from peftlab.methods.base import HF_PEFT_FAMILY

    return [method for method in study.methods if get_method(method).family == HF_PEFT_FAMILY]


def test_huggingface_peft_methods_run_in_snakemake_and_dvc_reproduces_them(tiny_study, tmp_path):
    """Two peft methods (AdaLoRA with its per-step hooks, VeRA) in the tiny study: Snakemake's results are sane,
    and DVC, forced to re-run their search and train stages on one task, reproduces the same scores."""
    from safetensors.torch import load_file

    from peftlab.methods.commands import count_method_parameters

    built = tiny_study.project
    study = load_study(built / TINY, built)
    methods = _peft_methods(study)
    assert len(methods) >= 2
    backbone = study.config["backbone"]["name"]
    for task in study.tasks:
        for method in methods:
            best = json.loads(paths.path(paths.BEST, built, task=task, method=method).read_text())
            final = json.loads(paths.path(paths.FINAL_METRICS, built, task=task, method=method).read_text())
            assert final["method"] == method and 0 <= final["accuracy"]["test"]["mean"] <= 100
            hparams = {k: v for k, v in best["selected"]["hparams"].items() if k not in ("lr", "weight_decay")}
            assert final["trainable_params"]["method"] == count_method_parameters(backbone, method, hparams)["method"]
            run = paths.run_dir(paths.path(paths.FINAL_RUNS, built, task=task, method=method), study.seeds[0])
            saved = load_file(str(run / "peft.safetensors"))
            assert all(name.startswith("head.") or ".default" in name for name in saved)  # peft's tensor names
    project = copy_built(built, tmp_path / "project")
    task = study.tasks[0]
    stages = [f"{step}-{task}-{method}" for method in methods for step in ("search", "train")]
    for stage in stages:
        ran, _ = dvc_repro_ran(project, "--force", "--single-item", stage)
        assert ran == {stage}
    for method in methods:
        again = json.loads(paths.path(paths.FINAL_METRICS, project, task=task, method=method).read_text())
        first = json.loads(paths.path(paths.FINAL_METRICS, built, task=task, method=method).read_text())
        assert again["accuracy"] == first["accuracy"] and again["hparams"] == first["hparams"]
