"""What a PEFT method is, and the registry that names them.

A method is a ``MethodSpec``: a config dataclass (its hyper-parameters, validated), a function that attaches
it to a timm ``VisionTransformer`` (injects modules, marks what trains), and optionally a merge (fold the update
into plain timm weights), an identity rule (the trained tensors' values that give back the pretrained model,
used by WiSE-FT) and a cache point (how much of the forward pass is frozen and can be computed once).

Trained tensors are exactly the parameters with ``requires_grad``; the classification head always trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from peftlab.errors import PeftlabError

HEAD_PREFIX = "head."

# Where a method comes from: the paper's study (Mai et al., its code base OSU-MLB/PETL_Vision), peftlab's own
# additions beyond the paper, or huggingface peft's implementation. Reports keep the paper's table apart.
PAPER_FAMILY = "paper"
PEFTLAB_FAMILY = "peftlab"
HF_PEFT_FAMILY = "huggingface-peft"
FAMILIES = (PAPER_FAMILY, PEFTLAB_FAMILY, HF_PEFT_FAMILY)


def hparam(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           choices: tuple | None = None, exclusive_min: bool = False) -> Any:
    """A config field with its help text and allowed range, checked by ``validate_config``."""
    return field(default=default, metadata={"help": help, "min": min, "max": max, "choices": choices,
                                             "exclusive_min": exclusive_min})


@dataclass(frozen=True)
class CachePoint:
    """How much of the forward pass is frozen: ``features`` (everything before the head) or the first
    ``depth`` blocks (``blocks``). The frozen part runs in eval mode, once per input."""

    kind: Literal["features", "blocks"]
    depth: int = 0


@dataclass(frozen=True)
class TrainingHooks:
    """What a method adds to each training step beyond the task loss (AdaLoRA: an orthogonality penalty, and a
    rank reallocation after every optimiser step). The trainer calls ``method_loss`` and ``after_step`` for every
    run; both do nothing for methods without hooks.

    ``loss(model)``: a scalar added to the task loss. ``after_step(model, step, total_steps)``: called after the
    optimiser's ``step()`` (gradients still in place), ``step`` counting the steps done so far (1 after the first).
    """

    loss: Callable[[nn.Module], torch.Tensor] | None = None
    after_step: Callable[[nn.Module, int, int], None] | None = None


@dataclass(frozen=True)
class MethodSpec:
    """A registered PEFT method; see the module docstring."""

    name: str
    description: str
    config_cls: type
    attach: Callable[[nn.Module, Any], None]
    merge: Callable[[nn.Module], None] | None = None
    identity: Callable[[nn.Module, Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
                       dict[str, torch.Tensor] | None] | None = None
    cache_point: Callable[[nn.Module, Any], CachePoint | None] | None = None
    family: str = PAPER_FAMILY  # one of FAMILIES
    training: TrainingHooks | None = None

    @property
    def mergeable(self) -> bool:
        return self.merge is not None

    def hparams(self) -> list[dict[str, Any]]:
        """Name, default, type and help of each hyper-parameter (for ``peftlab methods``)."""
        return [
            {"name": f.name, "default": f.default, "type": _field_type(f).__name__, "help": f.metadata.get("help", "")}
            for f in dataclasses.fields(self.config_cls)
        ]


@dataclass
class AttachedMethod:
    """Stored on the model as ``model.peft``: which method is attached, with which config."""

    name: str
    config: Any


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.family not in FAMILIES:
        raise ValueError(f"method {spec.name!r}: family {spec.family!r} not one of {FAMILIES}")
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


_SHARED_MODULES = {"base", "layers", "commands"}
_discovered = False


def _discover() -> None:
    """Import every method module of this package once (each registers itself on import).

    Done on first lookup rather than at package import, so ``peftlab.methods.commands`` stays light for the CLI.
    """
    global _discovered
    if _discovered:
        return
    _discovered = True
    import importlib
    import pkgutil

    import peftlab.methods as package

    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name not in _SHARED_MODULES and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")


def list_methods() -> list[MethodSpec]:
    _discover()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_method(name: str) -> MethodSpec:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PeftlabError(f"unknown method '{name}'; known methods: {', '.join(sorted(_REGISTRY))}") from None


def _field_type(f: dataclasses.Field) -> type:
    return type(f.default)


def _coerce(method: str, f: dataclasses.Field, value: Any) -> Any:
    kind = _field_type(f)
    bad = PeftlabError(f"{method}: {f.name}={value!r} is not a valid {kind.__name__}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise bad
    if kind is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if kind is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if kind is str:
        return str(value)
    raise TypeError(f"unsupported hyper-parameter type {kind} for {method}.{f.name}")


def validate_config(method: str, config: Any) -> None:
    """Check every field against its declared range and choices."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        meta = f.metadata
        low, high, choices = meta.get("min"), meta.get("max"), meta.get("choices")
        if choices is not None and value not in choices:
            raise PeftlabError(f"{method}: {f.name}={value!r} not allowed; choose one of {list(choices)}")
        if low is not None and (value < low or (meta.get("exclusive_min") and value == low)):
            relation = ">" if meta.get("exclusive_min") else ">="
            raise PeftlabError(f"{method}: {f.name}={value!r} must be {relation} {low}")
        if high is not None and value > high:
            raise PeftlabError(f"{method}: {f.name}={value!r} must be <= {high}")


