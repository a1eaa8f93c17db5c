"""huggingface peft's tuners on timm ViTs: the glue every ``hf_*`` method module shares.

A method module declares its config (a frozen dataclass of ``hparam`` fields with a ``to_peft()`` giving peft's
own config object) and calls ``register_peft_method``. Everything else is peft's code, used as peft users use it:

* **Attach**: peft's tuner class for the config's ``peft_type`` (what ``peft.inject_adapter_in_model`` and
  ``get_peft_model`` instantiate) wraps the matched timm modules in place (``blocks.i.attn.qkv`` becomes a peft
  layer whose ``base_layer`` is the original ``nn.Linear``, the same parameter objects) and leaves only the
  adapter tensors trainable; peftlab's ``attach`` then unfreezes the head. The tuner is used directly rather than
  through ``inject_adapter_in_model`` because that function refuses tuners with shared state (VeRA's projections),
  and because the tuner is what merges (``merge_and_unload``) and what AdaLoRA's rank allocator lives on; it is
  kept in the model's ``__dict__`` (not as a submodule: its parameters are the model's).
* **Trained tensors** are peft's adapter parameters under their peft names, e.g.
  ``blocks.0.attn.qkv.lora_A.default.weight`` or ``blocks.0.attn.qkv.hada_w1_a.default``: that is what
  ``checkpoint.save_peft`` writes and loads back (a fresh attach recreates the same names).
* **Constants**: peft keeps a few constant tensors as ``nn.Parameter``s (AdaLoRA's ``ranknum``, always the
  initial rank). peftlab's contract is that every parameter a method adds trains, so the glue re-registers them
  as buffers of the same value (peft indexes them the same way); see ``_constants_to_buffers`` for why this also
  keeps them from training on a GPU.
* **Merge** is peft's ``merge_and_unload(safe_merge=True)``: each peft layer folds its update into the base
  weight and is replaced by that base ``nn.Linear``, which leaves a plain timm model.
* **Identity** (WiSE-FT's θ₀): per peft attribute name (``lora_B``, ``hada_w2_b``, ...) the value that makes the
  update vanish, following the method's own zero-initialised factor; a method may have none.
* **Targets** follow timm's ViT names (``TARGET_MODULES``); peft matches them as suffixes of module names.

Errors peft raises on a bad combination of values (a block size that does not divide a layer's width, two
mutually exclusive settings) become one-line ``PeftlabError``s naming the method: config-level ones when the
config is built, layer-level ones when the method is attached to a backbone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods.base import HF_PEFT_FAMILY, MethodSpec, TrainingHooks, hparam, register
from peftlab.methods.layers import frozen_prefix_cache_point

ADAPTER = "default"  # peft's adapter name: the last part of every trained tensor's name (before ``.weight``)
TUNER_ATTRIBUTE = "_hf_peft_tuner"

# timm ViT modules by target set; peft matches each as a suffix of a module name (``blocks.3.attn.qkv``).
TARGET_MODULES: dict[str, tuple[str, ...]] = {
    "qkv": ("attn.qkv",),
    "attn": ("attn.qkv", "attn.proj"),
    "mlp": ("mlp.fc1", "mlp.fc2"),
    "all": ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),
}

IdentityRule = Callable[[str, torch.Tensor], torch.Tensor]


def targets_hparam(default: str) -> Any:
    """The ``targets`` field every peft method has: which timm modules get the method's update."""
    return hparam(default, "timm modules that get the update: qkv (attn.qkv, the fused projection), attn (+attn.proj), "
                  "mlp (mlp.fc1, mlp.fc2), all (all four)", choices=tuple(TARGET_MODULES))


def target_modules(targets: str) -> list[str]:
    return list(TARGET_MODULES[targets])


def peft_error(method: str, exc: Exception) -> PeftlabError:
    """peft's message (first line) as a one-line peftlab error."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PeftlabError(f"{method}: peft rejects these settings: {first_line}")


class PeftMethodConfig:
    """Base of the ``hf_*`` configs: building one checks it with peft's own config validation, so a bad combination
    is an error where the value is first seen. Subclasses are frozen dataclasses defining ``to_peft()``."""

    method_name = ""  # set by register_peft_method

    def to_peft(self) -> Any:  # peft.PeftConfig
        raise NotImplementedError

    def __post_init__(self) -> None:
        try:
            self.to_peft()
        except ValueError as exc:
            raise peft_error(self.method_name or type(self).__name__, exc) from None


def peft_tuner(model: nn.Module) -> Any:
    """The peft tuner (``LoraModel``, ``AdaLoraModel``, ...) that wrapped ``model``'s layers."""
    try:
        return model.__dict__[TUNER_ATTRIBUTE]
    except KeyError:
        raise PeftlabError("no huggingface peft method is attached to this model") from None


