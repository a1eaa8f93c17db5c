"""Both engines hold the same DAG: Snakemake's dry run and DVC's own reading of dvc.yaml, for the same config."""

from __future__ import annotations

import pytest
from pipeline_helpers import TINY, copy_project, dvc_plan, peftlab, snakemake_plan

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_snakemake_and_dvc_have_the_same_jobs_outputs_inputs_and_commands(tmp_path):
    project = copy_project(tmp_path / "project")
    peftlab(project, "pipeline", "dvc-yaml", "--config", TINY)
    from_dvc = dvc_plan(project)
    from_snakemake = snakemake_plan(project, "--forceall")
    assert set(from_snakemake) == set(from_dvc)
    for job_id, dvc_job in from_dvc.items():
        smk_job = from_snakemake[job_id]
        assert smk_job.outputs == dvc_job.outputs, job_id
        assert smk_job.inputs == dvc_job.inputs, job_id
        assert smk_job.cmd == dvc_job.cmd, job_id
