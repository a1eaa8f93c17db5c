"""What each method cost, and where the runs ran: read from the final runs' per-seed metrics files.

A method's accuracy means little without its price: the wall time of its final runs (``time_s``), the peak
memory of the process that trained them (``peak_memory_mb``: the CUDA allocator's peak on a GPU, the resident set
on a CPU) and its trainable parameters. The same files' ``provenance`` says on what device, at what precision and
on which GPU they ran, for the report header (``precision`` and ``gpu_name`` are shown when the files have them).
Search trials are not counted: their cost is the grid's, the same rule for every method.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from peftlab.analysis.inputs import Notices, result_path
from peftlab.analysis.main_table import MainTable
from peftlab.errors import PeftlabError
from peftlab.io import read_json, require_keys
from peftlab.paths import FINAL_RUNS, run_dir

SCOPE = "costs"
PROVENANCE_KEYS = ("device", "precision", "gpu_name")


@dataclass(frozen=True)
class MethodCost:
    """One method's final runs over every task and seed of the study that has them."""

    method: str
    runs: int
    time_s_total: float
    peak_memory_mb: float | None  # the highest over its runs
    method_params: float | None  # without the head, mean over tasks
    head_params: float | None  # mean over tasks (it grows with the number of classes)

    @property
    def time_s_per_run(self) -> float:
        return self.time_s_total / self.runs

    def as_row(self) -> dict[str, Any]:
        return {**self.__dict__, "time_s_per_run": self.time_s_per_run}


@dataclass(frozen=True)
class Costs:
    methods: dict[str, MethodCost]
    runs_on: Counter  # (device, precision, gpu_name) -> runs; None where a file does not record it


def _seed_metrics(path: Path) -> dict[str, Any]:
    metrics = read_json(path, what="run metrics")
    require_keys(metrics, ("time_s", "peak_memory_mb", "trainable_params"), str(path))
    for key in ("time_s", "peak_memory_mb"):
        value = metrics[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PeftlabError(f"{path}: key '{key}' must be a non-negative number, got {value!r}")
    return metrics


def collect_costs(table: MainTable, results: str | Path, notices: Notices | None = None) -> Costs:
    """Per method of the main table: time, peak memory and parameters of every seed run it has."""
    notices = notices if notices is not None else Notices()
    runs_on: Counter = Counter()
    per_method: dict[str, list[dict[str, Any]]] = {}
    absent: dict[str, list[Path]] = {}
    for task, method, cell in table.filled():
        runs = result_path(results, FINAL_RUNS, task=task, method=method)
        for seed in cell.seeds:
            path = run_dir(runs, seed) / "metrics.json"
            if not path.is_file():
                absent.setdefault(method, []).append(path)
                continue
            metrics = _seed_metrics(path)
            per_method.setdefault(method, []).append(metrics)
            provenance = metrics.get("provenance") or {}
            runs_on[tuple(provenance.get(key) for key in PROVENANCE_KEYS)] += 1
    for method, paths in absent.items():
        notices.add(SCOPE, f"{method}: {len(paths)} run metrics files missing (e.g. {paths[0]}); their cost is not "
                           "counted")
    methods = {}
    for method in table.methods:
        runs = per_method.get(method)
        if not runs:
            continue
        heads = [run["trainable_params"].get("head") for run in runs if isinstance(run["trainable_params"], Mapping)]
        heads = [h for h in heads if h is not None]
        methods[method] = MethodCost(
            method=method, runs=len(runs), time_s_total=float(sum(run["time_s"] for run in runs)),
            peak_memory_mb=float(max(run["peak_memory_mb"] for run in runs)),
            method_params=table.params(method), head_params=float(np.mean(heads)) if heads else None)
    return Costs(methods, runs_on)


def describe_devices(runs_on: Counter) -> str:
    """``cuda, bf16, NVIDIA H200: 38 runs; cpu, fp32: 2 runs`` (what the files record; unrecorded fields said)."""
    if not runs_on:
        return "no final-run metrics found"
    parts = []
    for (device, precision, gpu_name), count in runs_on.most_common():
        fields = [device or "device not recorded", precision or "precision not recorded"]
        if gpu_name:
            fields.append(str(gpu_name))
        parts.append(f"{', '.join(fields)}: {count} run{'s' if count != 1 else ''}")
    return "; ".join(parts)
