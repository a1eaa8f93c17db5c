"""peft's BOFT: orthogonal fine-tuning by butterfly factorisation (Liu et al. 2024).

Each targeted layer computes ``s ⊙ (W R) x + b``: ``R`` orthogonal, a product of ``m`` butterfly factors, each a
permuted block-diagonal matrix of Cayley-transformed skew-symmetric ``block_size`` blocks (``block_num`` blocks per
factor; give one of the two), and ``s`` a learned per-output scale. ``R`` starts at the identity and ``s`` at
one, so the model starts as the backbone.

**One butterfly factor (m = 1), peft's default.** peft 0.21.2 computes ``m > 1`` only with its CUDA extension
``fbd_cuda``, compiled with ninja/nvcc at attach time; without it (any CPU, or a GPU host without a compiler) it
silently resets m to 1 (``tuners/boft/layer.py``, ``update_layer``), which would give different tensor shapes
(and checkpoints that do not load) from one machine to the next. peftlab therefore runs m = 1 everywhere and
marks the extension unavailable, which also skips one compile attempt per layer: BOFT with m = 1 is
block-diagonal OFT with an exact Cayley transform plus the output scale ``s``.

Defaults are peft's ``BOFTConfig`` (block size 4, no dropout) on the fused ``attn.qkv``. Identity: the skew
parameters at zero and ``s = 1``. Mergeable (peft's merge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.methods._hf_peft import PeftMethodConfig, register_peft_method, target_modules, targets_hparam
from peftlab.methods.base import hparam
from peftlab.methods.layers import ones_like_value, zeros_like_value


@dataclass(frozen=True)
class HFBOFTConfig(PeftMethodConfig):
    block_size: int = hparam(4, "side of each orthogonal block; 0 when block_num is given", min=0)
    block_num: int = hparam(0, "orthogonal blocks per layer; 0 when block_size is given", min=0)
    dropout: float = hparam(0.0, "multiplicative dropout: probability of a block being the identity in a "
                            "training step", min=0.0, max=0.9)
    targets: str = targets_hparam("qkv")

    def to_peft(self) -> Any:
        from peft import BOFTConfig

        return BOFTConfig(boft_block_size=self.block_size, boft_block_num=self.block_num, boft_n_butterfly_factor=1,
                          boft_dropout=self.dropout, target_modules=target_modules(self.targets))


def without_cuda_extension() -> None:
    """See the module docstring: peft's ``get_fbd_cuda`` returns its cached value when that is not None, so
    ``False`` means "unavailable" without a compile attempt."""
    import peft.tuners.boft.layer as boft_layer

    boft_layer._FBD_CUDA = False


register_peft_method(
    name="hf_boft",
    description="peft's BOFT with one butterfly factor: block-diagonal orthogonal rotation and an output scale",
    config_cls=HFBOFTConfig,
    identity={"boft_R": zeros_like_value, "boft_s": ones_like_value},
    before_attach=without_cuda_extension,
)
