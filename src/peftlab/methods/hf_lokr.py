"""peft's LoKr: Kronecker-product update (Yeh et al. 2024, LyCORIS; KronA, Edalati et al. 2022).

``ΔW = (alpha / r) · W1 ⊗ W2``: the weight's shape is factored as ``(a·c) × (b·d)`` (``decompose_factor``, -1:
as square as possible), ``W1`` [a, b] and ``W2`` [c, d]; ``W2`` is itself a rank-r product ``W2a W2b`` when r is
below half its larger side (and ``W1`` too with ``decompose_both``). peft initialises ``W1`` (or ``W1a``) to zero,
so the model starts as the backbone.

Defaults are peft's ``LoKrConfig`` (rank 8, alpha 8, no decomposition of ``W1``, automatic factor, no dropout)
on the fused ``attn.qkv``. Identity: ``W1 = 0`` (``W1a = 0``). Mergeable (peft's merge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.methods._hf_peft import PeftMethodConfig, register_peft_method, target_modules, targets_hparam
from peftlab.methods.base import hparam
from peftlab.methods.layers import keep_value, zeros_like_value


@dataclass(frozen=True)
class HFLoKrConfig(PeftMethodConfig):
    rank: int = hparam(8, "rank r of the low-rank Kronecker factor(s)", min=1)
    alpha: float = hparam(8.0, "scale numerator: update = (alpha / rank)·W1⊗W2", min=0.0, exclusive_min=True)
    decompose_both: bool = hparam(False, "also factor the left Kronecker matrix W1 into a rank-r product")
    decompose_factor: int = hparam(-1, "size of the left factor's sides (a divisor of the layer's dims); -1: as "
                                   "square as possible", min=-1)
    rank_dropout: float = hparam(0.0, "dropout over the update's rows (training only)", min=0.0, max=0.9)
    module_dropout: float = hparam(0.0, "probability of skipping a layer's update in a training step", min=0.0,
                                   max=0.9)
    targets: str = targets_hparam("qkv")

    def to_peft(self) -> Any:
        from peft import LoKrConfig

        return LoKrConfig(r=self.rank, alpha=self.alpha, decompose_both=self.decompose_both,
                          decompose_factor=self.decompose_factor, rank_dropout=self.rank_dropout,
                          module_dropout=self.module_dropout, target_modules=target_modules(self.targets))


register_peft_method(
    name="hf_lokr",
    description="peft's LoKr: Kronecker product of a small matrix and a low-rank one (LyCORIS)",
    config_cls=HFLoKrConfig,
    identity={"lokr_w1": zeros_like_value, "lokr_w1_a": zeros_like_value, "lokr_w1_b": keep_value,
              "lokr_w2": keep_value, "lokr_w2_a": keep_value, "lokr_w2_b": keep_value},
)
