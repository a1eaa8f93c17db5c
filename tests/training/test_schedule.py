"""The learning-rate schedule: linear warm-up from warmup_lr_init, then cosine down to lr_min, per step."""

import math

import pytest

from peftlab.training.schedule import WarmupCosine, schedule_for


def test_warmup_is_linear_from_warmup_lr_init_to_base_lr():
    schedule = schedule_for(0.01, epochs=10, warmup_epochs=2, steps_per_epoch=5, warmup_lr_init=1e-6, lr_min=1e-5)
    warmup = [schedule(step) for step in range(10)]
    assert warmup[0] == pytest.approx(1e-6)
    increments = [b - a for a, b in zip(warmup, warmup[1:], strict=False)]
    assert all(d > 0 for d in increments)
    assert max(increments) == pytest.approx(min(increments))
    assert schedule(10) == pytest.approx(0.01)


def test_cosine_decays_monotonically_to_lr_min_on_the_last_step():
    schedule = WarmupCosine(base_lr=0.01, total_steps=50, warmup_steps=10, warmup_lr_init=1e-6, lr_min=1e-5)
    decay = [schedule(step) for step in range(10, 50)]
    assert all(b <= a for a, b in zip(decay, decay[1:], strict=False))
    assert decay[-1] == pytest.approx(1e-5)
    assert schedule(10 + 13) == pytest.approx(1e-5 + 0.5 * (0.01 - 1e-5) * (1 + math.cos(math.pi * 13 / 39)))


def test_no_warmup_starts_at_base_lr():
    schedule = schedule_for(0.1, epochs=3, warmup_epochs=0, steps_per_epoch=4, warmup_lr_init=0.0, lr_min=0.0)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(11) == pytest.approx(0.0)
