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


def write_seed_metrics(runs_dir: Path, seed: int, task: str, method: str, accuracy: float, method_params: int,
                       *, time_s: float = 2.0, peak_memory_mb: float = 300.0, provenance: Mapping | None = None) -> Path:
    """A per-seed ``metrics.json`` of a final or many-shot run (the fields the report reads)."""
    return write_json(runs_dir / f"seed{seed}" / "metrics.json", {
        "task": task, "method": method, "seed": seed, "accuracy": {"test": accuracy},
        "trainable_params": {"total": method_params + 100, "method": method_params, "head": 100},
        "time_s": time_s, "peak_memory_mb": peak_memory_mb,
        "provenance": dict(provenance or {"device": "cpu", "precision": "fp32", "gpu_name": None}),
    })


def write_probe(path: Path, gain: float) -> Path:
    """A backbone ``probe.json`` (CONTRACTS.md item 3) with the given gain over random init (points)."""
    return write_json(path, {"tasks": {}, "mean": {"pretrained": 50.0 + gain, "random_init": 50.0, "raw_pixels": 52.0},
                             "gain_vs_random_init": gain, "settings": {}, "provenance": {}})


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


# --- a tiny finished study ------------------------------------------------------------------------------------

TREE_TASKS = ("digits", "textures", "cells", "clevr_count", "mystery")  # Natural ×2, Specialized, Structured, Other
TREE_METHODS = ("linear", "full", "lora", "bitfit", "vpt_deep")
TREE_PARAMS = {"linear": 0, "full": 85_000, "lora": 2_048, "bitfit": 1_200, "vpt_deep": 640}
TREE_SEEDS = (0, 1)
TREE_TEST_SIZE = 60
TREE_CLASSES = 4
# Method accuracy level on the test set: the PEFT methods sit close together.
TREE_LEVEL = {"linear": 0.55, "full": 0.80, "lora": 0.78, "bitfit": 0.77, "vpt_deep": 0.76}


def tree_config(base_params: Path) -> dict:
    """The repository's params.yaml with the tiny study's tasks, methods and sections."""
    import yaml

    config = yaml.safe_load(base_params.read_text())
    # "mystery" is a task of the user's own data (group Other), which the mini-suite generator cannot make
    config["data"].update(generate=None, root=".")
    config["study"] = {"name": "tiny", "seeds": list(TREE_SEEDS), "tasks": list(TREE_TASKS),
                       "methods": list(TREE_METHODS)}
    config["manyshot"] = {"tasks": ["digits"], "sizes": [2000, 6000], "methods": ["linear", "full", "lora", "bitfit"],
                          "epochs": 2, "warmup_epochs": 0}
    config["robustness"] = {"tasks": ["digits"], "methods": ["full", "lora", "vpt_deep"],
                            "alphas": [0.0, 0.5, 1.0]}
    config["ensembles"] = {"top_k": 3, "confidence_fraction": 0.25}
    return config


def _tree_logits(task_index: int, method_index: int, seed: int, level: float, labels: np.ndarray) -> np.ndarray:
    """Logits right on a method-specific random subset of about ``level`` of the images."""
    rng = np.random.default_rng(1000 * task_index + 10 * method_index + seed)
    right = rng.random(len(labels)) < level
    predicted = np.where(right, labels, (labels + 1 + rng.integers(0, TREE_CLASSES - 1, len(labels))) % TREE_CLASSES)
    return one_hot_logits(predicted, 1 + 3 * rng.random(len(labels)), TREE_CLASSES)


TREE_TIME_S = {"linear": 1.0, "full": 9.0, "lora": 4.0, "bitfit": 3.0, "vpt_deep": 5.0}  # per seed run


def _tree_runs(directory: Path, task: str, task_index: int, method: str, level: float,
               labels: np.ndarray) -> list[float]:
    """Every seed's logits and per-seed metrics under ``directory/runs``; returns the per-seed accuracies."""
    per_seed = []
    for seed in TREE_SEEDS:
        logits = _tree_logits(task_index, TREE_METHODS.index(method), seed, level, labels)
        write_logits(directory / "runs" / f"seed{seed}" / "logits.safetensors", {"test": (logits, labels)})
        per_seed.append(float((logits.argmax(1) == labels).mean()))
        write_seed_metrics(directory / "runs", seed, task, method, per_seed[-1], TREE_PARAMS[method],
                           time_s=TREE_TIME_S[method], peak_memory_mb=100.0 * (1 + seed) + TREE_PARAMS[method] / 1000)
    return per_seed


def write_results_tree(results: Path, config: dict) -> dict[tuple[str, str], list[float]]:
    """Final runs (logits, per-seed and summary metrics), searches, ensembles, WiSE-FT and many-shot files.

    Returns the per-seed test accuracies written for every (task, method)."""
    from peftlab.analysis.ensembles import run_ensembles

    labels = np.arange(TREE_TEST_SIZE) % TREE_CLASSES
    written = {}
    for t, task in enumerate(TREE_TASKS):
        for method in TREE_METHODS:
            per_seed = _tree_runs(results / "final" / task / method, task, t, method, TREE_LEVEL[method], labels)
            written[(task, method)] = per_seed
            hparams = {"lr": 1e-3, "weight_decay": 1e-4, **({"rank": 8} if method == "lora" else {})}
            write_summary_metrics(results / "final" / task / method, task, method, per_seed, TREE_PARAMS[method],
                                  hparams)
            write_best(results, task, method, TREE_LEVEL[method] + 0.01 * t, hparams)
        run_ensembles(task, config, results, results / "ensembles" / task)
    for method, (target_gain, shift_loss) in {"full": (0.30, 0.20), "lora": (0.25, 0.05),
                                              "vpt_deep": (0.22, 0.04)}.items():
        rows = []
        for seed in TREE_SEEDS:
            for alpha in (0.0, 0.5, 1.0):
                bump = target_gain * alpha
                rows += [
                    {"task": "digits", "method": method, "seed": seed, "alpha": alpha, "split": "test",
                     "accuracy": 0.5 + bump, "n": 60},
                    {"task": "digits", "method": method, "seed": seed, "alpha": alpha, "split": "shift-noise",
                     "accuracy": 0.4 + 0.3 * alpha * (1 - alpha) - shift_loss * alpha, "n": 60},
                ]
        interpolation = "outputs" if method == "vpt_deep" else "weights"
        write_wise_csv(results / "robustness" / "digits" / method / "wise.csv",
                       [dict(r, interpolation=interpolation, head_source="head_init") for r in rows])
    for size, bonus in ((2000, 0.05), (6000, 0.10)):
        for method in ("linear", "full", "lora", "bitfit"):
            directory = results / "manyshot" / "digits" / str(size) / method
            per_seed = _tree_runs(directory, "digits", 100 + size, method, TREE_LEVEL[method] + bonus, labels)
            write_summary_metrics(directory, "digits", method, per_seed, TREE_PARAMS[method],
                                  train_split=f"manyshot-{size}")
    return written
