"""A killed pipeline resumes in both engines with one command, keeping every finished trial and seed byte for
byte: Snakemake killed with its whole process group, ``dvc repro`` killed the same way, and a SLURM job that hits
its time limit. Finished jobs do not run again, and the results equal an uninterrupted run's.

Each test works on a copy of the built tiny study and changes only LoRA's grid (4 trials per search) or the seeds
(3 per final run), so only those jobs run. The reference "uninterrupted run" is the job's own command run by
hand into another folder: both engines run exactly that command.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import BIN, TINY, copy_built, env, peftlab, run

from peftlab.paths import resume_dir

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

METHOD = "lora"
TASKS = ("digits", "textures")
GRID = {"lr": [5.0e-3, 2.0e-3], "rank": [2, 4]}  # 4 trials, none of them in the built study's grid
TRIALS = 4
SEEDS = [0, 1, 2]


def search_dir(task: str) -> str:
    return f"results/search/{task}/{METHOD}"


def edit_config(project: Path, **sections) -> None:
    path = project / TINY
    config = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        section, _, name = key.partition("__")
        config[section][name] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def new_trials(project: Path, task: str) -> dict[str, bytes]:
    """The trial files of the changed grid in the job's resume folder (older grids' files may sit there too)."""
    folder = resume_dir(project / search_dir(task))
    wanted = {f"lr{lr!r}-wd0.0001-rank{rank}.json" for lr in GRID["lr"] for rank in GRID["rank"]}
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json")) if p.name in wanted} if folder.is_dir() \
        else {}


def kill_when(args: list[str], cwd: Path, ready: Callable[[], bool], timeout: float = 600) -> str:
    """Start an engine in its own process group, SIGKILL the whole group once ``ready()``; its output."""
    log = cwd / "killed-run.log"
    with log.open("w") as handle:
        process = subprocess.Popen(args, cwd=cwd, env=env(), stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                assert process.poll() is None, f"{args[0]} ended before the kill point:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no kill point within {timeout} s:\n{log.read_text()[-3000:]}"
                time.sleep(0.1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return log.read_text()


def one_search_done_and_the_other_started(project: Path) -> Callable[[], bool]:
    def ready() -> bool:
        counts = sorted(len(new_trials(project, task)) for task in TASKS)
        return counts[1] == TRIALS and 2 <= counts[0] < TRIALS

    return ready


def log_counts(log: str) -> tuple[int, int]:
    return log.count("kept (finished earlier)"), len(re.findall(r": (?:ok|diverged), val accuracy .*, ran$", log, re.M))


def assert_search_equals_an_uninterrupted_run(project: Path, task: str, reference: Path) -> None:
    peftlab(project, "search", "--task", task, "--method", METHOD, "--config", TINY, "--out", str(reference))
    resumed, uninterrupted = (json.loads((root / "best.json").read_text())
                              for root in (project / search_dir(task), reference))
    assert resumed["selected"] == uninterrupted["selected"]
    assert resumed["val_accuracy"] == uninterrupted["val_accuracy"]
    assert resumed["trials"] == uninterrupted["trials"]  # ids, hparams, status, val accuracy and loss, params


def killed_search(project: Path, engine_args: list[str]) -> tuple[str, str, dict[str, bytes], float]:
    """Kill ``engine_args`` (both LoRA searches, one at a time) once one search has finished and the other has
    finished 2 or 3 trials; returns (finished task, interrupted task, its kept trials, finished best.json mtime)."""
    edit_config(project, grids__lora=GRID)
    kill_when(engine_args, project, one_search_done_and_the_other_started(project))
    done = next(task for task in TASKS if len(new_trials(project, task)) == TRIALS)
    interrupted = next(task for task in TASKS if task != done)
    before = new_trials(project, interrupted)
    assert 2 <= len(before) < TRIALS
    assert all(json.loads(content)["status"] == "ok" for content in before.values())  # complete files
    return done, interrupted, before, (project / search_dir(done) / "best.json").stat().st_mtime_ns


def assert_resumed(project: Path, done: str, interrupted: str, before: dict[str, bytes], done_mtime: int,
                   log: str, tmp_path: Path) -> None:
    assert (project / search_dir(done) / "best.json").stat().st_mtime_ns == done_mtime, "the finished job re-ran"
    after = new_trials(project, interrupted)
    assert len(after) == TRIALS
    for name, content in before.items():
        assert after[name] == content, f"{name} was not kept byte for byte"
        assert (project / search_dir(interrupted) / "trials" / name).read_bytes() == content
    assert log_counts(log) == (len(before), TRIALS - len(before)), log[-3000:]
    assert_search_equals_an_uninterrupted_run(project, interrupted, tmp_path / "uninterrupted")


def test_snakemake_killed_mid_search_resumes_with_one_command(tiny_study, tmp_path):
    project = copy_built(tiny_study.project, tmp_path / "project")
    targets = [f"{search_dir(task)}/best.json" for task in TASKS]
    started = time.perf_counter()
    done, interrupted, before, done_mtime = killed_search(
        project, [str(BIN / "snakemake"), "--configfile", TINY, "--cores", "1", *targets])
    assert any((project / ".snakemake" / "locks").iterdir()), "the kill should leave Snakemake's lock behind"
    killed_at = time.perf_counter()

    result = run([str(BIN / "peftlab"), "snakemake", "--configfile", TINY, "--cores", "1", *targets], project)
    output = result.stdout + result.stderr
    assert "removed the stale Snakemake lock" in output
    assert re.findall(r"^(?:local)?rule (\w+):", output, re.M) == ["search"], output[-3000:]
    log = (project / f"logs/search/{interrupted}/{METHOD}.log").read_text()
    print(f"\n[timing] snakemake killed after {killed_at - started:.1f} s, resumed in "
          f"{time.perf_counter() - killed_at:.1f} s; {len(before)} of {TRIALS} trials kept")
    assert_resumed(project, done, interrupted, before, done_mtime, log, tmp_path)


def test_dvc_repro_killed_mid_search_resumes_with_one_command(tiny_study, tmp_path):
    project = copy_built(tiny_study.project, tmp_path / "project")
    stages = [f"search-{task}-{METHOD}" for task in TASKS]
    done, interrupted, before, done_mtime = killed_search(project, [str(BIN / "dvc"), "repro", *stages])

    result = run([str(BIN / "dvc"), "repro", *stages], project)
    assert re.findall(r"^Running stage '([^']+)'", result.stdout, re.M) == [f"search-{interrupted}-{METHOD}"]
    log = result.stdout + result.stderr
    assert_resumed(project, done, interrupted, before, done_mtime, log, tmp_path)
    assert json.loads(run([str(BIN / "dvc"), "status", "--json", *stages], project).stdout or "{}") == {}


def final_dir(task: str = "digits") -> str:
    return f"results/final/{task}/{METHOD}"


@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
def test_a_final_run_killed_between_seeds_keeps_its_finished_seeds(tiny_study, tmp_path, engine):
    project = copy_built(tiny_study.project, tmp_path / "project")
    edit_config(project, study__seeds=SEEDS)
    peftlab(project, "pipeline", "dvc-yaml", "--config", TINY)  # the seeds are part of the train commands
    kept = resume_dir(project / final_dir())
    command = ([str(BIN / "snakemake"), "--configfile", TINY, "--cores", "1", f"{final_dir()}/metrics.json"]
               if engine == "snakemake" else [str(BIN / "dvc"), "repro", f"train-digits-{METHOD}"])

    def seeds_done(since: float = 0.0) -> list[int]:
        """Seeds finished in the resume folder (seed 0 is there from the built study: its fingerprint does not
        depend on the other seeds, so it is kept from the start)."""
        return [seed for seed in SEEDS if (kept / f"seed{seed}" / "metrics.json").is_file()
                and (kept / f"seed{seed}" / "metrics.json").stat().st_mtime > since]

    started = time.time()
    kill_when(command, project, lambda: len(seeds_done(started)) >= 1 and len(seeds_done()) < len(SEEDS))
    finished = seeds_done()
    before = {seed: {p.name: p.read_bytes() for p in (kept / f"seed{seed}").iterdir()} for seed in finished}

    resume = [str(BIN / "peftlab"), "snakemake", *command[1:]] if engine == "snakemake" else command
    result = run(resume, project)
    log = (project / "logs/train/digits/lora.log").read_text() if engine == "snakemake" \
        else result.stdout + result.stderr
    assert log.count("kept (finished earlier)") == len(finished), log[-3000:]
    for seed, files in before.items():
        published = project / final_dir() / "runs" / f"seed{seed}"
        assert {name: (published / name).read_bytes() for name in files} == files, f"seed {seed} not kept"

    reference = tmp_path / "uninterrupted"
    peftlab(project, "train", "--task", "digits", "--method", METHOD, "--config", TINY, "--hparams",
            f"results/search/digits/{METHOD}/best.json", "--seeds", *map(str, SEEDS), "--out", str(reference))
    for seed in SEEDS:
        for name in ("peft.safetensors", "head_init.safetensors", "logits.safetensors"):
            ours, theirs = (root / "runs" / f"seed{seed}" / name for root in (project / final_dir(), reference))
            assert ours.read_bytes() == theirs.read_bytes(), (seed, name)
    summaries = [json.loads((root / "metrics.json").read_text()) for root in (project / final_dir(), reference)]
    assert summaries[0]["accuracy"] == summaries[1]["accuracy"]


@pytest.mark.slurm
def test_a_slurm_search_job_that_hits_its_time_limit_resumes(tiny_study, tmp_path):
    """The search job gets one minute, SLURM's smallest limit (enforced at the next 30-s check: it ends at 60-90 s
    of run time), and a grid sized to need about 120 s at the trial time measured just before on this machine;
    SLURM ends it (TIMEOUT) mid-search, and the same command with a longer limit finishes it."""
    from test_slurm import _slurm_available

    reason = _slurm_available()
    if reason:
        pytest.skip(reason)
    project = copy_built(tiny_study.project, tmp_path / "project")
    calibration = tmp_path / "calibration.yaml"
    config = yaml.safe_load((project / TINY).read_text())
    config["grids"]["lora"] = {"lr": [9.0e-4, 8.0e-4, 7.0e-4], "rank": [2]}
    calibration.write_text(yaml.safe_dump(config))
    peftlab(project, "search", "--task", "digits", "--method", METHOD, "--config", str(calibration),
            "--out", str(tmp_path / "calibration"))
    trial_s = sorted(json.loads(trial.read_text())["time_s"]  # the median of 3
                     for trial in (tmp_path / "calibration" / "trials").glob("*.json"))[1]
    count = min(120, max(24, int(120 / trial_s)))
    lrs = [round(1e-3 * (1 + k / count), 8) for k in range(count)]
    edit_config(project, grids__lora={"lr": lrs, "rank": [2]})
    target = f"{search_dir('digits')}/best.json"
    kept = resume_dir(project / search_dir("digits"))

    def slurm_search(runtime_min: int):
        # The CI cluster has no GPUs: the search rule's gpu=1 request is set to 0, as the profile documents.
        return run(["timeout", "-s", "INT", "900", str(BIN / "peftlab"), "snakemake", "--profile",
                    "workflow/profiles/slurm", "--configfile", TINY, "--jobs", "1",
                    "--slurm-init-seconds-before-status-checks", "2", "--set-resources", "search:gpu=0",
                    f"search:runtime={runtime_min}", "--", target], project, check=False, timeout=960)

    started = time.perf_counter()
    first = slurm_search(1)
    timed_out_after = time.perf_counter() - started
    output = first.stdout + first.stderr
    assert first.returncode != 0, output[-3000:]
    assert re.search(r"TIMEOUT|time limit", output, re.I), output[-3000:]
    before = {p.name: p.read_bytes() for p in kept.glob("lr*.json") if json.loads(p.read_text())["hparams"]["lr"]
              in lrs}
    assert 1 <= len(before) < count, f"{len(before)} of {count} trials before the time limit"

    second = slurm_search(10)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    log = (project / "logs/search/digits/lora.log").read_text()
    print(f"\n[timing] {count} trials of ~{trial_s:.1f} s: SLURM ended the job after {timed_out_after:.0f} s with "
          f"{len(before)} done; resumed in {time.perf_counter() - started - timed_out_after:.0f} s")
    assert log_counts(log) == (len(before), count - len(before)), log[-3000:]
    for name, content in before.items():
        assert (kept / name).read_bytes() == content
        assert (project / search_dir("digits") / "trials" / name).read_bytes() == content
    best = json.loads((project / target).read_text())
    assert len(best["trials"]) == count and all(trial["status"] == "ok" for trial in best["trials"])
