"""Logits and scores: top-1 accuracy and cross-entropy, over all logits or a class subset.

Shift sets over a class subset (ImageNet-A/-R: 200 of 1000 classes) are scored on the subset's logits only, as
the paper does: the prediction is the best logit among ``class_subset`` and labels stay in the task's label
space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from peftlab.training.forward import DEFAULT_PRECISION, ModelRunner
from peftlab.training.inputs import transform_for


@dataclass(frozen=True)
class Score:
    accuracy: float
    loss: float
    count: int


@torch.no_grad()
def runner_logits(runner: ModelRunner, rows: torch.Tensor, *, batch_size: int) -> torch.Tensor:
    """Float32 logits of every row (uint8 images or cached prefix outputs), on the CPU, in eval mode."""
    runner.eval()
    chunks = [runner.logits(rows[start:start + batch_size]).float().cpu() for start in range(0, len(rows), batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0)


def predict_logits(model: nn.Module, images_uint8: torch.Tensor, *, batch_size: int = 512,
                   device: torch.device | str | None = None, normalize: bool | tuple = False,
                   normalize_mean_std: tuple | None = None, precision: str = DEFAULT_PRECISION) -> torch.Tensor:
    """Float32 logits ``[N, C]`` (CPU) of a whole model on uint8 images; the model is moved to ``device``.

    ``normalize``: false → pixels in ``[0, 1]``; true → the backbone's mean/std; or a ``(mean, std)`` pair,
    which may also be passed as ``normalize_mean_std``. Images may live on the CPU: each batch is moved.
    ``precision`` as in ``ModelRunner`` (bf16 autocast only on CUDA).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    runner = ModelRunner(model, transform_for(model, normalize_mean_std or normalize, device), device=device,
                         precision=precision)
    return runner_logits(runner, images_uint8, batch_size=batch_size)


def score(logits: torch.Tensor, labels: torch.Tensor, class_subset: torch.Tensor | None = None) -> Score:
    """Top-1 accuracy and mean cross-entropy; with ``class_subset``, over those logits only."""
    logits = logits.float().cpu()
    labels = labels.long().cpu()
    if class_subset is not None:
        class_subset = class_subset.long().cpu()
        position = torch.full((logits.shape[1],), -1, dtype=torch.long)
        position[class_subset] = torch.arange(len(class_subset))
        targets = position[labels]
        if (targets < 0).any():
            raise ValueError("labels outside class_subset")
        logits, labels = logits[:, class_subset], targets
    if len(labels) == 0:
        return Score(accuracy=float("nan"), loss=float("nan"), count=0)
    accuracy = (logits.argmax(dim=1) == labels).double().mean().item()
    loss = F.cross_entropy(logits.double(), labels).item()
    return Score(accuracy=accuracy, loss=loss, count=len(labels))
