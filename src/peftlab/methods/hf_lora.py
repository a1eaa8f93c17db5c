"""peft's LoRA (Hu et al. 2022) on timm's fused ``attn.qkv``: the paper code's form of LoRA, computed by peft.

PETL_Vision (``model/lora.py``) gives the fused projection one ``A`` [r, d] and one ``B`` [3d, r] over all q, k
and v rows, with dropout 0.1 on the update's input and scale 1 (``merge_factor``). peft's ``LoraLayer`` on
``attn.qkv`` is exactly that: ``W x + (alpha / r) · B A dropout(x)``, ``A`` kaiming-uniform and ``B`` zero, so
the model starts as the backbone. peftlab's own ``lora`` instead gives each targeted projection (default q and
v) its own ``A`` and ``B``; at rank 8 both have r·4d parameters per block (0.29 M on ViT-B/16).

Defaults: rank 8 (PETL_Vision's ``lora_bottleneck``), alpha = rank (scale 1), dropout 0.1 (its ``lora_drop``).
Identity: ``B = 0``. Mergeable (peft's merge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftlab.methods._hf_peft import PeftMethodConfig, register_peft_method, target_modules, targets_hparam
from peftlab.methods.base import hparam
from peftlab.methods.layers import keep_value, zeros_like_value


@dataclass(frozen=True)
class HFLoRAConfig(PeftMethodConfig):
    rank: int = hparam(8, "rank r of the update B·A", min=1)
    alpha: float = hparam(0.0, "peft's lora_alpha: update = (alpha / rank)·B·A; 0 means alpha = rank (scale 1)",
                          min=0.0)
    dropout: float = hparam(0.1, "dropout on the update's input (training only)", min=0.0, max=0.9)
    targets: str = targets_hparam("qkv")

    def to_peft(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha or self.rank, lora_dropout=self.dropout,
                          target_modules=target_modules(self.targets))


register_peft_method(
    name="hf_lora",
    description="peft's LoRA on the fused qkv (one A and B over q, k, v rows: the paper code's LoRA form)",
    config_cls=HFLoRAConfig,
    identity={"lora_A": keep_value, "lora_B": zeros_like_value},
)
