"""peft's AdaLoRA: SVD-parametrised low-rank updates whose ranks are reallocated while training (Zhang et al. 2023).

Each targeted layer gets ``ΔW = (alpha / r) · P diag(E) Q`` (peft's ``lora_B``, ``lora_E``, ``lora_A``; r the
initial rank ``init_r``), ``E`` starting at zero (the backbone). Training adds two things to the task loss and
the optimiser step, both through peftlab's ``TrainingHooks`` (the trainer calls them every step):

* the orthogonality penalty ``orth_reg_weight · mean over P, Q of ‖PᵀP − I‖_F`` (``‖QQᵀ − I‖_F``), the term
  peft's ``AdaLoraModel.forward`` adds to a transformers output's ``loss`` (a timm model returns logits, so
  peftlab adds it; tested equal to peft's);
* after every optimiser step, peft's ``AdaLoraModel.update_and_allocate``: importance scores (EMA of
  ``|p·∂L/∂p|``, ``beta1``/``beta2``) decide which singular values stay; the total budget falls on a cubic
  schedule from ``init_r`` to ``target_r`` per layer on average, between ``tinit`` and ``total − tfinal`` steps,
  then the pattern is fixed. peft masks pruned entries of ``E`` to zero (tensor shapes never change), so the
  trained-parameter count is the initial one (as peft counts it).

peft needs the run's total step count when the config is built; peftlab only knows it when training starts, so
``tinit`` and ``tfinal`` are given as fractions of the run and the schedule is set on the first step
(``RankAllocator.set_total_step``, peft's own setter). Without the trainer's hooks (e.g. a hand-written loop)
the method trains as plain SVD-parametrised LoRA.

Defaults are peft's ``AdaLoraConfig`` (init_r 12, target_r 8, lora_alpha 8, beta1 = beta2 = 0.85, orth_reg_weight
0.5, deltaT 1, tinit = tfinal = 0, no dropout), on all four linear layers of each block, as the paper adapts
every weight matrix (W_q, W_k, W_v, W_o, W_f1, W_f2). Identity: ``E = 0``. Mergeable (peft's merge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods._hf_peft import (
    ADAPTER,
    PeftMethodConfig,
    peft_tuner,
    register_peft_method,
    target_modules,
    targets_hparam,
)
from peftlab.methods.base import TrainingHooks, hparam
from peftlab.methods.layers import keep_value, zeros_like_value

# peft validates total_step > 0 when the config is built; the run's real count replaces it on the first step.
STEPS_SET_WHEN_TRAINING_STARTS = 1


@dataclass(frozen=True)
class HFAdaLoRAConfig(PeftMethodConfig):
    init_r: int = hparam(12, "initial rank of every targeted layer", min=1)
    target_r: int = hparam(8, "average rank per layer after reallocation (the final budget)", min=1)
    alpha: float = hparam(8.0, "peft's lora_alpha: update = (alpha / init_r)·P·diag(E)·Q", min=0.0,
                          exclusive_min=True)
    dropout: float = hparam(0.0, "dropout on the update's input (training only)", min=0.0, max=0.9)
    orth_reg_weight: float = hparam(0.5, "weight of the orthogonality penalty on P and Q", min=0.0)
    beta1: float = hparam(0.85, "EMA coefficient of the importance (sensitivity) scores", min=0.0, max=1.0,
                          exclusive_min=True)
    beta2: float = hparam(0.85, "EMA coefficient of the importance uncertainty", min=0.0, max=1.0, exclusive_min=True)
    delta_t: int = hparam(1, "steps between two budget reallocations", min=1)
    tinit: float = hparam(0.0, "fraction of the run's steps before ranks start to fall (warm-up)", min=0.0, max=1.0)
    tfinal: float = hparam(0.0, "fraction of the run's steps trained with the final ranks fixed", min=0.0, max=1.0)
    targets: str = targets_hparam("all")

    def __post_init__(self) -> None:
        if self.target_r > self.init_r:
            raise PeftlabError(f"hf_adalora: target_r={self.target_r} must be <= init_r={self.init_r}")
        if self.beta1 >= 1 or self.beta2 >= 1:
            raise PeftlabError(f"hf_adalora: beta1={self.beta1} and beta2={self.beta2} must be < 1")
        if self.tinit + self.tfinal >= 1:
            raise PeftlabError(f"hf_adalora: tinit + tfinal = {self.tinit + self.tfinal} must be < 1 (the fractions "
                               "of the run before and after reallocation leave no steps to reallocate in)")
        super().__post_init__()

    def to_peft(self) -> Any:
        from peft import AdaLoraConfig

        return AdaLoraConfig(init_r=self.init_r, target_r=self.target_r, lora_alpha=self.alpha,
                             lora_dropout=self.dropout, orth_reg_weight=self.orth_reg_weight, beta1=self.beta1,
                             beta2=self.beta2, deltaT=self.delta_t, tinit=0, tfinal=0,
                             total_step=STEPS_SET_WHEN_TRAINING_STARTS, target_modules=target_modules(self.targets))


def orthogonality_penalty(model: nn.Module) -> torch.Tensor:
    """peft's AdaLoRA regulariser (``AdaLoraModel.forward``) on the model's trained ``lora_A`` / ``lora_B``."""
    weight = peft_tuner(model).peft_config[ADAPTER].orth_reg_weight
    terms = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and (f"lora_A.{ADAPTER}" in name or f"lora_B.{ADAPTER}" in name):
            gram = parameter @ parameter.T if f"lora_A.{ADAPTER}" in name else parameter.T @ parameter
            eye = torch.eye(*gram.shape, device=gram.device, dtype=gram.dtype)
            terms.append(torch.linalg.matrix_norm(gram - eye))
    return weight * torch.stack(terms).mean()


def reallocate_ranks(model: nn.Module, step: int, total_steps: int) -> None:
    """peft's ``update_and_allocate`` after optimiser step ``step``; the schedule is set from the run's length on
    the first call (see the module docstring)."""
    tuner = peft_tuner(model)
    peft_config = tuner.peft_config[ADAPTER]
    if peft_config.total_step != total_steps:
        config: HFAdaLoRAConfig = model.peft.config
        peft_config.tinit = int(config.tinit * total_steps)
        peft_config.tfinal = int(config.tfinal * total_steps)
        tuner.rankallocator.set_total_step(total_steps)
    tuner.update_and_allocate(step)


register_peft_method(
    name="hf_adalora",
    description="peft's AdaLoRA: SVD-form low-rank updates, ranks reallocated by importance while training",
    config_cls=HFAdaLoRAConfig,
    identity={"lora_A": keep_value, "lora_B": keep_value, "lora_E": zeros_like_value},
    training=TrainingHooks(loss=orthogonality_penalty, after_step=reallocate_ranks),
)
