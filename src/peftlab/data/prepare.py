"""``peftlab data prepare``: list files + images → uint8 shards + manifest, checked, all or nothing.

Order of work, cheapest check first: find the task folder and its lists, parse them, check labels, sizes, that
every listed file exists and that no image path is in both a training and an evaluated split. Only then are
images decoded (each file once, also when two splits list it), hashed for the content-leakage check and written
into a temporary folder beside the output. When every requested task has passed, each temporary folder replaces
its task folder by rename; any error first removes the temporary folders, so bad input leaves the output
directory exactly as it was.

Re-running is a no-op when a task's fingerprint is unchanged and every shard still has the content the manifest
records (its sha256: a same-size corrupted shard is rebuilt). The fingerprint is a sha256 over content only: the
prepare format version, the image size, the resolved task spec (group, class count), whether duplicate content
is allowed (the one check that needs decoded files), and per split its name, the sha256 of its list file (and
class-subset file), and each listed file's relative path and sha256. Nothing in it depends on when or where
files were written, so identical inputs give a byte-identical output folder, ``manifest.json`` included (after
``dvc pull`` gave every image a new modification time, DVC sees nothing changed). Hashing the images costs one
read of them (the default suite's 88 000 images: 10 s of CPU for a no-op run here, against 6 s to stat them).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftlab.data.decode import decode_images, image_size_of
from peftlab.data.lists import (
    ListEntry,
    SplitList,
    check_splits,
    content_leaks,
    infer_num_classes,
    read_splits,
)
from peftlab.data.shards import MANIFEST_NAME, shard_path, write_shard
from peftlab.data.staging import first_missing_ancestor, make_staging_dir, remove_empty_folders, replace_dir
from peftlab.data.tasks import (
    STANDARD_SPLITS,
    UPSTREAM_TASK,
    TaskSpec,
    canonical_name,
    find_task_dir,
    resolve_task,
    validate_task_name,
)
from peftlab.errors import PeftlabError
from peftlab.io import sha256_file, write_json

PREPARE_FORMAT = 1


@dataclass
class PreparedTask:
    """What happened to one task: ``up_to_date`` when nothing was rewritten."""

    task: str
    up_to_date: bool
    splits: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class _Plan:
    """A checked task, ready to decode."""

    task: str
    task_dir: Path
    spec: TaskSpec
    num_classes: int
    image_size: int
    splits: list[SplitList]
    fingerprint: str
    allow_duplicate_content: bool
    workers: int = 1


def discover_tasks(root: Path) -> list[str]:
    """Every folder under ``root`` that holds a task's lists (``test.txt``, or ``train.txt`` for upstream)."""
    if not root.is_dir():
        raise PeftlabError(f"{root}: data root not found")
    names = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            if (child / "test.txt").is_file() or (child.name == UPSTREAM_TASK and (child / "train.txt").is_file()):
                names.append(child.name)
    if not names:
        raise PeftlabError(f"{root}: no task folders (expected <task>/{{{','.join(STANDARD_SPLITS)}}}.txt)")
    return names


