"""The one training loop of every method: resident data, seeded shuffling, per-step schedule, divergence stop.

Rows (uint8 images or cached prefix outputs) and labels already live on the device; each step gathers a batch
by index, so there is no DataLoader, no worker and no host-device copy in the loop. Shuffling uses its own
seeded ``torch.Generator`` and the model's randomness (drop-path) the global seed, so a run is a function of
its seed. A loss (or a trained weight) that becomes NaN or infinite ends the run at the end of that epoch with status
``diverged``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from peftlab.training.forward import ModelRunner
from peftlab.training.optim import build_adamw, set_lr
from peftlab.training.schedule import schedule_for

OK = "ok"
DIVERGED = "diverged"


@dataclass(frozen=True)
class FitSettings:
    """Everything that shapes one training run besides the model and the data."""

    lr: float
    weight_decay: float
    epochs: int
    warmup_epochs: int
    batch_size: int
    lr_min: float
    warmup_lr_init: float
    label_smoothing: float = 0.0

    @classmethod
    def from_config(cls, training: Mapping[str, Any], hparams: Mapping[str, Any], *, epochs: int | None = None,
                    warmup_epochs: int | None = None) -> FitSettings:
        return cls(lr=float(hparams["lr"]), weight_decay=float(hparams["weight_decay"]),
                   epochs=int(epochs if epochs is not None else training["epochs"]),
                   warmup_epochs=int(warmup_epochs if warmup_epochs is not None else training["warmup_epochs"]),
                   batch_size=int(training["batch_size"]), lr_min=float(training["lr_min"]),
                   warmup_lr_init=float(training["warmup_lr_init"]),
                   label_smoothing=float(training.get("label_smoothing", 0.0)))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    status: str
    train_loss: float | None  # mean training loss of the last epoch run (None once diverged)
    epoch_losses: list[float | None] = field(default_factory=list)
    steps: int = 0

    @property
    def epochs_run(self) -> int:
        return len(self.epoch_losses)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))


def all_finite(parameters: list[torch.nn.Parameter]) -> bool:
    """Weights that overflowed make every later loss NaN: stop now rather than at the next epoch."""
    return bool(torch.stack([p.detach().float().abs().max() for p in parameters]).isfinite().all())


def fit(runner: ModelRunner, rows: torch.Tensor, labels: torch.Tensor, settings: FitSettings, *,
        generator: torch.Generator, progress: str | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> FitResult:
    """Train the runner's trainable parameters with AdamW on ``rows``/``labels`` (both on the device).

    ``augment`` maps a gathered batch of rows to a new batch (pretraining's crop and flip on uint8 images).
    """
    count = len(rows)
    if count == 0:
        raise ValueError("no training rows")
    per_epoch = steps_per_epoch(count, settings.batch_size)
    schedule = schedule_for(settings.lr, settings.epochs, settings.warmup_epochs, per_epoch,
                            warmup_lr_init=settings.warmup_lr_init, lr_min=settings.lr_min)
    optimizer = build_adamw(runner.parameters(), lr=schedule(0), weight_decay=settings.weight_decay,
                            device=runner.device)
    result = FitResult(status=OK, train_loss=None)
    bar = tqdm(range(settings.epochs), desc=progress, unit="epoch", leave=False, disable=progress is None or None)
    runner.train()
    for _ in bar:
        order = torch.randperm(count, generator=generator).to(runner.device)
        batch_losses: list[torch.Tensor] = []
        for start in range(0, count, settings.batch_size):
            index = order[start:start + settings.batch_size]
            batch_labels = labels.index_select(0, index)
            batch = rows.index_select(0, index)
            logits = runner.logits(augment(batch) if augment is not None else batch)
            loss = F.cross_entropy(logits.float(), batch_labels, label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            set_lr(optimizer, schedule(result.steps))
            optimizer.step()
            result.steps += 1
            batch_losses.append(loss.detach() * len(index))
        epoch_loss = (torch.stack(batch_losses).double().sum() / count).item()
        if not (math.isfinite(epoch_loss) and all_finite(runner.parameters())):
            result.status, result.train_loss = DIVERGED, None
            result.epoch_losses.append(None)
            break
        result.train_loss = epoch_loss
        result.epoch_losses.append(epoch_loss)
        bar.set_postfix(loss=f"{epoch_loss:.4f}")
    bar.close()
    runner.eval()
    return result
