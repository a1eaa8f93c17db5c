"""LoRA (Hu et al. 2022) on timm's fused ``attn.qkv``: a low-rank update ``(alpha / rank) · B A`` on the rows of
the chosen projections (default q and v), ``A`` kaiming-uniform and ``B`` zero so the model starts as the
backbone. With ``alpha`` = rank the update's scale is 1, as in PETL_Vision (its ``merge_factor``); its dropout
of 0.1 on the update's input is the default here too. Rank 8 on q and v: ≈0.29 M parameters on ViT-B/16.

Each target has its own ``A`` and ``B`` (the original LoRA). PETL_Vision instead shares one ``A`` [r, d] with
one ``B`` over all 3d rows of ``qkv``; both have r·4d parameters per block (at targets ``qv`` here).
Mergeable: ``W += ΔW``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import (
    LinearWithDelta,
    LowRankUpdate,
    SlicedDelta,
    frozen_prefix_cache_point,
    identity_from,
    keep_value,
    merge_wrappers,
    replace_module,
    zeros_like_value,
)

TARGET_CHOICES = ("q", "k", "v", "qk", "qv", "kv", "qkv")
PROJECTIONS = "qkv"


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = hparam(8, "rank r of the update B·A", min=1)
    alpha: float = hparam(0.0, "scale numerator: update = (alpha / rank)·B·A; 0 means alpha = rank", min=0.0)
    targets: str = hparam("qv", "which of the fused q, k, v projections get an update", choices=TARGET_CHOICES)
    dropout: float = hparam(0.1, "dropout on the update's input (training only)", min=0.0, max=0.9)

    def effective_alpha(self) -> float:
        return self.alpha if self.alpha > 0 else float(self.rank)


def qkv_update(qkv: nn.Linear, config: LoRAConfig, dropout: float) -> SlicedDelta:
    """A ``SlicedDelta`` with one ``LowRankUpdate`` per target over that projection's rows of ``qkv``."""
    rows = qkv.out_features // 3
    parts = {
        target: (PROJECTIONS.index(target) * rows,
                 LowRankUpdate(qkv.in_features, rows, config.rank, config.effective_alpha(), dropout))
        for target in config.targets
    }
    return SlicedDelta(qkv.out_features, parts).to(qkv.weight.device)


def attach_lora(model: nn.Module, config: LoRAConfig) -> None:
    for index, block in enumerate(model.blocks):
        qkv = block.attn.qkv
        replace_module(model, f"blocks.{index}.attn.qkv", LinearWithDelta(qkv, qkv_update(qkv, config, config.dropout)))


def merge_lora(model: nn.Module) -> None:
    merge_wrappers(model, (LinearWithDelta,))


def lora_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                  pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return identity_from(trained, pretrained, {".lora_B": zeros_like_value, ".lora_A": keep_value})


register(MethodSpec(
    name="lora",
    description="LoRA: low-rank updates on the fused qkv projection (default q and v)",
    config_cls=LoRAConfig,
    attach=attach_lora,
    merge=merge_lora,
    identity=lora_identity,
    cache_point=frozen_prefix_cache_point,
))
