"""DiffFit (Xie et al. 2023): biases, LayerNorms and a learned per-channel scale ``γ`` on each block's
attention and MLP branch, ``x + γ₁ ⊙ attn(norm1(x))``, ``x + γ₂ ⊙ mlp(norm2(x))``, with ``γ`` starting at one
(the pretrained model), as in PETL_Vision.

``γ`` lives in timm's layer-scale slots (``blocks.i.ls1.gamma``/``ls2.gamma``); merging folds it into the rows of
``attn.proj`` and ``mlp.fc2`` and puts the slots back to identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from timm.layers import LayerScale
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.base import MethodSpec, register
from peftlab.methods.bitfit import unfreeze_biases
from peftlab.methods.layernorm import unfreeze_layernorms
from peftlab.methods.layers import fold_scale_shift, frozen_prefix_cache_point, identity_from, ones_like_value

BRANCHES = (("ls1", "attn", "proj"), ("ls2", "mlp", "fc2"))


@dataclass(frozen=True)
class DiffFitConfig:
    """No hyper-parameters beyond the shared learning rate and weight decay."""


def attach_difffit(model: nn.Module, config: DiffFitConfig) -> None:
    unfreeze_biases(model)
    unfreeze_layernorms(model)
    for index, block in enumerate(model.blocks):
        for slot, _, _ in BRANCHES:
            if not isinstance(getattr(block, slot), nn.Identity):
                raise PeftlabError(f"difffit: blocks.{index}.{slot} is already a layer scale; "
                                   "DiffFit needs a backbone without layer scale")
            dim = block.norm1.normalized_shape[0]
            setattr(block, slot, LayerScale(dim, init_values=1.0, device=block.norm1.weight.device))


@torch.no_grad()
def merge_difffit(model: nn.Module) -> None:
    for block in model.blocks:
        for slot, branch, output in BRANCHES:
            fold_scale_shift(getattr(getattr(block, branch), output), getattr(block, slot).gamma)
            setattr(block, slot, nn.Identity())


def difffit_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                     pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return identity_from(trained, pretrained, {".gamma": ones_like_value})


register(MethodSpec(
    name="difffit",
    description="DiffFit: biases, LayerNorms and per-block scales on the attention and MLP branches",
    config_cls=DiffFitConfig,
    attach=attach_difffit,
    merge=merge_difffit,
    identity=difffit_identity,
    cache_point=frozen_prefix_cache_point,
))
