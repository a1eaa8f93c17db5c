"""huggingface peft's methods (family ``huggingface-peft``), checked against peft itself.

The reference for each method is a peft config written here, independently of peftlab's config classes, and a
model made by ``peft.get_peft_model`` on the same tiny timm ViT: peftlab's trained tensors, their count and the
function they compute must be peft's. Then what peftlab adds: one AdamW step changes exactly the trained
tensors, merge is peft's merge and leaves a plain timm model with the same logits, checkpoints round-trip,
methods that start at the backbone compute it, AdaLoRA's penalty and rank reallocation run through peftlab's
trainer, and bad values are one-line errors. The generic contract (``test_all_methods.py``) runs over them too.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import timm
import torch
from method_helpers import NUM_CLASSES, eval_logits, relative_error, train_steps
from safetensors.torch import load_file
from torch import nn

from peftlab.checkpoint import load_peft, save_peft
from peftlab.errors import PeftlabError
from peftlab.methods import (
    attach,
    build_config,
    count_parameters,
    identity_state,
    list_methods,
    merge,
    method_loss,
    method_state_dict,
    trainable_state_dict,
)
from peftlab.methods.base import HF_PEFT_FAMILY

HF_METHODS = [spec.name for spec in list_methods() if spec.family == HF_PEFT_FAMILY]
QKV = ["attn.qkv"]
ALL_LINEAR = ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]
PEFT_PREFIX = "base_model.model."


def reference_config(method: str):
    """peft's config for peftlab's defaults of ``method`` (new object each call: peft may edit it)."""
    import peft

    return {
        "hf_lora": lambda: peft.LoraConfig(r=8, lora_alpha=8, lora_dropout=0.1, target_modules=QKV),
        "hf_loha": lambda: peft.LoHaConfig(r=8, alpha=8, target_modules=QKV),
        "hf_lokr": lambda: peft.LoKrConfig(r=8, alpha=8, target_modules=QKV),
        "hf_oft": lambda: peft.OFTConfig(r=0, oft_block_size=32, target_modules=QKV),
        "hf_boft": lambda: peft.BOFTConfig(boft_block_size=4, boft_n_butterfly_factor=1, target_modules=QKV),
        "hf_vera": lambda: peft.VeraConfig(r=256, target_modules=QKV),
        "hf_fourierft": lambda: peft.FourierFTConfig(n_frequency=3000, scaling=300.0, target_modules=QKV),
        "hf_hra": lambda: peft.HRAConfig(r=8, target_modules=QKV),
        "hf_adalora": lambda: peft.AdaLoraConfig(init_r=12, target_r=8, total_step=10, target_modules=ALL_LINEAR),
    }[method]()


# Every hf method starts as the backbone except FourierFT (peft's N(0, 1) spectrum; zeros with init_zero).
STARTS_AT_BACKBONE = [(method, {}) for method in HF_METHODS if method != "hf_fourierft"]
STARTS_AT_BACKBONE.append(("hf_fourierft", {"init_zero": True}))


def _peft_model(tiny_vit, method: str):
    import peft

    return peft.get_peft_model(tiny_vit(NUM_CLASSES), reference_config(method))


def _perturbed(tiny_vit, method: str, values=None, seed: int = 1):
    """peftlab's model with every trained tensor moved off its init (a fixed random perturbation)."""
    model = attach(tiny_vit(NUM_CLASSES), method, values or {})
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def _load_into_peft(peft_model, tensors) -> None:
    params = dict(peft_model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            params[PEFT_PREFIX + name].copy_(value)


def test_at_least_nine_peft_methods_each_with_a_reference():
    assert len(HF_METHODS) >= 9 and len(list_methods()) >= 30
    for method in HF_METHODS:
        reference_config(method)  # KeyError: a method without a reference here


@pytest.mark.parametrize("method", HF_METHODS)
def test_trained_tensors_and_their_count_are_peft_s(tiny_vit, method):
    ours = attach(tiny_vit(NUM_CLASSES), method)
    theirs = _peft_model(tiny_vit, method)
    trainable, _ = theirs.get_nb_trainable_parameters()
    assert count_parameters(ours)["method"] == trainable
    theirs_names = {name.removeprefix(PEFT_PREFIX) for name, p in theirs.named_parameters() if p.requires_grad}
    assert set(method_state_dict(ours)) == theirs_names


@pytest.mark.parametrize("method", HF_METHODS)
def test_logits_equal_peft_s_with_the_same_tensors(tiny_vit, tiny_images, method):
    images = tiny_images(3)
    ours = _perturbed(tiny_vit, method)
    theirs = _peft_model(tiny_vit, method)
    _load_into_peft(theirs, trainable_state_dict(ours))
    expected = eval_logits(theirs, images)
    assert relative_error(eval_logits(ours, images), expected) < 1e-6


@pytest.mark.parametrize("method", HF_METHODS)
def test_one_adamw_step_changes_exactly_the_trained_tensors(tiny_vit, tiny_images, method):
    model = attach(tiny_vit(NUM_CLASSES), method)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    train_steps(model, tiny_images(4), steps=1)
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}
    assert changed == set(trainable_state_dict(model))


