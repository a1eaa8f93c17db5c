"""Linear probes: logistic regression on fixed features, and the raw-pixel probe of a task.

``logistic_probe`` is the one read-out every probe in peftlab uses (raw pixels here, a backbone's frozen
class-token features in ``peftlab.training.probe``): L2-regularised logistic regression (C = 0.1; C from 0.01 to
1 changed no mini-suite task by more than 2 points on raw pixels) on standardised features, trained on one set
and scored on others. One read-out for every column keeps the comparison between features and pixels fair.

The raw-pixel probe (``peftlab data probe``) trains on ``train800val200`` and scores ``test`` (and the shift
sets): a mini-suite task should sit clearly below what the task permits (its labels are exact functions of the
images), so that the study measures learned features rather than pixel statistics (``docs/data.md``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from peftlab.data.decode import decode_images
from peftlab.data.lists import SplitList, read_splits
from peftlab.data.tasks import find_task_dir, resolve_task

REGULARISATION = 0.1  # scikit-learn's C (inverse L2 strength)
MAX_ITER = 200


def logistic_probe(train_x: np.ndarray, train_y: np.ndarray, evaluated: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   *, regularisation: float = REGULARISATION, max_iter: int = MAX_ITER) -> dict[str, float]:
    """Top-1 accuracy on each ``evaluated[name] = (x, y)`` of a logistic regression fitted on standardised
    ``train_x`` ``[N, D]`` (the scaler is fitted on the training rows only).

    BLAS and OpenMP run on one thread: these matrices are small, and on the shared 2-core machine the default
    thread pools spun against each other (one 3072-pixel task: 30 s CPU with them, 2.2 s on one thread, same fit).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1), warnings.catch_warnings():
        # 3072 pixel features, 1000 images: lbfgs may stop before full convergence; on the mini-suite the test
        # accuracy moved by at most a point between 150 and 300 iterations.
        warnings.simplefilter("ignore", ConvergenceWarning)
        scaler = StandardScaler().fit(train_x)
        model = LogisticRegression(C=regularisation, max_iter=max_iter).fit(scaler.transform(train_x),
                                                                            np.asarray(train_y))
        return {name: float(model.score(scaler.transform(x), np.asarray(y))) for name, (x, y) in evaluated.items()}


def pixel_features(images: np.ndarray) -> np.ndarray:
    """uint8 images (any layout, one per row) → float32 rows in [0, 1]: the raw-pixel probe's features."""
    return np.asarray(images).reshape(len(images), -1).astype(np.float32) / 255.0


def _pixels(split: SplitList, size: int) -> np.ndarray:
    return pixel_features(np.stack([pixels for _, pixels in decode_images([e.path for e in split.entries], size)]))


def linear_probe(root: str | Path, task: str, size: int = 32, max_iter: int = MAX_ITER,
                 regularisation: float = REGULARISATION) -> dict[str, float]:
    """Top-1 accuracy per evaluated split of a logistic regression on raw pixels (train800val200 → test)."""
    task_dir = find_task_dir(root, task)
    splits = {split.name: split for split in read_splits(task_dir, resolve_task(task, task_dir))}
    train = splits["train800val200"]
    evaluated = {name: (_pixels(split, size), split.labels) for name, split in splits.items()
                 if not split.is_training}
    return logistic_probe(_pixels(train, size), train.labels, evaluated, regularisation=regularisation,
                          max_iter=max_iter)
