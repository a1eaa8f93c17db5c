"""Convpass (Jie & Deng 2022): a convolutional bypass parallel to each block's attention and MLP.

The branch reads the same (normed) input as the sub-layer it sits beside (PETL_Vision ``ft_*_ln: after``) and,
as in PETL_Vision's and Convpass's code, gets its own drop-path mask in training:
``x + dp(attn(norm1(x))) + dp(branch(norm1(x)))``, likewise beside the MLP (``layers.AdaptedSite``, placement
``beside``). The branch itself is
``down`` (a 1×1 projection to ``dim`` channels) → QuickGELU → the patch tokens laid out on their 2-D grid and
mixed by a 3×3 convolution (padding 1) → QuickGELU → dropout → ``up`` → ``× scale``. Each prefix token (the class
token) goes through the same convolution as a 1×1 image, so only the kernel's centre tap touches it — Convpass's
own treatment of the class token.

Init as PETL_Vision (``convpass_init: lora_xavier``): ``down`` xavier with zero bias, ``up`` zero, so the model
starts as the backbone. The 3×3 kernel is xavier-uniform (``xavier_init=true``) or the identity on the centre
tap (``false``, Convpass's default); its bias is zero. Not mergeable (nonlinear).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.adapter import BOTTLENECK_IDENTITY_RULES, DEFAULT_DROPOUT, DropoutBottleneck
from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import (
    adapt_site,
    frozen_prefix_cache_point,
    identity_from,
    keep_value,
)

SITES = ("attn", "mlp")


class ConvpassBranch(DropoutBottleneck):
    """``scale · up(dropout(gelu(conv3x3(gelu(down(x))))))`` with the convolution over the patch grid."""

    def __init__(self, in_dim: int, hidden_dim: int, scale: float, grid_size: tuple[int, int],
                 num_prefix_tokens: int, xavier_conv: bool, dropout: float = DEFAULT_DROPOUT) -> None:
        super().__init__(in_dim, hidden_dim, scale=scale, act="quick_gelu", init="xavier", dropout=dropout)
        self.grid_size = tuple(grid_size)
        self.num_prefix_tokens = num_prefix_tokens
        self.conv = nn.Conv2d(hidden_dim, hidden_dim, kernel_size=3, padding=1)
        self._init_conv(xavier_conv)

    @torch.no_grad()
    def _init_conv(self, xavier: bool) -> None:
        if xavier:
            nn.init.xavier_uniform_(self.conv.weight)
        else:
            nn.init.zeros_(self.conv.weight)
            channels = self.conv.out_channels
            self.conv.weight[:, :, 1, 1] = torch.eye(channels, dtype=self.conv.weight.dtype,
                                                     device=self.conv.weight.device)
        nn.init.zeros_(self.conv.bias)

    def mix_spatially(self, hidden: torch.Tensor) -> torch.Tensor:
        """The 3×3 convolution over ``[B, N, dim]`` tokens: patches on their grid, prefix tokens as 1×1 maps."""
        batch, tokens, channels = hidden.shape
        height, width = self.grid_size
        prefix_count = self.num_prefix_tokens
        if tokens != prefix_count + height * width:
            raise ValueError(f"Convpass expects {prefix_count} prefix + {height}×{width} patch tokens, got {tokens}")
        prefix, patches = hidden[:, :prefix_count], hidden[:, prefix_count:]
        grid = patches.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        patches = self.conv(grid).permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        prefix = self.conv(prefix.reshape(batch * prefix_count, channels, 1, 1)).reshape(batch, prefix_count, channels)
        return torch.cat([prefix, patches], dim=1)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.mix_spatially(self.act(self.down(x))))


@dataclass(frozen=True)
class ConvpassConfig:
    dim: int = hparam(8, "bottleneck channels (the paper's grid: 8, 16)", min=1)
    scale: float = hparam(10.0, "fixed factor on the branch's output (grid: 0.01, 0.1, 1, 10, 100)", min=0.0,
                          exclusive_min=True)
    xavier_init: bool = hparam(False, "xavier-uniform 3×3 kernel (else identity on the centre tap)")
    dropout: float = hparam(DEFAULT_DROPOUT, "dropout before the up-projection (training only)", min=0.0, max=0.9)


def attach_convpass(model: nn.Module, config: ConvpassConfig) -> None:
    if getattr(model, "dynamic_img_size", False):
        raise PeftlabError("convpass: needs a fixed patch grid; the backbone has dynamic_img_size=True")
    grid_size = model.patch_embed.grid_size
    for block in model.blocks:
        like = block.attn.qkv.weight
        for site in SITES:
            branch = ConvpassBranch(model.embed_dim, config.dim, config.scale, grid_size, model.num_prefix_tokens,
                                    config.xavier_init, config.dropout).to(like.device, like.dtype)
            adapt_site(block, site, branch, "beside")


def convpass_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                      pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Up-projection at zero; the down-projection and the convolution keep their trained values."""
    return identity_from(trained, pretrained, {**BOTTLENECK_IDENTITY_RULES, ".conv.weight": keep_value,
                                               ".conv.bias": keep_value})


register(MethodSpec(
    name="convpass",
    description="Convpass: convolutional bypass (down, 3×3 conv on the patch grid, up) parallel to attention and MLP",
    config_cls=ConvpassConfig,
    attach=attach_convpass,
    identity=convpass_identity,
    cache_point=frozen_prefix_cache_point,
))
