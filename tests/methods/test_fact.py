"""FacT-TT and FacT-TK: one set of shared factors for every layer, per-piece updates that match their dense form,
the Tucker core's mixing (PETL_Vision's reshaped fc1/fc2 cores, and the FacT paper's per-piece ones), parameter
counts and merging."""

from __future__ import annotations

import pytest
import torch
from method_helpers import NUM_CLASSES
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods import attach, identity_state, merge
from peftlab.methods.commands import count_method_parameters
from peftlab.methods.fact import FactDelta
from peftlab.methods.layers import LinearWithDelta

TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
METHODS = ("fact_tt", "fact_tk")


def attached(tiny_vit, method: str, **values):
    model = attach(tiny_vit(NUM_CLASSES), method, {"dim": 4, **values})
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in model.fact.parameters():
            parameter.normal_(0, 0.3)
    return model


def deltas(model: nn.Module) -> list[FactDelta]:
    return [block.get_submodule(target).delta for block in model.blocks for target in TARGETS]


@pytest.mark.parametrize("method", METHODS)
def test_every_layer_shares_the_same_u_and_v(tiny_vit, method):
    model = attached(tiny_vit, method)
    assert all(isinstance(block.get_submodule(t), LinearWithDelta) for block in model.blocks for t in TARGETS)
    assert all(delta.factors is model.fact for delta in deltas(model))
    names = [name for name, p in model.named_parameters() if p.requires_grad and not name.startswith("head.")]
    assert all(name.startswith("fact.") for name in names)
    assert names.count("fact.u") == 1 and names.count("fact.v") == 1
    before = [delta.delta_weight().clone() for delta in deltas(model)]
    with torch.no_grad():
        model.fact.u.mul_(2.0)  # ΔW is linear in U: every layer's update doubles at once
    for delta, old in zip(deltas(model), before, strict=True):
        assert torch.allclose(delta.delta_weight(), 2 * old, atol=1e-6)


@pytest.mark.parametrize("method, values", [("fact_tt", {}), ("fact_tk", {}), ("fact_tk", {"form": "per_piece"})])
def test_factored_forward_matches_the_dense_update(tiny_vit, method, values):
    model = attached(tiny_vit, method, scale=0.7, **values).eval()
    for target in TARGETS:
        delta = model.blocks[4].get_submodule(target).delta
        linear = model.blocks[4].get_submodule(target)
        assert delta.delta_weight().shape == linear.weight.shape
        x = torch.randn(2, 5, linear.in_features)
        assert torch.allclose(delta(x), x @ delta.delta_weight().T, atol=1e-5)


def test_tt_update_of_a_piece_is_v_core_u(tiny_vit):
    model = attached(tiny_vit, "fact_tt", scale=2.0)
    u, v, r, width = model.fact.u, model.fact.v, 4, 64
    core = model.fact.cores[1]["fc1"]  # [m·r, r], m = 4
    dense = model.blocks[1].mlp.fc1.delta.delta_weight()
    third_piece = dense[2 * width:3 * width]  # rows of the third hidden chunk
    assert torch.allclose(third_piece, 2.0 * v @ core[2 * r:3 * r] @ u, atol=1e-6)


def test_tk_cores_mix_one_shared_core_tensor(tiny_vit):
    """``per_piece`` (the FacT paper): piece ``j`` of every layer has the core ``(Σ_k C[:, :, k] P[k, j])ᵀ``."""
    model = attached(tiny_vit, "fact_tk", form="per_piece")
    factors, r = model.fact, 4
    assert factors.mix.shape == (r, 12 * len(model.blocks))  # 12 pieces per block: 3 qkv, 1 proj, 4 fc1, 4 fc2
    block = 2
    pieces = (("fc2", 3 + 1 + 4 + 2, (0, 2 * r)), ("fc1", 3 + 1 + 1, (r, 0)), ("qkv", 2, (2 * r, 0)))
    for target, first, (row, col) in pieces:  # (layer, piece's column of P, its corner in the layer's core)
        column = factors.mix[:, 12 * block + first]
        expected = sum(factors.core[:, :, k] * column[k] for k in range(r)).T
        core = factors.block_core(block, target)
        assert torch.allclose(core[row:row + r, col:col + r], expected, atol=1e-6), target