@pytest.mark.parametrize("method", HF_METHODS)
def test_merge_is_peft_s_merge_into_a_plain_timm_model(tiny_vit, tiny_images, method):
    """In float64, so the check is on the fold itself: in float32 the generic test asks for 1e-4, which FourierFT
    meets by a factor of only ~2.5 on the tiny ViT (its default scaling, 300, is meant for 768-wide layers and
    makes the update ~60x the 64-wide weights here, so rounding grows through the blocks)."""
    images = tiny_images(4).double()
    ours = _perturbed(tiny_vit, method).double()
    theirs = _peft_model(tiny_vit, method).double()
    _load_into_peft(theirs, trainable_state_dict(ours))
    unmerged = eval_logits(ours, images)
    merged = merge(ours)
    assert not hasattr(merged, "peft_config") and not any("base_layer" in name for name in merged.state_dict())
    fresh = timm.create_model(merged.peftlab_backbone["name"], num_classes=NUM_CLASSES).double()
    fresh.load_state_dict(merged.state_dict(), strict=True)
    assert relative_error(eval_logits(fresh, images), unmerged) < 1e-9
    reference = theirs.merge_and_unload().state_dict()
    for name, value in merged.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", HF_METHODS)
def test_checkpoint_round_trip(tmp_path, tiny_vit, tiny_images, method):
    images = tiny_images(3)
    model = _perturbed(tiny_vit, method)
    path = save_peft(model, tmp_path / "run")
    saved = load_file(str(path))
    assert set(saved) == set(trainable_state_dict(model))  # trained tensors only, under peft's names
    restored = load_peft(tiny_vit(NUM_CLASSES).eval(), tmp_path / "run")
    assert torch.equal(eval_logits(restored, images), eval_logits(model, images))


@pytest.mark.parametrize(("method", "values"), STARTS_AT_BACKBONE)
def test_methods_that_start_at_the_backbone_compute_it(tiny_vit, tiny_images, method, values):
    images = tiny_images(3)
    model = attach(tiny_vit(NUM_CLASSES), method, values)
    identity = identity_state(model, tiny_vit(NUM_CLASSES).state_dict())
    trained = method_state_dict(model)
    assert set(identity) == set(trained)
    for name, value in trained.items():  # HRA's pairs are equal, the others' zero factors zero
        torch.testing.assert_close(identity[name], value, rtol=0, atol=0)
    backbone = eval_logits(tiny_vit(NUM_CLASSES), images)
    assert (eval_logits(model, images) - backbone).abs().max() < 1e-6


def test_fourierft_starts_away_from_the_backbone_but_has_an_identity(tiny_vit, tiny_images):
    images = tiny_images(3)
    model = attach(tiny_vit(NUM_CLASSES), "hf_fourierft")
    backbone = tiny_vit(NUM_CLASSES)
    assert (eval_logits(model, images) - eval_logits(backbone, images)).abs().max() > 1e-3
    model.load_state_dict(identity_state(model, backbone.state_dict()), strict=False)
    assert (eval_logits(model, images) - eval_logits(backbone, images)).abs().max() < 1e-6


def test_hra_has_no_identity_at_an_odd_rank(tiny_vit):
    with pytest.warns(UserWarning, match="odd"):  # peft's own warning: no symmetric init
        model = attach(tiny_vit(NUM_CLASSES), "hf_hra", {"rank": 3})
    assert identity_state(model, tiny_vit(NUM_CLASSES).state_dict()) is None


def test_adalora_penalty_is_peft_s(tiny_vit, tiny_images):
    """peft adds it to a transformers output's ``loss``: wrap the same ViT so its forward returns one."""
    from peft.tuners.adalora import AdaLoraModel

    class WithLoss(nn.Module):
        def __init__(self, vit: nn.Module) -> None:
            super().__init__()
            self.vit = vit

        def forward(self, x: torch.Tensor) -> SimpleNamespace:
            return SimpleNamespace(loss=self.vit(x).sum() * 0)

    ours = _perturbed(tiny_vit, "hf_adalora")
    theirs = AdaLoraModel(WithLoss(tiny_vit(NUM_CLASSES)), reference_config("hf_adalora"), "default")
    params = dict(theirs.model.named_parameters())
    with torch.no_grad():
        for name, value in method_state_dict(ours).items():
            params[f"vit.{name}"].copy_(value)
    expected = theirs(tiny_images(2)).loss
    penalty = method_loss(ours)
    assert penalty.requires_grad and float(penalty.detach()) > 0
    torch.testing.assert_close(penalty, expected, rtol=1e-6, atol=0)


