"""RepAdapter: a linear group-wise adapter on the normed input of qkv and fc1, folded exactly into them."""

from __future__ import annotations

import pytest
import timm
import torch
from method_helpers import NUM_CLASSES, eval_logits, relative_error, train_steps
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.methods import attach, merge
from peftlab.methods.commands import count_method_parameters
from peftlab.methods.repadapter import GroupedLinear, InputAdaptedLinear, RepAdapter


def test_adapters_wrap_qkv_and_fc1_keeping_their_state_dict_keys(tiny_vit):
    backbone_keys = set(tiny_vit(NUM_CLASSES).state_dict())
    model = attach(tiny_vit(NUM_CLASSES), "repadapter")
    for block in model.blocks:
        assert isinstance(block.attn.qkv, InputAdaptedLinear) and isinstance(block.mlp.fc1, InputAdaptedLinear)
        assert isinstance(block.attn.proj, nn.Linear) and isinstance(block.mlp.fc2, nn.Linear)
    assert backbone_keys <= set(model.state_dict())


def test_the_adapter_reads_the_normed_input_and_feeds_the_linear(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "repadapter").eval()
    block, seen = model.blocks[2], {}
    block.norm1.register_forward_hook(lambda _m, _a, out: seen.__setitem__("norm1", out.detach().clone()))
    block.norm2.register_forward_hook(lambda _m, _a, out: seen.__setitem__("norm2", out.detach().clone()))
    block.attn.qkv.adapter.register_forward_hook(lambda _m, args, _o: seen.__setitem__("qkv_in", args[0].clone()))
    block.mlp.fc1.adapter.register_forward_hook(lambda _m, args, _o: seen.__setitem__("fc1_in", args[0].clone()))
    model(tiny_images(2))
    assert torch.equal(seen["qkv_in"], seen["norm1"])
    assert torch.equal(seen["fc1_in"], seen["norm2"])


def test_grouped_up_projection_is_a_grouped_1x1_convolution():
    torch.manual_seed(0)
    grouped = GroupedLinear(6, 8, groups=2)
    with torch.no_grad():
        grouped.weight.normal_()
        grouped.bias.normal_()
    conv = nn.Conv1d(6, 8, 1, groups=2)
    with torch.no_grad():
        conv.weight.copy_(grouped.weight.unsqueeze(-1))
        conv.bias.copy_(grouped.bias)
    x = torch.randn(2, 5, 6)
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(grouped(x), expected, atol=1e-6)
    assert torch.allclose(x @ grouped.dense_weight().T + grouped.bias, expected, atol=1e-6)


def test_hand_computed_adapter():
    adapter = RepAdapter(width=4, dim=2, groups=2, scale=0.5).eval()
    with torch.no_grad():
        adapter.down.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
        adapter.down.bias.copy_(torch.tensor([1.0, -1.0]))
        adapter.up.weight.copy_(torch.tensor([[2.0], [3.0], [4.0], [5.0]]))  # group 0: rows 0-1, group 1: rows 2-3
        adapter.up.bias.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    # down = [1 + 1, 4 - 1] = [2, 3]; up = [2·2, 3·2, 4·3 + 1, 5·3] = [4, 6, 13, 15]; x + 0.5·up
    assert torch.allclose(adapter(x), torch.tensor([[3.0, 5.0, 9.5, 11.5]]))
    matrix, offset = adapter.affine()
    assert torch.allclose(x @ matrix.T + offset, adapter(x))


def test_merge_folds_exactly_into_plain_linears(tiny_vit, tiny_images):
    images = tiny_images(4)
    model = attach(tiny_vit(NUM_CLASSES), "repadapter", {"dim": 4, "scale": 5.0})
    train_steps(model, images, steps=3, lr=5e-2)
    adapted = eval_logits(model, images)
    backbone = eval_logits(tiny_vit(NUM_CLASSES), images)
    assert relative_error(adapted, backbone) > 1e-3  # the adapters changed the function
    merged = merge(model)
    for block in merged.blocks:
        assert type(block.attn.qkv) is nn.Linear and type(block.mlp.fc1) is nn.Linear
    fresh = timm.create_model("vit_mini_patch8_32", num_classes=NUM_CLASSES)
    fresh.load_state_dict(merged.state_dict(), strict=True)
    assert relative_error(eval_logits(fresh, images), adapted) < 1e-5


def test_groups_must_divide_the_bottleneck(tiny_vit):
    with pytest.raises(PeftlabError, match="groups=3"):
        attach(tiny_vit(NUM_CLASSES), "repadapter", {"dim": 8, "groups": 3})


@pytest.mark.parametrize("dim", [8, 16, 32])
def test_vit_b_parameter_count(dim):
    d = 768
    per_adapter = d * dim + dim + (dim // 2) * d + d
    assert count_method_parameters("vit_base_patch16_224", "repadapter", {"dim": dim})["method"] == 24 * per_adapter
