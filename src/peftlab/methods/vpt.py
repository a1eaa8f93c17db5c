"""Visual Prompt Tuning (Jia et al. 2022): ``num_tokens`` learned prompt tokens inserted after the class (and
register) tokens. ``vpt_shallow`` inserts them once, before block 0, and they then flow through every block;
``vpt_deep`` gives each block its own prompts, which replace the previous block's prompt outputs.

Prompts start uniform in ``±sqrt(6 / (3·patch² + dim))`` (VPT's xavier-style init) and pass through dropout
(0.1, as PETL_Vision). The model's ``num_prefix_tokens`` grows by ``num_tokens`` so timm's pooling skips the
prompts (class-token pooling reads position 0 anyway). Prompts always change the function: no identity state,
not mergeable.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import frozen_prefix_cache_point, replace_module


@dataclass(frozen=True)
class VPTConfig:
    num_tokens: int = hparam(10, "number of prompt tokens (per block for vpt_deep)", min=1)
    dropout: float = hparam(0.1, "dropout on the prompts (training only)", min=0.0, max=0.9)


class PromptedBlock(nn.Module):
    """Runs ``block`` on the sequence with this block's prompts placed after the first ``prefix_tokens``
    tokens: inserted, or replacing the ``num_tokens`` tokens there when ``replace_previous``."""

    def __init__(self, block: nn.Module, prompts: nn.Parameter, prefix_tokens: int, replace_previous: bool,
                 dropout: float) -> None:
        super().__init__()
        self.block = block
        self.prompts = prompts
        self.prefix_tokens = prefix_tokens
        self.replace_previous = replace_previous
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        prompts = self.dropout(self.prompts).expand(x.shape[0], -1, -1).to(x.dtype)
        skip = self.prompts.shape[1] if self.replace_previous else 0
        x = torch.cat([x[:, :self.prefix_tokens], prompts, x[:, self.prefix_tokens + skip:]], dim=1)
        return self.block(x, *args, **kwargs)


def prompt_init_bound(model: nn.Module) -> float:
    patch_area = math.prod(model.patch_embed.patch_size)
    return math.sqrt(6.0 / float(3 * patch_area + model.embed_dim))


def attach_vpt(model: nn.Module, config: VPTConfig, deep: bool) -> None:
    if getattr(model, "dynamic_img_size", False):
        raise PeftlabError("vpt: backbones with dynamic_img_size are not supported (prompts would shift the "
                           "positional-embedding resampling)")
    prefix_tokens, bound = model.num_prefix_tokens, prompt_init_bound(model)
    device = model.pos_embed.device if model.pos_embed is not None else model.patch_embed.proj.weight.device
    for index in range(len(model.blocks) if deep else 1):
        prompts = nn.Parameter(torch.empty(1, config.num_tokens, model.embed_dim, device=device))
        nn.init.uniform_(prompts, -bound, bound)
        block = PromptedBlock(model.blocks[index], prompts, prefix_tokens, replace_previous=index > 0,
                              dropout=config.dropout)
        replace_module(model, f"blocks.{index}", block)
    model.num_prefix_tokens = prefix_tokens + config.num_tokens


def no_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                pretrained: Mapping[str, torch.Tensor]) -> None:
    return None


for _name, _deep, _where in (("vpt_shallow", False, "before block 0"), ("vpt_deep", True, "before every block")):
    register(MethodSpec(
        name=_name,
        description=f"VPT-{'deep' if _deep else 'shallow'}: learned prompt tokens inserted {_where}",
        config_cls=VPTConfig,
        attach=functools.partial(attach_vpt, deep=_deep),
        identity=no_identity,
        cache_point=frozen_prefix_cache_point,
    ))
