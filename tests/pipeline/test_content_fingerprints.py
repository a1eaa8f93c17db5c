"""Prepared data depends on content only: after every raw image got a new modification time (what `dvc pull`,
`cp` or `git checkout` do), the prepare job's own command finds the task up to date, and even forced it writes
the same bytes, manifest included, so `dvc status` has nothing to report."""

from __future__ import annotations

import json
import os

import pytest
from pipeline_helpers import DVC_IGNORED, TINY, copy_built, dvc, peftlab

from peftlab.pipeline.checks import load_study
from peftlab.pipeline.steps import STEPS

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def test_re_preparing_identical_inputs_leaves_dvc_nothing_to_do(tiny_study, tmp_path):
    project = copy_built(tiny_study.project, tmp_path / "project")
    job = STEPS["prepare"].job(load_study(project / TINY, project), {"task": "digits"})
    shards = project / "data/shards/digits"
    def contents() -> dict[str, bytes]:  # Snakemake's marker file is not data (DVC ignores it)
        return {p.name: p.read_bytes() for p in shards.iterdir() if p.name not in DVC_IGNORED}

    before = contents()
    for path in (project / "data/raw/digits").rglob("*"):
        if path.is_file():
            os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 3600 * 10**9))

    result = peftlab(project, *job.argv[1:])
    assert "digits: up to date" in result.stdout, result.stdout
    forced = peftlab(project, *job.argv[1:], "--force")
    assert "digits: wrote" in forced.stdout
    assert contents() == before
    assert json.loads(dvc(project, "status", "--json").stdout or "{}") == {}
