"""Visual Query Tuning (Tu et al. 2023): per block, ``num_tokens`` learned query tokens that read the block's
tokens without changing them; their outputs from every block reach the head beside the final class feature.

In block ``l`` the queries are appended to the tokens and the block runs with an attention mask under which
no token attends to a query: the original tokens compute exactly what the backbone computes, and each query
attends to the original tokens only (keys and values from them, as VQT's and PETL_Vision's attention), then
goes through the block's MLP. Query outputs are carried to the end of the sequence (so timm's forward, the
frozen-prefix cache and the head path all stay timm's), the final norm is applied to the original tokens only,
and the model's ``attn_pool`` slot holds ``QueryFeatures``, which builds the head's input:

- ``combine=concat`` (VQT): ``[cls, q_1, …, q_L]`` with each block's ``T`` outputs flattened, width ``C·(1+L·T)``;
- ``combine=layer_weighted`` (VQT's compression): per block a learned weighted sum of its ``T`` outputs (weights
  start at one), width ``C·(1+L)``.

Each part is L2-normalised (``normalize``, VQT's and PETL_Vision's default). The head is replaced by a linear
layer of that input width (timm's init), so ``peftlab params`` counts it and checkpoints load into a freshly
attached model. Queries start as VPT's prompts (uniform, dropout 0.1). No identity state (the head's input
changes), not mergeable.

PETL_Vision's own VQT differs: it sums all parts with one learned weight each into a ``C``-wide feature, and it
reads the first tokens *after* dropping the queries (the class and first patch tokens, not the query outputs);
we follow the VQT paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import global_pool_nlc
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.base import MethodSpec, hparam, register
from peftlab.methods.layers import frozen_prefix_cache_point, replace_module
from peftlab.methods.vpt import no_identity, prompt_init_bound

COMBINE_CHOICES = ("concat", "layer_weighted")


class QueryBlock(nn.Module):
    """Runs ``block`` on the original tokens plus this block's queries; the queries' outputs join the outputs of
    the ``index`` earlier blocks' queries at the end of the sequence."""

    def __init__(self, block: nn.Module, queries: nn.Parameter, index: int, dropout: float) -> None:
        super().__init__()
        self.block = block
        self.query_tokens = queries
        self.index = index
        self.dropout = nn.Dropout(dropout)

    @property
    def num_tokens(self) -> int:
        return self.query_tokens.shape[1]

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
                ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("VQT sets its own attention mask; an external attn_mask/is_causal is not supported")
        batch, length, _ = x.shape
        count = length - self.index * self.num_tokens  # original tokens
        tokens, earlier_outputs = x[:, :count], x[:, count:]
        queries = self.dropout(self.query_tokens).expand(batch, -1, -1).to(x.dtype)
        out = self.block(torch.cat([tokens, queries], dim=1), attn_mask=originals_only_mask(count, self.num_tokens,
                                                                                            x.device))
        return torch.cat([out[:, :count], earlier_outputs, out[:, count:]], dim=1)


def originals_only_mask(count: int, num_queries: int, device: torch.device) -> torch.Tensor:
    """Boolean attention mask (True = may attend) over ``count`` tokens followed by ``num_queries`` queries:
    every position attends to the original tokens only."""
    mask = torch.zeros(count + num_queries, count + num_queries, dtype=torch.bool, device=device)
    mask[:, :count] = True
    return mask


class OriginalTokensNorm(nn.Module):
    """The backbone's final norm on the original tokens; the ``trailing`` query outputs pass unchanged (VQT
    reads them straight from the blocks)."""

    def __init__(self, base: nn.Module, trailing: int) -> None:
        super().__init__()
        self.base = base
        self.trailing = trailing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count = x.shape[1] - self.trailing
        return torch.cat([self.base(x[:, :count]), x[:, count:]], dim=1)


