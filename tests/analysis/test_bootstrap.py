"""The resampling behind the lessons' intervals: paired image draws, seed draws, binomial redraws, percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from peftlab.analysis import bootstrap
from peftlab.analysis.bootstrap import Resampler, interval


def test_one_image_draw_is_shared_by_every_column_and_counts_every_image_once_on_average():
    correct = np.random.default_rng(0).random(1000) < 0.3
    columns = np.stack([correct, correct, ~correct, np.ones(1000, dtype=bool)], axis=1)
    means = Resampler(400, seed=1).image_means(columns)
    assert means.shape == (400, 4)
    assert np.array_equal(means[:, 0], means[:, 1])  # paired: the same images for both columns
    assert np.allclose(means[:, 0] + means[:, 2], 1.0) and np.allclose(means[:, 3], 1.0)  # n images drawn each time
    # the spread of a resampled mean is the binomial standard error sqrt(p(1 − p) / n)
    p = correct.mean()
    assert means[:, 0].std() == pytest.approx(np.sqrt(p * (1 - p) / 1000), rel=0.15)
    assert means[:, 0].mean() == pytest.approx(p, abs=0.003)


def test_draws_are_seeded_and_chunking_keeps_every_replicate(monkeypatch):
    columns = (np.arange(300) % 3 == 0)[:, None]
    first, again = Resampler(50, seed=7).image_means(columns), Resampler(50, seed=7).image_means(columns)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, Resampler(50, seed=8).image_means(columns))
    monkeypatch.setattr(bootstrap, "CHUNK_ELEMENTS", 1000)  # 3 replicates at a time
    chunked = Resampler(50, seed=7).image_means(np.concatenate([columns, ~columns], axis=1))
    assert chunked.shape == (50, 2) and np.allclose(chunked.sum(axis=1), 1.0)
    assert len(np.unique(chunked[:, 0])) > 10  # every chunk draws afresh


def test_seed_draws_average_seeds_drawn_with_replacement():
    values = np.tile([0.0, 1.0], (4000, 1))  # two seeds: 0 and 1
    means = Resampler(4000, seed=2).seed_means(values)
    assert set(np.unique(means)) == {0.0, 0.5, 1.0}
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.03)  # (0, 1) or (1, 0) of four equally likely draws
    single = np.arange(10.0)[:, None]
    assert np.array_equal(Resampler(10).seed_means(single), np.arange(10.0))
    trailing = np.stack([np.zeros((4000, 3)), np.ones((4000, 3))], axis=1)  # [B, S=2, 3]: one draw per replicate
    drawn = Resampler(4000, seed=3).seed_means(trailing)
    assert drawn.shape == (4000, 3) and np.all(drawn == drawn[:, :1])


def test_binomial_redraws_have_the_binomial_spread():
    drawn = Resampler(4000, seed=4).binomial_means(np.array([0.2, 0.9]), np.array([500, 100]))
    assert drawn.shape == (4000, 2)
    assert drawn.mean(axis=0) == pytest.approx([0.2, 0.9], abs=0.005)
    assert drawn.std(axis=0) == pytest.approx([np.sqrt(0.2 * 0.8 / 500), np.sqrt(0.9 * 0.1 / 100)], rel=0.1)


def test_interval_is_the_central_percentile_range_of_finite_replicates():
    assert interval(np.arange(1001.0)) == pytest.approx((25.0, 975.0))
    assert interval(np.array([np.nan, 1.0, 1.0])) == (1.0, 1.0)
    assert interval(np.array([np.nan])) is None
