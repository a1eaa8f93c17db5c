"""Helpers for the method tests: random training steps and logits comparisons on the tiny ViT."""

from __future__ import annotations

import torch
from torch import nn

NUM_CLASSES = 5


def train_steps(model: nn.Module, images: torch.Tensor, steps: int = 3, lr: float = 1e-2,
                weight_decay: float = 0.01, seed: int = 0) -> None:
    """A few AdamW steps on random labels (train mode), so every trained tensor moves away from its init."""
    torch.manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (images.shape[0],))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=weight_decay)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()


@torch.no_grad()
def eval_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(images)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
