"""Shared fixtures: a tiny timm ViT (``vit_mini_patch8_32``: 32×32 input, dim 64, depth 6) and random images.

Use the fixtures (``tiny_vit``, ``tiny_images``) rather than ``from conftest import ...``: several test folders
have their own ``conftest.py`` and the module name is not unique.
"""

from __future__ import annotations

import pytest
import torch

TINY_BACKBONE = "vit_mini_patch8_32"

# Tiny models on a shared 2-core machine: one intra-op thread is ~10x faster than two contending ones.
torch.set_num_threads(1)


def make_tiny_vit(num_classes: int = 5, name: str = TINY_BACKBONE, seed: int = 0, weights=None, **kwargs):
    """A fresh tiny ViT on the CPU with seeded random weights (or the given weights file)."""
    from peftlab.backbones import create_backbone

    torch.manual_seed(seed)
    return create_backbone(name, weights=weights, num_classes=num_classes, **kwargs)


def make_images(count: int = 3, seed: int = 0) -> torch.Tensor:
    """Normal-distributed float inputs for the tiny ViT, ``[count, 3, 32, 32]``."""
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tiny_vit():
    """Factory ``tiny_vit(num_classes=5, name=TINY_BACKBONE, seed=0, weights=None, **timm_kwargs)``."""
    return make_tiny_vit


@pytest.fixture
def tiny_images():
    """Factory ``tiny_images(count=3, seed=0)``."""
    return make_images
