"""peft's VeRA: vector-based random matrix adaptation (Kopiczko et al. 2024).

``ΔW = diag(λ_b) B diag(λ_d) A``: ``A`` [r, d_in] and ``B`` [d_out, r] are frozen random matrices shared by all
targeted layers (sliced to each layer's shape), regenerated from ``projection_prng_key``; only the vectors
``λ_d`` (r) and ``λ_b`` (d_out) train. ``λ_b`` starts at zero and ``λ_d`` at ``d_initial``, so the model
starts as the backbone. Checkpoints hold only the vectors: the projections come back from the key (part of the
config), so peft's ``save_projection`` is off.

Defaults are peft's ``VeraConfig`` (rank 256, ``d_initial`` 0.1, key 0, no dropout). Rank 256 on the query and
value projections matches the paper's ViT-B count of 24.6 K trained parameters ((256 + 768) · 2 · 12); here on
the fused ``attn.qkv``, so ``λ_b`` covers q, k and v. Identity: ``λ_b = 0``. Mergeable (peft's merge).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from peftlab.methods._hf_peft import PeftMethodConfig, register_peft_method, target_modules, targets_hparam
from peftlab.methods.base import hparam
from peftlab.methods.layers import keep_value, zeros_like_value


@dataclass(frozen=True)
class HFVeRAConfig(PeftMethodConfig):
    rank: int = hparam(256, "rank r of the shared frozen random projections", min=1)
    d_initial: float = hparam(0.1, "initial value of every λ_d entry (the paper recommends <= 0.1)", min=0.0)
    projection_prng_key: int = hparam(0, "seed of the shared random projections A and B", min=0)
    dropout: float = hparam(0.0, "dropout on the update's input (training only)", min=0.0, max=0.9)
    targets: str = targets_hparam("qkv")

    def to_peft(self) -> Any:
        from peft import VeraConfig

        with warnings.catch_warnings():  # peft's advice to save the projections: peftlab regenerates them by design
            warnings.filterwarnings("ignore", message="Specified to not save vera_A", category=UserWarning)
            return VeraConfig(r=self.rank, d_initial=self.d_initial, projection_prng_key=self.projection_prng_key,
                              vera_dropout=self.dropout, save_projection=False,
                              target_modules=target_modules(self.targets))


register_peft_method(
    name="hf_vera",
    description="peft's VeRA: frozen shared random low-rank projections, trained scaling vectors",
    config_cls=HFVeRAConfig,
    identity={"vera_lambda_b": zeros_like_value, "vera_lambda_d": keep_value},
)
