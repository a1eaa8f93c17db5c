"""Reading ``wise.csv`` files back: WiSE-FT curves of target accuracy against shift accuracy.

Kept apart from ``robustness`` (which needs torch and the models) so the report reads the curves without
importing either. A curve point averages the seeds; its shift accuracy is the mean over the task's ``shift-*``
splits, each scored on its own class subset.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftlab.analysis.inputs import Notices, result_path
from peftlab.errors import PeftlabError
from peftlab.paths import ROBUSTNESS_CSV

TARGET_SPLIT = "test"
SHIFT_PREFIX = "shift-"
REQUIRED_COLUMNS = ("method", "seed", "alpha", "split", "accuracy", "n", "interpolation")
SCOPE = "robustness"


@dataclass(frozen=True)
class CurvePoint:
    task: str
    method: str
    alpha: float
    target: float  # accuracy on the task's test split, mean over seeds
    shift: float  # mean over shift splits of the accuracy, mean over seeds
    per_shift: dict[str, float]
    interpolation: str  # "weights" (WiSE-FT) or "outputs" (fallback, see robustness.py)
    n_seeds: int
    seed_accuracy: dict[str, tuple[float, ...]] = field(default_factory=dict)  # split -> per seed (test, shifts)
    count: dict[str, int] = field(default_factory=dict)  # split -> test images scored

    @property
    def balance(self) -> float:
        """The target/shift trade-off as one number: the mean of the two accuracies."""
        return (self.target + self.shift) / 2


def read_wise_csv(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise PeftlabError(f"{path}: WiSE-FT table not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PeftlabError(f"{path}: missing columns {missing} (has {reader.fieldnames})")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append({**row, "seed": int(row["seed"]), "alpha": float(row["alpha"]),
                             "accuracy": float(row["accuracy"]), "n": int(row["n"])})
            except ValueError as exc:
                raise PeftlabError(f"{path}: line {line}: {exc}") from None
    if not rows:
        raise PeftlabError(f"{path}: WiSE-FT table has no rows")
    return rows


def curve(task: str, method: str, rows: Sequence[Mapping[str, Any]], source: str | Path) -> list[CurvePoint]:
    """Seed-averaged curve points of one (task, method); every seed must have the same splits and α grid."""
    by_seed: dict[int, dict[float, dict[str, float]]] = {}
    counts: dict[str, set[int]] = {}
    interpolation = {row["interpolation"] for row in rows}
    if len(interpolation) != 1:
        raise PeftlabError(f"{source}: rows mix interpolation kinds {sorted(interpolation)}")
    kind = interpolation.pop()
    for row in rows:
        by_seed.setdefault(row["seed"], {}).setdefault(row["alpha"], {})[row["split"]] = row["accuracy"]
        counts.setdefault(row["split"], set()).add(row["n"])
    uneven = {split: sorted(n) for split, n in counts.items() if len(n) != 1 or min(n) < 1}
    if uneven:
        raise PeftlabError(f"{source}: each split must score one positive number of images; got {uneven}")
    layouts = {seed: sorted((alpha, tuple(sorted(splits))) for alpha, splits in grid.items())
               for seed, grid in by_seed.items()}
    if len({tuple(layout) for layout in layouts.values()}) != 1:
        raise PeftlabError(f"{source}: seeds {sorted(by_seed)} do not share the same α grid and splits")
    first = next(iter(by_seed.values()))
    points = []
    for alpha in sorted(first):
        splits = sorted(first[alpha])
        shifts = [s for s in splits if s.startswith(SHIFT_PREFIX)]
        if TARGET_SPLIT not in splits or not shifts:
            raise PeftlabError(f"{source}: α={alpha} needs a '{TARGET_SPLIT}' row and at least one "
                               f"'{SHIFT_PREFIX}*' row; has {splits}")
        seed_accuracy = {s: tuple(grid[alpha][s] for grid in by_seed.values()) for s in (TARGET_SPLIT, *shifts)}
        per_shift = {s: float(np.mean(seed_accuracy[s])) for s in shifts}
        points.append(CurvePoint(task, method, alpha, float(np.mean(seed_accuracy[TARGET_SPLIT])),
                                 float(np.mean(list(per_shift.values()))), per_shift, kind, len(by_seed),
                                 seed_accuracy, {s: next(iter(counts[s])) for s in seed_accuracy}))
    return points


def collect_wise(config: Mapping[str, Any], results: str | Path,
                 notices: Notices | None = None) -> dict[tuple[str, str], list[CurvePoint]]:
    """Curves of every (task, method) of the robustness study; an absent table becomes a notice."""
    notices = notices if notices is not None else Notices()
    section = config.get("robustness")
    curves: dict[tuple[str, str], list[CurvePoint]] = {}
    if not section:
        return curves
    for task in section["tasks"]:
        for method in section["methods"]:
            path = result_path(results, ROBUSTNESS_CSV, task=task, method=method)
            if not path.is_file():
                notices.add(SCOPE, f"{path} missing: no WiSE-FT curve for {method} on {task}")
                continue
            rows = read_wise_csv(path)
            curves[(task, method)] = curve(task, method, rows, path)
            if curves[(task, method)][0].interpolation == "outputs":
                notices.add(SCOPE, f"{method} on {task}: no weight-space identity, so its curve is an output-space "
                                   "interpolation of logits (dashed in the plot), not WiSE-FT")
    return curves


def endpoint(points: Sequence[CurvePoint], alpha: float) -> CurvePoint | None:
    return next((p for p in points if p.alpha == alpha), None)


def best_balance(points: Sequence[CurvePoint]) -> CurvePoint:
    """The α whose mean of target and shift accuracy is highest (the earliest α on ties)."""
    return max(points, key=lambda p: (p.balance, -p.alpha))
