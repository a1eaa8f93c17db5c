"""Pretraining augmentation on resident uint8 batches: random crop with zero padding and horizontal flip.

One gather per batch on the device (no PIL, no per-image Python), drawn from a seeded generator so pretraining
is reproducible. Fine-tuning uses no augmentation (the protocol's VTAB-1k runs resize only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RandomCropFlip:
    def __init__(self, padding: int, generator: torch.Generator, flip: bool = True) -> None:
        self.padding = padding
        self.generator = generator
        self.flip = flip

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = images.shape
        device = images.device
        pad = self.padding
        padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
        draw = dict(device=self.generator.device, generator=self.generator)
        top = torch.randint(0, 2 * pad + 1, (batch, 1), **draw).to(device)
        left = torch.randint(0, 2 * pad + 1, (batch, 1), **draw).to(device)
        rows = top + torch.arange(height, device=device)
        cols = torch.arange(width, device=device).expand(batch, width)
        if self.flip:
            flipped = torch.rand(batch, 1, **draw).to(device) < 0.5
            cols = torch.where(flipped, cols.flip(1), cols)
        cols = left + cols
        index_b = torch.arange(batch, device=device).view(batch, 1, 1, 1)
        index_c = torch.arange(channels, device=device).view(1, channels, 1, 1)
        return padded[index_b, index_c, rows.view(batch, 1, height, 1), cols.view(batch, 1, 1, width)]
