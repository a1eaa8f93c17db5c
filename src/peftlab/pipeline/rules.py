"""What the Snakefile's rules ask of the step table (used by ``workflow/rules/common.smk``).

A rule names its step; everything else (outputs as wildcard patterns, per-job inputs, the config values it reads
as ``params`` so that a change re-runs it, the command, log, benchmark, threads, resources and wildcard
constraints) comes from ``peftlab.pipeline.steps``, the same table ``dvc.yaml`` is generated from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.pipeline.checks import load_study
from peftlab.pipeline.dvcgen import commit_outputs
from peftlab.pipeline.steps import STEPS, Job, Study, all_jobs, final_targets, job_id

DEFAULT_CONFIG = "params.yaml"
NEVER_MATCHES = "(?!)"


def config_path_of(configfiles: Sequence[str | os.PathLike], cli_config: Mapping[str, Any]) -> str:
    """The one config file of this run. Jobs read their settings from that file (the same command DVC runs),
    so values given with ``--config`` would reach Snakemake but not the jobs: refuse them."""
    if cli_config:
        raise PeftlabError(f"--config {', '.join(cli_config)}: not supported; both engines and every job read the "
                           "config file, so put the values in a copy of it and pass --configfile")
    if len(configfiles) > 1:
        raise PeftlabError(f"--configfile: give one study config, got {[str(f) for f in configfiles]}")
    return str(configfiles[0]) if configfiles else DEFAULT_CONFIG


class RulePlan:
    """The step table bound to one study, answering in the shapes Snakemake's directives want."""

    def __init__(self, study: Study, directory: Callable[[str], Any]):
        self.study = study
        self._directory = directory  # snakemake.io.directory, passed in to keep this module importable alone
        self._jobs: dict[tuple[str, tuple[tuple[str, str], ...]], Job] = {}

    @classmethod
    def load(cls, snakemake_config: Mapping[str, Any], configfiles: Sequence[str | os.PathLike],
             cli_config: Mapping[str, Any], directory: Callable[[str], Any]) -> RulePlan:
        path = config_path_of(configfiles, cli_config)
        study = load_study(path)
        if dict(snakemake_config) != study.config:
            raise PeftlabError(f"{path}: Snakemake's config differs from the file's (another configfile merged?)")
        return cls(study, directory)

    def job(self, step: str, wildcards: Mapping[str, str]) -> Job:
        if not self._jobs:
            self._jobs = {(job.step, tuple(job.wildcards.items())): job for job in all_jobs(self.study)}
        key = (step, tuple((name, str(wildcards[name])) for name in STEPS[step].wildcards))
        if key not in self._jobs:  # a job outside the table (the wildcard constraints should prevent this)
            self._jobs[key] = STEPS[step].job(self.study, dict(key[1]))
        return self._jobs[key]

    # --- directive values ----------------------------------------------------------------------------------
    def output(self, step: str) -> list:
        return [self._directory(o.pattern) if o.directory else o.pattern for o in STEPS[step].outputs(self.study)]

    def input(self, step: str) -> Callable[[Any], list[str]]:
        return lambda wildcards: list(self.job(step, wildcards).inputs)

    def config_values(self, step: str) -> Callable[[Any], dict[str, Any]]:
        """The config values the job reads, keyed like DVC's params: a change re-runs the job (trigger params)."""
        def values(wildcards: Any) -> dict[str, Any]:
            return {key: self.study.value(key) for key in self.job(step, wildcards).keys}

        return values

    def command(self, step: str) -> Callable[[Any], str]:
        return lambda wildcards: self.job(step, wildcards).command

    def log(self, step: str) -> str:
        return STEPS[step].log()

    def benchmark(self, step: str) -> str:
        return STEPS[step].benchmark()

    def threads(self, step: str) -> int:
        return STEPS[step].threads(self.study)

    def resources(self, step: str) -> dict[str, int]:
        return STEPS[step].resources(self.study).as_dict()

    def wildcard_constraints(self, step: str) -> dict[str, str]:
        """Each wildcard matches exactly the values the study has, so no rule builds a job the table lacks."""
        instances = STEPS[step].instances(self.study)
        return {name: "|".join(re.escape(v) for v in dict.fromkeys(i[name] for i in instances)) or NEVER_MATCHES
                for name in STEPS[step].wildcards}

    def targets(self) -> list[str]:
        return final_targets(self.study)

    # --- after a successful run ----------------------------------------------------------------------------
    def after_success(self, workflow: Any, root: str | os.PathLike = ".") -> str:
        """``dvc commit`` the stages of the jobs in this run's DAG (all up to date after a successful run).

        Not after ``--touch``: it changes modification times only, which DVC does not record."""
        if workflow.touch:
            return "dvc commit skipped: --touch changes modification times only"
        ids = [job_id(job.rule.name, [job.wildcards_dict[name] for name in STEPS[job.rule.name].wildcards])
               for job in workflow.dag.jobs if job.rule.name in STEPS]
        return commit_outputs(self.study, ids, Path(root))
