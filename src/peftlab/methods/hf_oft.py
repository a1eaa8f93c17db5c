"""peft's OFT: orthogonal fine-tuning (Qiu et al. 2023; peft 0.21's scalable form, Qiu et al. 2025).

Each targeted layer computes ``W (R x) + b`` with ``R`` block-diagonal: ``d_in / block_size`` orthogonal blocks,
each the Cayley transform of a learned skew-symmetric matrix (``block_size·(block_size−1)/2`` parameters a block;
with ``cayley_neumann`` the inverse in the Cayley transform is a truncated Neumann series, peft's default). The
skew matrices start at zero, so ``R = I`` and the model starts as the backbone. COFT (``coft``) keeps ``R``
within ``eps`` of the identity; ``block_share`` shares one block per layer.

Defaults are peft's ``OFTConfig`` field defaults (block size 32, Cayley–Neumann with 5 terms, no COFT, no
sharing) on the fused ``attn.qkv``. peft's ``module_dropout`` is not offered: peft 0.21.2's OFT layers build the
dropout module but never apply it (``tuners/oft/layer.py``: ``oft_dropout`` is not used in ``forward``). Identity: the skew parameters at zero. Mergeable (``R`` folds
into ``W``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.methods._hf_peft import PeftMethodConfig, register_peft_method, target_modules, targets_hparam
from peftlab.methods.base import hparam
from peftlab.methods.layers import zeros_like_value


@dataclass(frozen=True)
class HFOFTConfig(PeftMethodConfig):
    block_size: int = hparam(32, "side of each orthogonal block (must divide every targeted layer's input width)",
                             min=2)
    cayley_neumann: bool = hparam(True, "approximate the Cayley transform's inverse by a Neumann series")
    neumann_terms: int = hparam(5, "terms of the Neumann series (with cayley_neumann)", min=1)
    coft: bool = hparam(False, "constrained OFT: keep R within eps of the identity")
    eps: float = hparam(6e-5, "COFT's allowed distance from the identity (with coft)", min=0.0, exclusive_min=True)
    block_share: bool = hparam(False, "one block shared by all blocks of a layer")
    targets: str = targets_hparam("qkv")

    def to_peft(self) -> Any:
        from peft import OFTConfig

        return OFTConfig(r=0, oft_block_size=self.block_size, use_cayley_neumann=self.cayley_neumann,
                         num_cayley_neumann_terms=self.neumann_terms, coft=self.coft, eps=self.eps,
                         block_share=self.block_share, target_modules=target_modules(self.targets))


register_peft_method(
    name="hf_oft",
    description="peft's OFT: block-diagonal orthogonal rotation of each targeted layer's input (Cayley transform)",
    config_cls=HFOFTConfig,
    identity={"oft_R": zeros_like_value},
)
