"""The released tables, read under peftlab's names: one ``ReleasedResult`` per number the paper's code released.

Every row is translated once, here (``names.py``): the task or test set to peftlab's task and split, the run
name to peftlab's method and the size its suffix fixes (``lora_32`` -> ``lora`` with ``rank=32``), the selected
hyper-parameters to peftlab's keys. The messy rows of the robustness table are handled explicitly (see
``data/README.md``): the ``merge_fc`` rows hold no number and are dropped, with a note; the zero-shot rows carry
their file-name prefix in the test set (``zero_shotimagenet-a``), which is stripped.

``oracle_pct`` (the code base's ``test_acc_best_epoch_on_test``) picks the epoch on test labels: it is kept so a
report may show it, labelled, but nothing compares against it or selects with it.
"""

from __future__ import annotations

import csv
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.reference import DATA_DIR
from peftlab.reference.names import (
    ROBUSTNESS_TASK,
    VTAB_VARIANTS,
    ZERO_SHOT,
    manyshot_size,
    peftlab_hparams,
    peftlab_method,
    peftlab_split,
    peftlab_task,
)

REPOSITORY = "OSU-MLB/PETL_Vision"
COMMIT = "245d262"
MERGE_FC = "merge_fc"  # robustness rows globbed from merge_fc_result.json: no number (see data/README.md)


@dataclass(frozen=True)
class Source:
    """Where a table's numbers come from, stated wherever they are shown."""

    file: str  # the package data file (peftlab/reference/data/)
    folder: str  # the folder of the code base the numbers were read from

    def cite(self) -> str:
        return f"{REPOSITORY} (commit {COMMIT}), {self.folder}"


SOURCES: dict[str, Source] = {
    "vtab1k": Source("petl_vision_vtab1k.csv", "tune_output/default_vtab/processed_vtab"),
    "manyshot": Source("petl_vision_manyshot.csv", "tune_output/{cifar100_tune_lrwd, resisc_tune_lrwd, "
                                                   "clevr_tune_lr, cifar100_1k_aug_normalized}"),
    "clip_robustness": Source("petl_vision_clip_robustness.csv",
                              "tune_output/clip_fs_imagenet/fs/imagenet/<method>/<test set>_result.json"),
    "clip_wise": Source("petl_vision_clip_wise.csv",
                        "tune_output/clip_fs_imagenet/fs/imagenet/<method>/merge_result.json"),
}
TABLES = tuple(SOURCES)


@dataclass(frozen=True)
class ReleasedResult:
    """One released accuracy under peftlab's names."""

    task: str
    method: str  # peftlab's method, or ZERO_SHOT
    released_method: str  # the code base's run name, as released (``lora_32``, ``ln``)
    accuracy_pct: float  # the number to compare with (last epoch)
    split: str = "test"
    size: int | None = None  # many-shot training images
    alpha: float | None = None  # WiSE-FT mixing weight
    variant: str = ""  # a protocol other than the table's main one: ``aug_norm``, or the many-shot study folder
    fixed: dict[str, Any] = field(default_factory=dict)  # what the run name fixes (``rank=32`` of ``lora_32``)
    hparams: dict[str, Any] = field(default_factory=dict)  # the selection, peftlab's keys
    settings: dict[str, Any] = field(default_factory=dict)  # selected training settings (config keys)
    oracle_pct: float | None = None  # best epoch chosen on test labels: shown labelled, never compared
    params: int | None = None  # trainable parameters without the head (the code base's inserted_parameters)


@dataclass(frozen=True)
class ReferenceTable:
    name: str
    source: Source
    rows: tuple[ReleasedResult, ...]
    dropped: tuple[str, ...] = ()  # rows left out, each with the reason


