"""Convpass: the branch beside attention and MLP (one drop-path mask per branch in training, as PETL_Vision and
Convpass's code), its 3×3 convolution on the row-major patch grid, the class token's centre-tap treatment, and
its initialisations."""

from __future__ import annotations

import pytest
import torch
from method_helpers import NUM_CLASSES
from timm.layers import drop_path
from torch import nn

from peftlab.methods import attach
from peftlab.methods.commands import count_method_parameters
from peftlab.methods.convpass import ConvpassBranch
from peftlab.methods.layers import AdaptedSite

GRID = (3, 4)  # height 3, width 4: a non-square grid catches a transposed layout


def branch(xavier_conv: bool = False, channels: int = 2) -> ConvpassBranch:
    return ConvpassBranch(8, channels, scale=1.0, grid_size=GRID, num_prefix_tokens=1, xavier_conv=xavier_conv)


def single_tap_kernel(module: ConvpassBranch, row: int, col: int) -> None:
    """Kernel that copies each channel from the neighbour at offset (row - 1, col - 1); zero bias."""
    with torch.no_grad():
        module.conv.weight.zero_()
        for channel in range(module.conv.out_channels):
            module.conv.weight[channel, channel, row, col] = 1.0
        module.conv.bias.zero_()


def test_convpass_wraps_attention_and_mlp_in_parallel(tiny_vit):
    model = attach(tiny_vit(NUM_CLASSES), "convpass")
    for block in model.blocks:
        assert isinstance(block.attn, AdaptedSite) and isinstance(block.mlp, AdaptedSite)
        assert {block.attn.placement, block.mlp.placement} == {"beside"}
        assert isinstance(block.attn.adapter, ConvpassBranch) and block.attn.adapter.grid_size == (4, 4)


def test_branches_read_the_same_normed_input_as_their_sublayer(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "convpass").eval()
    block, seen = model.blocks[3], {}

    def keep(key):
        return lambda _module, args, output: seen.__setitem__(key, args[0].detach().clone())

    block.attn.base.register_forward_hook(keep("attn_in"))
    block.attn.adapter.register_forward_hook(keep("attn_branch_in"))
    block.mlp.base.register_forward_hook(keep("mlp_in"))
    block.mlp.adapter.register_forward_hook(keep("mlp_branch_in"))
    block.mlp.norm.register_forward_hook(lambda _m, _a, output: seen.__setitem__("norm2_out", output.detach().clone()))
    model(tiny_images(2))
    assert torch.equal(seen["attn_branch_in"], seen["attn_in"])
    assert torch.equal(seen["mlp_branch_in"], seen["mlp_in"])
    assert torch.equal(seen["mlp_in"], seen["norm2_out"])


def test_block_in_train_mode_draws_a_drop_path_mask_per_branch(tiny_vit):
    """PETL_Vision's ``parallel`` with ``ln: after``: ``x + dp(attn(n1(x))) + dp(branch(n1(x)))``, then the same
    beside the MLP; written out here with timm's ``drop_path`` under the same seed (branch dropout off)."""
    rate = 0.5 * 5 / 5  # timm's rule at drop_path_rate 0.5: the last of 6 blocks drops with 0.5
    model = attach(tiny_vit(NUM_CLASSES, drop_path_rate=0.5), "convpass", {"dropout": 0.0, "xavier_init": True})
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0, 0.2)
    block, frozen = model.blocks[5].train(), tiny_vit(NUM_CLASSES).blocks[5]
    x = torch.randn(16, 17, 64)
    with torch.no_grad():
        torch.manual_seed(5)
        actual = block(x)
        torch.manual_seed(5)
        normed = frozen.norm1(x)
        middle = x + drop_path(frozen.attn(normed), rate, True) + drop_path(block.attn.adapter(normed), rate, True)
        normed = frozen.norm2(middle)
        expected = (middle + drop_path(frozen.mlp(normed), rate, True)
                    + drop_path(block.mlp.adapter(normed), rate, True))
        deterministic = block.eval()(x)
    assert torch.allclose(actual, expected, atol=1e-5)
    assert not torch.allclose(actual, deterministic, atol=1e-3)


