"""PEFT methods for timm Vision Transformers: one module per method, each registering a ``MethodSpec``.

Every module in this package other than ``base``, ``layers`` and ``commands`` is a method; they are imported on
the first registry lookup (``get_method`` / ``list_methods``), so adding a method is adding its module. The
public names below load lazily, which keeps ``import peftlab.methods.commands`` (the CLI) free of torch.
"""

import importlib
from typing import Any

__all__ = [
    "AttachedMethod",
    "CachePoint",
    "MethodSpec",
    "TrainingHooks",
    "after_step",
    "attach",
    "attached",
    "build_config",
    "cache_point",
    "count_parameters",
    "get_method",
    "identity_state",
    "list_methods",
    "merge",
    "method_loss",
    "method_state_dict",
    "register",
    "trainable_state_dict",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("peftlab.methods.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
