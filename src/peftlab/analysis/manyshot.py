"""Accuracy against training-set size and against trainable parameters (the paper's lesson 3).

Points come from the many-shot runs (``results/manyshot/<task>/<size>/<method>/metrics.json``) and, as the
smallest size, the low-shot final runs of the same methods (``results/final/<task>/<method>/metrics.json``,
trained on train800val200 = 1000 images). The size of a point is read from the run's ``train_split``
(``manyshot-<size>`` or a VTAB-1k split name), so a point is never placed at a size it was not trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.analysis.inputs import (
    Notices,
    finite_seeds,
    method_params,
    read_summary_metrics,
    result_path,
    split_accuracy,
)
from peftlab.analysis.main_table import format_hparams
from peftlab.errors import PeftlabError
from peftlab.paths import FINAL_METRICS, MANYSHOT_METRICS

MANYSHOT_SPLIT_PREFIX = "manyshot-"
SCOPE = "many-shot"


@dataclass(frozen=True)
class ShotPoint:
    """One (task, method, training-set size) result, averaged over seeds."""

    task: str
    method: str
    size: int
    source: str  # "manyshot" or "final"
    accuracy_mean: float
    accuracy_std: float
    n_seeds: int
    method_params: int
    seeds: tuple[int, ...] = ()  # those with a finite test accuracy (the ones averaged)
    hparams: dict[str, Any] = field(default_factory=dict)  # the run's hyper-parameters (its metrics file)

    def as_row(self) -> dict[str, Any]:
        return {**self.__dict__, "seeds": ";".join(map(str, self.seeds)), "hparams": format_hparams(self.hparams)}


def training_size(train_split: str, source: str | Path) -> int:
    """Images in the training split named by a run's metrics: ``manyshot-<size>`` or a VTAB-1k split."""
    from peftlab.data.tasks import FIXED_SIZES

    if train_split.startswith(MANYSHOT_SPLIT_PREFIX):
        size = train_split[len(MANYSHOT_SPLIT_PREFIX):]
        if size.isdigit() and int(size) > 0:
            return int(size)
    if train_split in FIXED_SIZES:
        return FIXED_SIZES[train_split]
    raise PeftlabError(f"{source}: train_split '{train_split}' does not name a training-set size "
                       f"(expected '{MANYSHOT_SPLIT_PREFIX}<size>' or one of {sorted(FIXED_SIZES)})")


def _point(metrics_path: Path, task: str, method: str, source: str, expected_size: int | None) -> ShotPoint:
    metrics = read_summary_metrics(metrics_path)
    if "train_split" not in metrics:
        raise PeftlabError(f"{metrics_path}: missing key 'train_split' (needed to place the point on the size axis)")
    size = training_size(str(metrics["train_split"]), metrics_path)
    if expected_size is not None and size != expected_size:
        raise PeftlabError(f"{metrics_path}: trained on {metrics['train_split']} ({size} images) but it sits in the "
                           f"folder of size {expected_size}")
    accuracy = split_accuracy(metrics, "test", metrics_path)
    return ShotPoint(task, method, size, source, accuracy["mean"], accuracy["std"],
                     len(accuracy["per_seed"]) or 1, method_params(metrics, metrics_path),
                     finite_seeds(metrics, accuracy, metrics_path), dict(metrics.get("hparams") or {}))


def collect_manyshot(config: Mapping[str, Any], results: str | Path,
                     notices: Notices | None = None) -> list[ShotPoint]:
    """Every available point of the config's many-shot study; absent files become notices, not zeros."""
    notices = notices if notices is not None else Notices()
    section = config.get("manyshot")
    if not section:
        return []
    points = []
    for task in section["tasks"]:
        for method in section["methods"]:
            candidates = [(result_path(results, FINAL_METRICS, task=task, method=method), "final", None)]
            candidates += [(result_path(results, MANYSHOT_METRICS, task=task, size=size, method=method), "manyshot",
                            int(size)) for size in section["sizes"]]
            for metrics_path, source, size in candidates:
                if not metrics_path.is_file():
                    notices.add(SCOPE, f"{metrics_path} missing: {method} on {task} has no point there")
                    continue
                points.append(_point(metrics_path, task, method, source, size))
    return sorted(points, key=lambda p: (p.task, p.method, p.size))


def largest_size_points(points: Sequence[ShotPoint]) -> dict[str, list[ShotPoint]]:
    """Per task, the points at the largest size any method reached there."""
    by_task: dict[str, list[ShotPoint]] = {}
    for point in points:
        by_task.setdefault(point.task, []).append(point)
    largest = {}
    for task, task_points in by_task.items():
        size = max(p.size for p in task_points)
        largest[task] = [p for p in task_points if p.size == size]
    return largest
