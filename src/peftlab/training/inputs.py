"""Model inputs from resident uint8 images: converted and normalised per batch, on the device.

Shards hold ``uint8 [N, 3, H, W]`` images (4× smaller than float32), so a whole VTAB-1k split fits on the GPU
and no DataLoader, PIL decode or worker process is needed. Conversion is one fused multiply-subtract per batch:
``x / 255`` and ``(x / 255 - mean) / std`` both have the form ``x * scale - offset``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class InputTransform:
    """``uint8 → float`` in ``[0, 1]``, then ``(x - mean) / std`` when mean and std are given."""

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.dtype = dtype
        mean_t = torch.zeros(3, dtype=torch.float64) if mean is None else torch.tensor(self.mean, dtype=torch.float64)
        std_t = torch.ones(3, dtype=torch.float64) if std is None else torch.tensor(self.std, dtype=torch.float64)
        self.scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1).to(device=device, dtype=dtype)
        self.offset = (mean_t / std_t).view(1, -1, 1, 1).to(device=device, dtype=dtype)
        self.normalizes = mean is not None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        x = images.to(device=self.scale.device, dtype=self.dtype, non_blocking=True).mul_(self.scale)
        return x.sub_(self.offset) if self.normalizes else x

    def describe(self) -> dict:
        """A JSON-able identity, part of the frozen-computation cache key."""
        return {"mean": self.mean, "std": self.std, "dtype": str(self.dtype)}


def to_model_input(images: torch.Tensor, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> torch.Tensor:
    """Convert one uint8 batch on its own device (see ``InputTransform`` for repeated use)."""
    return InputTransform(mean, std, device=images.device)(images)


def model_mean_std(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The backbone's own normalisation: for a paper backbone the mean/std its table entry gives (the paper
    code's, ``peftlab.backbones.PAPER_BACKBONES``), else timm's ``pretrained_cfg``, else ImageNet's."""
    from peftlab.backbones import input_normalization

    return input_normalization(model)


def transform_for(model: nn.Module, normalize: bool | tuple, device: torch.device | str) -> InputTransform:
    """The input transform of a study: ``normalize`` false → ``/255`` only (the processed VTAB-1k), true → the
    backbone's mean/std, or an explicit ``(mean, std)`` pair."""
    if normalize is True:
        return InputTransform(*model_mean_std(model), device=device)
    if normalize is False or normalize is None:
        return InputTransform(device=device)
    mean, std = normalize
    return InputTransform(mean, std, device=device)
