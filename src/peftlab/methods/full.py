"""Full fine-tuning: every parameter of the backbone trains (the reference point of the study)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.methods.base import MethodSpec, register
from peftlab.methods.linear import nothing_to_merge


@dataclass(frozen=True)
class FullConfig:
    """No hyper-parameters beyond the shared learning rate and weight decay."""


def attach_full(model: nn.Module, config: FullConfig) -> None:
    model.requires_grad_(True)


register(MethodSpec(
    name="full",
    description="full fine-tuning: every parameter trains",
    config_cls=FullConfig,
    attach=attach_full,
    merge=nothing_to_merge,
))
