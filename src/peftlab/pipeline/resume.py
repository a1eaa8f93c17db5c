"""``peftlab snakemake [ARGS]``: run the study with Snakemake, or resume it after a run died, with one command.

A Snakemake run that is killed (SIGKILL of its process group, the OOM killer, a closed terminal, a login node
going down) leaves two things behind: its lock (``.snakemake/locks``: the next run stops with LockException) and
an incomplete marker on every job that was running (the next run stops with IncompleteFilesException). This
command removes a stale lock, after checking that no Snakemake (nor a ``peftlab`` job) still runs in this
directory, and then becomes ``snakemake --rerun-incomplete ARGS``. Interrupted jobs run again; Snakemake first
deletes their declared outputs, but the trials and seeds they had finished sit in resume folders outside those
outputs (``peftlab.paths.resume_dir``), so only the unfinished ones are computed. Jobs Snakemake recorded as
finished do not run again.

Removing ``.snakemake/locks`` is what ``snakemake --unlock`` does for the default (file) persistence backend;
done here it costs nothing, where ``--unlock`` parses the workflow and checks the config once more.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from peftlab.errors import PeftlabError

LOCK_DIR = Path(".snakemake/locks")
RESUME_FLAG = "--rerun-incomplete"


@dataclass(frozen=True)
class LiveProcess:
    pid: int
    command: str


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "snakemake", help="run (or resume after a kill) the study with Snakemake: clears a stale lock, re-runs "
        "interrupted jobs keeping their finished trials and seeds", add_help=False,
        description="Every argument is passed to snakemake (e.g. --configfile config/paper.yaml, --profile "
        "workflow/profiles/slurm, --cores 4, targets).")
    run.set_defaults(handler=snakemake_command, passes_through=True)


def snakemake_command(args: argparse.Namespace) -> int:
    argv = snakemake_argv(args.passed, Path.cwd())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)
    return 1  # not reached


def snakemake_argv(passed: list[str], root: Path) -> list[str]:
    """The snakemake command line to run in ``root``, after clearing a stale lock there."""
    clear_stale_lock(root)
    executable = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    flags = [] if RESUME_FLAG in passed else [RESUME_FLAG]
    return [executable, *flags, *passed]


def clear_stale_lock(root: Path) -> bool:
    """Remove ``root``'s Snakemake lock when no process that could hold it is alive; True when one was removed.
    A lock held by a live run is left alone (that run, and Snakemake's own check, decide)."""
    locks = root / LOCK_DIR
    if not locks.is_dir() or not any(locks.iterdir()):
        return False
    live = live_workflow_processes(root)
    if live is None:
        raise PeftlabError(f"{locks}: a Snakemake lock exists and this system cannot tell whether its run is still "
                           "alive (no /proc); if it is not, run 'snakemake --unlock' once")
    if live:
        return False
    shutil.rmtree(locks)
    print(f"peftlab: removed the stale Snakemake lock {locks} (no Snakemake or peftlab job runs in {root})",
          file=sys.stderr)
    return True


def live_workflow_processes(root: Path) -> list[LiveProcess] | None:
    """Processes other than this one and its ancestors that run ``snakemake`` or ``peftlab`` with ``root`` as
    their working directory (a live run or one of its local jobs); None where ``/proc`` is not available."""
    proc = Path("/proc")
    if not (proc / "self").exists():
        return None
    root = root.resolve()
    own = _ancestors(os.getpid())
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            argv = [arg.decode(errors="replace") for arg in (entry / "cmdline").read_bytes().split(b"\0") if arg]
        except OSError:  # gone, or not ours to read
            continue
        if cwd == root and _is_workflow_command(argv):
            found.append(LiveProcess(int(entry.name), " ".join(argv)[:200]))
    return found


def _is_workflow_command(argv: list[str]) -> bool:
    """``snakemake ...``, ``python .../snakemake ...``, ``python -m snakemake``, and the same for ``peftlab``."""
    names = {Path(arg).name for arg in argv[:2]}
    if "-m" in argv[:3]:
        names.add(argv[argv.index("-m") + 1].split(".")[0] if argv.index("-m") + 1 < len(argv) else "")
    return bool(names & {"snakemake", "peftlab"})


def _ancestors(pid: int) -> set[int]:
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return chain
