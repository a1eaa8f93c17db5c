"""Per-method behaviour the generic contract cannot see: SSF's formula, VPT's token layout, LoRA/DoRA targets and
scaling, partial's block selection, the cache points, and config validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from method_helpers import NUM_CLASSES, train_steps

from peftlab.errors import PeftlabError
from peftlab.methods import CachePoint, attach, build_config, cache_point, count_parameters
from peftlab.methods.layers import LowRankUpdate, ScaleShift, SlicedDelta

DIM, DEPTH, HEADS, TOKENS = 64, 6, 4, 17  # vit_mini_patch8_32: 16 patches + class token


def _modulate(x: torch.Tensor, modulated) -> torch.Tensor:
    return x * modulated.modulation.scale + modulated.modulation.shift


def test_ssf_block_matches_its_formula(tiny_vit):
    model = attach(tiny_vit(NUM_CLASSES), "ssf").eval()
    block = model.blocks[0]
    x = x_in = torch.randn(2, TOKENS, DIM)
    norm1, qkv, proj = block.norm1, block.attn.qkv, block.attn.proj
    fc1, fc2, norm2 = block.mlp.fc1, block.mlp.fc2, block.norm2

    h = _modulate(F.layer_norm(x, (DIM,), norm1.base.weight, norm1.base.bias, norm1.base.eps), norm1)
    q, k, v = _modulate(F.linear(h, qkv.base.weight, qkv.base.bias), qkv).view(2, TOKENS, 3, HEADS, -1).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    attention = ((q @ k.transpose(-1, -2)) / math.sqrt(DIM // HEADS)).softmax(-1) @ v
    attention = attention.transpose(1, 2).reshape(2, TOKENS, DIM)
    x = x + _modulate(F.linear(attention, proj.base.weight, proj.base.bias), proj)
    h = _modulate(F.layer_norm(x, (DIM,), norm2.base.weight, norm2.base.bias, norm2.base.eps), norm2)
    h = F.gelu(_modulate(F.linear(h, fc1.base.weight, fc1.base.bias), fc1))
    expected = x + _modulate(F.linear(h, fc2.base.weight, fc2.base.bias), fc2)

    with torch.no_grad():
        assert torch.allclose(block(x_in), expected, atol=1e-5)


def test_ssf_init_and_placement(tiny_vit):
    torch.manual_seed(0)
    model = attach(tiny_vit(NUM_CLASSES), "ssf")
    modulations = [m for m in model.modules() if isinstance(m, ScaleShift)]
    # patch embedding, final norm, and per block norm1, norm2, qkv, proj, fc1, fc2
    assert len(modulations) == 2 + 6 * DEPTH
    scales = torch.cat([m.scale.detach() for m in modulations])
    shifts = torch.cat([m.shift.detach() for m in modulations])
    assert abs(scales.mean() - 1) < 0.01 and abs(scales.std() - 0.02) < 0.005
    assert abs(shifts.mean()) < 0.01 and abs(shifts.std() - 0.02) < 0.005


@pytest.mark.parametrize("form, later_length", [("first_block", TOKENS), ("persistent", TOKENS + 3)])
def test_vpt_shallow_prompts_join_block_0_and_leave_or_stay(tiny_vit, tiny_images, form, later_length):
    model = attach(tiny_vit(NUM_CLASSES), "vpt_shallow", {"num_tokens": 3, "form": form}).eval()
    lengths = []
    for block in model.blocks:
        block.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    model.blocks[0].block.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    features = model.forward_features(tiny_images(2))
    assert lengths == [TOKENS, TOKENS + 3] + [later_length] * (DEPTH - 1)  # block 0 sees the prompts
    assert features.shape[1] == later_length and model.num_prefix_tokens == 1 + later_length - TOKENS
    assert not hasattr(model.blocks[1], "prompts")


def test_vpt_deep_gives_every_block_its_own_prompts_and_drops_them_after_it(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "vpt_deep", {"num_tokens": 2, "dropout": 0.0}).eval()
    seen = []
    for block in model.blocks:
        block.block.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    features = model.forward_features(tiny_images(2))
    assert [s.shape[1] for s in seen] == [TOKENS + 2] * DEPTH
    for index, sequence in enumerate(seen):  # each block reads its own prompts at positions 1..2
        assert torch.equal(sequence[:, 1:3], model.blocks[index].prompts.detach().expand(2, -1, -1))
    assert features.shape[1] == TOKENS and model.num_prefix_tokens == 1
    bound = math.sqrt(6.0 / (3 * 8 * 8 + DIM))
    assert all(block.prompts.abs().max() <= bound for block in model.blocks)


def test_vpt_average_pooling_ignores_persistent_prompts(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES, global_pool="avg"), "vpt_shallow", {"num_tokens": 4, "form": "persistent"})
    features = model.eval().forward_features(tiny_images(2))
    pooled = model.pool(features)
    assert torch.allclose(pooled, features[:, 1 + 4:].mean(dim=1))


def test_lora_fused_form_shares_one_a_over_q_k_v(tiny_vit):
    model = attach(tiny_vit(NUM_CLASSES), "lora", {"rank": 4, "alpha": 8})
    update = model.blocks[0].attn.qkv.delta
    assert isinstance(update, LowRankUpdate) and update.scaling == 2.0 and update.rank == 4
    assert update.lora_A.shape == (4, DIM) and update.lora_B.shape == (3 * DIM, 4)
    assert torch.count_nonzero(update.lora_B) == 0 and torch.count_nonzero(update.lora_A) > 0
    assert count_parameters(model)["method"] == DEPTH * 4 * (DIM + 3 * DIM)
    default = attach(tiny_vit(NUM_CLASSES), "lora").blocks[0].attn.qkv.delta
    assert default.scaling == 1.0 and default.lora_B.shape == (3 * DIM, 8)  # alpha defaults to the rank


def test_lora_separate_form_has_an_update_per_target(tiny_vit):
    model = attach(tiny_vit(NUM_CLASSES), "lora", {"rank": 4, "targets": "qkv", "alpha": 8, "form": "separate"})
    delta = model.blocks[0].attn.qkv.delta
    assert isinstance(delta, SlicedDelta) and sorted(delta.parts) == ["k", "q", "v"]
    update = delta.parts["v"]
    assert isinstance(update, LowRankUpdate) and update.scaling == 2.0 and update.rank == 4
    assert count_parameters(model)["method"] == DEPTH * 3 * 4 * (DIM + DIM)
    literature = attach(tiny_vit(NUM_CLASSES), "lora", {"form": "separate", "targets": "qv"})
    assert sorted(literature.blocks[0].attn.qkv.delta.parts) == ["q", "v"]


@pytest.mark.parametrize("form", ["fused", "separate"])
def test_lora_update_lands_on_the_target_rows_only(tiny_vit, form):
    model = attach(tiny_vit(NUM_CLASSES), "lora", {"targets": "qv", "form": form}).eval()
    qkv = model.blocks[0].attn.qkv
    with torch.no_grad():
        for name, parameter in qkv.delta.named_parameters():
            if name.endswith("lora_B"):
                parameter.normal_()
    delta = qkv.delta.delta_weight()
    assert torch.count_nonzero(delta[DIM:2 * DIM]) == 0  # k untouched
    assert torch.count_nonzero(delta[:DIM]) == DIM * DIM and torch.count_nonzero(delta[2 * DIM:]) == DIM * DIM
    x = torch.randn(2, 3, DIM)
    assert torch.allclose(qkv.delta(x), x @ delta.T, atol=1e-6)
    shared = [p for name, p in qkv.delta.named_parameters() if name.endswith("lora_A")]
    assert len(shared) == (1 if form == "fused" else 2)


def test_dora_rows_keep_their_learned_magnitude(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "dora", {"rank": 2})
    qkv = model.blocks[0].attn.qkv
    before = qkv.weight.detach().clone()
    assert torch.allclose(qkv.magnitude, before[qkv.rows].norm(dim=1))
    train_steps(model, tiny_images(4))
    weight = qkv.adapted_weight().detach()
    assert torch.allclose(weight[qkv.rows].norm(dim=1), qkv.magnitude.detach(), rtol=1e-5)
    untouched = torch.arange(DIM, 2 * DIM)  # the k rows
    assert torch.equal(weight[untouched], before[untouched])
    assert count_parameters(model)["method"] == DEPTH * 2 * (2 * (DIM + DIM) + DIM)


def test_ia3_and_difffit_parameter_layout(tiny_vit):
    ia3 = attach(tiny_vit(NUM_CLASSES), "ia3")
    assert count_parameters(ia3)["method"] == DEPTH * (2 * DIM + 4 * DIM)
    difffit = attach(tiny_vit(NUM_CLASSES), "difffit")
    gammas = [difffit.blocks[i].ls1.gamma for i in range(DEPTH)] + [difffit.blocks[i].ls2.gamma for i in range(DEPTH)]
    assert all(torch.equal(g, torch.ones(DIM)) and g.requires_grad for g in gammas)


@pytest.mark.parametrize("part, trained", [("all", {"attn", "mlp", "norm1", "norm2"}), ("attn", {"attn"}),
                                           ("mlp", {"mlp"})])
def test_partial_trains_the_last_blocks(tiny_vit, part, trained):
    model = attach(tiny_vit(NUM_CLASSES), "partial", {"blocks": 2, "part": part})
    names = {n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")}
    assert all(n.startswith(("blocks.4.", "blocks.5.")) for n in names)  # not the final norm (as PETL_Vision)
    assert {n.split(".")[2] for n in names} == trained
    assert cache_point(model) == CachePoint("blocks", DEPTH - 2)


def test_partial_rejects_more_blocks_than_the_model_has(tiny_vit):
    with pytest.raises(PeftlabError, match=r"blocks=7 .*depth 6"):
        attach(tiny_vit(NUM_CLASSES), "partial", {"blocks": 7})


@pytest.mark.parametrize("method, point", [
    ("linear", CachePoint("features")), ("lora", CachePoint("blocks", 0)), ("vpt_deep", CachePoint("blocks", 0)),
    ("layernorm", CachePoint("blocks", 0)), ("bitfit", None), ("ssf", None), ("full", None),
])
def test_cache_points(tiny_vit, method, point):
    assert cache_point(attach(tiny_vit(NUM_CLASSES), method)) == point


@pytest.mark.parametrize("method, values, key", [
    ("lora", {"rank": -1}, "rank"), ("lora", {"rank": "abc"}, "rank"), ("lora", {"targets": "qx"}, "targets"),
    ("vpt_deep", {"num_tokens": 0}, "num_tokens"), ("partial", {"part": "head"}, "part"),
    ("lora", {"ranks": 4}, "ranks"),
])
def test_bad_hyper_parameters_name_the_key(method, values, key):
    with pytest.raises(PeftlabError, match=key):
        build_config(method, values)


def test_attach_refuses_a_second_method(tiny_vit):
    model = attach(tiny_vit(NUM_CLASSES), "lora")
    with pytest.raises(PeftlabError, match="already"):
        attach(model, "bitfit")


@pytest.mark.parametrize("method", ["ssf", "ia3", "difffit", "lora", "dora"])
def test_merge_on_a_clip_style_backbone(tiny_vit, tiny_images, method):
    """CLIP's layout: a pre-norm and a bias-free patch embedding (SSF's shift then goes to the pos-embedding)."""
    import timm
    from method_helpers import eval_logits, relative_error

    from peftlab.methods import merge

    images = tiny_images(3)
    model = tiny_vit(NUM_CLASSES, pre_norm=True)
    assert model.patch_embed.proj.bias is None
    attach(model, method)
    train_steps(model, images)
    expected = eval_logits(model, images)
    fresh = timm.create_model("vit_mini_patch8_32", num_classes=NUM_CLASSES, pre_norm=True)
    fresh.load_state_dict(merge(model).state_dict(), strict=True)
    assert relative_error(eval_logits(fresh, images), expected) < 1e-4
