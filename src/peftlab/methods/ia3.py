"""(IA)³ (Liu et al. 2022): learned vectors that rescale the attention keys and values and the MLP's hidden
activation, ``k ⊙ l_k``, ``v ⊙ l_v``, ``fc2(l_ff ⊙ act(fc1 x))``, all starting at one (the backbone).

On timm's fused ``qkv`` the key and value rows of its output are scaled; ``l_ff`` scales ``fc2``'s input.
Mergeable: the vectors fold into the rows of ``qkv`` and the columns of ``fc2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from peftlab.methods.base import PEFTLAB_FAMILY, MethodSpec, register
from peftlab.methods.layers import (
    InputScaled,
    Modulated,
    PartialScale,
    frozen_prefix_cache_point,
    identity_from,
    merge_wrappers,
    ones_like_value,
    replace_module,
)


@dataclass(frozen=True)
class IA3Config:
    """No hyper-parameters beyond the shared learning rate and weight decay."""


def attach_ia3(model: nn.Module, config: IA3Config) -> None:
    for index, block in enumerate(model.blocks):
        qkv, fc2 = block.attn.qkv, block.mlp.fc2
        rows = qkv.out_features // 3
        key_value_scale = PartialScale(qkv.out_features, start=rows, length=2 * rows).to(qkv.weight.device)
        replace_module(model, f"blocks.{index}.attn.qkv", Modulated(qkv, key_value_scale))
        replace_module(model, f"blocks.{index}.mlp.fc2", InputScaled(fc2).to(fc2.weight.device))


def merge_ia3(model: nn.Module) -> None:
    merge_wrappers(model, (Modulated, InputScaled))


def ia3_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                 pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return identity_from(trained, pretrained, {".scale": ones_like_value})


register(MethodSpec(
    name="ia3",
    family=PEFTLAB_FAMILY,
    description="(IA)3: learned vectors scaling keys, values and the MLP hidden activation",
    config_cls=IA3Config,
    attach=attach_ia3,
    merge=merge_ia3,
    identity=ia3_identity,
    cache_point=frozen_prefix_cache_point,
))
