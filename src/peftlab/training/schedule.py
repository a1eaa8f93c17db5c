"""The learning-rate schedule of the protocol: linear warm-up from ``warmup_lr_init``, then cosine to ``lr_min``.

Updated every optimiser step (not every epoch), so short runs of a few epochs still get a smooth schedule. The
cosine covers the steps after the warm-up (warm-up is a prefix), ending exactly at ``lr_min`` on the last step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    base_lr: float
    total_steps: int
    warmup_steps: int
    warmup_lr_init: float
    lr_min: float

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError("total_steps must be >= 1")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError("warmup_steps must lie in [0, total_steps]")

    def __call__(self, step: int) -> float:
        """The learning rate used by optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.warmup_lr_init + (self.base_lr - self.warmup_lr_init) * step / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps <= 1:
            return self.base_lr if decay_steps == 1 and step == self.warmup_steps else self.lr_min
        progress = min(1.0, (step - self.warmup_steps) / (decay_steps - 1))
        return self.lr_min + 0.5 * (self.base_lr - self.lr_min) * (1.0 + math.cos(math.pi * progress))


def schedule_for(base_lr: float, epochs: int, warmup_epochs: int, steps_per_epoch: int, *,
                 warmup_lr_init: float, lr_min: float) -> WarmupCosine:
    warmup_epochs = min(warmup_epochs, epochs)
    return WarmupCosine(base_lr=base_lr, total_steps=epochs * steps_per_epoch,
                        warmup_steps=warmup_epochs * steps_per_epoch, warmup_lr_init=warmup_lr_init, lr_min=lr_min)
