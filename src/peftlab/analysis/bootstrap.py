"""Bootstrap intervals for the lesson criteria: resample test images (paired across methods) and seeds.

Every lesson criterion is a function of per-image outcomes (right or wrong) of several methods on the same test
set. One replicate draws the test images of a task with replacement, the same draw for every method of that task
(the methods are compared on the same images, so their errors stay paired), and, where a (task, method) has
several seeds, draws its seeds with replacement too. The criterion recomputed on each replicate gives a
percentile interval.

Cheap by construction: the statistics needed are weighted sums of per-image indicator columns, so a replicate is
a row of image counts and all replicates of a task are one matrix product, computed in chunks that bound memory.
Seeded, so a report is reproducible bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RESAMPLES = 400
CONFIDENCE = 0.95
SEED = 2409_16434  # the paper's arXiv number: fixed, not chosen for any outcome
CHUNK_ELEMENTS = 1 << 22  # image draws at a time (resamples × images): ~32 MB of int64 indices


@dataclass
class Resampler:
    """One stream of replicates; use one per criterion, so adding a criterion does not move the others."""

    resamples: int = RESAMPLES
    seed: int = SEED
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def image_means(self, columns: np.ndarray) -> np.ndarray:
        """``[B, K]``: each column's mean over the test images of each replicate (one image draw for all K).

        ``columns`` is ``[N, K]``: one row per test image, one column per per-image quantity (1 if right...).
        """
        columns = np.asarray(columns, dtype=np.float32)
        n = columns.shape[0]
        out = np.empty((self.resamples, columns.shape[1]), dtype=np.float64)
        chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
        for start in range(0, self.resamples, chunk):
            rows = min(chunk, self.resamples - start)
            drawn = self.rng.integers(0, n, size=(rows, n))
            offsets = (np.arange(rows) * n)[:, None]
            counts = np.bincount((drawn + offsets).ravel(), minlength=rows * n).reshape(rows, n)
            out[start:start + rows] = (counts.astype(np.float32) @ columns) / n
        return out

    def seed_means(self, values: np.ndarray) -> np.ndarray:
        """``[B, ...]`` from ``[B, S, ...]`` per-seed values: per replicate, the mean over S seeds drawn with
        replacement (one draw per replicate for all trailing entries, which belong to the same runs)."""
        values = np.asarray(values, dtype=np.float64)
        replicates, seeds = values.shape[:2]
        if seeds == 1:
            return values[:, 0]
        drawn = self.rng.integers(0, seeds, size=(replicates, seeds))
        return values[np.arange(replicates)[:, None], drawn].mean(axis=1)

    def binomial_means(self, accuracy: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """``[B, ...]``: accuracies redrawn as binomial proportions over their test counts.

        For tables that keep only an accuracy and its image count (WiSE-FT curves): each value is resampled on
        its own, which ignores the pairing of methods on the same images (a wider interval than a paired
        bootstrap would give).
        """
        accuracy = np.clip(np.asarray(accuracy, dtype=np.float64), 0.0, 1.0)
        counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), accuracy.shape)
        return self.rng.binomial(counts, accuracy, size=(self.resamples, *accuracy.shape)) / counts


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The central percentile interval of the replicates (NaN replicates left out); None without any."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)
