"""Bottleneck adapters inserted sequentially after a block's sub-layers: Houlsby, Pfeiffer and the LoRA-init
Pfeiffer adapter of Mai et al.

An adapter is ``y ↦ y + scale · up(dropout(relu(down(y))))`` on the output ``y`` of the attention and/or the MLP
(before the residual addition), as in PETL_Vision's ``sequential_after`` mode, including where its block applies
drop-path in training: on the sub-layer's output and again on the adapted sum, ``x + dp(y' + adapter(y'))`` with
``y' = dp(y)`` and two independent masks (``layers.AdaptedSite``; in eval mode this is ``x + y + adapter(y)``):

- ``adapter_houlsby``: after the attention and after the MLP (two per block, ≈0.31 M at dim 8 on ViT-B/16);
- ``adapter_pfeiffer``: after the MLP only (one per block, ≈0.16 M at dim 8);
- ``adapter_lora_init``: Pfeiffer placement, LoRA-style init (down xavier, up zero: PETL_Vision's ``lora_xavier``).

The first two use PETL_Vision's ``xavier`` init for both projections (its ``rand_h_adapter`` / ``rand_p_adapter``),
so unlike the LoRA-init variant they do not start as the backbone; that difference is what the paper compares.
All three reach the backbone with the up-projection at zero (their WiSE-FT identity). Not mergeable (ReLU).

``DropoutBottleneck`` (the bottleneck with PETL_Vision's dropout after the activation) is shared with AdaptFormer
and Convpass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import (
    Activation,
    Bottleneck,
    BottleneckInit,
    adapt_site,
    frozen_prefix_cache_point,
    identity_from,
    keep_value,
    zeros_like_value,
)

ADAPTER_SITES = ("attn", "mlp")
DEFAULT_DROPOUT = 0.1  # PETL_Vision's adapters, AdaptFormer, Convpass, RepAdapter and FacT all use 0.1


class DropoutBottleneck(Bottleneck):
    """``scale · up(dropout(act(down(x))))``: ``Bottleneck`` with dropout after the activation, as every
    adapter of PETL_Vision (and AdaptFormer's) has."""

    def __init__(self, in_dim: int, hidden_dim: int, scale: float, act: Activation, init: BottleneckInit,
                 dropout: float = DEFAULT_DROPOUT) -> None:
        super().__init__(in_dim, hidden_dim, scale=scale, act=act, init=init)
        self.dropout = nn.Dropout(dropout)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck's activation before dropout (Convpass inserts its convolution here)."""
        return self.act(self.down(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(self.hidden(x))) * self.scale


def new_bottleneck(width: int, like: torch.Tensor, dim: int, scale: float, act: Activation, init: BottleneckInit,
                   dropout: float) -> DropoutBottleneck:
    """A bottleneck over ``width`` features on the device and dtype of the backbone tensor ``like``."""
    return DropoutBottleneck(width, dim, scale, act, init, dropout).to(like.device, like.dtype)


# Identity rules of a bottleneck: the up-projection (weight and bias) at zero makes it add nothing; the
# down-projection keeps its trained value (WiSE-FT then only scales the up-projection, as for LoRA's B).
BOTTLENECK_IDENTITY_RULES = {".up.weight": zeros_like_value, ".up.bias": zeros_like_value,
                             ".down.weight": keep_value, ".down.bias": keep_value}


def bottleneck_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                        pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return identity_from(trained, pretrained, BOTTLENECK_IDENTITY_RULES)


@dataclass(frozen=True)
class AdapterConfig:
    dim: int = hparam(8, "bottleneck width (the paper's grid: 4, 8, 16, 32; LoRA-init also 64)", min=1)
    scale: float = hparam(0.1, "fixed factor on the adapter's output (grid: 0.01, 0.1, 1, 10)", min=0.0,
                          exclusive_min=True)
    dropout: float = hparam(DEFAULT_DROPOUT, "dropout after the activation (training only)", min=0.0, max=0.9)


def attach_sequential_adapters(model: nn.Module, config: AdapterConfig, *, sites: tuple[str, ...],
                               init: BottleneckInit) -> None:
    """Wrap each block's ``attn`` and/or ``mlp`` (``sites``) so a ReLU bottleneck adapts its output."""
    for block in model.blocks:
        for site in sites:
            output = block.attn.proj if site == "attn" else block.mlp.fc2
            adapter = new_bottleneck(output.out_features, output.weight, config.dim, config.scale, "relu", init,
                                     config.dropout)
            adapt_site(block, site, adapter, "after")


VARIANTS = {
    "adapter_houlsby": (ADAPTER_SITES, "xavier_both",
                        "Houlsby adapter: ReLU bottleneck after attention and after MLP (random init)"),
    "adapter_pfeiffer": (("mlp",), "xavier_both", "Pfeiffer adapter: ReLU bottleneck after the MLP (random init)"),
    "adapter_lora_init": (("mlp",), "xavier",
                          "Pfeiffer adapter with LoRA-style init (down xavier, up zero): starts as the backbone"),
}

for _name, (_sites, _init, _description) in VARIANTS.items():
    register(MethodSpec(
        name=_name,
        description=_description,
        config_cls=AdapterConfig,
        attach=partial(attach_sequential_adapters, sites=_sites, init=_init),
        identity=bottleneck_identity,
        cache_point=frozen_prefix_cache_point,
    ))
