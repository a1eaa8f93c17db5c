"""Whole folders written beside their destination and moved in by rename (``generate`` and ``prepare``).

``peftlab.io`` makes single files atomic; a task is a folder of many files, so it is built in a hidden
temporary folder in the same parent (same file system, so a rename) and swapped in when complete. A killed run
leaves at most a hidden ``.<task>.*`` folder, never a half task under the task's name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def make_staging_dir(parent: Path, name: str, purpose: str) -> Path:
    """A hidden folder in ``parent``, with the permissions of an ordinary new folder (``mkdtemp`` gives 0700)."""
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.{purpose}-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    return staging


def replace_dir(staging: Path, target: Path) -> None:
    """Move a finished folder into place; an existing one is renamed aside first, then removed."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def first_missing_ancestor(path: Path) -> Path | None:
    """The highest folder on the way to ``path`` that does not exist yet (to remove again on failure)."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def remove_empty_folders(leaf: Path, top: Path) -> None:
    """Remove ``leaf`` and its parents up to ``top`` while they are empty."""
    for folder in (leaf, *leaf.parents):
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return
