"""DoRA (Liu et al. 2024): weight-decomposed low-rank adaptation on the same fused-``qkv`` targets as LoRA.

Each targeted output row ``i`` of ``qkv`` becomes ``W'ᵢ = mᵢ · (W₀ + ΔW)ᵢ / ‖(W₀ + ΔW)ᵢ‖`` — a learned
magnitude ``m`` times a unit direction, the direction updated by LoRA's ``ΔW = (alpha / rank) · B A``. (The
paper writes ``W ∈ R^{d×k}`` and normalises each of the ``k`` output columns; in torch's ``[out, in]`` layout
these are the rows.) ``m`` starts at ``‖W₀ᵢ‖`` and ``B`` at zero, so the model starts as the backbone. As the
paper recommends (its Section 4.3), the norm is treated as a constant in the backward pass. Mergeable: ``W'``
is an ordinary weight. Each target has its own ``A`` and ``B`` (LoRA's ``separate`` form).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from peftlab.methods.base import PEFTLAB_FAMILY, MethodSpec, hparam, register
from peftlab.methods.layers import (
    LinearWithDelta,
    SlicedDelta,
    frozen_prefix_cache_point,
    identity_from,
    keep_value,
    merge_wrappers,
    replace_module,
    zeros_like_value,
)
from peftlab.methods.lora import TARGET_CHOICES, LoRAConfig, qkv_update


@dataclass(frozen=True)
class DoRAConfig:
    rank: int = hparam(8, "rank r of the direction update B·A", min=1)
    alpha: float = hparam(0.0, "scale numerator: update = (alpha / rank)·B·A; 0 means alpha = rank", min=0.0)
    targets: str = hparam("qv", "which of the fused q, k, v projections are decomposed", choices=TARGET_CHOICES)


class DoRALinear(LinearWithDelta):
    """A frozen ``nn.Linear`` whose rows listed in ``rows`` are re-parameterised as magnitude × direction."""

    def __init__(self, base: nn.Linear, delta: SlicedDelta) -> None:
        super().__init__(base, delta)
        rows = [torch.arange(start, start + delta.parts[name].out_features)
                for name, start in sorted(delta.starts.items(), key=lambda item: item[1])]
        self.register_buffer("rows", torch.cat(rows).to(base.weight.device), persistent=False)
        self.magnitude = nn.Parameter(self.pretrained_magnitude())

    @torch.no_grad()
    def pretrained_magnitude(self) -> torch.Tensor:
        """``‖W₀ᵢ‖`` of the targeted rows: the magnitude that gives back the frozen weight."""
        return self.weight[self.rows].norm(dim=1)

    def adapted_weight(self) -> torch.Tensor:
        direction = self.weight + self.delta.delta_weight().to(self.weight.dtype)
        norm = direction[self.rows].norm(dim=1).detach()
        factor = torch.ones_like(direction[:, 0]).index_put((self.rows,), self.magnitude / norm)
        return direction * factor.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.adapted_weight(), self.bias)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        linear.weight.copy_(self.adapted_weight())
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        linear.requires_grad_(self.weight.requires_grad)
        return linear


def attach_dora(model: nn.Module, config: DoRAConfig) -> None:
    lora_config = LoRAConfig(rank=config.rank, alpha=config.alpha, targets=config.targets, form="separate")
    for index, block in enumerate(model.blocks):
        qkv = block.attn.qkv
        replace_module(model, f"blocks.{index}.attn.qkv", DoRALinear(qkv, qkv_update(qkv, lora_config, 0.0)))


def merge_dora(model: nn.Module) -> None:
    merge_wrappers(model, (DoRALinear,))


def dora_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                  pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    magnitudes = {f"{name}.magnitude": module.pretrained_magnitude()
                  for name, module in model.named_modules() if isinstance(module, DoRALinear)}
    return identity_from(trained, pretrained, {
        ".lora_B": zeros_like_value, ".lora_A": keep_value, ".magnitude": lambda name, value: magnitudes[name]})


register(MethodSpec(
    name="dora",
    family=PEFTLAB_FAMILY,
    description="DoRA: magnitude x direction of the qkv rows, the direction updated by LoRA (default q, v)",
    config_cls=DoRAConfig,
    attach=attach_dora,
    merge=merge_dora,
    identity=dora_identity,
    cache_point=frozen_prefix_cache_point,
))
