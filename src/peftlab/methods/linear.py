"""Linear probe: the backbone is frozen and only the classification head trains.

The whole feature extractor is frozen, so its output can be computed once per image (``CachePoint("features")``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.methods.base import CachePoint, MethodSpec, register


@dataclass(frozen=True)
class LinearConfig:
    """No hyper-parameters beyond the shared learning rate and weight decay."""


def attach_linear(model: nn.Module, config: LinearConfig) -> None:
    """Nothing to add: ``attach`` already froze the backbone and unfroze the head."""


def nothing_to_merge(model: nn.Module) -> None:
    """Methods that only retrain existing tensors leave a plain timm model: merging is a no-op."""


register(MethodSpec(
    name="linear",
    description="linear probe: only the classification head trains",
    config_cls=LinearConfig,
    attach=attach_linear,
    merge=nothing_to_merge,
    cache_point=lambda model, config: CachePoint("features"),
))
