"""FacT (Jie & Deng 2023): the updates of every block's ``qkv``, ``proj``, ``fc1`` and ``fc2`` as one tensorised,
factorised weight, with the outer factors shared by all layers.

Cut each weight into ``C × C`` pieces (``C`` the embedding width; ``qkv`` is 3 pieces tall, ``fc1`` m = hidden/C
tall, ``fc2`` m wide): every piece's update is ``ΔW = scale · V G U`` with ``U`` [r, C] and ``V`` [C, r] shared by
all pieces of all layers, and a small core ``G`` [r, r] per piece (a layer's cores together: ``[tall·r, wide·r]``).

- ``fact_tt`` (tensor-train): every block owns its cores (``qkv`` [3r, r], ``proj`` [r, r], ``fc1`` [m r, r],
  ``fc2`` [r, m r]), initialised like PETL_Vision's bias-free ``nn.Linear`` cores.
- ``fact_tk`` (Tucker): one shared core tensor ``C`` [r, r, r] and a mixing matrix ``P`` [r, 12·depth] (12 columns
  per ViT block: 3 qkv, 1 proj, 4 fc1, 4 fc2), both xavier-uniform. A layer's mixtures are
  ``F[a, b, j] = Σ_k C[a, b, k] P[k, j]`` over its columns ``j`` (PETL_Vision's ``FacTc @ FacTp``); piece ``j``
  of ``qkv``/``proj`` has ``G_j[p, a] = F[a, p, j]`` (output index ``p``, input ``a``). ``form`` says how ``fc1``
  and ``fc2`` take theirs:

  - ``reshaped`` (the default; FacT's code, inherited by PETL_Vision's ``model/fact.py``): ``F`` [r, r, 4] is
    reshaped to ``[r, 4r]`` (column ``4b + j`` holds ``F[:, b, j]``) and used as one ``[4r, r]`` core of ``fc1``
    (transposed) and one ``[r, 4r]`` core of ``fc2``, so each C × C piece mixes several of ``F``'s columns;
  - ``per_piece`` (the FacT paper's Tucker definition): piece ``j`` of ``fc1``/``fc2`` has ``G_j`` from column
    ``j`` alone, as ``qkv`` and ``proj``.

  Both have the same count (``2Cr + r³ + 12·depth·r``).

``V`` starts at zero, so the model starts as the backbone and ``V = 0`` is the WiSE-FT identity. The forward
pass goes through the factors (``x Uᵀ`` once per piece, dropout 0.1 after the core, as PETL_Vision);
``merge`` adds each layer's dense ``ΔW`` to its weight. The shared factors live once, in ``model.fact``; the
per-layer wrappers (A1's ``LinearWithDelta``) only refer to them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.adapter import DEFAULT_DROPOUT
from peftlab.methods.base import CachePoint, MethodSpec, hparam, register
from peftlab.methods.layers import (
    LinearWithDelta,
    identity_from,
    keep_value,
    merge_wrappers,
    replace_module,
    zeros_like_value,
)

Factorisation = Literal["tt", "tk"]
TK_FORMS = ("reshaped", "per_piece")
# target → (pieces tall, pieces wide) as a function of m = mlp hidden / C
TARGETS = {
    "attn.qkv": lambda m: (3, 1),
    "attn.proj": lambda m: (1, 1),
    "mlp.fc1": lambda m: (m, 1),
    "mlp.fc2": lambda m: (1, m),
}
SHORT_NAMES = {"attn.qkv": "qkv", "attn.proj": "proj", "mlp.fc1": "fc1", "mlp.fc2": "fc2"}


class FactFactors(nn.Module):
    """The trained tensors of FacT: shared ``u`` [r, C], ``v`` [C, r] and the cores (per block for TT, one shared
    tensor ``core`` [r, r, r] and mixing matrix ``mix`` [r, pieces] for TK, whose ``fc1``/``fc2`` cores follow
    ``tk_form``)."""

    def __init__(self, width: int, rank: int, depth: int, mlp_ratio: int, kind: Factorisation,
                 tk_form: str | None = None) -> None:
        super().__init__()
        self.rank, self.depth, self.mlp_ratio, self.kind, self.tk_form = rank, depth, mlp_ratio, kind, tk_form
        self.u = nn.Parameter(torch.empty(rank, width))
        self.v = nn.Parameter(torch.zeros(width, rank))
        nn.init.kaiming_uniform_(self.u, a=math.sqrt(5))  # nn.Linear(C, r, bias=False)'s init, as PETL_Vision
        shapes = {SHORT_NAMES[t]: pieces(mlp_ratio) for t, pieces in TARGETS.items()}
        self.shapes = shapes
        if kind == "tt":
            self.cores = nn.ModuleList(
                nn.ParameterDict({name: nn.Parameter(torch.empty(tall * rank, wide * rank))
                                  for name, (tall, wide) in shapes.items()})
                for _ in range(depth))
            for block_cores in self.cores:
                for core in block_cores.values():
                    nn.init.kaiming_uniform_(core, a=math.sqrt(5))
        elif kind == "tk":
            self.pieces_per_block = sum(tall * wide for tall, wide in shapes.values())
            self.core = nn.Parameter(torch.empty(rank, rank, rank))
            self.mix = nn.Parameter(torch.empty(rank, self.pieces_per_block * depth))
            nn.init.xavier_uniform_(self.core)
            nn.init.xavier_uniform_(self.mix)
        else:
            raise ValueError(f"unknown FacT factorisation {kind!r}; choose tt or tk")

    def block_core(self, block: int, name: str) -> torch.Tensor:
        """The core of target ``name`` (``qkv``/``proj``/``fc1``/``fc2``) in ``block``: ``[tall·r, wide·r]``."""
        if self.kind == "tt":
            return self.cores[block][name]
        tall, wide = self.shapes[name]
        first = block * self.pieces_per_block + self._piece_offset(name)
        mixtures = torch.einsum("abk,kj->abj", self.core, self.mix[:, first:first + tall * wide])  # F [r, r, pieces]
        rank = self.rank
        if self.tk_form == "reshaped" and name == "fc1":
            return mixtures.reshape(rank, tall * rank).t()
        if self.tk_form == "reshaped" and name == "fc2":
            return mixtures.reshape(rank, wide * rank)
        if wide == 1:  # pieces stacked along the output: rows j·r + p hold F[:, p, j]
            return mixtures.permute(2, 1, 0).reshape(tall * rank, rank)
        return mixtures.permute(1, 2, 0).reshape(rank, wide * rank)  # along the input: columns j·r + a

    def _piece_offset(self, name: str) -> int:
        offset = 0
        for other, (tall, wide) in self.shapes.items():
            if other == name:
                return offset
            offset += tall * wide
        raise KeyError(name)


class FactDelta(nn.Module):
    """The update of one linear layer, ``x ↦ scale · V G U x`` piecewise, computed through the shared factors.

    The factors are referenced, not registered (they belong to ``model.fact``), so each shared tensor has one
    name in the state dict.
    """

    def __init__(self, factors: FactFactors, block: int, name: str, scale: float, dropout: float) -> None:
        super().__init__()
        self._factors = (factors,)  # a tuple keeps nn.Module from registering the shared module here
        self.block, self.name, self.scale = block, name, float(scale)
        self.tall, self.wide = factors.shapes[name]
        self.dropout = nn.Dropout(dropout)

    @property
    def factors(self) -> FactFactors:
        return self._factors[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factors = self.factors
        lead = x.shape[:-1]
        projected = x.reshape(*lead, self.wide, -1) @ factors.u.t()             # [..., wide, r]
        mixed = projected.reshape(*lead, -1) @ factors.block_core(self.block, self.name).t()
        mixed = self.dropout(mixed).reshape(*lead, self.tall, factors.rank)     # [..., tall, r]
        return (mixed @ factors.v.t()).reshape(*lead, -1) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """The dense ``ΔW`` [tall·C, wide·C]."""
        factors = self.factors
        rank, width = factors.rank, factors.u.shape[1]
        core = factors.block_core(self.block, self.name).reshape(self.tall, rank, self.wide, rank)
        delta = torch.einsum("ca,oaib,bd->ocid", factors.v, core, factors.u)
        return delta.reshape(self.tall * width, self.wide * width) * self.scale

    def delta_bias(self) -> None:
        return None


@dataclass(frozen=True)
class FactTTConfig:
    dim: int = hparam(8, "rank r of the shared factors and cores (the paper's grid: 8, 16, 32)", min=1)
    scale: float = hparam(1.0, "fixed factor on the update (grid: 0.01, 0.1, 1, 10, 100)", min=0.0,
                          exclusive_min=True)
    dropout: float = hparam(DEFAULT_DROPOUT, "dropout after the core (training only)", min=0.0, max=0.9)


@dataclass(frozen=True)
class FactTKConfig(FactTTConfig):
    dim: int = hparam(16, "rank r of the shared factors and core tensor (the paper's grid: 16, 32, 64)", min=1)
    form: str = hparam("reshaped", "cores of fc1/fc2: reshaped mixtures, each piece mixing several columns (FacT's "
                       "code, PETL_Vision), or per_piece, one column each (the FacT paper)", choices=TK_FORMS)


def mlp_ratio_of(model: nn.Module, method: str) -> int:
    """m = hidden / C, which FacT needs to be a whole number (the MLP's weights are cut into C × C pieces)."""
    width = model.embed_dim
    hidden = model.blocks[0].mlp.fc1.out_features
    if hidden % width:
        raise PeftlabError(f"{method}: the MLP width {hidden} is not a multiple of the embedding width {width}")
    for block in model.blocks:
        if block.mlp.fc1.out_features != hidden or block.attn.qkv.out_features != 3 * width:
            raise PeftlabError(f"{method}: every block needs qkv {3 * width}×{width} and fc1 {hidden}×{width}")
    return hidden // width


def attach_fact(model: nn.Module, config: FactTTConfig | FactTKConfig, *, kind: Factorisation) -> None:
    like = model.blocks[0].attn.qkv.weight
    factors = FactFactors(model.embed_dim, config.dim, len(model.blocks), mlp_ratio_of(model, f"fact_{kind}"), kind,
                          tk_form=config.form if kind == "tk" else None)
    model.fact = factors.to(like.device, like.dtype)
    for index, block in enumerate(model.blocks):
        for target, name in SHORT_NAMES.items():
            delta = FactDelta(factors, index, name, config.scale, config.dropout)
            replace_module(model, f"blocks.{index}.{target}", LinearWithDelta(block.get_submodule(target), delta))


def merge_fact(model: nn.Module) -> None:
    merge_wrappers(model, (LinearWithDelta,))
    del model.fact


def fact_identity(model: nn.Module, trained: Mapping[str, torch.Tensor],
                  pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``V = 0`` zeroes every ``ΔW``; ``U`` and the cores keep their trained values."""
    rules = {name: keep_value for name in trained if name.startswith("fact.")}
    return identity_from(trained, pretrained, {**rules, "fact.v": zeros_like_value})


def fact_cache_point(model: nn.Module, config: object) -> CachePoint:
    """Every block changes but nothing before them does: the embedded tokens can be computed once."""
    return CachePoint("blocks", 0)


for _kind, _config_cls, _description in (
        ("tt", FactTTConfig, "FacT-TT: tensor-train factorised updates of qkv/proj/fc1/fc2, U and V shared by layers"),
        ("tk", FactTKConfig, "FacT-TK: Tucker factorised updates of qkv/proj/fc1/fc2, one core shared by layers")):
    register(MethodSpec(
        name=f"fact_{_kind}",
        description=_description,
        config_cls=_config_cls,
        attach=partial(attach_fact, kind=_kind),
        merge=merge_fact,
        identity=fact_identity,
        cache_point=fact_cache_point,
    ))
