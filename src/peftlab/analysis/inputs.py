"""Reading the result files the analyses consume, checked where they are read.

Every analysis reads the same few formats (``docs/architecture.md``, "Result files"); reading them here, once,
means a missing file, a missing key or a tensor of the wrong shape is reported the same way everywhere: a
``PeftlabError`` naming the file. Analyses that can go on without one input (a method whose logits are absent)
catch the error and record it as a ``Warning`` that ends up in their output and in the report, never silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftlab.errors import PeftlabError
from peftlab.io import read_json, require_keys

RESULTS_PREFIX = "results/"


def result_path(results: str | Path, pattern: str, **wildcards: object) -> Path:
    """A ``results/...`` layout pattern filled in under the given results folder (which may live anywhere)."""
    if not pattern.startswith(RESULTS_PREFIX):
        raise ValueError(f"{pattern} is not a results pattern")
    return Path(results) / pattern.removeprefix(RESULTS_PREFIX).format(**wildcards)


class MissingInput(PeftlabError):
    """An input that is absent or holds no usable number (a diverged run): an analysis may leave it out, with a
    notice; any other ``PeftlabError`` (a malformed file) stops the analysis."""


@dataclass(frozen=True)
class Notice:
    """Something an analysis left out or could not compute, kept so the report can show it."""

    scope: str  # e.g. "ensembles/cifar", "main table"
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"scope": self.scope, "message": self.message}


@dataclass
class Notices:
    """An ordered, de-duplicated list of ``Notice``s."""

    items: list[Notice] = field(default_factory=list)

    def add(self, scope: str, message: str) -> None:
        notice = Notice(scope, message)
        if notice not in self.items:
            self.items.append(notice)

    def extend(self, notices: Iterable[Notice]) -> None:
        for notice in notices:
            self.add(notice.scope, notice.message)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class SplitLogits:
    """One split's logits and labels from a ``logits.safetensors`` file."""

    logits: np.ndarray  # float64 [N, C]
    labels: np.ndarray  # int64 [N]
    source: Path


def _verify_against_run_record(path: Path) -> None:
    """A final run's ``metrics.json`` records the sha256 of its logits file (``files_sha256``): a changed or
    corrupted file is an error naming it, never silently analysed."""
    from peftlab.io import read_json, verify_sha256

    record_path = path.parent / "metrics.json"
    if not record_path.is_file():
        return
    recorded = (read_json(record_path, what="run metrics").get("files_sha256") or {}).get(path.name)
    if recorded:
        verify_sha256(path, recorded, record_path)


def load_split_logits(path: str | Path, split: str = "test") -> SplitLogits:
    """``<split>.logits`` [N, C] and ``<split>.labels`` [N] from a logits file, shape-checked."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"{path}: logits file not found")
    _verify_against_run_record(path)
    logits_key, labels_key = f"{split}.logits", f"{split}.labels"
    try:  # only the split asked for: a CLIP run's file also holds every shift set's [N, 1000] logits
        with safe_open(str(path), framework="numpy") as handle:
            keys = set(handle.keys())
            for key in (logits_key, labels_key):
                if key not in keys:
                    raise PeftlabError(f"{path}: no tensor '{key}' (has: {', '.join(sorted(keys)) or 'none'})")
            logits, labels = handle.get_tensor(logits_key), handle.get_tensor(labels_key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise PeftlabError(f"{path}: not a readable safetensors file ({exc})") from None
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0] or logits.shape[0] == 0:
        raise PeftlabError(
            f"{path}: '{logits_key}' must be [N, C] and '{labels_key}' [N] with N > 0; got {list(logits.shape)} "
            f"and {list(labels.shape)}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise PeftlabError(f"{path}: '{labels_key}' must be integer, got {labels.dtype}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise PeftlabError(
            f"{path}: labels of '{split}' range over [{labels.min()}, {labels.max()}] but there are "
            f"{logits.shape[1]} logits"
        )
    if not np.all(np.isfinite(logits)):
        raise MissingInput(f"{path}: '{logits_key}' holds non-finite values (diverged run?)")
    return SplitLogits(logits.astype(np.float64), labels.astype(np.int64), path)


def read_summary_metrics(path: str | Path) -> dict[str, Any]:
    """A (task, method) summary ``metrics.json``: accuracy per split as {mean, std, per_seed}."""
    metrics = read_json(path, what="summary metrics file")
    require_keys(metrics, ("task", "method", "accuracy", "trainable_params"), str(path))
    for split, value in metrics["accuracy"].items():
        if not isinstance(value, Mapping) or "mean" not in value:
            raise PeftlabError(f"{path}: accuracy['{split}'] must be {{mean, std, per_seed}}, got {value!r}")
    return metrics


def read_probe(path: str | Path) -> dict[str, Any] | None:
    """A backbone's ``probe.json`` (linear-probe accuracies of its frozen features), or None when absent."""
    path = Path(path)
    if not path.is_file():
        return None
    probe = read_json(path, what="backbone probe file")
    if not isinstance(probe, dict):
        raise PeftlabError(f"{path}: a backbone probe file must hold an object")
    require_keys(probe, ("gain_vs_random_init",), str(path))
    return probe