def build_config(name: str, values: Mapping[str, Any] | None = None) -> Any:
    """The method's config from ``values`` (strings from the CLI are coerced); unknown keys are errors.

    Keys of the shared search grid (``lr``, ``weight_decay``) are not method hyper-parameters and are ignored.
    """
    spec = get_method(name)
    fields = {f.name: f for f in dataclasses.fields(spec.config_cls)}
    kwargs = {}
    for key, value in (values or {}).items():
        if key in ("lr", "weight_decay"):
            continue
        if key not in fields:
            allowed = ", ".join(fields) or "none"
            raise PeftlabError(f"{name}: unknown hyper-parameter '{key}'; allowed: {allowed}")
        kwargs[key] = _coerce(name, fields[key], value)
    config = spec.config_cls(**kwargs)
    validate_config(name, config)
    return config


def attach(model: nn.Module, name: str, config_or_values: Any = None) -> nn.Module:
    """Attach method ``name`` to a timm ViT in place: freeze everything, inject, unfreeze what trains."""
    spec = get_method(name)
    if hasattr(model, "peft"):
        raise PeftlabError(f"model already has method '{model.peft.name}' attached; build a fresh backbone")
    config = config_or_values
    if config is None or isinstance(config, Mapping):
        config = build_config(name, config)
    check_vit(model, name)
    model.requires_grad_(False)
    spec.attach(model, config)
    model.get_classifier().requires_grad_(True)
    model.peft = AttachedMethod(name=name, config=config)
    return model


def check_vit(model: nn.Module, method: str) -> None:
    """Methods attach to timm ``VisionTransformer``s (blocks with ``attn.qkv`` and ``mlp.fc1``/``fc2``)."""
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise PeftlabError(f"{method}: cannot attach to {type(model).__name__}; a timm VisionTransformer is required")
    block = model.blocks[0]
    for attribute in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "norm1", "norm2"):
        try:
            block.get_submodule(attribute)
        except AttributeError:
            raise PeftlabError(f"{method}: the backbone's blocks lack '{attribute}'") from None


def attached(model: nn.Module) -> AttachedMethod:
    if not hasattr(model, "peft"):
        raise PeftlabError("no PEFT method is attached to this model")
    return model.peft


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors (method tensors and head), the content of a PEFT checkpoint."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def method_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors without the head."""
    return {k: v for k, v in trainable_state_dict(model).items() if not k.startswith(HEAD_PREFIX)}


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Totals as papers count them: ``method`` excludes the head (``trainable = method + head``)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and name.startswith(HEAD_PREFIX))
    return {"total": total, "trainable": trainable, "method": trainable - head, "head": head}


def merge(model: nn.Module) -> nn.Module:
    """Fold the attached method into the backbone, leaving a plain timm model (same state-dict keys)."""
    info = attached(model)
    spec = get_method(info.name)
    if spec.merge is None:
        raise PeftlabError(f"method '{info.name}' cannot be merged into the backbone")
    spec.merge(model)
    del model.peft
    return model


def identity_state(model: nn.Module, pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """Values of the trained (non-head) tensors that make the model compute the pretrained backbone.

    ``pretrained`` is the backbone's state dict before fine-tuning. Tensors that exist in it (BitFit biases,
    LayerNorm weights, full fine-tuning) go back to it; added tensors go to the method's identity values.
    ``None`` when the method has no such point (prompts always change the function).
    """
    info = attached(model)
    spec = get_method(info.name)
    trained = method_state_dict(model)
    if spec.identity is None:
        missing = [k for k in trained if k not in pretrained]
        if missing:
            raise ValueError(f"{info.name}: tensors {missing[:3]} are new but the method defines no identity")
        return {k: pretrained[k].clone() for k in trained}
    return spec.identity(model, trained, pretrained)


def _training_hooks(model: nn.Module) -> TrainingHooks | None:
    info = getattr(model, "peft", None)  # pretraining trains a model without a method
    return get_method(info.name).training if info is not None else None


def method_loss(model: nn.Module) -> torch.Tensor | float:
    """The attached method's term added to the task loss (0.0 for almost every method)."""
    hooks = _training_hooks(model)
    return hooks.loss(model) if hooks is not None and hooks.loss is not None else 0.0


def after_step(model: nn.Module, step: int, total_steps: int) -> None:
    """Let the attached method act after optimiser step ``step`` of ``total_steps`` (see ``TrainingHooks``)."""
    hooks = _training_hooks(model)
    if hooks is not None and hooks.after_step is not None:
        hooks.after_step(model, step, total_steps)


def cache_point(model: nn.Module) -> CachePoint | None:
    info = attached(model)
    spec = get_method(info.name)
    return spec.cache_point(model, info.config) if spec.cache_point else None
