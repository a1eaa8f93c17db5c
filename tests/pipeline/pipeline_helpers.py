"""Helpers for the pipeline tests: project copies, running both engines, reading their DAGs.

Every engine run happens in a temporary copy of the project's pipeline files (Snakefile, workflow/, configs,
dvc.yaml, DVC config), made a git repository, so tests never touch the working tree. The peftlab package itself
is the installed (editable) one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PIPELINE_FILES = ("Snakefile", "params.yaml", "dvc.yaml", ".gitignore", ".dvcignore", ".dvc/config",
                  ".dvc/.gitignore")
PIPELINE_DIRS = ("workflow", "config")
TINY = "config/tiny.yaml"
DVC_IGNORED = {".snakemake_timestamp"}  # see .dvcignore


def env() -> dict[str, str]:
    """The environment of every engine run: the venv first on PATH, no DVC analytics, one torch thread."""
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1",
                OMP_NUM_THREADS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                GIT_COMMITTER_EMAIL="t@t")


def run(args: list[str], cwd: Path, check: bool = True, timeout: float = 900,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}) in {cwd}:\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def timed(args: list[str], cwd: Path, check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = run(args, cwd, check=check)
    return result, time.perf_counter() - started


def copy_project(dest: Path, git: bool = True) -> Path:
    """The pipeline files of the project in ``dest`` (a fresh git + DVC repository)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT / name, dest / name)
    for name in PIPELINE_DIRS:
        # workflow/schemas is a symlink into src/ (not part of the copy; the package holds the schema)
        shutil.copytree(PROJECT / name, dest / name, ignore=shutil.ignore_patterns("schemas", "__pycache__"))
    if git:
        run(["git", "init", "-q", "-b", "main"], dest)
        commit_all(dest, "project")
    return dest


def commit_all(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], repo)


def snakemake(cwd: Path, *args: str, config: str = TINY, check: bool = True, timeout: float = 900
              ) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), "--configfile", config, *args], cwd, check=check, timeout=timeout)


def dvc(cwd: Path, *args: str, check: bool = True, extra_env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd, check=check, extra_env=extra_env)


def peftlab(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "peftlab"), *args], cwd, check=check)


@dataclass
class PlannedJob:
    """A job as an engine reports it: its id (the step table's), outputs, inputs and command."""

    id: str
    outputs: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)
    cmd: str = ""


def snakemake_plan(cwd: Path, *args: str, config: str = TINY) -> dict[str, PlannedJob]:
    """The jobs of a Snakemake dry run (``rule``/``wildcards``/``input``/``output`` lines of its listing)."""
    from peftlab.pipeline.steps import STEPS, job_id

    result = snakemake(cwd, "--dry-run", "--printshellcmds", *args, config=config)
    jobs: dict[str, PlannedJob] = {}
    for block in re.split(r"\n(?=rule \w+:)", result.stdout):
        head = re.match(r"rule (\w+):", block)
        if not head or head.group(1) not in STEPS:
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        wildcards = dict(item.split("=", 1) for item in fields.get("wildcards", "").split(", ") if item)
        step = STEPS[head.group(1)]
        job = PlannedJob(job_id(step.name, [wildcards[name] for name in step.wildcards]))
        job.outputs = _path_set(fields.get("output", ""))
        job.inputs = _path_set(fields.get("input", ""))
        command = re.search(r"^Shell command: (.*)$", block, re.M)
        job.cmd = re.sub(r" > \S+ 2>&1$", "", command.group(1)) if command else ""
        jobs[job.id] = job
    return jobs


def _path_set(text: str) -> set[str]:
    return {item for item in text.split(", ") if item}


def dvc_plan(cwd: Path) -> dict[str, PlannedJob]:
    """The stages DVC itself reads from ``dvc.yaml`` (its own parser, not ours)."""
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        jobs = {}
        for stage in repo.index.stages:
            job = PlannedJob(stage.name, cmd=stage.cmd)
            job.outputs = {_relative(out.fs_path, cwd) for out in stage.outs}
            job.inputs = {_relative(dep.fs_path, cwd) for dep in stage.deps if not _is_params(dep)}
            jobs[stage.name] = job
        return jobs


def dvc_edges(cwd: Path) -> set[tuple[str, str]]:
    from dvc.repo import Repo

    with Repo(str(cwd)) as repo:
        graph = repo.index.graph
        return {(upstream.name, downstream.name) for downstream, upstream in graph.edges}


def _is_params(dep) -> bool:
    from dvc.dependency.param import ParamsDependency

    return isinstance(dep, ParamsDependency)


def _relative(path: str, root: Path) -> str:
    return os.path.relpath(path, os.path.realpath(root)) if os.path.isabs(path) else path


def dvc_stale_stages(cwd: Path) -> set[str]:
    """Stage names ``dvc status`` reports as changed."""
    import json

    result = dvc(cwd, "status", "--json")
    return set(json.loads(result.stdout or "{}"))


def dvc_repro_ran(cwd: Path, *args: str) -> tuple[set[str], float]:
    """Run ``dvc repro`` (with ``args``); the stages it ran (or would run, with ``--dry``) and its wall time."""
    started = time.perf_counter()
    result = dvc(cwd, "repro", *args)
    return set(re.findall(r"^Running stage '([^']+)'", result.stdout, re.M)), time.perf_counter() - started


def dvc_outputs(cwd: Path) -> list[Path]:
    """Every file under every output of dvc.yaml (directories walked), relative to ``cwd``."""
    import yaml

    files = []
    for stage in yaml.safe_load((cwd / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                target = cwd / out
                files += sorted(p for p in target.rglob("*") if p.is_file() and p.name not in DVC_IGNORED) \
                    if target.is_dir() else [target]
    return [f.relative_to(cwd) for f in files]


def copy_built(source: Path, dest: Path) -> Path:
    """A private copy of a built project (git history, DVC cache and outputs) for a test to change."""
    shutil.copytree(source, dest, symlinks=True)
    return dest