def _number(value: str, where: str, column: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise PeftlabError(f"{where}: column '{column}' must be a number, got {value!r}") from None


def _selected(value: str, where: str) -> dict[str, Any]:
    """The ``selected`` JSON: an object, or ``null`` / ``[]`` for a run that selected nothing."""
    try:
        selected = json.loads(value) if value else None
    except json.JSONDecodeError:
        raise PeftlabError(f"{where}: column 'selected' is not JSON: {value!r}") from None
    if selected in (None, []):
        return {}
    if not isinstance(selected, dict):
        raise PeftlabError(f"{where}: column 'selected' must be an object, got {value!r}")
    return selected


def _method_row(released: str, selected: dict[str, Any], where: str) -> dict[str, Any]:
    """The method, what its name fixes and its selection under peftlab's names."""
    try:
        method, fixed = peftlab_method(released)
        hparams, settings = peftlab_hparams(released, selected)
    except PeftlabError as exc:
        raise PeftlabError(f"{where}: {exc}") from None
    return {"method": method, "released_method": released, "fixed": fixed, "hparams": hparams,
            "settings": settings}


def _rows(name: str) -> list[tuple[str, dict[str, str]]]:
    path = DATA_DIR / SOURCES[name].file
    with path.open(newline="", encoding="utf-8") as handle:
        return [(f"{path}: line {line}", row) for line, row in enumerate(csv.DictReader(handle), start=2)]


def _vtab1k(where: str, row: dict[str, str]) -> ReleasedResult:
    task, variant = VTAB_VARIANTS.get(row["task"], (None, ""))
    if task is None:
        try:
            task = peftlab_task(row["task"])
        except PeftlabError as exc:
            raise PeftlabError(f"{where}: {exc}") from None
    return ReleasedResult(
        task=task, variant=variant, accuracy_pct=_number(row["test_acc_last_epoch"], where, "test_acc_last_epoch"),
        oracle_pct=_number(row["test_acc_best_epoch_on_test"], where, "test_acc_best_epoch_on_test"),
        params=int(_number(row["trainable_params_no_head"], where, "trainable_params_no_head")),
        **_method_row(row["method"], _selected(row["selected"], where), where))


def _manyshot(where: str, row: dict[str, str]) -> ReleasedResult:
    try:
        task, size = peftlab_task(row["dataset"]), manyshot_size(row["dataset"], row["train_size"])
    except PeftlabError as exc:
        raise PeftlabError(f"{where}: {exc}") from None
    return ReleasedResult(
        task=task, size=size, variant=row["study"],
        accuracy_pct=_number(row["test_acc_last_epoch"], where, "test_acc_last_epoch"),
        oracle_pct=_number(row["test_acc_best_epoch_on_test"], where, "test_acc_best_epoch_on_test"),
        params=int(_number(row["trainable_params_no_head"], where, "trainable_params_no_head")),
        **_method_row(row["method"], _selected(row["selected"], where), where))


def _split(test_set: str, where: str) -> str:
    try:
        return peftlab_split(test_set)
    except PeftlabError as exc:
        raise PeftlabError(f"{where}: {exc}") from None


def _clip_robustness(where: str, row: dict[str, str]) -> ReleasedResult:
    accuracy = _number(row["test_acc"], where, "test_acc")
    params = int(_number(row["trainable_params_no_head"], where, "trainable_params_no_head"))
    if row["method"] == ZERO_SHOT:
        # The zero-shot files are named zero_shot<test set>_result.json; the extraction kept the prefix.
        test_set = row["test_set"].removeprefix(ZERO_SHOT)
        return ReleasedResult(task=ROBUSTNESS_TASK, method=ZERO_SHOT, released_method=ZERO_SHOT,
                              split=_split(test_set, where), accuracy_pct=accuracy, params=params)
    return ReleasedResult(task=ROBUSTNESS_TASK, split=_split(row["test_set"], where), accuracy_pct=accuracy,
                          params=params, **_method_row(row["method"], _selected(row["selected"], where), where))


def _clip_wise(where: str, row: dict[str, str]) -> ReleasedResult:
    method = _method_row(row["method"], {}, where)
    return ReleasedResult(task=ROBUSTNESS_TASK, split=_split(row["test_set"], where),
                          alpha=_number(row["alpha"], where, "alpha"),
                          accuracy_pct=_number(row["test_acc"], where, "test_acc"), **method)


_PARSERS = {"vtab1k": _vtab1k, "manyshot": _manyshot, "clip_robustness": _clip_robustness, "clip_wise": _clip_wise}


@functools.cache
def load_table(name: str) -> ReferenceTable:
    """One released table (``vtab1k``, ``manyshot``, ``clip_robustness``, ``clip_wise``) under peftlab's names."""
    if name not in SOURCES:
        raise PeftlabError(f"reference table '{name}': unknown; known: {', '.join(TABLES)}")
    rows, dropped = [], []
    for where, row in _rows(name):
        if name == "clip_robustness" and row["test_set"] == MERGE_FC:
            if row["test_acc"] or row["trainable_params_no_head"]:
                raise PeftlabError(f"{where}: a '{MERGE_FC}' row with values; expected the empty rows of "
                                   "merge_fc_result.json (see data/README.md)")
            dropped.append(f"{row['method']} '{MERGE_FC}': no number (a second interpolation curve's file, "
                           "merge_fc_result.json, picked up as a test set; its values are not in the table)")
            continue
        rows.append(_PARSERS[name](where, row))
    return ReferenceTable(name, SOURCES[name], tuple(rows), tuple(dropped))
