"""A raw-pixel linear probe: how far a task is from being linearly separable in pixel space.

Logistic regression (L2, C = 0.1; C from 0.01 to 1 changed no mini-suite task by more than 2 points) on
standardised raw pixels, trained on ``train800val200`` and scored on ``test`` (and the
shift sets). A mini-suite task should sit clearly below what the task permits (its labels are exact functions
of the images), so that the study measures learned features rather than pixel statistics. Used by
``peftlab data probe`` and recorded in ``docs/data.md``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from peftlab.data.decode import decode_images
from peftlab.data.lists import SplitList, read_splits
from peftlab.data.tasks import find_task_dir, resolve_task


def _pixels(split: SplitList, size: int) -> np.ndarray:
    images = [pixels for _, pixels in decode_images([e.path for e in split.entries], size)]
    return np.stack(images).reshape(len(images), -1).astype(np.float32) / 255.0


def linear_probe(root: str | Path, task: str, size: int = 32, max_iter: int = 200,
                 regularisation: float = 0.1) -> dict[str, float]:
    """Top-1 accuracy per evaluated split of a logistic regression on raw pixels (train800val200 → test)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    task_dir = find_task_dir(root, task)
    splits = {split.name: split for split in read_splits(task_dir, resolve_task(task, task_dir))}
    train = splits["train800val200"]
    scaler = StandardScaler().fit(_pixels(train, size))
    model = LogisticRegression(C=regularisation, max_iter=max_iter)
    with warnings.catch_warnings():
        # 3072 features, 1000 images: lbfgs may stop before full convergence; on the mini-suite the test
        # accuracy moved by at most a point between 150 and 300 iterations.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(_pixels(train, size)), train.labels)
    scores = {}
    for name, split in splits.items():
        if not split.is_training:
            scores[name] = float(model.score(scaler.transform(_pixels(split, size)), split.labels))
    return scores
