"""PEFT checkpoints: trained tensors only, a sidecar describing the backbone, exact round trips, and clear errors
when the backbone (weights or architecture) is not the one the tensors were trained on."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from peftlab.checkpoint import load_peft, read_sidecar, save_peft
from peftlab.errors import PeftlabError
from peftlab.io import read_json, save_tensors
from peftlab.methods import attach, trainable_state_dict

NAME = "vit_mini_patch8_32"


@pytest.fixture
def weights(tmp_path, tiny_vit):
    path = tmp_path / "backbone.safetensors"
    save_tensors(path, tiny_vit(None, seed=1).state_dict())
    return path


def _trained(tiny_vit, weights, method="lora", values=None):
    model = attach(tiny_vit(4, weights=weights), method, {"rank": 2} if values is None else values)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@pytest.mark.parametrize("method", ["lora", "vpt_deep", "bitfit"])
def test_round_trip_gives_identical_logits(tmp_path, tiny_vit, tiny_images, weights, method):
    model = _trained(tiny_vit, weights, method, {} if method != "lora" else None)
    images = tiny_images(3)
    expected = model(images)
    save_peft(model, tmp_path / "run", extra_meta={"seed": 0})

    restored = load_peft(tiny_vit(None, weights=weights).eval(), tmp_path / "run")
    assert restored.peft.name == method and restored.num_classes == 4
    assert torch.equal(restored(images), expected)


def test_checkpoint_holds_only_trained_tensors(tmp_path, tiny_vit, weights):
    model = _trained(tiny_vit, weights)
    path = save_peft(model, tmp_path / "run" / "peft.safetensors")
    tensors = load_file(str(path))
    assert set(tensors) == set(trainable_state_dict(model))
    assert all(".lora_" in key or key.startswith("head.") for key in tensors)
    assert path.stat().st_size < weights.stat().st_size / 5

    meta = read_json(tmp_path / "run" / "peft.json")
    assert meta["method"] == "lora" and meta["config"]["rank"] == 2 and meta["num_classes"] == 4
    assert meta["backbone"]["name"] == NAME and meta["backbone"]["architecture"]["depth"] == 6
    assert meta["backbone"]["weights_sha256"] == model.peftlab_backbone["weights_sha256"]
    assert "git_revision" in meta["provenance"]
    assert read_sidecar(tmp_path / "run")["method"] == "lora"


def test_loading_into_a_model_with_the_method_attached(tmp_path, tiny_vit, tiny_images, weights):
    model = _trained(tiny_vit, weights)
    save_peft(model, tmp_path / "run")
    target = attach(tiny_vit(4, weights=weights), "lora", {"rank": 2}).eval()
    load_peft(target, tmp_path / "run")
    images = tiny_images(2)
    assert torch.equal(target(images), model(images))
    other = attach(tiny_vit(4, weights=weights), "lora", {"rank": 4})
    with pytest.raises(PeftlabError, match="rank"):
        load_peft(other, tmp_path / "run")


def test_wrong_backbone_weights_are_refused(tmp_path, tiny_vit, weights):
    save_peft(_trained(tiny_vit, weights), tmp_path / "run")
    other = tmp_path / "other.safetensors"
    save_tensors(other, tiny_vit(None, seed=2).state_dict())
    with pytest.raises(PeftlabError, match=r"peft\.json.*sha256"):
        load_peft(tiny_vit(None, weights=other), tmp_path / "run")
    with pytest.raises(PeftlabError, match="sha256"):
        load_peft(tiny_vit(None), tmp_path / "run")  # random init, no weights file


def test_wrong_architecture_is_refused(tmp_path, tiny_vit, weights):
    save_peft(_trained(tiny_vit, weights), tmp_path / "run")
    with pytest.raises(PeftlabError, match=r"peft\.json.*architecture.*patch_size"):
        load_peft(tiny_vit(None, name="vit_mini_patch4_32"), tmp_path / "run")


def test_missing_checkpoint_is_named(tmp_path, tiny_vit):
    with pytest.raises(PeftlabError, match="peft.json"):
        load_peft(tiny_vit(4), tmp_path / "absent")