def test_adalora_reallocates_ranks_to_the_budget_in_peftlab_s_trainer(tiny_vit):
    from peftlab.training.forward import ModelRunner
    from peftlab.training.inputs import InputTransform
    from peftlab.training.loop import FitSettings, fit

    model = attach(tiny_vit(NUM_CLASSES), "hf_adalora", {"init_r": 4, "target_r": 2, "targets": "qkv"})
    rows = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(12) % NUM_CLASSES
    settings = FitSettings(lr=1e-2, weight_decay=1e-4, epochs=2, warmup_epochs=0, batch_size=4, lr_min=1e-5,
                           warmup_lr_init=1e-6)
    result = fit(ModelRunner(model, InputTransform()), rows, labels, settings, generator=torch.Generator())
    assert result.status == "ok" and result.steps == 6
    tuner_config = model.__dict__["_hf_peft_tuner"].peft_config["default"]
    assert tuner_config.total_step == 6  # the run's length, set on the first step
    kept = {name: int((value != 0).sum()) for name, value in method_state_dict(model).items() if "lora_E" in name}
    assert len(kept) == 6 and sum(kept.values()) == 2 * 6  # target_r per layer on average, reallocated
    assert set(tuner_config.rank_pattern) == set(kept)


def test_bad_settings_are_one_line_errors_naming_the_method(tiny_vit):
    with pytest.raises(PeftlabError, match="^hf_boft: peft rejects these settings: .*boft_block_size"):
        build_config("hf_boft", {"block_size": 4, "block_num": 4})
    with pytest.raises(PeftlabError, match="^hf_boft: peft rejects these settings: .*divisible") as error:
        attach(tiny_vit(NUM_CLASSES), "hf_boft", {"block_size": 6})  # 64 channels
    assert "\n" not in str(error.value)
    with pytest.raises(PeftlabError, match="^hf_adalora: target_r=8 must be <= init_r=4"):
        build_config("hf_adalora", {"init_r": 4})
    with pytest.raises(PeftlabError, match="^hf_fourierft: peft rejects"):
        attach(tiny_vit(NUM_CLASSES), "hf_fourierft", {"n_frequency": 5000, "targets": "attn"})  # proj: 64·64


def test_trainable_counts_follow_each_method_s_formula(tiny_vit):
    """On the tiny ViT (6 blocks, d = 64: qkv 64→192, proj 64→64, fc1 64→256, fc2 256→64), per block."""
    def method_params(method, values=None):
        return count_parameters(attach(tiny_vit(NUM_CLASSES), method, values or {}))["method"]

    blocks, d = 6, 64
    assert method_params("hf_lora") == blocks * 8 * (d + 3 * d)                       # A [8, d], B [3d, 8]
    assert method_params("hf_loha") == blocks * 2 * 8 * (d + 3 * d)                   # two A·B pairs
    assert method_params("hf_vera") == blocks * (256 + 3 * d)                         # λ_d [r], λ_b [3d]
    assert method_params("hf_fourierft") == blocks * 3000                             # n coefficients a layer
    assert method_params("hf_oft") == blocks * (d // 32) * (32 * 31 // 2)             # skew part of 32×32 blocks
    assert method_params("hf_boft") == blocks * ((d // 4) * 4 * 4 + 3 * d)            # 4×4 blocks, output scale
    assert method_params("hf_hra") == blocks * d * 8                                  # 8 vectors of length d
    linear = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)]
    assert method_params("hf_adalora") == blocks * sum(12 * (i + o) + 12 for i, o in linear)  # P, Q, E per layer


def test_hf_lora_on_vit_b_has_the_paper_code_s_lora_count():
    from peftlab.methods.commands import count_method_parameters

    counts = count_method_parameters("vit_base_patch16_224", "hf_lora")  # meta device: no weights
    assert counts["method"] == 12 * 8 * (768 + 3 * 768) == 294_912
    assert counts["method"] == count_method_parameters("vit_base_patch16_224", "lora")["method"]


@pytest.mark.parametrize(("method", "values"), [("hf_loha", {}), ("hf_lokr", {"module_dropout": 0.1}),
                                                ("hf_boft", {}), ("hf_boft", {"dropout": 0.1}),
                                                ("hf_vera", {"dropout": 0.1}), ("hf_adalora", {})])
def test_the_trainer_knows_which_peft_layers_draw_random_numbers(tiny_vit, tiny_images, method, values):
    """Runs that draw none are trained together (``fit_group``): LoHa/LoKr always draw (peft's module dropout
    draws even at probability 0), BOFT's multiplicative dropout only when on."""
    from peftlab.methods import cache_point
    from peftlab.training.forward import draws_random_numbers

    model = attach(tiny_vit(NUM_CLASSES), method, values)
    model.train()
    before = torch.random.get_rng_state()
    model(tiny_images(2))
    drew = not torch.equal(before, torch.random.get_rng_state())
    assert draws_random_numbers(model, cache_point(model)) == drew