def test_patch_tokens_are_convolved_on_the_row_major_grid():
    module = branch()
    single_tap_kernel(module, row=0, col=1)  # output (i, j) takes the input at (i - 1, j): the patch above
    hidden = torch.zeros(1, 1 + 12, 2)
    source = 1 + 1 * 4 + 2  # patch at row 1, column 2
    hidden[0, source] = torch.tensor([3.0, -2.0])
    out = module.mix_spatially(hidden)
    below = 1 + 2 * 4 + 2  # row 2, column 2 reads row 1, column 2
    assert torch.equal(out[0, below], hidden[0, source])
    out[0, below] = 0
    assert torch.count_nonzero(out) == 0  # nothing else lit up: no wrap-around, class token untouched


def test_the_class_token_only_meets_the_centre_tap():
    module = branch(xavier_conv=True)
    hidden = torch.randn(2, 13, 2)
    with torch.no_grad():
        centre = module.conv.weight[:, :, 1, 1].clone()
        expected = hidden[:, 0] @ centre.T + module.conv.bias
        assert torch.allclose(module.mix_spatially(hidden)[:, 0], expected, atol=1e-6)
        hidden[:, 1:] = torch.randn(2, 12, 2)  # other tokens do not reach the class token
        assert torch.allclose(module.mix_spatially(hidden)[:, 0], expected, atol=1e-6)


def test_default_kernel_is_the_identity_and_xavier_kernel_is_not():
    hidden = torch.randn(2, 13, 2)
    assert torch.equal(branch(xavier_conv=False).mix_spatially(hidden), hidden)
    torch.manual_seed(0)
    assert not torch.allclose(branch(xavier_conv=True).mix_spatially(hidden), hidden)


def test_branch_matches_its_formula():
    torch.manual_seed(0)
    module = ConvpassBranch(8, 2, scale=3.0, grid_size=GRID, num_prefix_tokens=1, xavier_conv=True).eval()
    with torch.no_grad():
        module.up.weight.normal_()
        module.up.bias.normal_()
    x = torch.randn(2, 13, 8)

    def quick_gelu(t):
        return t * torch.sigmoid(1.702 * t)

    with torch.no_grad():
        down = quick_gelu(x @ module.down.weight.T + module.down.bias)
        grid = down[:, 1:].reshape(2, 3, 4, 2).permute(0, 3, 1, 2)
        patches = nn.functional.conv2d(grid, module.conv.weight, module.conv.bias, padding=1)
        patches = patches.permute(0, 2, 3, 1).reshape(2, 12, 2)
        cls = down[:, :1] @ module.conv.weight[:, :, 1, 1].T + module.conv.bias
        mixed = quick_gelu(torch.cat([cls, patches], dim=1))
        expected = 3.0 * (mixed @ module.up.weight.T + module.up.bias)
        assert torch.allclose(module(x), expected, atol=1e-5)


def test_init_down_xavier_up_zero():
    module = branch()
    assert torch.count_nonzero(module.up.weight) == 0 and torch.count_nonzero(module.up.bias) == 0
    assert torch.count_nonzero(module.down.bias) == 0 and module.down.weight.abs().sum() > 0
    assert torch.count_nonzero(module.conv.bias) == 0


def test_a_token_count_off_the_grid_is_an_error():
    with pytest.raises(ValueError, match="prefix"):
        branch().mix_spatially(torch.zeros(1, 10, 2))


@pytest.mark.parametrize("dim", [8, 16])
def test_vit_b_parameter_count(dim):
    d = 768
    per_branch = d * dim + dim + dim * dim * 9 + dim + dim * d + d
    assert count_method_parameters("vit_base_patch16_224", "convpass", {"dim": dim})["method"] == 12 * 2 * per_branch
