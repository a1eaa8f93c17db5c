"""Generic contract of every registered PEFT method (this file covers methods added later automatically).

For each method on the tiny ViT, at its defaults and in each of its other forms (every choice of a ``form``
hyper-parameter, plus LoRA's fused update on some of q, k, v only): exactly the intended tensors train; AdamW
steps change exactly those; forward and backward work at batch 1 and 3; identity-initialised methods compute
the backbone at init; loading ``identity_state`` gives back the backbone; a saved checkpoint loads into a fresh
backbone with the same logits; a mergeable method merges into a plain timm model that loads strictly into a
fresh one and computes the same logits.
"""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch
from method_helpers import NUM_CLASSES, eval_logits, relative_error, train_steps

from peftlab.checkpoint import load_peft, save_peft
from peftlab.methods import (
    attach,
    get_method,
    identity_state,
    list_methods,
    merge,
    method_state_dict,
)

ALL_METHODS = [spec.name for spec in list_methods()]


def _variants() -> list[tuple[str, dict]]:
    """Every method at its defaults, then with each non-default choice of its ``form``."""
    variants = []
    for spec in list_methods():
        variants.append((spec.name, {}))
        for field in dataclasses.fields(spec.config_cls):
            if field.name == "form":
                variants += [(spec.name, {"form": choice}) for choice in field.metadata["choices"]
                             if choice != field.default]
    return variants + [("lora", {"targets": "qv"})]  # fused, on two of the three projections (a RowScatter)


VARIANTS = _variants()
VARIANT_IDS = [name + "".join(f"-{key}={value}" for key, value in values.items()) for name, values in VARIANTS]
MERGEABLE = [(name, values) for name, values in VARIANTS if get_method(name).mergeable]
MERGEABLE_IDS = [name + "".join(f"-{key}={value}" for key, value in values.items()) for name, values in MERGEABLE]


