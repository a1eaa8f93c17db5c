"""Partial fine-tuning: the last ``k`` blocks train (all of each block, or only its attention or its MLP).

Exactly the parameters of those blocks (or sub-layers) train, as PETL_Vision's ``block_index`` /
``attention_index`` / ``mlp_index`` select them (its configs ``block_11``, ``attn_full_1011``, ``mlp_full_11``):
the final norm after the blocks stays frozen. The first ``depth - k`` blocks are frozen, so their output can be
cached (``CachePoint("blocks", depth - k)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.base import CachePoint, MethodSpec, hparam, register
from peftlab.methods.linear import nothing_to_merge


@dataclass(frozen=True)
class PartialConfig:
    blocks: int = hparam(1, "number of last blocks that train", min=1)
    part: str = hparam("all", "what trains in those blocks", choices=("all", "attn", "mlp"))


def _check_depth(model: nn.Module, config: PartialConfig) -> int:
    depth = len(model.blocks)
    if config.blocks > depth:
        raise PeftlabError(f"partial: blocks={config.blocks} exceeds the model depth {depth}")
    return depth


def attach_partial(model: nn.Module, config: PartialConfig) -> None:
    depth = _check_depth(model, config)
    for block in model.blocks[depth - config.blocks:]:
        (block if config.part == "all" else getattr(block, config.part)).requires_grad_(True)


def partial_cache_point(model: nn.Module, config: PartialConfig) -> CachePoint:
    return CachePoint("blocks", _check_depth(model, config) - config.blocks)


register(MethodSpec(
    name="partial",
    description="partial fine-tuning: the last k blocks (or their attention / MLP) train",
    config_cls=PartialConfig,
    attach=attach_partial,
    merge=nothing_to_merge,
    cache_point=partial_cache_point,
))
