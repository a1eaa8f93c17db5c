"""The task table: which tasks exist, their group, class count and expected split sizes.

Two suites share the table. ``vtab`` holds the 19 VTAB-1k tasks with the published test sizes; ``mini`` holds
the offline mini-suite that ``peftlab data generate`` writes. Four names exist in both (``clevr_count``,
``clevr_distance``, ``dsprites_location``, ``dsprites_orientation``): the generator marks its folders with a
``task.json`` card saying ``"suite": "mini"``, and that card is what selects the mini entry.

A task folder may carry a ``task.json`` card (``group``, ``num_classes``, ``sizes: {split: count}``). The card
fills what the table leaves open (the generated test size; everything for a task the table does not know) and
must agree with the table where the table has a value, so a card cannot quietly relabel a VTAB task. A task the
table does not know is allowed when its folder and lists exist: group ``Other``, ``num_classes`` from the card
or max label + 1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError

GROUPS = ("Natural", "Specialized", "Structured")
OTHER_GROUP = "Other"
UPSTREAM_GROUP = "Upstream"
UPSTREAM_TASK = "upstream"

CARD_NAME = "task.json"
VTAB_SUITE = "vtab"
MINI_SUITE = "mini"

# The VTAB-1k splits every task folder holds, with the sizes the names promise.
TRAIN_SPLITS = ("train800", "val200", "train800val200")
FIXED_SIZES = {"train800": 800, "val200": 200, "train800val200": 1000}
STANDARD_SPLITS = (*TRAIN_SPLITS, "test")
UPSTREAM_SPLITS = ("train", "val")


@dataclass(frozen=True)
class TaskSpec:
    """One task: ``sizes`` maps split name to the expected image count (absent: not checked)."""

    name: str
    group: str
    num_classes: int | None
    sizes: Mapping[str, int] = field(default_factory=dict)
    suite: str = VTAB_SUITE
    aliases: tuple[str, ...] = ()

    @property
    def required_splits(self) -> tuple[str, ...]:
        return UPSTREAM_SPLITS if self.name == UPSTREAM_TASK else STANDARD_SPLITS

    @property
    def folder_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def _vtab(name: str, group: str, num_classes: int, test: int, *aliases: str) -> TaskSpec:
    return TaskSpec(name, group, num_classes, {**FIXED_SIZES, "test": test}, VTAB_SUITE, aliases)


VTAB_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _vtab("cifar", "Natural", 100, 10000, "cifar100", "cifar_100"),
        _vtab("caltech101", "Natural", 102, 6084, "caltech_101", "caltech"),
        _vtab("dtd", "Natural", 47, 1880, "dtd_47"),
        _vtab("oxford_flowers102", "Natural", 102, 6149, "flowers102", "flowers", "oxford_flowers_102"),
        _vtab("oxford_iiit_pet", "Natural", 37, 3669, "pets", "oxford_iiit_pets", "oxford_pet"),
        _vtab("svhn", "Natural", 10, 26032, "svhn_cropped"),
        _vtab("sun397", "Natural", 397, 21750, "sun"),
        _vtab("patch_camelyon", "Specialized", 2, 32768, "camelyon", "pcam"),
        _vtab("eurosat", "Specialized", 10, 5400),
        _vtab("resisc45", "Specialized", 45, 6300, "resisc"),
        _vtab("diabetic_retinopathy", "Specialized", 5, 42670, "retinopathy", "diabetic_retinopathy_detection"),
        _vtab("clevr_count", "Structured", 8, 15000, "clevr_count_all"),
        _vtab("clevr_distance", "Structured", 6, 15000, "clevr_dist", "clevr_closest_object_distance"),
        _vtab("dmlab", "Structured", 6, 22735),
        _vtab("kitti_distance", "Structured", 4, 711, "kitti", "kitti_dist"),
        _vtab("dsprites_location", "Structured", 16, 73728, "dsprites_loc", "dsprites_x_position"),
        _vtab("dsprites_orientation", "Structured", 16, 73728, "dsprites_ori"),
        _vtab("smallnorb_azimuth", "Structured", 18, 12150, "smallnorb_azi"),
        _vtab("smallnorb_elevation", "Structured", 9, 12150, "smallnorb_ele"),
    )
}


def _mini(name: str, group: str, num_classes: int) -> TaskSpec:
    # The test size is left to the generator's card (``--test-size``).
    return TaskSpec(name, group, num_classes, dict(FIXED_SIZES), MINI_SUITE)


MINI_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        _mini("digits", "Natural", 10),
        _mini("textures", "Natural", 8),
        _mini("cells", "Specialized", 2),
        _mini("terrain", "Specialized", 7),
        _mini("clevr_count", "Structured", 6),
        _mini("clevr_distance", "Structured", 6),
        _mini("dsprites_location", "Structured", 8),
        _mini("dsprites_orientation", "Structured", 16),
    )
}

UPSTREAM_SPEC = TaskSpec(UPSTREAM_TASK, UPSTREAM_GROUP, None, {}, MINI_SUITE)

_VTAB_ALIASES = {alias: spec.name for spec in VTAB_TASKS.values() for alias in spec.folder_names}


def canonical_name(name: str) -> str:
    """The table name for ``name`` (a VTAB-1k folder alias such as ``kitti`` or ``dsprites_loc``), else ``name``."""
    return _VTAB_ALIASES.get(name, name)


def group_of(name: str) -> str:
    """The reporting group of a task name (either suite); ``Other`` for names outside the table."""
    if name in MINI_TASKS:
        return MINI_TASKS[name].group
    canonical = canonical_name(name)
    if canonical in VTAB_TASKS:
        return VTAB_TASKS[canonical].group
    return UPSTREAM_GROUP if name == UPSTREAM_TASK else OTHER_GROUP


def find_task_dir(root: str | Path, name: str) -> Path:
    """The folder of task ``name`` under ``root``: the name itself, then its canonical name and aliases."""
    root = Path(root)
    canonical = canonical_name(name)
    candidates = [name]
    if canonical in VTAB_TASKS:
        candidates += [n for n in VTAB_TASKS[canonical].folder_names if n != name]
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    tried = ", ".join(str(root / c) for c in candidates)
    raise PeftlabError(f"task '{name}': no task folder (tried {tried})")


def read_card(task_dir: Path) -> dict[str, Any] | None:
    """The folder's ``task.json`` card, or None; a malformed card is an error naming it."""
    card_path = task_dir / CARD_NAME
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PeftlabError(f"{card_path}: malformed task card ({exc})") from None
    if not isinstance(card, dict):
        raise PeftlabError(f"{card_path}: a task card must be a JSON object")
    allowed = {"suite", "task", "group", "num_classes", "sizes", "generator"}
    unknown = sorted(set(card) - allowed)
    if unknown:
        raise PeftlabError(f"{card_path}: unknown keys {unknown} (allowed: {sorted(allowed)})")
    return card


