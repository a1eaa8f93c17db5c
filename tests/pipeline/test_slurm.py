"""The SLURM profile on a real single-node cluster: a handful of jobs, outputs equal to the local run.

CI starts the cluster (`.ci/run`: /work/shared/tools/ci-slurm.sh install && start); without a reachable
controller the test is skipped, saying so.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from pipeline_helpers import BIN, TINY, copy_built, run
from safetensors.numpy import load_file

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

TASK, METHOD = "digits", "linear"
PREPARED = f"data/shards/{TASK}"
SEARCHED = f"results/search/{TASK}/{METHOD}"
TRAINED = f"results/final/{TASK}/{METHOD}"
TARGET = f"{TRAINED}/metrics.json"


def _slurm_available() -> str | None:
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) installed"
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if result.returncode != 0:
        return f"sinfo failed: {result.stderr.strip() or result.returncode} (start one: ci-slurm.sh start)"
    if not {"idle", "mixed", "allocated"} & set(result.stdout.split()):
        return f"no usable SLURM node (states: {result.stdout.split()})"
    return None


def _tensors_and_metadata(path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "numpy") as handle:
        return {key: handle.get_tensor(key).tobytes() for key in handle.keys()}, handle.metadata()


def test_slurm_profile_reproduces_the_local_outputs(tiny_study, tmp_path):
    reason = _slurm_available()
    if reason:
        pytest.skip(reason)
    project = copy_built(tiny_study.project, tmp_path / "project")
    local = tmp_path / "local"
    for produced in (PREPARED, SEARCHED, TRAINED):
        shutil.move(project / produced, local / produced)
    shutil.rmtree(project / "data/cache", ignore_errors=True)  # no frozen features from the local run

    # The CI cluster has no GPUs: the training rules' gpu=1 request is set to 0 here, as the profile documents.
    no_gpus = [f"{rule}:gpu=0" for rule in ("prepare", "search", "train")]
    result = run(["timeout", "-s", "INT", "600", str(BIN / "snakemake"), "--profile", "workflow/profiles/slurm",
                  "--configfile", TINY, "--jobs", "2", "--slurm-init-seconds-before-status-checks", "2",
                  "--set-resources", *no_gpus, "--", TARGET], project, timeout=660)
    log = result.stdout + result.stderr
    submitted = [line for line in log.splitlines() if "submitted" in line.lower() and "slurm" in line.lower()]
    print(f"\n[slurm] {len(submitted)} jobs submitted")
    assert "3 of 3 steps (100%) done" in log, log[-3000:]

    for shard in sorted((local / PREPARED).glob("*.safetensors")):
        # tensors and metadata, not bytes: safetensors writes its metadata map in no fixed order
        assert _tensors_and_metadata(project / PREPARED / shard.name) == _tensors_and_metadata(shard), shard.name
    best = [json.loads((root / SEARCHED / "best.json").read_text()) for root in (project, local)]
    assert best[0]["selected"] == best[1]["selected"] and best[0]["val_accuracy"] == best[1]["val_accuracy"]
    metrics = [json.loads((root / TRAINED / "metrics.json").read_text()) for root in (project, local)]
    assert metrics[0]["accuracy"] == metrics[1]["accuracy"]
    for seed_dir in sorted((local / TRAINED / "runs").glob("seed*")):
        ours, theirs = (load_file(root / TRAINED / "runs" / seed_dir.name / "logits.safetensors")
                        for root in (project, local))
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert (ours[key] == theirs[key]).all(), f"{seed_dir.name} {key}"
