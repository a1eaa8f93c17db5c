"""RepAdapter (Luo et al. 2023): a linear adapter in front of each block's ``attn.qkv`` and ``mlp.fc1``, on their
(normed) input: ``x ↦ x + scale · up(dropout(down(x)))`` with a dense ``down`` (width → ``dim``) and a group-wise
``up`` (``dim`` → width in ``groups`` independent groups, PETL_Vision's ``repadapter_group`` 2). No activation, so
the adapter is an affine map ``x ↦ M x + c`` that folds exactly into the following linear layer (re-parameterisation):
``W' = W M``, ``b' = W c + b``. The merged model is a plain timm ViT with the backbone's parameter count.

Init as PETL_Vision (``repadapter_init: lora_xavier``): ``down`` xavier with zero bias, ``up`` zero, so the model
starts as the backbone; ``up`` at zero is also its WiSE-FT identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.adapter import BOTTLENECK_IDENTITY_RULES, DEFAULT_DROPOUT
from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import frozen_prefix_cache_point, identity_from, merge_wrappers, replace_module

TARGETS = ("attn.qkv", "mlp.fc1")


class GroupedLinear(nn.Module):
    """A linear map in ``groups`` independent blocks (a 1×1 grouped convolution over tokens): input group ``g``
    produces output group ``g`` only. ``weight`` is ``[out, in / groups]``, as a ``Conv1d``'s without the kernel."""

    def __init__(self, in_features: int, out_features: int, groups: int) -> None:
        super().__init__()
        if in_features % groups or out_features % groups:
            raise ValueError(f"groups={groups} must divide in_features={in_features} and out_features={out_features}")
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        self.weight = nn.Parameter(torch.zeros(out_features, in_features // groups))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped_input = x.reshape(*x.shape[:-1], self.groups, self.in_features // self.groups)
        grouped_weight = self.weight.view(self.groups, self.out_features // self.groups, -1)
        out = torch.einsum("...gi,goi->...go", grouped_input, grouped_weight)
        return out.reshape(*x.shape[:-1], self.out_features) + self.bias

    def dense_weight(self) -> torch.Tensor:
        """The equivalent block-diagonal ``[out, in]`` matrix."""
        blocks = self.weight.view(self.groups, self.out_features // self.groups, -1).unbind(0)
        return torch.block_diag(*blocks)


class RepAdapter(nn.Module):
    """``x + scale · up(dropout(down(x)))``, linear, hence the affine map ``x ↦ M x + c`` of ``affine()``."""

    def __init__(self, width: int, dim: int, groups: int, scale: float, dropout: float = DEFAULT_DROPOUT) -> None:
        super().__init__()
        self.scale = float(scale)
        self.down = nn.Linear(width, dim)
        self.dropout = nn.Dropout(dropout)
        self.up = GroupedLinear(dim, width, groups)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.dropout(self.down(x))) * self.scale

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M, c)`` with ``forward(x) = x Mᵀ + c`` in eval mode: ``M = I + s·U D``, ``c = s·(U d + u)``."""
        up = self.up.dense_weight()
        matrix = torch.eye(up.shape[0], dtype=up.dtype, device=up.device) + self.scale * up @ self.down.weight
        offset = self.scale * (up @ self.down.bias + self.up.bias)
        return matrix, offset


class InputAdaptedLinear(nn.Module):
    """``linear(adapter(x))`` for an affine ``adapter``; keeps the linear's ``weight``/``bias`` under its own
    names (state-dict keys unchanged) and folds the adapter into them on ``merged()``."""

    def __init__(self, base: nn.Linear, adapter: RepAdapter) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.adapter(x), self.weight, self.bias)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """``W (M x + c) + b = (W M) x + (W c + b)`` as a plain ``nn.Linear`` (frozen like the base)."""
        matrix, offset = (tensor.double() for tensor in self.adapter.affine())
        weight = self.weight.double()  # fold in double precision: the merged layer is then exact to its dtype
        linear = nn.Linear(self.in_features, self.out_features, device=self.weight.device, dtype=self.weight.dtype)
        linear.weight.copy_(weight @ matrix)
        bias = weight @ offset
        if self.bias is not None:
            bias = bias + self.bias.double()
        linear.bias.copy_(bias)
        linear.requires_grad_(self.weight.requires_grad)
        return linear


@dataclass(frozen=True)
class RepAdapterConfig:
    dim: int = hparam(8, "bottleneck width (the paper's grid: 8, 16, 32)", min=1)
    scale: float = hparam(1.0, "fixed factor on the adapter's update (grid: 0.1, 0.5, 1, 5, 10)", min=0.0,
                          exclusive_min=True)
    groups: int = hparam(2, "groups of the up-projection (the paper: 2)", min=1)
    dropout: float = hparam(DEFAULT_DROPOUT, "dropout between down and up (training only)", min=0.0, max=0.9)


def attach_repadapter(model: nn.Module, config: RepAdapterConfig) -> None:
    width = model.embed_dim
    if config.dim % config.groups or width % config.groups:
        raise PeftlabError(f"repadapter: groups={config.groups} must divide dim={config.dim} "
                           f"and the embedding width {width}")
    for index, block in enumerate(model.blocks):
        for target in TARGETS:
            linear = block.get_submodule(target)
            adapter = RepAdapter(width, config.dim, config.groups, config.scale, config.dropout)
            adapter.to(linear.weight.device, linear.weight.dtype)
            replace_module(model, f"blocks.{index}.{target}", InputAdaptedLinear(linear, adapter))


def merge_repadapter(model: nn.Module) -> None:
    merge_wrappers(model, (InputAdaptedLinear,))


def repadapter_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                        pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return identity_from(trained, pretrained, BOTTLENECK_IDENTITY_RULES)


register(MethodSpec(
    name="repadapter",
    description="RepAdapter: linear group-wise adapter before qkv and fc1, folded into them on merge",
    config_cls=RepAdapterConfig,
    attach=attach_repadapter,
    merge=merge_repadapter,
    identity=repadapter_identity,
    cache_point=frozen_prefix_cache_point,
))