def resolve_task(name: str, task_dir: Path) -> TaskSpec:
    """The spec for task ``name`` stored in ``task_dir``: the table entry completed and checked by the card."""
    card = read_card(task_dir)
    card_path = task_dir / CARD_NAME
    suite = (card or {}).get("suite", VTAB_SUITE)
    if name == UPSTREAM_TASK or (card and card.get("task") == UPSTREAM_TASK):
        base = UPSTREAM_SPEC
    elif suite == MINI_SUITE:
        if name not in MINI_TASKS:
            raise PeftlabError(f"{card_path}: '{name}' is not a mini-suite task (known: {sorted(MINI_TASKS)})")
        base = MINI_TASKS[name]
    elif suite == VTAB_SUITE:
        canonical = canonical_name(name)
        base = VTAB_TASKS.get(canonical) or TaskSpec(name, OTHER_GROUP, None, dict(FIXED_SIZES), "other")
    else:
        raise PeftlabError(f"{card_path}: key 'suite': '{suite}' is not one of ['{VTAB_SUITE}', '{MINI_SUITE}']")
    return _apply_card(base, card, card_path) if card else base


def _apply_card(base: TaskSpec, card: Mapping[str, Any], card_path: Path) -> TaskSpec:
    group = _merge_value(base.group if base.group != OTHER_GROUP else None, card.get("group"), "group", card_path)
    if group is not None and group not in (*GROUPS, OTHER_GROUP, UPSTREAM_GROUP):
        raise PeftlabError(f"{card_path}: key 'group': '{group}' is not one of {list(GROUPS)} or '{OTHER_GROUP}'")
    num_classes = _merge_value(base.num_classes, card.get("num_classes"), "num_classes", card_path)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise PeftlabError(f"{card_path}: key 'num_classes': {num_classes!r} is not a positive integer")
    card_sizes = card.get("sizes") or {}
    if not isinstance(card_sizes, dict):
        raise PeftlabError(f"{card_path}: key 'sizes' must map split names to image counts")
    sizes = dict(base.sizes)
    for split, count in card_sizes.items():
        if not isinstance(count, int) or count < 1:
            raise PeftlabError(f"{card_path}: key 'sizes.{split}': {count!r} is not a positive integer")
        sizes[split] = _merge_value(base.sizes.get(split), count, f"sizes.{split}", card_path)
    return replace(base, group=group or base.group, num_classes=num_classes, sizes=sizes)


def _merge_value(table_value: Any, card_value: Any, key: str, card_path: Path) -> Any:
    if card_value is None:
        return table_value
    if table_value is not None and table_value != card_value:
        raise PeftlabError(f"{card_path}: key '{key}': {card_value!r} contradicts the task table ({table_value!r})")
    return card_value


def validate_task_name(name: str) -> str:
    """A task name must be a plain folder name (it becomes ``data/shards/<task>``)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise PeftlabError(f"task name '{name}' is not a plain folder name")
    return name
