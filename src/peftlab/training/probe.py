"""The backbone probe: what a backbone's frozen features know about each task, before any method trains.

Per task, one logistic regression (``peftlab.data.probe.logistic_probe``, the raw-pixel probe's read-out) is fitted
on ``train800val200`` and scored on ``test`` for three feature sets:

- ``pretrained``: the class-token features (pre-logits: after the final norm) of the backbone as the study uses it;
- ``random_init``: the same architecture at timm's random initialisation (seed ``RANDOM_INIT_SEED``);
- ``raw_pixels``: the images themselves, scaled to [0, 1].

``gain_vs_random_init`` (mean pretrained − mean random init, in points) says how much pretraining taught, and
pretrained against raw pixels whether the features beat the pixels they are computed from. The paper's lessons
assume a backbone whose frozen features are good (a linear probe at ~0.75 of the best method on VTAB-1k); the
report reads ``probe.json`` to state whether the study's backbone meets that precondition.

Cheap by construction: two forward passes over at most ``1000 + MAX_TEST_IMAGES`` images per task and three
small regressions. Test sets larger than ``MAX_TEST_IMAGES`` (VTAB-1k's, for a ViT-B study) are subsampled by a
seeded permutation, so the subset is the same on every run and machine; the file states it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from peftlab.data.probe import MAX_ITER, REGULARISATION, logistic_probe, pixel_features
from peftlab.io import sha256_file, write_json
from peftlab.provenance import provenance
from peftlab.training.cache import compute_prefix
from peftlab.training.inputs import transform_for
from peftlab.training.session import FEATURES

TRAIN_SPLIT = "train800val200"
TEST_SPLIT = "test"
MAX_TEST_IMAGES = 2000
SUBSET_SEED = 0
RANDOM_INIT_SEED = 0
COLUMNS = ("pretrained", "random_init", "raw_pixels")


def probed_test_indices(count: int, cap: int = MAX_TEST_IMAGES, seed: int = SUBSET_SEED) -> torch.Tensor:
    """Indices of the test images probed: all of them up to ``cap``, else the first ``cap`` of a seeded
    permutation, in ascending order (deterministic, and not biased by a test list sorted by class)."""
    if count <= cap:
        return torch.arange(count)
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


def class_token_features(model: nn.Module, images: torch.Tensor, *, normalize: bool | tuple,
                         device: torch.device, batch_size: int) -> np.ndarray:
    """Pre-logit features ``[N, D]`` of uint8 images, in eval mode (the linear-probe method's cached input)."""
    transform = transform_for(model, normalize, device)
    with torch.no_grad():
        features = compute_prefix(model, FEATURES, images.to(device), transform=transform, batch_size=batch_size)
    return features.float().cpu().numpy()


def probe_models(name: str, weights: str | Path | None, device: torch.device) -> dict[str, nn.Module]:
    """The pretrained backbone and the same architecture at random init, without heads, on ``device``."""
    from peftlab.backbones import create_backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        random_init = create_backbone(name, weights=None, num_classes=0)
    pretrained = create_backbone(name, weights=weights, num_classes=0)
    return {"pretrained": pretrained.to(device).eval(), "random_init": random_init.to(device).eval()}


def probe_task(task_dir: str | Path, models: Mapping[str, nn.Module], *, normalize: bool | tuple,
               device: torch.device, batch_size: int, max_test: int = MAX_TEST_IMAGES) -> dict[str, Any]:
    """Test accuracy (%) of the probe on each column for one task's shards, and the images it used."""
    from peftlab.data.shards import load_split

    train, test = load_split(task_dir, TRAIN_SPLIT), load_split(task_dir, TEST_SPLIT)
    chosen = probed_test_indices(len(test), max_test)
    test_images, test_labels = test.images[chosen], test.labels[chosen].numpy()
    train_labels = train.labels.numpy()
    features = {column: (class_token_features(model, train.images, normalize=normalize, device=device,
                                              batch_size=batch_size),
                         class_token_features(model, test_images, normalize=normalize, device=device,
                                              batch_size=batch_size))
                for column, model in models.items()}
    features["raw_pixels"] = (pixel_features(train.images.numpy()), pixel_features(test_images.numpy()))
    accuracy = {column: 100.0 * logistic_probe(train_x, train_labels, {TEST_SPLIT: (test_x, test_labels)})[TEST_SPLIT]
                for column, (train_x, test_x) in features.items()}
    return {"accuracy": {column: round(accuracy[column], 2) for column in COLUMNS},
            "count": {TRAIN_SPLIT: len(train), TEST_SPLIT: len(chosen), f"{TEST_SPLIT}_available": len(test)}}


def run_probe(name: str, weights: str | Path | None, task_dirs: Mapping[str, Path], *, normalize: bool | tuple,
              device: torch.device, batch_size: int, out: str | Path | None = None,
              max_test: int = MAX_TEST_IMAGES) -> dict[str, Any]:
    """Probe backbone ``name`` (``weights``; None probes a random init against itself) on every task of
    ``task_dirs``; writes ``out`` (``models/<backbone>/probe.json``) when given and returns its content."""
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    models = probe_models(name, weights, device)
    tasks = {task: probe_task(task_dir, models, normalize=normalize, device=device, batch_size=batch_size,
                              max_test=max_test) for task, task_dir in task_dirs.items()}
    mean = {column: round(float(np.mean([t["accuracy"][column] for t in tasks.values()])), 2) for column in COLUMNS}
    result = {
        "backbone": name,
        "weights": None if weights is None else str(weights),
        "weights_sha256": None if weights is None else sha256_file(weights),
        "tasks": {task: dict(found["accuracy"]) for task, found in tasks.items()},
        "mean": mean,
        "gain_vs_random_init": round(mean["pretrained"] - mean["random_init"], 2),
        "pretrained_minus_raw_pixels": round(mean["pretrained"] - mean["raw_pixels"], 2),
        "counts": {task: found["count"] for task, found in tasks.items()},
        "settings": _settings(normalize, max_test),
        "time_s": round(time.perf_counter() - started_wall, 2),
        "cpu_time_s": round(time.process_time() - started_cpu, 2),
        "provenance": provenance(str(device)),
    }
    if out is not None:
        write_json(out, result)
    return result


def _settings(normalize: bool | tuple, max_test: int) -> dict[str, Any]:
    return {
        "unit": "top-1 test accuracy, %", "train_split": TRAIN_SPLIT, "test_split": TEST_SPLIT,
        "features": "class token after the final norm (pre-logits), eval mode",
        "read_out": {"model": "logistic regression (scikit-learn, lbfgs) on standardised features",
                     "C": REGULARISATION, "max_iter": MAX_ITER},
        "raw_pixels": "pixels / 255, flattened",
        "random_init": {"seed": RANDOM_INIT_SEED, "init": "timm's default initialisation"},
        "test_images_per_task": {"max": max_test, "subset": f"first {max_test} of a permutation seeded "
                                                            f"{SUBSET_SEED}, in ascending order, when larger"},
        "normalize": list(normalize) if isinstance(normalize, Sequence) and not isinstance(normalize, str)
        else normalize,
    }
