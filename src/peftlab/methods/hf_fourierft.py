"""peft's FourierFT: the weight update learned as a few spectral coefficients (Gao et al. 2024).

``ΔW = scaling · Re(IDFT2(F))``, ``F`` zero except at ``n_frequency`` entries (drawn once from
``random_loc_seed``, shared by all layers of the same shape) whose values train: ``n_frequency`` parameters a
layer, whatever its size. peft's default initialises the coefficients from N(0, 1) (``init_weights=False``), so
the model does *not* start as the backbone (the paper's init); ``init_zero`` starts them at zero.

Defaults: ``n_frequency`` 3000 and ``scaling`` 300, the settings peft's ``FourierFTConfig`` documents for ViT image
classification (ViT-Base: scaling 300; n 3000 ≈ LoRA r = 16); the seed is peft's default. On the fused
``attn.qkv`` (the paper adapts query and value). Identity: all coefficients zero. Mergeable (peft's merge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.methods._hf_peft import PeftMethodConfig, register_peft_method, target_modules, targets_hparam
from peftlab.methods.base import hparam
from peftlab.methods.layers import zeros_like_value


@dataclass(frozen=True)
class HFFourierFTConfig(PeftMethodConfig):
    n_frequency: int = hparam(3000, "trained spectral coefficients per layer (at most d_in·d_out)", min=1)
    scaling: float = hparam(300.0, "scale of the update recovered by the inverse DFT", min=0.0, exclusive_min=True)
    random_loc_seed: int = hparam(777, "seed of the coefficients' positions in the spectrum", min=0)
    init_zero: bool = hparam(False, "start the coefficients at zero (the backbone) instead of N(0, 1)")
    targets: str = targets_hparam("qkv")

    def to_peft(self) -> Any:
        from peft import FourierFTConfig

        return FourierFTConfig(n_frequency=self.n_frequency, scaling=self.scaling,
                               random_loc_seed=self.random_loc_seed, init_weights=self.init_zero,
                               target_modules=target_modules(self.targets))


register_peft_method(
    name="hf_fourierft",
    description="peft's FourierFT: each update is the inverse DFT of a few trained spectral coefficients",
    config_cls=HFFourierFTConfig,
    identity={"fourierft_spectrum": zeros_like_value},
)
