"""The study's main table: test accuracy per task and method (mean ± std over seeds), with both averages.

Papers average VTAB-1k in two ways, the mean of all tasks and the mean of the three group means, and the two
rank methods differently (Structured has 8 tasks, Specialized 4); the table reports both, labelled. An average
over a method's tasks is given only when every task has a result: a mean over a subset would look comparable
to the others and is not. Parameters are counted without the classification head.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftlab.analysis.inputs import (
    MissingInput,
    Notices,
    finite_seeds,
    mean_or_none,
    method_params,
    read_best,
    read_summary_metrics,
    result_path,
    split_accuracy,
    task_groups,
)
from peftlab.paths import BEST, FINAL_METRICS

GROUP_ORDER = ("Natural", "Specialized", "Structured")
SCOPE = "main table"


@dataclass(frozen=True)
class Cell:
    """One (task, method): test accuracy over seeds, trainable parameters without head, selected hparams."""

    mean: float
    std: float
    per_seed: list[float]
    method_params: int
    hparams: dict[str, Any]
    val_accuracy: float | None
    source: Path
    seeds: tuple[int, ...] = ()  # the seeds with a finite test accuracy (those the mean averages)


@dataclass
class MainTable:
    tasks: list[str]
    methods: list[str]
    groups: dict[str, str]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    @property
    def group_names(self) -> list[str]:
        present = set(self.groups.values())
        return [g for g in GROUP_ORDER if g in present] + sorted(present - set(GROUP_ORDER))

    def tasks_of(self, group: str) -> list[str]:
        return [task for task in self.tasks if self.groups[task] == group]

    def cell(self, task: str, method: str) -> Cell | None:
        return self.cells.get((task, method))

    def filled(self) -> Iterator[tuple[str, str, Cell]]:
        """(task, method, cell) for every result present, methods outer, tasks inner (table order)."""
        for method in self.methods:
            for task in self.tasks:
                if (cell := self.cell(task, method)) is not None:
                    yield task, method, cell

    def _means(self, method: str, tasks: list[str]) -> list[float | None]:
        return [cell.mean if (cell := self.cell(task, method)) else None for task in tasks]

    def mean_of_tasks(self, method: str) -> float | None:
        return mean_or_none(self._means(method, self.tasks))

    def group_mean(self, method: str, group: str) -> float | None:
        return mean_or_none(self._means(method, self.tasks_of(group)))

    def mean_of_group_means(self, method: str) -> float | None:
        return mean_or_none(self.group_mean(method, group) for group in self.group_names)

    def params(self, method: str) -> float | None:
        """Mean over tasks of the method's trainable parameters without head (equal across tasks for most)."""
        values = [cell.method_params for task in self.tasks if (cell := self.cell(task, method))]
        return float(np.mean(values)) if values else None

    def complete_methods(self) -> list[str]:
        return [m for m in self.methods if all(self.cell(t, m) for t in self.tasks)]


def collect_main_table(config: Mapping[str, Any], results: str | Path, notices: Notices | None = None) -> MainTable:
    """Read every (task, method) summary metrics file and best.json of the study; absent ones become notices."""
    notices = notices if notices is not None else Notices()
    tasks, methods = list(config["study"]["tasks"]), list(config["study"]["methods"])
    table = MainTable(tasks=tasks, methods=methods, groups=task_groups(tasks))
    for task in tasks:
        for method in methods:
            metrics_path = result_path(results, FINAL_METRICS, task=task, method=method)
            if not metrics_path.is_file():
                notices.add(SCOPE, f"{metrics_path} missing: no result for {method} on {task} (cell left empty, "
                                   f"{method}'s averages not computed)")
                continue
            metrics = read_summary_metrics(metrics_path)
            try:
                accuracy = split_accuracy(metrics, "test", metrics_path)
            except MissingInput as exc:
                notices.add(SCOPE, f"{exc}: cell left empty")
                continue
            if any(v is None for v in accuracy["per_seed"]):
                notices.add(SCOPE, f"{metrics_path}: some seeds of {method} on {task} have no finite accuracy; "
                                   "the cell averages the others")
            best_path = result_path(results, BEST, task=task, method=method)
            val_accuracy, hparams = None, dict(metrics.get("hparams") or {})
            if best_path.is_file():
                best = read_best(best_path)
                val_accuracy = None if best["val_accuracy"] is None else float(best["val_accuracy"])
                selected = dict(best["selected"]["hparams"])
                differing = sorted(k for k in selected if k in hparams and hparams[k] != selected[k])
                if differing:
                    notices.add(SCOPE, f"{metrics_path}: hyper-parameters {differing} differ from the selection in "
                                       f"{best_path}; the table shows the selection")
                hparams = selected
            else:
                notices.add(SCOPE, f"{best_path} missing: validation accuracy of {method} on {task} unknown")
            table.cells[(task, method)] = Cell(
                mean=accuracy["mean"], std=accuracy["std"], per_seed=accuracy["per_seed"],
                method_params=method_params(metrics, metrics_path), hparams=hparams,
                val_accuracy=val_accuracy, source=metrics_path, seeds=finite_seeds(metrics, accuracy, metrics_path),
            )
    return table


def long_rows(table: MainTable) -> list[dict[str, Any]]:
    """One CSV row per (task, method) with a result: the numbers behind the main table, unrounded."""
    return [{"task": task, "group": table.groups[task], "method": method, "test_accuracy_mean": cell.mean,
             "test_accuracy_std": cell.std, "n_seeds": len(cell.per_seed),
             "per_seed": ";".join(str(v) for v in cell.per_seed), "val_accuracy": cell.val_accuracy,
             "method_params": cell.method_params, "source": str(cell.source)}
            for task, method, cell in table.filled()]


def average_rows(table: MainTable) -> list[dict[str, Any]]:
    """Per method: each group mean, the mean of all tasks, the mean of group means, parameters without head."""
    rows = []
    for method in table.methods:
        row: dict[str, Any] = {"method": method}
        for group in table.group_names:
            row[f"mean_{group}"] = table.group_mean(method, group)
        row["mean_of_tasks"] = table.mean_of_tasks(method)
        row["mean_of_group_means"] = table.mean_of_group_means(method)
        row["method_params"] = table.params(method)
        rows.append(row)
    return rows


def hparam_rows(table: MainTable) -> list[dict[str, Any]]:
    """The selected hyper-parameters per method and task (best.json's selection on val200)."""
    return [{"method": method, "task": task, "hparams": format_hparams(cell.hparams), "val_accuracy": cell.val_accuracy}
            for task, method, cell in table.filled()]


def format_hparams(hparams: Mapping[str, Any]) -> str:
    """``lr=0.001, weight_decay=0.0001, rank=8``: shared keys first, then the method's own in their order."""
    ordered = [k for k in ("lr", "weight_decay") if k in hparams] + [k for k in hparams if k not in ("lr", "weight_decay")]
    return ", ".join(f"{key}={_short(hparams[key])}" for key in ordered)


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