class QueryFeatures(nn.Module):
    """The head's input from the final sequence: the backbone's pooled feature and the query outputs."""

    def __init__(self, width: int, depth: int, num_tokens: int, combine: str, normalize: bool,
                 pool_type: str, num_prefix_tokens: int) -> None:
        super().__init__()
        self.width, self.depth, self.num_tokens = width, depth, num_tokens
        self.combine, self.normalize = combine, normalize
        self.pool_type, self.num_prefix_tokens = pool_type, num_prefix_tokens
        if combine == "layer_weighted":
            self.layer_weights = nn.Parameter(torch.ones(depth, num_tokens))
        elif combine != "concat":
            raise ValueError(f"unknown combine {combine!r}; choose one of {list(COMBINE_CHOICES)}")

    @property
    def out_features(self) -> int:
        per_block = self.num_tokens if self.combine == "concat" else 1
        return self.width * (1 + self.depth * per_block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trailing = self.depth * self.num_tokens
        tokens, outputs = x[:, :-trailing], x[:, -trailing:]
        pooled = global_pool_nlc(tokens, pool_type=self.pool_type, num_prefix_tokens=self.num_prefix_tokens)
        outputs = outputs.reshape(x.shape[0], self.depth, self.num_tokens, self.width)
        if self.combine == "layer_weighted":
            per_block = (outputs * self.layer_weights.unsqueeze(-1).to(outputs.dtype)).sum(dim=2)
        else:
            per_block = outputs.flatten(2)
        if self.normalize:
            pooled, per_block = F.normalize(pooled, dim=-1), F.normalize(per_block, dim=-1)
        return torch.cat([pooled, per_block.flatten(1)], dim=1)


@dataclass(frozen=True)
class VQTConfig:
    num_tokens: int = hparam(1, "query tokens per block", min=1)
    combine: str = hparam("concat", "how each block's query outputs reach the head: concatenated, or a learned "
                          "weighted sum per block", choices=COMBINE_CHOICES)
    normalize: bool = hparam(True, "L2-normalise the class feature and each block's query outputs")
    dropout: float = hparam(0.1, "dropout on the query tokens (training only)", min=0.0, max=0.9)


def check_supported(model: nn.Module) -> None:
    if getattr(model, "dynamic_img_size", False):
        raise PeftlabError("vqt: backbones with dynamic_img_size are not supported")
    if model.attn_pool is not None or not isinstance(model.fc_norm, nn.Identity):
        raise PeftlabError("vqt: needs a backbone pooled by timm's global pooling without fc_norm "
                           f"(global_pool='{model.global_pool}' with attention pooling or fc_norm is not supported)")
    if not isinstance(model.get_classifier(), nn.Linear):
        raise PeftlabError("vqt: the backbone needs a linear classification head (create it with num_classes > 0)")


def attach_vqt(model: nn.Module, config: VQTConfig) -> None:
    check_supported(model)
    like = model.blocks[0].attn.qkv.weight
    depth, width, bound = len(model.blocks), model.embed_dim, prompt_init_bound(model)
    for index in range(depth):
        queries = nn.Parameter(torch.empty(1, config.num_tokens, width, device=like.device, dtype=like.dtype))
        nn.init.uniform_(queries, -bound, bound)
        replace_module(model, f"blocks.{index}", QueryBlock(model.blocks[index], queries, index, config.dropout))
    model.norm = OriginalTokensNorm(model.norm, depth * config.num_tokens)
    features = QueryFeatures(width, depth, config.num_tokens, config.combine, config.normalize, model.global_pool,
                             model.num_prefix_tokens).to(like.device, like.dtype)
    model.attn_pool = features
    model.pool_include_prefix = True  # timm hands attn_pool the whole sequence, class token included
    old_head = model.get_classifier()
    head = nn.Linear(features.out_features, old_head.out_features, device=like.device, dtype=like.dtype)
    trunc_normal_(head.weight, std=0.02)
    nn.init.zeros_(head.bias)
    model.head = head


register(MethodSpec(
    name="vqt",
    description="VQT: per-block query tokens read each block's tokens; their outputs feed the head beside the class "
                "feature",
    config_cls=VQTConfig,
    attach=attach_vqt,
    identity=no_identity,
    cache_point=frozen_prefix_cache_point,
))
