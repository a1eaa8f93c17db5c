"""VQT: the original tokens compute exactly the backbone; each query reads its block's tokens only; the query
outputs, un-normed by the final norm, reach a head of the right width; checkpoints and the cached path work."""

from __future__ import annotations

import pytest
import torch
from method_helpers import NUM_CLASSES, eval_logits, train_steps
from torch import nn

from peftlab.checkpoint import load_peft, save_peft
from peftlab.errors import PeftlabError
from peftlab.methods import attach, cache_point, count_parameters
from peftlab.methods.commands import count_method_parameters
from peftlab.training.forward import prefix_forward, suffix_forward

WIDTH, DEPTH, TOKENS = 64, 6, 17  # the tiny ViT: dim 64, 6 blocks, class token + 4×4 patches


def embedded(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))


def test_original_tokens_compute_exactly_the_backbone(tiny_vit, tiny_images):
    images = tiny_images(3)
    expected = tiny_vit(NUM_CLASSES).eval().forward_features(images)
    model = attach(tiny_vit(NUM_CLASSES), "vqt", {"num_tokens": 2})
    train_steps(model, images)
    with torch.no_grad():
        sequence = model.eval().forward_features(images)
    assert sequence.shape == (3, TOKENS + DEPTH * 2, WIDTH)
    assert torch.allclose(sequence[:, :TOKENS], expected, atol=1e-6)


def test_a_query_output_matches_cross_attention_to_the_tokens(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "vqt", {"num_tokens": 2}).eval()
    query_block = model.blocks[0]
    block, query = query_block.block, query_block.query_tokens[0]
    with torch.no_grad():
        tokens = embedded(model, tiny_images(2))
        out = query_block(tokens)[:, TOKENS:]
        attn, heads = block.attn, block.attn.num_heads
        qkv = attn.qkv(block.norm1(torch.cat([tokens, query.expand(2, -1, -1)], dim=1)))
        q, k, v = qkv.reshape(2, TOKENS + 2, 3, heads, WIDTH // heads).permute(2, 0, 3, 1, 4)
        q, k, v = q[:, :, TOKENS:], k[:, :, :TOKENS], v[:, :, :TOKENS]  # queries ask, only tokens answer
        weights = (q @ k.transpose(-2, -1) * (WIDTH // heads) ** -0.5).softmax(dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(2, 2, WIDTH)
        after_attention = query + attn.proj(mixed)
        expected = after_attention + block.mlp(block.norm2(after_attention))
    assert torch.allclose(out, expected, atol=1e-5)


def test_queries_do_not_see_each_other(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "vqt", {"num_tokens": 2}).eval()
    tokens = embedded(model, tiny_images(2)).detach()
    with torch.no_grad():
        before = model.blocks[0](tokens)
        model.blocks[0].query_tokens[0, 1] += 1.0
        after = model.blocks[0](tokens)
    assert torch.equal(after[:, :TOKENS + 1], before[:, :TOKENS + 1])
    assert not torch.allclose(after[:, TOKENS + 1], before[:, TOKENS + 1])


def test_head_input_is_the_class_feature_and_the_raw_query_outputs(tiny_vit, tiny_images):
    images = tiny_images(2)
    model = attach(tiny_vit(NUM_CLASSES), "vqt", {"num_tokens": 2, "normalize": False}).eval()
    captured = {}
    model.blocks.register_forward_hook(lambda _m, _a, out: captured.__setitem__("blocks", out.detach().clone()))
    with torch.no_grad():
        features = model.forward_head(model.forward_features(images), pre_logits=True)
        cls = tiny_vit(NUM_CLASSES).eval().forward_features(images)[:, 0]
    assert features.shape == (2, WIDTH * (1 + DEPTH * 2))
    assert torch.allclose(features[:, :WIDTH], cls, atol=1e-6)
    assert torch.equal(features[:, WIDTH:], captured["blocks"][:, TOKENS:].flatten(1))  # no final norm on them


def test_normalised_features_are_unit_length_per_block(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "vqt", {"num_tokens": 3}).eval()
    with torch.no_grad():
        features = model.forward_head(model.forward_features(tiny_images(2)), pre_logits=True)
    cls, per_block = features[:, :WIDTH], features[:, WIDTH:].reshape(2, DEPTH, 3 * WIDTH)
    assert torch.allclose(cls.norm(dim=-1), torch.ones(2))
    assert torch.allclose(per_block.norm(dim=-1), torch.ones(2, DEPTH))


@pytest.mark.parametrize("block", [0, DEPTH - 1])
def test_every_blocks_queries_reach_the_logits(tiny_vit, tiny_images, block):
    images = tiny_images(2)
    model = attach(tiny_vit(NUM_CLASSES), "vqt")
    before = eval_logits(model, images)
    with torch.no_grad():
        model.blocks[block].query_tokens.add_(0.5)
    assert not torch.allclose(eval_logits(model, images), before)


@pytest.mark.parametrize("values, per_block", [({"num_tokens": 3}, 3),
                                               ({"num_tokens": 3, "combine": "layer_weighted"}, 1)])
def test_the_wider_head_is_a_counted_linear_module(tiny_vit, values, per_block):
    model = attach(tiny_vit(NUM_CLASSES), "vqt", values)
    in_features = WIDTH * (1 + DEPTH * per_block)
    assert isinstance(model.head, nn.Linear) and model.get_classifier() is model.head
    assert model.head.in_features == in_features and model.head.out_features == NUM_CLASSES
    counts = count_parameters(model)
    assert counts["head"] == (in_features + 1) * NUM_CLASSES
    combine_weights = DEPTH * 3 if per_block == 1 else 0
    assert counts["method"] == DEPTH * 3 * WIDTH + combine_weights


def test_checkpoint_round_trip(tiny_vit, tiny_images, tmp_path):
    images = tiny_images(2)
    model = attach(tiny_vit(NUM_CLASSES), "vqt", {"num_tokens": 2, "combine": "layer_weighted"})
    train_steps(model, images)
    expected = eval_logits(model, images)
    save_peft(model, tmp_path / "peft.safetensors")
    restored = load_peft(tiny_vit(NUM_CLASSES), tmp_path / "peft.safetensors")
    assert torch.allclose(eval_logits(restored, images), expected, atol=1e-6)


def test_cached_prefix_path_equals_the_full_forward(tiny_vit, tiny_images):
    images = tiny_images(2)
    model = attach(tiny_vit(NUM_CLASSES), "vqt", {"num_tokens": 2}).eval()
    point = cache_point(model)
    assert point is not None and point.kind == "blocks" and point.depth == 0
    with torch.no_grad():
        cached = suffix_forward(model, point, prefix_forward(model, point, images))
        assert torch.allclose(cached, model(images), atol=1e-6)


def test_backbones_with_an_fc_norm_are_refused(tiny_vit):
    with pytest.raises(PeftlabError, match="fc_norm"):
        attach(tiny_vit(NUM_CLASSES, global_pool="avg"), "vqt")


def test_vit_b_parameter_count():
    counts = count_method_parameters("vit_base_patch16_224", "vqt", {"num_tokens": 10}, num_classes=100)
    assert counts["method"] == 12 * 10 * 768
    assert counts["head"] == (768 * (1 + 12 * 10) + 1) * 100
