"""The one training loop of every method: resident data, seeded shuffling, per-step schedule, divergence stop.

Rows (uint8 images or cached prefix outputs) and labels already live on the device; each step gathers a batch
by index, so there is no DataLoader, no worker and no host-device copy in the loop. Shuffling uses its own
seeded ``torch.Generator`` and the model's randomness (drop-path) the global seed, so a run is a function of
its seed. A loss (or a trained weight) that becomes NaN or infinite ends the run at the end of that epoch with status
``diverged``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from peftlab.methods import after_step, method_loss
from peftlab.training.forward import ModelRunner
from peftlab.training.optim import build_adamw_groups
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


def schedule_shape(settings: FitSettings) -> tuple:
    """What runs trained together must share: everything but the learning rate and the weight decay."""
    return (settings.epochs, settings.warmup_epochs, settings.batch_size, settings.lr_min, settings.warmup_lr_init,
            settings.label_smoothing)


Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (float32 logits, labels) → scalar


def fit(runner: ModelRunner, rows: torch.Tensor, labels: torch.Tensor, settings: FitSettings, *,
        generator: torch.Generator, progress: str | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None, loss: Loss | None = None) -> FitResult:
    """Train the runner's trainable parameters with AdamW on ``rows``/``labels`` (both on the device).

    ``augment`` maps a gathered batch of rows to a new batch (pretraining's crop and flip on uint8 images);
    ``loss`` replaces cross-entropy with label smoothing (pretraining's one softmax per upstream factor).
    """
    return fit_group([runner], rows, labels, [settings], generator=generator, progress=progress,
                     augment=augment, loss=loss)[0]


def fit_group(runners: Sequence[ModelRunner], rows: torch.Tensor, labels: torch.Tensor,
              settings: Sequence[FitSettings], *, generator: torch.Generator, progress: str | None = None,
              augment: Callable[[torch.Tensor], torch.Tensor] | None = None, loss: Loss | None = None
              ) -> list[FitResult]:
    """Train several runs in lockstep on the same batches, each exactly as ``fit`` would train it alone.

    Per step there is one batch gather, one backward and one optimiser step for the whole group, which is most of
    a step's cost when the trained part is small (a cached linear probe). Each run keeps its own loss, its own
    AdamW parameter group (its learning-rate schedule and weight decay) and its own divergence stop; the backward
    of the summed losses hands each run the gradient of its own loss unchanged (d sum / d loss_i = 1), so every
    member ends bitwise equal to a run alone on the same shuffling. That holds only for members whose training
    draws no random numbers (``draws_random_numbers``): dropout in several members would interleave one random
    stream. ``settings`` may differ only in ``lr`` and ``weight_decay`` (see ``schedule_shape``).
    """
    count = len(rows)
    if count == 0:
        raise ValueError("no training rows")
    if len(runners) != len(settings) or not runners:
        raise ValueError(f"fit_group: {len(runners)} runners for {len(settings)} settings")
    if len({schedule_shape(member) for member in settings}) != 1:
        raise ValueError("fit_group: members differ in more than lr and weight_decay")
    shape = settings[0]
    criterion = loss or (lambda logits, targets: F.cross_entropy(logits, targets,
                                                                  label_smoothing=shape.label_smoothing))
    per_epoch = steps_per_epoch(count, shape.batch_size)
    schedules = [schedule_for(member.lr, shape.epochs, shape.warmup_epochs, per_epoch,
                              warmup_lr_init=shape.warmup_lr_init, lr_min=shape.lr_min) for member in settings]
    optimizer = build_adamw_groups([(runner.parameters(), member.weight_decay, schedule(0)) for runner, member, schedule
                                    in zip(runners, settings, schedules, strict=True)], device=runners[0].device)
    results = [FitResult(status=OK, train_loss=None) for _ in runners]
    active = list(range(len(runners)))  # members still training; a diverged one leaves (with its param group)
    groups = dict(enumerate(optimizer.param_groups))
    bar = tqdm(range(shape.epochs), desc=progress, unit="epoch", leave=False, disable=progress is None or None)
    for runner in runners:
        runner.train()
    steps = 0
    for _ in bar:
        order = torch.randperm(count, generator=generator).to(runners[0].device)
        batch_losses: dict[int, list[torch.Tensor]] = {member: [] for member in active}
        for start in range(0, count, shape.batch_size):
            index = order[start:start + shape.batch_size]
            batch_labels = labels.index_select(0, index)
            batch = rows.index_select(0, index)
            if augment is not None:
                batch = augment(batch)
            losses = [criterion(runners[member].logits(batch).float(), batch_labels) + method_loss(runners[member].model)
                      for member in active]
            optimizer.zero_grad(set_to_none=True)
            (losses[0] if len(losses) == 1 else sum(losses)).backward()
            for member in active:
                groups[member]["lr"] = schedules[member](steps)
            optimizer.step()
            steps += 1
            for member in active:
                after_step(runners[member].model, steps, shape.epochs * per_epoch)
            for member, loss in zip(active, losses, strict=True):
                batch_losses[member].append(loss.detach() * len(index))
        for member in list(active):
            result = results[member]
            result.steps = steps
            epoch_loss = (torch.stack(batch_losses[member]).double().sum() / count).item()
            if not (math.isfinite(epoch_loss) and all_finite(runners[member].parameters())):
                result.status, result.train_loss = DIVERGED, None
                result.epoch_losses.append(None)
                active.remove(member)
                optimizer.param_groups[:] = [group for group in optimizer.param_groups if group is not groups[member]]
                continue
            result.train_loss = epoch_loss
            result.epoch_losses.append(epoch_loss)
        if not active:
            break
        if len(runners) == 1:
            bar.set_postfix(loss=f"{results[0].train_loss:.4f}")
    bar.close()
    for runner in runners:
        runner.eval()
    return results
