"""peft's LoHa: low-rank Hadamard product (FedPara, Hyeon-Woo et al. 2022; LyCORIS).

``ΔW = (alpha / r) · (W1a W1b) ⊙ (W2a W2b)``: two rank-r factorisations multiplied element-wise, so the update
can have rank up to r² with 2·r·(d_in + d_out) parameters per layer. peft initialises ``W2b`` to zero (the
others kaiming-uniform), so the model starts as the backbone.

Defaults are peft's ``LoHaConfig`` (rank 8, alpha 8, no rank or module dropout) on the fused ``attn.qkv``, as
peftlab's LoRA-family methods. Identity: ``W2b = 0``. Mergeable (peft's merge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.methods._hf_peft import PeftMethodConfig, register_peft_method, target_modules, targets_hparam
from peftlab.methods.base import hparam
from peftlab.methods.layers import keep_value, zeros_like_value


@dataclass(frozen=True)
class HFLoHaConfig(PeftMethodConfig):
    rank: int = hparam(8, "rank r of each of the two factorisations", min=1)
    alpha: float = hparam(8.0, "scale numerator: update = (alpha / rank)·(W1a·W1b)⊙(W2a·W2b)", min=0.0,
                          exclusive_min=True)
    rank_dropout: float = hparam(0.0, "dropout over the update's rows (training only)", min=0.0, max=0.9)
    module_dropout: float = hparam(0.0, "probability of skipping a layer's update in a training step", min=0.0,
                                   max=0.9)
    targets: str = targets_hparam("qkv")

    def to_peft(self) -> Any:
        from peft import LoHaConfig

        return LoHaConfig(r=self.rank, alpha=self.alpha, rank_dropout=self.rank_dropout,
                          module_dropout=self.module_dropout, target_modules=target_modules(self.targets))


register_peft_method(
    name="hf_loha",
    description="peft's LoHa: Hadamard product of two low-rank updates (FedPara / LyCORIS)",
    config_cls=HFLoHaConfig,
    identity={"hada_w1_a": keep_value, "hada_w1_b": keep_value, "hada_w2_a": keep_value,
              "hada_w2_b": zeros_like_value},
)