def _constants_to_buffers(model: nn.Module) -> None:
    """Re-register peft's constant parameters (AdaLoRA's ``ranknum``) as buffers; see the module docstring.

    peft trains exactly the tensors of a layer's ``adapter_layer_names`` (its ``set_adapter``); a ``ParameterDict``
    among its ``other_param_names`` holds constants. Those are made buffers whatever their ``requires_grad``: peft
    creates them frozen, but its move of an adapter to the base layer's device (``_move_adapter_to_device_of_base_
    layer``, on CUDA or the meta device) stores them back into the ``ParameterDict``, which re-wraps them as
    trainable parameters, so on a GPU ``ranknum`` would otherwise train."""
    from peft.tuners._buffer_dict import BufferDict
    from peft.tuners.tuners_utils import BaseTunerLayer

    for layer in model.modules():
        if not isinstance(layer, BaseTunerLayer):
            continue
        for attribute in layer.other_param_names:
            value = getattr(layer, attribute, None)
            if isinstance(value, nn.ParameterDict):
                setattr(layer, attribute, BufferDict({key: p.detach() for key, p in value.items()}, persistent=False))


def _mark_random_layers(model: nn.Module) -> None:
    """Flag the peft modules that draw random numbers in a training forward without being torch dropout modules,
    so the trainer never groups their runs (``training.forward.draws_random_numbers``): LoHa's and LoKr's layers
    draw ``torch.rand(1)`` every training step for their module dropout, even at probability 0
    (``tuners/loha/layer.py``, ``tuners/lokr/layer.py``, ``forward``), and BOFT's multiplicative dropout draws
    when its probability is positive."""
    from peft.tuners.boft.layer import MultiplicativeDropoutLayer
    from peft.tuners.lycoris_utils import LycorisLayer

    for module in model.modules():
        if isinstance(module, LycorisLayer) or (isinstance(module, MultiplicativeDropoutLayer) and module.p > 0):
            module.peftlab_draws_random_numbers = True


def attach_peft(method: str, model: nn.Module, config: PeftMethodConfig) -> None:
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    peft_config = config.to_peft()
    tuner_cls = PEFT_TYPE_TO_TUNER_MAPPING[peft_config.peft_type]
    try:
        tuner = tuner_cls(model, peft_config, adapter_name=ADAPTER)
    except ValueError as exc:  # e.g. a block size that does not divide this backbone's width
        raise peft_error(method, exc) from None
    _constants_to_buffers(model)
    _mark_random_layers(model)
    model.__dict__[TUNER_ATTRIBUTE] = tuner


def merge_peft(model: nn.Module) -> None:
    peft_tuner(model).merge_and_unload(safe_merge=True)  # also removes the ``peft_config`` it set on the model
    del model.__dict__[TUNER_ATTRIBUTE]


def adapter_attribute(name: str) -> str:
    """The peft attribute a trained tensor belongs to: ``blocks.0.attn.qkv.lora_B.default.weight`` -> ``lora_B``."""
    parts = name.split(".")
    if ADAPTER not in parts:
        raise KeyError(f"{name} is not a peft adapter tensor (no '.{ADAPTER}' part)")
    return parts[parts.index(ADAPTER) - 1]


def identity_by_attribute(rules: Mapping[str, IdentityRule], trained: Mapping[str, torch.Tensor]
                          ) -> dict[str, torch.Tensor]:
    """Identity values of peft's trained tensors from per-attribute ``rules`` (every attribute must have one)."""
    identity = {}
    for name, value in trained.items():
        attribute = adapter_attribute(name)
        if attribute not in rules:
            raise KeyError(f"{name}: no identity rule for peft attribute '{attribute}'")
        identity[name] = rules[attribute](name, value).detach().clone()
    return identity


def register_peft_method(name: str, description: str, config_cls: type[PeftMethodConfig],
                         identity: Mapping[str, IdentityRule] | Callable[[Any], Mapping[str, IdentityRule] | None],
                         training: TrainingHooks | None = None,
                         before_attach: Callable[[], None] | None = None) -> MethodSpec:
    """Register an ``hf_*`` method: ``identity`` maps peft attribute names to identity rules, or is a function of
    the config giving such a mapping or None (no identity for that config); ``before_attach`` runs before peft
    injects (BOFT: no CUDA-extension compile)."""
    config_cls.method_name = name

    def attach(model: nn.Module, config: PeftMethodConfig) -> None:
        if before_attach is not None:
            before_attach()
        attach_peft(name, model, config)

    def identity_state(model: nn.Module, trained: Mapping[str, torch.Tensor],
                       pretrained: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        rules = identity(model.peft.config) if callable(identity) else identity
        return None if rules is None else identity_by_attribute(rules, trained)

    return register(MethodSpec(name=name, description=description, config_cls=config_cls, attach=attach,
                               merge=merge_peft, identity=identity_state, cache_point=frozen_prefix_cache_point,
                               family=HF_PEFT_FAMILY, training=training))
