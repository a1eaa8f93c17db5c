"""peft's HRA: Householder reflection adaptation (Yuan et al. 2024).

Each targeted layer computes ``W H x + b`` with ``H = Π_i (I − 2 u_i u_iᵀ / ‖u_i‖²)``, a chain of ``rank``
Householder reflections whose vectors ``u_i`` (columns of ``hra_u`` [d_in, rank]) train. peft initialises the
vectors in identical pairs (``u_{2i+1} = u_{2i}``), and a reflection applied twice is the identity, so the model
starts as the backbone (up to rounding, ~1e-7); that needs an even rank. Gram–Schmidt orthogonalisation of the
vectors (peft's ``apply_GS``) is not offered: on the paired init it divides by zero.

Defaults are peft's ``HRAConfig`` (rank 8) on the fused ``attn.qkv``. Identity: for an even rank, each odd
vector set equal to the one before it (any such pairing cancels); none for an odd rank. Mergeable (peft's merge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from peftlab.methods._hf_peft import (
    IdentityRule,
    PeftMethodConfig,
    register_peft_method,
    target_modules,
    targets_hparam,
)
from peftlab.methods.base import hparam


@dataclass(frozen=True)
class HFHRAConfig(PeftMethodConfig):
    rank: int = hparam(8, "number of Householder reflections per layer (even: the init and identity need pairs)",
                       min=1)
    targets: str = targets_hparam("qkv")

    def to_peft(self) -> Any:
        from peft import HRAConfig

        return HRAConfig(r=self.rank, apply_GS=False, target_modules=target_modules(self.targets))


def paired_reflections(name: str, vectors: torch.Tensor) -> torch.Tensor:
    """``hra_u`` with every odd column equal to the even column before it: the reflections cancel in pairs."""
    return vectors[:, 0::2].repeat_interleave(2, dim=1)


def hra_identity(config: HFHRAConfig) -> Mapping[str, IdentityRule] | None:
    return {"hra_u": paired_reflections} if config.rank % 2 == 0 else None


register_peft_method(
    name="hf_hra",
    description="peft's HRA: a chain of trained Householder reflections of each targeted layer's input",
    config_cls=HFHRAConfig,
    identity=hra_identity,
)