def _is_norm(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[-2].startswith("norm")


def _is_bias(name: str) -> bool:
    return name.endswith(".bias")


# Pretrained (backbone) tensors a method retrains, by their timm name; the head always trains, and every tensor
# a method adds trains. Partial at its default: the last of 6 blocks (not the final norm, as PETL_Vision).
RETRAINED_PRETRAINED = {
    "full": lambda name: True,
    "partial": lambda name: name.startswith("blocks.5."),
    "bitfit": _is_bias,
    "layernorm": _is_norm,
    "difffit": lambda name: _is_bias(name) or _is_norm(name),
}

# Methods that must start exactly at the backbone (zero up-projections, B = 0, scales at one). Houlsby and
# Pfeiffer adapters use PETL_Vision's random (xavier) init of both projections, SSF a random scale/shift: for
# them the generic test checks nothing at init, only the identity state below.
IDENTITY_AT_INIT = {"lora", "dora", "ia3", "difffit", "adapter_lora_init", "adaptformer", "convpass", "repadapter",
                    "fact_tt", "fact_tk"}


def _attached(tiny_vit, method: str, values: dict):
    model = tiny_vit(NUM_CLASSES)
    pretrained = {id(p): (name, p.detach().clone()) for name, p in model.named_parameters()}
    attach(model, method, values)
    return model, pretrained


def _expected_trainable(model, pretrained, method: str) -> set[str]:
    """Names (after attachment) of the parameters that should train."""
    retrained = RETRAINED_PRETRAINED.get(method, lambda name: False)
    expected = set()
    for name, parameter in model.named_parameters():
        if name.startswith("head."):
            expected.add(name)
        elif id(parameter) in pretrained:  # methods keep the backbone's parameter objects (wrapped, not copied)
            if retrained(pretrained[id(parameter)][0]):
                expected.add(name)
        else:
            expected.add(name)  # a tensor the method added
    return expected


@pytest.mark.parametrize("method, values", VARIANTS, ids=VARIANT_IDS)
def test_only_intended_tensors_train(tiny_vit, method, values):
    model, pretrained = _attached(tiny_vit, method, values)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = _expected_trainable(model, pretrained, method)
    assert trainable == expected, (f"unexpectedly trainable: {sorted(trainable - expected)[:5]}; "
                                   f"unexpectedly frozen: {sorted(expected - trainable)[:5]}")
    assert model.peft.name == method


@pytest.mark.parametrize("method, values", VARIANTS, ids=VARIANT_IDS)
def test_adamw_changes_exactly_the_trained_tensors(tiny_vit, tiny_images, method, values):
    model, _ = _attached(tiny_vit, method, values)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # Two steps: a tensor whose gradient is zero at init (an adapter's down bias behind a zero up) moves in the
    # second one.
    train_steps(model, tiny_images(4), steps=2)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == trainable, (f"changed but frozen: {sorted(changed - trainable)[:5]}; "
                                  f"trainable but unchanged: {sorted(trainable - changed)[:5]}")


@pytest.mark.parametrize("method, values", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("batch", [1, 3])
def test_forward_backward(tiny_vit, tiny_images, method, values, batch):
    model, _ = _attached(tiny_vit, method, values)
    model.train()
    logits = model(tiny_images(batch))
    assert logits.shape == (batch, NUM_CLASSES) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{name} trains but gets no gradient"
        else:
            assert parameter.grad is None, f"{name} is frozen but got a gradient"


@pytest.mark.parametrize("method, values", VARIANTS, ids=VARIANT_IDS)
def test_identity_initialised_methods_start_at_the_backbone(tiny_vit, tiny_images, method, values):
    images = tiny_images(3)
    model, _ = _attached(tiny_vit, method, values)
    identity = identity_state(model, tiny_vit(NUM_CLASSES).state_dict())
    if identity is None:
        assert method not in IDENTITY_AT_INIT
        pytest.skip(f"{method} has no identity state")
    at_init = all(torch.equal(identity[k], v) for k, v in method_state_dict(model).items())
    if method in IDENTITY_AT_INIT:
        assert at_init, f"{method} should start at its identity state"
    elif not at_init:
        pytest.skip(f"{method} starts away from its identity (random init)")
    backbone_logits = eval_logits(tiny_vit(NUM_CLASSES), images)
    assert (eval_logits(model, images) - backbone_logits).abs().max() < 1e-6


@pytest.mark.parametrize("method, values", VARIANTS, ids=VARIANT_IDS)
def test_identity_state_gives_back_the_backbone(tiny_vit, tiny_images, method, values):
    images = tiny_images(3)
    model, _ = _attached(tiny_vit, method, values)
    backbone = tiny_vit(NUM_CLASSES)
    train_steps(model, images)
    identity = identity_state(model, backbone.state_dict())
    if identity is None:
        pytest.skip(f"{method} has no identity state (prompts always change the function)")
    assert set(identity) == set(method_state_dict(model))
    head = {k: v for k, v in backbone.state_dict().items() if k.startswith("head.")}
    missing, unexpected = model.load_state_dict({**identity, **head}, strict=False)
    assert not unexpected
    assert (eval_logits(model, images) - eval_logits(backbone, images)).abs().max() < 1e-5


@pytest.mark.parametrize("method, values", VARIANTS, ids=VARIANT_IDS)
def test_save_and_load_give_the_same_model(tmp_path, tiny_vit, tiny_images, method, values):
    images = tiny_images(3)
    model, _ = _attached(tiny_vit, method, values)
    train_steps(model, images, steps=1)
    expected = eval_logits(model, images)
    save_peft(model, tmp_path / "run")
    restored = load_peft(tiny_vit(NUM_CLASSES), tmp_path / "run")
    assert restored.peft.config == model.peft.config
    assert torch.equal(eval_logits(restored, images), expected)


@pytest.mark.parametrize("method, values", MERGEABLE, ids=MERGEABLE_IDS)
def test_merge_gives_a_plain_timm_model_with_the_same_logits(tiny_vit, tiny_images, method, values):
    images = tiny_images(4)
    model, _ = _attached(tiny_vit, method, values)
    train_steps(model, images)
    expected = eval_logits(model, images)
    merged = merge(model)
    assert not hasattr(merged, "peft")
    fresh = timm.create_model(merged.peftlab_backbone["name"], num_classes=NUM_CLASSES)
    fresh.load_state_dict(merged.state_dict(), strict=True)
    assert relative_error(eval_logits(fresh, images), expected) < 1e-4


def test_every_method_is_described():
    for name in ALL_METHODS:
        spec = get_method(name)
        assert spec.description and "\n" not in spec.description
        for hparam in spec.hparams():
            assert hparam["help"], f"{name}.{hparam['name']} has no help text"
