"""SSF (Lian et al. 2022): scale-and-shift the features, ``y ↦ γ ⊙ y + β`` with ``γ ~ N(1, 0.02)`` and
``β ~ N(0, 0.02)``, after the patch embedding, after every LayerNorm (the blocks' norm1/norm2, the final norm)
and after each block's ``attn.qkv``, ``attn.proj``, ``mlp.fc1`` and ``mlp.fc2`` — the places of the SSF paper and
PETL_Vision (≈0.21 M on ViT-B/16). A pre-norm (CLIP's ``norm_pre``) is not modulated, as in PETL_Vision (whose
CLIP ViT has one but no SSF after it).

Each modulation follows a linear map, so merging folds it into the preceding Linear/LayerNorm/Conv2d; a
bias-free patch embedding (CLIP) takes the shift into the patch rows of the positional embedding instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import (
    Modulated,
    ScaleShift,
    fold_scale_shift,
    frozen_prefix_cache_point,
    identity_from,
    merge_wrappers,
    ones_like_value,
    replace_module,
    zeros_like_value,
)

BLOCK_LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
PATCH_PROJ = "patch_embed.proj"


@dataclass(frozen=True)
class SSFConfig:
    init_std: float = hparam(0.02, "std of the initial scale (mean 1) and shift (mean 0)", min=0.0)


def ssf_targets(model: nn.Module) -> list[tuple[str, int, int]]:
    """``(module name, channels, channel dim)`` of every module whose output SSF modulates."""
    targets = [(PATCH_PROJ, model.patch_embed.proj.out_channels, 1)]
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) and ".attn." not in f".{name}." and name != "norm_pre":
            targets.append((name, module.normalized_shape[0], -1))
    for index, block in enumerate(model.blocks):
        for name in BLOCK_LINEARS:
            targets.append((f"blocks.{index}.{name}", block.get_submodule(name).out_features, -1))
    return targets


def attach_ssf(model: nn.Module, config: SSFConfig) -> None:
    for name, channels, channel_dim in ssf_targets(model):
        base = model.get_submodule(name)
        device = next(base.parameters()).device
        modulation = ScaleShift(channels, init_std=config.init_std, channel_dim=channel_dim).to(device)
        replace_module(model, name, Modulated(base, modulation))


@torch.no_grad()
def merge_ssf(model: nn.Module) -> None:
    patch = model.get_submodule(PATCH_PROJ)
    if patch.base.bias is None:
        # x = [prefix; conv(img)·γ + β] + pos: β goes to the positional embedding's patch rows.
        fold_scale_shift(patch.base, patch.modulation.scale)
        first_patch_row = 0 if model.no_embed_class else model.num_prefix_tokens
        model.pos_embed[:, first_patch_row:] += patch.modulation.shift.to(model.pos_embed)
        replace_module(model, PATCH_PROJ, patch.base)
    merge_wrappers(model, (Modulated,))


def ssf_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                 pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return identity_from(trained, pretrained, {".modulation.scale": ones_like_value,
                                               ".modulation.shift": zeros_like_value})


register(MethodSpec(
    name="ssf",
    description="SSF: learned scale and shift after the patch embedding, norms, qkv, proj, fc1 and fc2",
    config_cls=SSFConfig,
    attach=attach_ssf,
    merge=merge_ssf,
    identity=ssf_identity,
    cache_point=frozen_prefix_cache_point,
))
