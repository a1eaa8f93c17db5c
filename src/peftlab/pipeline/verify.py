"""``peftlab verify``: every output recorded in ``dvc.lock`` still has the content recorded there, file by file.

DVC trusts what it checked out itself. Without the remote option ``verify``, a file whose copy in a remote was
altered is pulled as it is, and ``dvc status`` calls it up to date; with ``verify = true`` (set for the default
remote in ``.dvc/config``) DVC re-hashes what it downloads and drops an object whose content does not match its
name, but then reports only "missing cache files" for the whole output. This command hashes every file of every
output in ``dvc.lock`` (the files inside a directory output from the directory's listing), names each one that
is missing or differs, and for a missing one reads the remote's copy to say whether that copy is corrupt. Run it
after ``dvc pull``; nothing it names should be used (peftlab's own loaders refuse checkpoints and shards that do
not match their recorded sha256 anyway).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from peftlab.errors import PeftlabError
from peftlab.io import file_digest

DVC_LOCK = "dvc.lock"
DIR_SUFFIX = ".dir"
NOT_CHECKED_OUT = "not checked out"


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def register(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser("verify", help="check every output in dvc.lock against its recorded md5 (after "
                                   "dvc pull): names each missing or altered file")
    verify.add_argument("--root", type=Path, default=Path("."), help="the DVC project (default: here)")
    verify.add_argument("--remote", help="remote whose copy of a missing file is examined (default: core.remote)")
    verify.set_defaults(handler=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    checked, problems = verify_outputs(args.root, args.remote)
    for problem in problems:
        print(problem)
    if problems:
        raise PeftlabError(f"{len(problems)} of {checked} files recorded in {args.root / DVC_LOCK} failed verification "
                           f"(listed above), first {problems[0]}")
    print(f"{checked} files recorded in {args.root / DVC_LOCK}: all present with their recorded content")
    return 0


class _Store:
    """The local DVC cache and, when one is configured, the remote: where a recorded object can be read."""

    def __init__(self, repo: Any, remote: str | None):
        self.cache = repo.cache.local
        self._repo, self._remote_name = repo, remote
        self._remote: Any = None
        self.remote_error: str | None = None

    @property
    def remote(self) -> Any:
        if self._remote is None and self.remote_error is None:
            try:
                self._remote = self._repo.cloud.get_remote_odb(self._remote_name, "pull")
            except Exception as exc:  # no remote configured, unknown name, unreachable: say so, check the rest
                self.remote_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return self._remote

    def cached_listing(self, oid: str) -> list[dict[str, str]] | None:
        """A directory's listing from the local cache, if present and intact."""
        path = Path(self.cache.oid_to_path(oid))
        if path.is_file() and _md5_bytes(path.read_bytes()) == _bare(oid):
            return json.loads(path.read_bytes())
        return None

    def remote_digest(self, oid: str, keep: bool = False) -> tuple[str, bytes | None] | None:
        """md5 of the remote's copy of an object, streamed (and its bytes with ``keep``, for a directory's
        listing); None when there is no remote or no copy. Objects read here are those missing locally: after a
        verifying pull, the ones DVC dropped."""
        remote = self.remote
        if remote is None:
            return None
        digest, kept = hashlib.md5(), bytearray()
        try:
            with remote.fs.open(remote.oid_to_path(oid), "rb") as handle:
                while chunk := handle.read(1 << 22):
                    digest.update(chunk)
                    if keep:
                        kept += chunk
        except FileNotFoundError:
            return None
        return digest.hexdigest(), bytes(kept) if keep else None

    def why_missing(self, oid: str) -> str:
        found = self.remote_digest(oid)
        if found is None:
            if self.remote_error:
                return f"missing (not in the workspace or the local cache; the remote could not be read: " \
                       f"{self.remote_error})"
            return ("missing: neither the local cache nor the remote holds it (DVC deletes a copy it finds corrupt "
                    "while pulling a single-file output; push it from a clone that has it, or re-run its stage)")
        if found[0] != _bare(oid):
            return (f"missing: the remote's copy is corrupt (its content has md5 {found[0]}, dvc.lock records "
                    f"{_bare(oid)}), so DVC did not check it out")
        return (f"{NOT_CHECKED_OUT}: its copy in the remote is intact, but DVC checks a directory output out whole "
                "and another file of it is missing or corrupt")


def verify_outputs(root: str | Path, remote: str | None = None) -> tuple[int, list[Problem]]:
    """``(files checked, problems)`` for every output in ``root/dvc.lock``."""
    from dvc.repo import Repo

    root = Path(root)
    lock_path = root / DVC_LOCK
    if not lock_path.is_file():
        raise PeftlabError(f"{lock_path}: not found (nothing recorded to verify: run the pipeline or git pull)")
    try:
        lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PeftlabError(f"{lock_path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    problems: list[Problem] = []
    checked = 0
    from dvc.exceptions import NotDvcRepoError

    try:
        repo = Repo(str(root))
    except NotDvcRepoError:
        raise PeftlabError(f"{root}: not a DVC repository (no .dvc folder)") from None
    with repo:
        store = _Store(repo, remote)
        for relpath, oid in _recorded_files(lock, store, problems):
            checked += 1
            problem = _check_file(root, relpath, oid, store)
            if problem is not None:
                problems.append(problem)
    # The files that are bad themselves first; intact files DVC left out with them last.
    return checked, sorted(problems, key=lambda problem: problem.reason.startswith(NOT_CHECKED_OUT))


def _recorded_files(lock: dict[str, Any], store: _Store, problems: list[Problem]) -> Iterator[tuple[str, str]]:
    """``(path, md5)`` of every file under every cached output, directory outputs expanded."""
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            path, oid = out.get("path"), out.get("md5")
            if not path or not oid:
                continue
            if not oid.endswith(DIR_SUFFIX):
                yield path, oid
                continue
            listing = store.cached_listing(oid)
            if listing is None:
                found = store.remote_digest(oid, keep=True)
                if found is not None and found[0] == _bare(oid):
                    listing = json.loads(found[1])
            if listing is None:
                problems.append(Problem(path, f"directory output whose listing (md5 {oid}) is "
                                              f"{store.why_missing(oid)}"))
                continue
            for entry in listing:
                yield f"{path}/{entry['relpath']}", entry["md5"]


def _check_file(root: Path, relpath: str, oid: str, store: _Store) -> Problem | None:
    path = root / relpath
    if path.is_file():
        actual = file_digest(path, "md5")
        if actual == oid:
            return None
        return Problem(relpath, f"content differs from dvc.lock (md5 {actual}, recorded {oid}): altered after it "
                                "was produced, or pulled from a remote that holds a corrupt copy")
    return Problem(relpath, store.why_missing(oid))


def _bare(oid: str) -> str:
    return oid.removesuffix(DIR_SUFFIX)


def _md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()
