"""PEFT methods for timm Vision Transformers: one module per method, each registering a ``MethodSpec``.

Every module in this package other than the shared ones below is a method and is imported here, so adding a
method is adding its module.
"""

import importlib
import pkgutil

from peftlab.methods.base import (
    AttachedMethod,
    CachePoint,
    MethodSpec,
    attach,
    attached,
    build_config,
    cache_point,
    count_parameters,
    get_method,
    identity_state,
    list_methods,
    merge,
    method_state_dict,
    register,
    trainable_state_dict,
)

_SHARED_MODULES = {"base", "layers", "commands"}

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name not in _SHARED_MODULES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AttachedMethod",
    "CachePoint",
    "MethodSpec",
    "attach",
    "attached",
    "build_config",
    "cache_point",
    "count_parameters",
    "get_method",
    "identity_state",
    "list_methods",
    "merge",
    "method_state_dict",
    "register",
    "trainable_state_dict",
]
