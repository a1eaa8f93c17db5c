"""The tiny study, run once per test session (shared by pytest-xdist workers through a file lock).

``tiny_study`` is a project copy (git + DVC repository) in which Snakemake ran config/tiny.yaml end to end and
committed the outputs to DVC (the Snakefile's ``onsuccess``), with dvc.lock committed to git. Tests that change
anything work on their own copy (``copy_built``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from pipeline_helpers import TINY, commit_all, copy_project, peftlab, snakemake


@dataclass(frozen=True)
class BuiltStudy:
    project: Path
    snakemake_seconds: float
    snakemake_log: str


def _build(root: Path) -> dict:
    project = copy_project(root / "project")
    peftlab(project, "pipeline", "dvc-yaml", "--config", TINY)
    commit_all(project, "dvc.yaml for the tiny study")
    started = time.perf_counter()
    result = snakemake(project, "--cores", "2")
    seconds = time.perf_counter() - started
    commit_all(project, "results of the tiny study (dvc.lock)")
    return {"seconds": seconds, "log": result.stdout[-3000:] + result.stderr[-6000:]}


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, worker_id) -> BuiltStudy:
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if worker_id != "master" else base) / "tiny-study"
    with FileLock(f"{shared}.lock"):
        record = shared / "built.json"
        if not record.exists():
            shared.mkdir(parents=True, exist_ok=True)
            try:
                outcome = _build(shared)
            except AssertionError as error:  # every test using the study reports the one failure
                outcome = {"error": str(error)}
            record.write_text(json.dumps(outcome))
    built = json.loads(record.read_text())
    if "error" in built:
        pytest.fail(f"the tiny study did not build:\n{built['error']}")
    return BuiltStudy(shared / "project", built["seconds"], built["log"])
