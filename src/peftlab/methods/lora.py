"""LoRA (Hu et al. 2022) on timm's fused ``attn.qkv``: a low-rank update ``(alpha / rank) · B A`` on the output rows
of the chosen projections, ``A`` kaiming-uniform and ``B`` zero so the model starts as the backbone, dropout
(0.1) on the update's input in training. With ``alpha`` = rank the update's scale is 1, as PETL_Vision's
``merge_factor`` 1.

Two forms (``form``), with the same count at ``targets=qkv`` / ``qv`` (r·4d per block, 294,912 at r = 8 on ViT-B/16):

- ``fused`` (the default, PETL_Vision's ``model/lora.py``): one ``A`` [r, d] shared by every targeted projection
  and one ``B`` over all their rows; at ``targets=qkv`` (the default) ``A`` [r, d] and ``B`` [3d, r] on the whole
  fused ``qkv``, so q, k and v are all updated from one ``A`` and one dropout mask — the function of huggingface
  peft's LoRA with ``target_modules=["qkv"]``.
- ``separate`` (the LoRA paper): an ``A`` and a ``B`` per targeted projection, each with its own dropout; the
  paper's choice is ``targets=qv``.

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
    RowScatter,
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
FORMS = ("fused", "separate")


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = hparam(8, "rank r of the update B·A", min=1)
    alpha: float = hparam(0.0, "scale numerator: update = (alpha / rank)·B·A; 0 means alpha = rank", min=0.0)
    targets: str = hparam("qkv", "which of the fused q, k, v projections get an update", choices=TARGET_CHOICES)
    dropout: float = hparam(0.1, "dropout on the update's input (training only)", min=0.0, max=0.9)
    form: str = hparam("fused", "fused: one A shared by the targets and one B over their rows (PETL_Vision; "
                       "huggingface peft on qkv); separate: an A and a B per target (the LoRA paper)", choices=FORMS)

    def effective_alpha(self) -> float:
        return self.alpha if self.alpha > 0 else float(self.rank)


def qkv_update(qkv: nn.Linear, config: LoRAConfig, dropout: float) -> nn.Module:
    """The update of ``qkv``'s targeted rows: one ``LowRankUpdate`` over all of them (``fused``; placed on their
    rows by a ``RowScatter`` unless they are all of ``qkv``), or a ``SlicedDelta`` of one per target."""
    rows = qkv.out_features // 3
    starts = [PROJECTIONS.index(target) * rows for target in config.targets]
    alpha = config.effective_alpha()
    if config.form == "separate":
        parts = {target: (start, LowRankUpdate(qkv.in_features, rows, config.rank, alpha, dropout))
                 for target, start in zip(config.targets, starts, strict=True)}
        return SlicedDelta(qkv.out_features, parts).to(qkv.weight.device)
    update = LowRankUpdate(qkv.in_features, rows * len(starts), config.rank, alpha, dropout)
    if len(starts) == len(PROJECTIONS):
        return update.to(qkv.weight.device)
    targeted = torch.cat([torch.arange(start, start + rows) for start in starts])
    return RowScatter(update, qkv.out_features, targeted).to(qkv.weight.device)


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
    description="LoRA: low-rank update of the fused qkv projection (default: one A and B on q, k, v, as PETL_Vision)",
    config_cls=LoRAConfig,
    attach=attach_lora,
    merge=merge_lora,
    identity=lora_identity,
    cache_point=frozen_prefix_cache_point,
))
