"""Hand-made result files in the documented formats (docs/architecture.md), for the analysis tests.

The analyses must work from the files alone, so the tests write those files directly instead of training.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def one_hot_logits(predicted: Sequence[int], confidence: Sequence[float], num_classes: int) -> np.ndarray:
    """Logits with ``confidence[i]`` on class ``predicted[i]`` and 0 elsewhere."""
    logits = np.zeros((len(predicted), num_classes), dtype=np.float32)
    logits[np.arange(len(predicted)), predicted] = confidence
    return logits


def write_logits(path: Path, splits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    from safetensors.numpy import save_file

    tensors = {}
    for split, (logits, labels) in splits.items():
        tensors[f"{split}.logits"] = np.asarray(logits, dtype=np.float32)
        tensors[f"{split}.labels"] = np.asarray(labels, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))
    return path


def run_logits_path(results: Path, task: str, method: str, seed: int) -> Path:
    return results / "final" / task / method / "runs" / f"seed{seed}" / "logits.safetensors"


def write_best(results: Path, task: str, method: str, val_accuracy: float, hparams: Mapping | None = None) -> Path:
    hparams = dict(hparams or {"lr": 1e-3, "weight_decay": 1e-4})
    return write_json(results / "search" / task / method / "best.json", {
        "task": task, "method": method, "selected": {"trial_id": "t0", "hparams": hparams},
        "val_accuracy": val_accuracy, "rule": "best last-epoch val top-1", "trials": [], "provenance": {},
    })


def write_summary_metrics(directory: Path, task: str, method: str, per_seed: Sequence[float],
                          method_params: int, hparams: Mapping | None = None, train_split: str = "train800val200",
                          extra_splits: Mapping[str, Sequence[float]] | None = None) -> Path:
    accuracy = {"test": _stats(per_seed)}
    for split, values in (extra_splits or {}).items():
        accuracy[split] = _stats(values)
    return write_json(directory / "metrics.json", {
        "task": task, "method": method, "seeds": list(range(len(per_seed))),
        "hparams": dict(hparams or {"lr": 1e-3, "weight_decay": 1e-4}), "train_split": train_split,
        "accuracy": accuracy, "trainable_params": {"total": method_params + 100, "method": method_params, "head": 100},
        "time_s": {"total": 1.0}, "provenance": {},
    })


def _stats(values: Sequence[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "per_seed": list(values)}


def write_wise_csv(path: Path, rows: Sequence[Mapping]) -> Path:
    fields = ["task", "method", "seed", "alpha", "split", "accuracy", "n", "interpolation", "head_source", "note"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in fields})
    return path
