"""``peftlab snakemake``: a lock left by a dead run is removed, one held by a live run is not, and the run always
re-runs incomplete jobs (whose finished trials and seeds are kept in their resume folders)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from peftlab.cli import build_parser
from peftlab.pipeline.resume import LOCK_DIR, clear_stale_lock, live_workflow_processes, snakemake_argv


def lock(root: Path) -> Path:
    (root / LOCK_DIR).mkdir(parents=True)
    (root / LOCK_DIR / "0.output.lock").write_text("results/search/digits/lora/best.json\n")
    return root / LOCK_DIR


def test_a_lock_no_live_process_holds_is_removed(tmp_path):
    locks = lock(tmp_path)
    assert clear_stale_lock(tmp_path)
    assert not locks.exists()
    assert not clear_stale_lock(tmp_path)  # nothing left to remove


@pytest.mark.parametrize("argv0", ["snakemake", "peftlab"])
def test_a_lock_of_a_live_run_in_the_directory_is_kept(tmp_path, argv0):
    locks = lock(tmp_path)
    live = subprocess.Popen(["bash", "-c", f"exec -a {argv0} sleep 30"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not live_workflow_processes(tmp_path):
            assert time.monotonic() < deadline, "the stand-in process never showed up in /proc"
            time.sleep(0.05)
        assert [process.pid for process in live_workflow_processes(tmp_path)] == [live.pid]
        assert not clear_stale_lock(tmp_path)
        assert locks.is_dir()
    finally:
        live.kill()
        live.wait()


def test_a_live_run_elsewhere_does_not_keep_a_stale_lock(tmp_path):
    lock(tmp_path)
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    live = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 30"], cwd=elsewhere)
    try:
        assert clear_stale_lock(tmp_path)
    finally:
        live.kill()
        live.wait()


def test_the_run_re_runs_incomplete_jobs_and_passes_every_argument_on(tmp_path):
    argv = snakemake_argv(["--profile", "workflow/profiles/slurm", "--cores", "2", "--", "target"], tmp_path)
    assert Path(argv[0]).name == "snakemake"
    assert argv[1:] == ["--rerun-incomplete", "--profile", "workflow/profiles/slurm", "--cores", "2", "--", "target"]
    assert snakemake_argv(["--rerun-incomplete", "-n"], tmp_path)[1:] == ["--rerun-incomplete", "-n"]


def test_the_cli_hands_snakemake_its_arguments_as_given():
    args, passed = build_parser().parse_known_args(["snakemake", "--configfile", "config/paper.yaml", "-n", "all"])
    assert args.command == "snakemake" and passed == ["--configfile", "config/paper.yaml", "-n", "all"]