def petl_vision_tk_weight(factors, block: int, target: str, width: int, scale: float) -> torch.Tensor:
    """The dense ``ΔW`` [out, in] of PETL_Vision's FacT-TK (``model/fact.py``, ``fact_type: tk``), written out from
    its definition: ``F = FacTc @ FacTp[:, columns]`` ([r, r, k]); q/k/v/proj add ``FacTv(FacTu(x) @ F[:, :, j])``;
    fc1 adds ``FacTv`` on each r-chunk of ``FacTu(x) @ F[:, :, :4].reshape(r, 4r)``; fc2 adds
    ``FacTv(concat_c FacTu(x_c) @ F[:, :, 4:].reshape(r, 4r).T)`` over the 4 input chunks ``x_c``. ``FacTu`` is
    ``x ↦ u x`` (u [r, C]), ``FacTv`` is ``y ↦ v y`` (v [C, r]); a chunk's matrix ``M`` ([r, r], ``y = x_r @ M``)
    gives the C × C block ``v Mᵀ u``."""
    u, v, core, mix, r = factors.u, factors.v, factors.core, factors.mix, factors.rank
    start = 12 * block
    if target in ("attn.qkv", "attn.proj"):
        mixtures = core @ mix[:, start:start + 4]
        pieces = range(3) if target == "attn.qkv" else [3]
        return torch.cat([v @ mixtures[:, :, j].T @ u for j in pieces]) * scale
    mixtures = core @ mix[:, start + 4:start + 12]
    if target == "mlp.fc1":
        flat = mixtures[:, :, :4].reshape(r, 4 * r)  # FacTu(x) @ flat, then chunk c = columns c·r ... c·r + r
        return torch.cat([v @ flat[:, c * r:(c + 1) * r].T @ u for c in range(4)]) * scale
    flat = mixtures[:, :, 4:].reshape(r, 4 * r)  # concat_c FacTu(x_c) @ flat.T: chunk c meets columns c·r ...
    return torch.cat([v @ flat[:, c * r:(c + 1) * r] @ u for c in range(4)], dim=1) * scale


@pytest.mark.parametrize("target", TARGETS)
def test_tk_update_is_petl_vision_s(tiny_vit, target):
    """The default ``reshaped`` form adds PETL_Vision's update: the module's output difference and the merged
    weight's change both equal the dense ΔW written out above (for fc1/fc2 each C × C piece then mixes several
    of F's columns; qkv and proj have one column per piece)."""
    model = attached(tiny_vit, "fact_tk", scale=0.7).eval()
    block = 3
    layer = model.blocks[block].get_submodule(target)
    with torch.no_grad():
        expected = petl_vision_tk_weight(model.fact, block, target, 64, 0.7)
        x = torch.randn(2, 5, layer.in_features)
        added = layer(x) - nn.functional.linear(x, layer.weight, layer.bias)
        assert torch.allclose(added, x @ expected.T, atol=1e-5)
        before = layer.weight.clone()
        merged = merge(model).blocks[block].get_submodule(target)
        assert torch.allclose(merged.weight - before, expected, atol=1e-5)


def test_tk_forms_differ_only_in_the_mlp(tiny_vit):
    reshaped = attached(tiny_vit, "fact_tk")
    per_piece = attached(tiny_vit, "fact_tk", form="per_piece")
    per_piece.fact.load_state_dict(reshaped.fact.state_dict())
    for target in TARGETS:
        same = torch.allclose(reshaped.blocks[1].get_submodule(target).delta.delta_weight(),
                              per_piece.blocks[1].get_submodule(target).delta.delta_weight())
        assert same == target.startswith("attn."), target


@pytest.mark.parametrize("method", METHODS)
def test_zero_v_is_the_identity_and_the_init(tiny_vit, method):
    fresh = attach(tiny_vit(NUM_CLASSES), method)
    assert torch.count_nonzero(fresh.fact.v) == 0 and fresh.fact.u.abs().sum() > 0
    model = attached(tiny_vit, method)
    identity = identity_state(model, tiny_vit(NUM_CLASSES).state_dict())
    assert torch.count_nonzero(identity["fact.v"]) == 0
    assert torch.equal(identity["fact.u"], model.fact.u)


@pytest.mark.parametrize("method", METHODS)
def test_merge_removes_the_factors_and_restores_plain_linears(tiny_vit, method):
    backbone_keys = set(tiny_vit(NUM_CLASSES).state_dict())
    model = merge(attached(tiny_vit, method))
    assert not hasattr(model, "fact")
    assert all(type(block.get_submodule(t)) is nn.Linear for block in model.blocks for t in TARGETS)
    assert set(model.state_dict()) == backbone_keys


def test_mlp_width_must_be_a_multiple_of_the_embedding(tiny_vit):
    with pytest.raises(PeftlabError, match="not a multiple"):
        attach(tiny_vit(NUM_CLASSES, mlp_ratio=2.5), "fact_tt")


@pytest.mark.parametrize("method, dim", [("fact_tt", 8), ("fact_tt", 32), ("fact_tk", 16), ("fact_tk", 64)])
def test_vit_b_parameter_counts(method, dim):
    d, depth = 768, 12
    shared = 2 * d * dim
    expected = shared + (depth * 12 * dim * dim if method == "fact_tt" else dim ** 3 + dim * 12 * depth)
    assert count_method_parameters("vit_base_patch16_224", method, {"dim": dim})["method"] == expected
