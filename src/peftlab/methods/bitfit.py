"""BitFit (Ben Zaken et al. 2022): only the bias terms train — every parameter named ``bias`` (linear,
convolution and LayerNorm biases), as in PETL_Vision (≈0.10 M on ViT-B/16)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.methods.base import MethodSpec, register
from peftlab.methods.layers import frozen_prefix_cache_point
from peftlab.methods.linear import nothing_to_merge


@dataclass(frozen=True)
class BitFitConfig:
    """No hyper-parameters beyond the shared learning rate and weight decay."""


def unfreeze_biases(model: nn.Module) -> None:
    for name, parameter in model.named_parameters():
        if name.rsplit(".", 1)[-1] == "bias":
            parameter.requires_grad_(True)


def attach_bitfit(model: nn.Module, config: BitFitConfig) -> None:
    unfreeze_biases(model)


register(MethodSpec(
    name="bitfit",
    description="BitFit: all bias terms train",
    config_cls=BitFitConfig,
    attach=attach_bitfit,
    merge=nothing_to_merge,
    cache_point=frozen_prefix_cache_point,
))