def read_best(path: str | Path) -> dict[str, Any]:
    """A search's ``best.json``: the selected hyper-parameters and their validation accuracy."""
    best = read_json(path, what="search result (best.json)")
    require_keys(best, ("selected", "val_accuracy"), str(path))
    require_keys(best["selected"], ("hparams",), f"{path} (key 'selected')")
    return best


def split_accuracy(metrics: Mapping[str, Any], split: str, source: str | Path) -> dict[str, Any]:
    """``{mean, std, per_seed}`` of one split from a summary metrics dict, or an error naming the file."""
    try:
        value = metrics["accuracy"][split]
    except KeyError:
        raise PeftlabError(f"{source}: no accuracy for split '{split}'") from None
    if value["mean"] is None:
        raise MissingInput(f"{source}: no finite accuracy for split '{split}' (every seed diverged?)")
    return {"mean": float(value["mean"]), "std": float(value.get("std") or 0.0),
            "per_seed": list(value.get("per_seed") or [])}


def finite_seeds(metrics: Mapping[str, Any], accuracy: Mapping[str, Any], source: str | Path) -> tuple[int, ...]:
    """The seeds of a summary metrics file whose accuracy (``split_accuracy``'s ``per_seed``) is finite: the
    seeds its mean averages (a diverged seed is left out of it)."""
    seeds, per_seed = metrics.get("seeds"), accuracy["per_seed"]
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise PeftlabError(f"{source}: key 'seeds' must be a list of integers, got {seeds!r}")
    if per_seed and len(per_seed) != len(seeds):
        raise PeftlabError(f"{source}: {len(per_seed)} per-seed accuracies for {len(seeds)} seeds {seeds}")
    return tuple(seed for seed, value in zip(seeds, per_seed or [0.0] * len(seeds), strict=True)
                 if value is not None)


def method_params(metrics: Mapping[str, Any], source: str | Path) -> int:
    """Trainable parameters without the classification head, as papers count them."""
    params = metrics["trainable_params"]
    if not isinstance(params, Mapping) or "method" not in params:
        raise PeftlabError(f"{source}: trainable_params must hold 'method' (parameters without the head)")
    return int(params["method"])


def task_groups(tasks: Iterable[str]) -> dict[str, str]:
    """The reporting group of each task (VTAB Natural / Specialized / Structured), "Other" when unknown."""
    from peftlab.data.tasks import group_of

    return {task: group_of(task) for task in tasks}


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Mean of the values, or None when any is missing (a partial mean would be a different quantity)."""
    values = list(values)
    if not values or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return None
    return float(np.mean(values))
