"""Reading and checking the list files of a task folder (the VTAB-1k layout).

A list file holds one image per line, ``relative/path label``: the label is the last whitespace-separated field,
so paths may contain spaces. Paths are relative to the task folder (also for ``shift/`` and ``manyshot/``
lists). Blank lines are skipped. Everything here is cheap (no decoding): it runs before any image is opened so
that a wrong file fails in seconds, naming the file and line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from peftlab.data.tasks import UPSTREAM_TASK, TaskSpec
from peftlab.errors import PeftlabError

SHIFT_DIR = "shift"
MANYSHOT_DIR = "manyshot"
CLASSES_SUFFIX = ".classes.txt"
SHIFT_PREFIX = "shift-"
MANYSHOT_PREFIX = "manyshot-"
_MANYSHOT_FILE = re.compile(r"^train([1-9][0-9]*)\.txt$")
_SHIFT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Splits whose images a model trains on; all others are evaluated on and must not share an image with these.
_TRAINING_SPLITS = {"train800", "val200", "train800val200", "train"}


@dataclass(frozen=True)
class ListEntry:
    """One image of a list: ``path`` is ``task_dir / relpath``; ``line`` is 1-based, for error messages."""

    path: Path
    relpath: str
    label: int
    line: int


@dataclass(frozen=True)
class SplitList:
    """One split as listed: its shard name, list file, entries and (shift sets only) class subset."""

    name: str
    list_path: Path
    entries: tuple[ListEntry, ...]
    class_subset: tuple[int, ...] | None = None
    classes_path: Path | None = None

    @property
    def is_training(self) -> bool:
        return self.name in _TRAINING_SPLITS or self.name.startswith(MANYSHOT_PREFIX)

    @property
    def labels(self) -> list[int]:
        return [entry.label for entry in self.entries]

    def where(self, entry: ListEntry) -> str:
        return f"{self.list_path} line {entry.line}"


def read_list(list_path: Path, task_dir: Path) -> tuple[ListEntry, ...]:
    """Parse a list file; a malformed line or a non-integer label is an error naming file and line."""
    try:
        text = list_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PeftlabError(f"{list_path}: split list not found") from None
    except UnicodeDecodeError as exc:
        raise PeftlabError(f"{list_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(maxsplit=1)
        if len(fields) != 2:
            raise PeftlabError(f"{list_path} line {number}: expected 'relative/path label', got {line.strip()!r}")
        relpath, label_text = fields
        try:
            label = int(label_text)
        except ValueError:
            raise PeftlabError(f"{list_path} line {number}: label {label_text!r} is not an integer") from None
        if label < 0:
            raise PeftlabError(f"{list_path} line {number}: label {label} is negative")
        entries.append(ListEntry(task_dir / relpath, relpath, label, number))
    if not entries:
        raise PeftlabError(f"{list_path}: empty split (no 'path label' lines)")
    return tuple(entries)


def read_class_subset(classes_path: Path) -> tuple[int, ...]:
    """Class-subset file: the logit indices (whitespace-separated integers) a shift set is evaluated on."""
    tokens = classes_path.read_text(encoding="utf-8").split()
    try:
        subset = tuple(int(token) for token in tokens)
    except ValueError:
        raise PeftlabError(f"{classes_path}: class indices must be integers, got {tokens[:5]}") from None
    if not subset:
        raise PeftlabError(f"{classes_path}: empty class subset")
    duplicates = sorted(index for index, count in Counter(subset).items() if count > 1)
    if duplicates:
        raise PeftlabError(f"{classes_path}: class indices listed twice: {duplicates[:10]}")
    return subset


def discover_splits(task_dir: Path, spec: TaskSpec) -> list[tuple[str, Path, Path | None]]:
    """(split name, list file, class-subset file) for every split in ``task_dir``; required ones must exist."""
    found = []
    for split in spec.required_splits:
        list_path = task_dir / f"{split}.txt"
        if not list_path.is_file():
            raise PeftlabError(f"{list_path}: split list not found (task '{spec.name}' needs "
                               f"{', '.join(s + '.txt' for s in spec.required_splits)})")
        found.append((split, list_path, None))
    if spec.name == UPSTREAM_TASK:
        return found
    found += _discover_shift_sets(task_dir / SHIFT_DIR)
    found += _discover_manyshot(task_dir / MANYSHOT_DIR)
    return found


def _discover_shift_sets(shift_dir: Path) -> list[tuple[str, Path, Path | None]]:
    if not shift_dir.is_dir():
        return []
    lists = sorted(p for p in shift_dir.glob("*.txt") if not p.name.endswith(CLASSES_SUFFIX))
    found = []
    for list_path in lists:
        if not _SHIFT_NAME.match(list_path.stem):
            raise PeftlabError(f"{list_path}: shift set names are letters, digits, '_', '-', '.'")
        classes = shift_dir / f"{list_path.stem}{CLASSES_SUFFIX}"
        found.append((f"{SHIFT_PREFIX}{list_path.stem}", list_path, classes if classes.is_file() else None))
    for classes in shift_dir.glob(f"*{CLASSES_SUFFIX}"):
        if not (shift_dir / (classes.name[: -len(CLASSES_SUFFIX)] + ".txt")).is_file():
            raise PeftlabError(f"{classes}: class subset without its shift list")
    return found


def _discover_manyshot(manyshot_dir: Path) -> list[tuple[str, Path, Path | None]]:
    if not manyshot_dir.is_dir():
        return []
    found = []
    for list_path in sorted(manyshot_dir.glob("*.txt")):
        match = _MANYSHOT_FILE.match(list_path.name)
        if not match:
            raise PeftlabError(f"{list_path}: many-shot lists are named train<size>.txt")
        found.append((f"{MANYSHOT_PREFIX}{match.group(1)}", list_path, None))
    return sorted(found, key=lambda item: int(item[0][len(MANYSHOT_PREFIX):]))


def read_splits(task_dir: Path, spec: TaskSpec) -> list[SplitList]:
    """Every split of the task folder, parsed (not yet checked against the spec)."""
    splits = []
    for name, list_path, classes_path in discover_splits(task_dir, spec):
        subset = read_class_subset(classes_path) if classes_path else None
        splits.append(SplitList(name, list_path, read_list(list_path, task_dir), subset, classes_path))
    return splits


def infer_num_classes(spec: TaskSpec, splits: Sequence[SplitList]) -> int:
    """The table's class count, else max label + 1 over all splits (a user's own task)."""
    if spec.num_classes is not None:
        return spec.num_classes
    return 1 + max(max(split.labels) for split in splits)


def expected_size(spec: TaskSpec, split_name: str) -> int | None:
    if split_name in spec.sizes:
        return spec.sizes[split_name]
    if split_name.startswith(MANYSHOT_PREFIX):
        return int(split_name[len(MANYSHOT_PREFIX):])
    return None


def check_splits(splits: Sequence[SplitList], spec: TaskSpec, num_classes: int, allow_size_mismatch: bool,
                 task: str | None = None) -> None:
    """Labels in range, sizes as expected, listed files present, no image path in both training and test.

    ``task`` is the name the user asked for (an alias such as ``kitti``), used in messages."""
    task = task or spec.name
    for split in splits:
        _check_labels(split, num_classes)
        expected = expected_size(spec, split.name)
        if expected is not None and len(split.entries) != expected and not allow_size_mismatch:
            raise PeftlabError(
                f"{split.list_path}: {len(split.entries)} images, task '{task}' expects {expected} for "
                f"split '{split.name}' (pass --allow-size-mismatch {task} or set data.allow_size_mismatch)"
            )
        for entry in split.entries:
            if not entry.path.is_file():
                raise PeftlabError(f"{split.where(entry)}: image {entry.relpath!r} not found ({entry.path})")
    _check_path_leakage(splits)


def _check_labels(split: SplitList, num_classes: int) -> None:
    if split.class_subset is not None:
        outside = [index for index in split.class_subset if not 0 <= index < num_classes]
        if outside:
            raise PeftlabError(f"{split.classes_path}: class indices {outside[:5]} outside [0, {num_classes})")
    allowed = set(split.class_subset) if split.class_subset is not None else None
    for entry in split.entries:
        if entry.label >= num_classes:
            raise PeftlabError(f"{split.where(entry)}: label {entry.label} out of range [0, {num_classes})")
        if allowed is not None and entry.label not in allowed:
            raise PeftlabError(f"{split.where(entry)}: label {entry.label} is not in the class subset "
                               f"{split.classes_path}")


def _check_path_leakage(splits: Sequence[SplitList]) -> None:
    training = {}
    for split in splits:
        if split.is_training:
            for entry in split.entries:
                training.setdefault(entry.path.resolve(), (split, entry))
    for split in splits:
        if split.is_training:
            continue
        for entry in split.entries:
            hit = training.get(entry.path.resolve())
            if hit:
                train_split, train_entry = hit
                raise PeftlabError(f"{split.where(entry)}: image {entry.relpath!r} is also in training split "
                                   f"'{train_split.name}' ({train_split.where(train_entry)}): train/test leakage")


def content_leaks(digests: Iterable[tuple[SplitList, ListEntry, str]]) -> list[str]:
    """One message per evaluated image whose file bytes (sha256) equal a training image's."""
    training: dict[str, tuple[SplitList, ListEntry]] = {}
    evaluated = []
    for split, entry, digest in digests:
        if split.is_training:
            training.setdefault(digest, (split, entry))
        else:
            evaluated.append((split, entry, digest))
    leaks = []
    for split, entry, digest in evaluated:
        hit = training.get(digest)
        if hit:
            train_split, train_entry = hit
            leaks.append(f"{split.where(entry)}: image {entry.relpath!r} has the same bytes as "
                         f"{train_entry.relpath!r} in training split '{train_split.name}' "
                         f"({train_split.where(train_entry)}): train/test leakage")
    return leaks
