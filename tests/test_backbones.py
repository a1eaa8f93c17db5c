"""``create_backbone``: the tiny registered ViTs, local weight files (.safetensors, .pth, original-ViT .npz),
and the errors for missing files and for pretrained weights that would need a download."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from peftlab.backbones import architecture, build_architecture, create_backbone, weights_sha256
from peftlab.errors import PeftlabError
from peftlab.io import save_tensors, sha256_file

NAME = "vit_mini_patch8_32"


def _assert_same_tensors(a: dict, b: dict, skip_head: bool = False) -> None:
    keys = [k for k in a if not (skip_head and k.startswith("head."))]
    assert keys and all(torch.equal(a[k], b[k]) for k in keys)


def test_tiny_models_are_registered():
    for name, tokens in (("vit_mini_patch8_32", 16), ("vit_mini_patch4_32", 64)):
        model = timm.create_model(name, num_classes=3)
        assert model.patch_embed.num_patches == tokens and model.embed_dim == 64 and len(model.blocks) == 6
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    fingerprint = architecture(timm.create_model(NAME))
    assert fingerprint["patch_size"] == [8, 8] and fingerprint["num_heads"] == 4 and fingerprint["global_pool"] == "token"


@pytest.fixture
def source(tiny_vit):
    """A tiny ViT with random weights (and a 7-class head) whose state the files below hold."""
    return tiny_vit(7, seed=3)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_load_exactly(tmp_path, source, suffix):
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".safetensors":
        save_tensors(path, source.state_dict())
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    same_head = create_backbone(NAME, weights=path)
    assert same_head.num_classes == 1000  # the model's default head: the file's 7-class head does not fit
    _assert_same_tensors(source.state_dict(), same_head.state_dict(), skip_head=True)

    reloaded = create_backbone(NAME, weights=path, num_classes=3)
    _assert_same_tensors(source.state_dict(), reloaded.state_dict(), skip_head=True)
    assert reloaded.head.weight.shape == (3, 64)
    assert reloaded.peftlab_backbone["weights_sha256"] == sha256_file(path) == weights_sha256(path)
    assert reloaded.peftlab_backbone["name"] == NAME


def test_head_is_kept_when_it_fits_and_no_num_classes_is_asked(tmp_path, tiny_vit):
    source = tiny_vit(None, seed=4)  # the model's default 1000-class head
    path = tmp_path / "backbone.safetensors"
    save_tensors(path, source.state_dict())
    _assert_same_tensors(source.state_dict(), create_backbone(NAME, weights=path).state_dict())


def _to_original_vit_npz(model: torch.nn.Module, path) -> None:
    """Write ``model`` in the original (JAX) ViT ``.npz`` layout that timm's ``_load_weights`` reads."""
    heads = model.blocks[0].attn.num_heads
    dim = model.embed_dim
    w = {
        "embedding/kernel": model.patch_embed.proj.weight.permute(2, 3, 1, 0),
        "embedding/bias": model.patch_embed.proj.bias,
        "cls": model.cls_token,
        "Transformer/posembed_input/pos_embedding": model.pos_embed,
        "Transformer/encoder_norm/scale": model.norm.weight,
        "Transformer/encoder_norm/bias": model.norm.bias,
        "head/kernel": model.head.weight.T,
        "head/bias": model.head.bias,
    }
    for i, block in enumerate(model.blocks):
        p = f"Transformer/encoderblock_{i}/"
        mha = p + "MultiHeadDotProductAttention_1/"
        w[p + "LayerNorm_0/scale"], w[p + "LayerNorm_0/bias"] = block.norm1.weight, block.norm1.bias
        w[p + "LayerNorm_2/scale"], w[p + "LayerNorm_2/bias"] = block.norm2.weight, block.norm2.bias
        for n, weight, bias in zip(("query", "key", "value"), block.attn.qkv.weight.chunk(3),
                                   block.attn.qkv.bias.chunk(3), strict=True):
            w[f"{mha}{n}/kernel"] = weight.T.reshape(dim, heads, -1)
            w[f"{mha}{n}/bias"] = bias.reshape(heads, -1)
        w[mha + "out/kernel"] = block.attn.proj.weight.reshape(dim, heads, -1).permute(1, 2, 0)
        w[mha + "out/bias"] = block.attn.proj.bias
        for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            w[f"{p}MlpBlock_3/Dense_{r}/kernel"] = fc.weight.T
            w[f"{p}MlpBlock_3/Dense_{r}/bias"] = fc.bias
    np.savez(path, **{k: v.detach().numpy() for k, v in w.items()})


def test_original_vit_npz_loads_exactly(tmp_path, source):
    path = tmp_path / "ViT-mini.npz"
    _to_original_vit_npz(source, path)
    model = create_backbone(NAME, weights=path, num_classes=3)
    _assert_same_tensors(source.state_dict(), model.state_dict(), skip_head=True)
    assert model.head.weight.shape == (3, 64)
    kept = create_backbone(NAME, weights=path, num_classes=7)
    assert not torch.equal(kept.head.weight, source.head.weight)  # num_classes given: a fresh head


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(PeftlabError, match="nowhere.safetensors"):
        create_backbone(NAME, weights=missing)


def test_mismatched_file_is_named(tmp_path):
    path = tmp_path / "other.safetensors"
    save_tensors(path, timm.create_model(NAME, embed_dim=32).state_dict())
    with pytest.raises(PeftlabError, match="other.safetensors"):
        create_backbone(NAME, weights=path)


@pytest.mark.parametrize("name, file", [("vit_base_patch16_224.orig_in21k", "ViT-B_16.npz"),
                                        ("vit_base_patch16_clip_224.openai", "timm/vit_base_patch16_clip_224.openai")])
def test_pretrained_without_a_file_says_what_to_put_where(name, file):
    with pytest.raises(PeftlabError) as error:
        create_backbone(name, pretrained=True)
    assert file in str(error.value) and "--weights" in str(error.value) and "backbone.weights" in str(error.value)


def test_unknown_name():
    with pytest.raises(PeftlabError, match="vit_nonexistent"):
        create_backbone("vit_nonexistent")


def test_meta_architecture_has_shapes_only():
    model = build_architecture("vit_base_patch16_224", num_classes=10)
    assert model.pos_embed.is_meta and model.head.out_features == 10
    assert model.peftlab_backbone["architecture"]["depth"] == 12
