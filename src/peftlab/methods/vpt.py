"""Visual Prompt Tuning (Jia et al. 2022): ``num_tokens`` learned prompt tokens inserted after the class (and
register) tokens before a block.

- ``vpt_deep``: every block has its own prompts; they join the sequence before the block and leave it after.
- ``vpt_shallow``: one set of prompts before block 0. ``form=first_block`` (the default) is PETL_Vision's
  (its ``VisionTransformerPETL.forward_features`` drops the prompt outputs after every prompted block, and the
  shallow mode prompts block 0 only): the prompts take part in block 0 and leave after it. ``form=persistent``
  is the VPT paper's: the prompts stay in the sequence through every block (``num_prefix_tokens`` grows so
  timm's pooling skips them), about 2× the compute at 200 tokens.

PETL_Vision places the prompts before the class token, peftlab after it; a ViT block (no positional term inside
the blocks) is equivariant to token order, so the functions are the same. Prompts start uniform in
``±sqrt(6 / (3·patch² + dim))`` (VPT's xavier-style init) and pass through dropout (0.1, one mask shared by the
batch, as PETL_Vision). Prompts always change the function: no identity state, not mergeable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import frozen_prefix_cache_point, replace_module

SHALLOW_FORMS = ("first_block", "persistent")


@dataclass(frozen=True)
class VPTConfig:
    num_tokens: int = hparam(10, "number of prompt tokens (per block for vpt_deep)", min=1)
    dropout: float = hparam(0.1, "dropout on the prompts (training only)", min=0.0, max=0.9)


@dataclass(frozen=True)
class VPTShallowConfig(VPTConfig):
    form: str = hparam("first_block", "first_block: the prompts leave the sequence after block 0 (PETL_Vision); "
                       "persistent: they stay through every block (the VPT paper)", choices=SHALLOW_FORMS)


class PromptedBlock(nn.Module):
    """Runs ``block`` with its prompts inserted after the first ``prefix_tokens`` tokens; the prompts' outputs
    leave the sequence after the block unless ``keep``."""

    def __init__(self, block: nn.Module, prompts: nn.Parameter, prefix_tokens: int, keep: bool,
                 dropout: float) -> None:
        super().__init__()
        self.block = block
        self.prompts = prompts
        self.prefix_tokens = prefix_tokens
        self.keep = keep
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        prompts = self.dropout(self.prompts).expand(x.shape[0], -1, -1).to(x.dtype)
        prefix = self.prefix_tokens
        out = self.block(torch.cat([x[:, :prefix], prompts, x[:, prefix:]], dim=1), *args, **kwargs)
        if self.keep:
            return out
        return torch.cat([out[:, :prefix], out[:, prefix + prompts.shape[1]:]], dim=1)


def prompt_init_bound(model: nn.Module) -> float:
    patch_area = math.prod(model.patch_embed.patch_size)
    return math.sqrt(6.0 / float(3 * patch_area + model.embed_dim))


def attach_vpt(model: nn.Module, config: VPTConfig, *, blocks: int, keep: bool) -> None:
    """Prompts for the first ``blocks`` blocks; ``keep``: they stay in the sequence after their block."""
    if getattr(model, "dynamic_img_size", False):
        raise PeftlabError("vpt: backbones with dynamic_img_size are not supported (prompts would shift the "
                           "positional-embedding resampling)")
    prefix_tokens, bound = model.num_prefix_tokens, prompt_init_bound(model)
    device = model.pos_embed.device if model.pos_embed is not None else model.patch_embed.proj.weight.device
    for index in range(blocks):
        prompts = nn.Parameter(torch.empty(1, config.num_tokens, model.embed_dim, device=device))
        nn.init.uniform_(prompts, -bound, bound)
        block = PromptedBlock(model.blocks[index], prompts, prefix_tokens, keep=keep, dropout=config.dropout)
        replace_module(model, f"blocks.{index}", block)
    if keep:
        model.num_prefix_tokens = prefix_tokens + config.num_tokens


def attach_vpt_shallow(model: nn.Module, config: VPTShallowConfig) -> None:
    attach_vpt(model, config, blocks=1, keep=config.form == "persistent")


def attach_vpt_deep(model: nn.Module, config: VPTConfig) -> None:
    attach_vpt(model, config, blocks=len(model.blocks), keep=False)


def no_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                pretrained: Mapping[str, torch.Tensor]) -> None:
    return None


register(MethodSpec(
    name="vpt_shallow",
    description="VPT-shallow: learned prompt tokens for block 0 (default: dropped after it, as PETL_Vision)",
    config_cls=VPTShallowConfig,
    attach=attach_vpt_shallow,
    identity=no_identity,
    cache_point=frozen_prefix_cache_point,
))
register(MethodSpec(
    name="vpt_deep",
    description="VPT-deep: learned prompt tokens for every block, each set dropped after its block",
    config_cls=VPTConfig,
    attach=attach_vpt_deep,
    identity=no_identity,
    cache_point=frozen_prefix_cache_point,
))