def prepare(root: str | Path, out: str | Path, tasks: Sequence[str] | None = None, size: int | None = None, *,
            allow_size_mismatch: Iterable[str] = (), allow_duplicate_content: Iterable[str] = (),
            workers: int = 1, force: bool = False, log=print) -> list[PreparedTask]:
    """Prepare ``tasks`` (default: every task folder in ``root``) into ``out/<task>/``; see the module doc."""
    root, out = Path(root), Path(out)
    if size is not None and size < 1:
        raise PeftlabError(f"--size {size}: the image size must be a positive integer")
    names = list(tasks) if tasks else discover_tasks(root)
    if len(set(names)) != len(names):
        raise PeftlabError(f"--tasks {names}: a task is named twice")
    size_mismatch_ok, duplicates_ok = set(allow_size_mismatch), set(allow_duplicate_content)
    plans = [_plan_task(root, name, size, _listed(name, size_mismatch_ok), _listed(name, duplicates_ok), workers)
             for name in names]

    outcomes, pending = [], []
    created = first_missing_ancestor(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for plan in plans:
            if not force and _is_up_to_date(out / plan.task, plan.fingerprint):
                log(f"{plan.task}: up to date ({out / plan.task}), nothing to do")
                outcomes.append(PreparedTask(plan.task, True))
                continue
            started = time.perf_counter()
            staging = make_staging_dir(out, plan.task, "prepare")
            pending.append((plan.task, staging))
            counts = _write_task(plan, staging)
            outcomes.append(PreparedTask(plan.task, False, counts, time.perf_counter() - started))
    except BaseException:
        for _, staging in pending:
            shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            remove_empty_folders(out, created)
        raise
    for task, staging in pending:
        replace_dir(staging, out / task)
    for outcome in outcomes:
        if not outcome.up_to_date:
            images = sum(outcome.splits.values())
            log(f"{outcome.task}: wrote {len(outcome.splits)} splits ({images} images) to {out / outcome.task} "
                f"in {outcome.seconds:.1f} s")
    return outcomes


def _listed(name: str, names: set[str]) -> bool:
    """Whether a task is named in an ``--allow-*`` list, under the name given or its table name."""
    return name in names or canonical_name(name) in names


def _plan_task(root: Path, name: str, size: int | None, size_mismatch_ok: bool, duplicates_ok: bool,
               workers: int) -> _Plan:
    validate_task_name(name)
    task_dir = find_task_dir(root, name)
    spec = resolve_task(name, task_dir)
    splits = read_splits(task_dir, spec)
    num_classes = infer_num_classes(spec, splits)
    check_splits(splits, spec, num_classes, size_mismatch_ok, task=name)
    image_size = size if size is not None else _native_size(splits[0])
    fingerprint = _fingerprint(spec, num_classes, image_size, splits, duplicates_ok)
    return _Plan(name, task_dir, spec, num_classes, image_size, splits, fingerprint, duplicates_ok, workers)


def _native_size(split: SplitList) -> int:
    """Without ``--size``: the first image's size, which must be square."""
    entry = split.entries[0]
    width, height = image_size_of(entry.path)
    if width != height:
        raise PeftlabError(f"{split.where(entry)}: image is {width}x{height}, not square: pass --size S")
    return width


def _fingerprint(spec: TaskSpec, num_classes: int, image_size: int, splits: Sequence[SplitList],
                 duplicates_ok: bool) -> str:
    digest = hashlib.sha256()
    header = {"format": PREPARE_FORMAT, "image_size": image_size, "group": spec.group, "num_classes": num_classes,
              "allow_duplicate_content": duplicates_ok}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for split in splits:
        digest.update(f"\0split {split.name} {sha256_file(split.list_path)}".encode())
        if split.classes_path is not None:
            digest.update(f" classes {sha256_file(split.classes_path)}".encode())
        for entry in split.entries:
            digest.update(f"\n{entry.relpath}\t{sha256_file(entry.path)}".encode())
    return digest.hexdigest()


def _is_up_to_date(task_out: Path, fingerprint: str) -> bool:
    """The task folder holds what this fingerprint asks for: same fingerprint, every shard with the content
    (sha256) its manifest records."""
    manifest_path = task_out / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("fingerprint") != fingerprint:
        return False
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        return False
    for split, info in splits.items():
        shard = shard_path(task_out, split)
        if not isinstance(info, dict) or not shard.is_file() or sha256_file(shard) != info.get("sha256"):
            return False
    return True


def _write_task(plan: _Plan, staging: Path) -> dict[str, int]:
    """Decode every split into ``staging``, check content leakage, then write the manifest there."""
    from tqdm import tqdm

    uses: dict[Path, int] = {}
    for split in plan.splits:
        for entry in split.entries:
            uses[entry.path] = uses.get(entry.path, 0) + 1
    shared: dict[Path, tuple[str, np.ndarray]] = {}  # files listed by several splits: decoded once
    digests: list[tuple[SplitList, ListEntry, str]] = []
    records: dict[str, dict[str, Any]] = {}
    total = sum(len(split.entries) for split in plan.splits)
    with tqdm(total=total, desc=f"prepare {plan.task}", unit="img", disable=None, file=sys.stderr) as bar:
        for split in plan.splits:
            images, split_digests = _decode_split(split, plan, uses, shared, bar)
            digests += zip([split] * len(split.entries), split.entries, split_digests, strict=True)
            labels = np.asarray(split.labels, dtype=np.int64)
            path = shard_path(staging, split.name)
            sha256 = write_shard(path, images, labels, task=plan.task, split=split.name,
                                 num_classes=plan.num_classes, class_subset=split.class_subset)
            records[split.name] = _split_record(split, labels, plan.num_classes, path, sha256)
    leaks = content_leaks(digests)
    if leaks and not plan.allow_duplicate_content:
        raise PeftlabError(f"{leaks[0]} ({len(leaks)} such images; if the dataset itself holds identical "
                           f"images, pass --allow-duplicate-content {plan.task})")
    manifest = {
        "task": plan.task, "group": plan.spec.group, "suite": plan.spec.suite, "num_classes": plan.num_classes,
        "image_size": plan.image_size, "source": str(plan.task_dir), "format": PREPARE_FORMAT,
        "fingerprint": plan.fingerprint, "splits": records,
    }
    if leaks:
        manifest["duplicate_content"] = len(leaks)
    write_json(staging / MANIFEST_NAME, manifest)
    return {name: record["count"] for name, record in records.items()}


def _decode_split(split: SplitList, plan: _Plan, uses: dict[Path, int],
                  shared: dict[Path, tuple[str, np.ndarray]], bar) -> tuple[np.ndarray, list[str]]:
    """One split's pixels and file digests; a bad image is an error naming the list file and line."""
    entries = split.entries
    images = np.empty((len(entries), 3, plan.image_size, plan.image_size), dtype=np.uint8)
    digests = [""] * len(entries)
    todo = []
    for index, entry in enumerate(entries):
        if entry.path in shared:
            digests[index], images[index] = shared[entry.path]
            bar.update(1)
        else:
            todo.append(index)
    decoded = decode_images([entries[index].path for index in todo], plan.image_size, plan.workers)
    for index in todo:
        try:
            digest, pixels = next(decoded)
        except PeftlabError as exc:
            raise PeftlabError(f"{split.where(entries[index])}: {exc}") from None
        digests[index], images[index] = digest, pixels
        if uses[entries[index].path] > 1:
            shared[entries[index].path] = (digest, pixels)
        bar.update(1)
    return images, digests


def _split_record(split: SplitList, labels: np.ndarray, num_classes: int, shard: Path,
                  sha256: str) -> dict[str, Any]:
    record = {
        "count": int(labels.shape[0]),
        "label_counts": np.bincount(labels, minlength=num_classes).tolist(),
        "sha256": sha256,
        "bytes": shard.stat().st_size,
        "source_list": str(split.list_path),
        "source_sha256": sha256_file(split.list_path),
    }
    if split.class_subset is not None:
        record["class_subset"] = list(split.class_subset)
        record["class_subset_source"] = str(split.classes_path)
    return record
