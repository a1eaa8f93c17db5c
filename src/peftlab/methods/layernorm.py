"""LayerNorm tuning: only the weights and biases of the LayerNorms train (≈0.04 M on ViT-B/16)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.methods.base import MethodSpec, register
from peftlab.methods.layers import frozen_prefix_cache_point
from peftlab.methods.linear import nothing_to_merge


@dataclass(frozen=True)
class LayerNormConfig:
    """No hyper-parameters beyond the shared learning rate and weight decay."""


def unfreeze_layernorms(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.requires_grad_(True)


def attach_layernorm(model: nn.Module, config: LayerNormConfig) -> None:
    unfreeze_layernorms(model)


register(MethodSpec(
    name="layernorm",
    description="LayerNorm tuning: all LayerNorm weights and biases train",
    config_cls=LayerNormConfig,
    attach=attach_layernorm,
    merge=nothing_to_merge,
    cache_point=frozen_prefix_cache_point,
))
