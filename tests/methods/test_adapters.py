"""Bottleneck adapters (Houlsby, Pfeiffer, LoRA-init Pfeiffer) and AdaptFormer: where each one sits, what it
reads, how it starts, and its formula on one block, in eval mode and in train mode (drop-path placed as in
PETL_Vision's ``BlockPETL``: written out here from its definition, with timm's ``drop_path`` under a fixed seed)."""

from __future__ import annotations

import pytest
import torch
from method_helpers import NUM_CLASSES
from timm.layers import drop_path
from torch import nn

from peftlab.methods import attach
from peftlab.methods.adapter import DropoutBottleneck
from peftlab.methods.commands import count_method_parameters
from peftlab.methods.layers import AdaptedSite

DROP_PATH, DEPTH = 0.5, 6  # timm's rule: block i drops with DROP_PATH * i / (DEPTH - 1)

VIT_B_WIDTH, VIT_B_DEPTH = 768, 12


def capture(module: nn.Module, store: dict, key: str, what: str = "input") -> None:
    """Record ``module``'s first input (or its output) under ``key`` on every call."""
    def hook(_module, args, output):
        store[key] = (args[0] if what == "input" else output).detach().clone()
    module.register_forward_hook(hook)


def randomise(module: nn.Module, std: float = 0.2) -> None:
    """Give every trained tensor a non-trivial value (so a zero up-projection cannot hide a wrong wiring)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.requires_grad and not name.startswith("head."):
                parameter.normal_(0, std)


@pytest.mark.parametrize("method, sites", [("adapter_houlsby", {"attn", "mlp"}), ("adapter_pfeiffer", {"mlp"}),
                                           ("adapter_lora_init", {"mlp"})])
def test_adapters_sit_after_the_intended_sublayers(tiny_vit, method, sites):
    model = attach(tiny_vit(NUM_CLASSES), method)
    for block in model.blocks:
        wrapped = {site for site in ("attn", "mlp") if isinstance(getattr(block, site), AdaptedSite)}
        assert wrapped == sites and {getattr(block, site).placement for site in sites} == {"after"}
        assert isinstance(block.norm2, nn.LayerNorm) == ("mlp" not in sites)  # moved into the wrapped MLP


def test_houlsby_adapters_read_the_attention_and_mlp_outputs(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "adapter_houlsby").eval()
    block, seen = model.blocks[2], {}
    capture(block.attn.base, seen, "attn_out", "output")
    capture(block.attn.adapter, seen, "attn_adapter_in")
    capture(block.mlp.base, seen, "mlp_out", "output")
    capture(block.mlp.adapter, seen, "mlp_adapter_in")
    model(tiny_images(2))
    assert torch.equal(seen["attn_adapter_in"], seen["attn_out"])
    assert torch.equal(seen["mlp_adapter_in"], seen["mlp_out"])


def test_houlsby_block_matches_its_formula(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "adapter_houlsby", {"dim": 3, "scale": 0.5}).eval()
    randomise(model)
    block = model.blocks[0]
    x = torch.randn(2, 17, 64)

    def adapter(bottleneck: DropoutBottleneck, y: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(y @ bottleneck.down.weight.T + bottleneck.down.bias)
        return y + 0.5 * (hidden @ bottleneck.up.weight.T + bottleneck.up.bias)

    frozen = tiny_vit(NUM_CLASSES).blocks[0]  # the same backbone, without the method
    with torch.no_grad():
        middle = x + adapter(block.attn.adapter, frozen.attn(frozen.norm1(x)))
        expected = middle + adapter(block.mlp.adapter, frozen.mlp(frozen.norm2(middle)))
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_random_init_adapters_start_away_from_the_backbone_and_lora_init_at_it(tiny_vit):
    for method in ("adapter_houlsby", "adapter_pfeiffer"):
        bottleneck = attach(tiny_vit(NUM_CLASSES), method).blocks[0].mlp.adapter
        assert bottleneck.up.weight.abs().sum() > 0 and bottleneck.down.weight.abs().sum() > 0
        assert bottleneck.up.bias.abs().max() < 1e-4  # PETL_Vision's N(0, 1e-6) biases
    bottleneck = attach(tiny_vit(NUM_CLASSES), "adapter_lora_init").blocks[0].mlp.adapter
    assert torch.count_nonzero(bottleneck.up.weight) == 0 and torch.count_nonzero(bottleneck.up.bias) == 0
    assert torch.count_nonzero(bottleneck.down.bias) == 0 and bottleneck.down.weight.abs().sum() > 0
    assert bottleneck.down.weight.abs().max() <= (6 / (64 + 8)) ** 0.5  # xavier-uniform bound


def test_adapters_apply_dropout_after_the_activation_in_training_only(tiny_vit):
    bottleneck = attach(tiny_vit(NUM_CLASSES), "adapter_pfeiffer", {"dropout": 0.5}).blocks[0].mlp.adapter
    x = torch.randn(4, 17, 64)
    bottleneck.eval()
    assert torch.equal(bottleneck(x), bottleneck(x))
    bottleneck.train()
    assert not torch.equal(bottleneck(x), bottleneck(x))


def test_adaptformer_branch_reads_the_residual_stream_before_the_mlp_norm(tiny_vit, tiny_images):
    model = attach(tiny_vit(NUM_CLASSES), "adaptformer").eval()
    randomise(model)
    block, seen = model.blocks[1], {}
    assert isinstance(block.norm2, nn.Identity) and isinstance(block.mlp, AdaptedSite)
    capture(block.mlp.norm, seen, "norm_in")
    capture(block.mlp.norm, seen, "norm_out", "output")
    capture(block.mlp.base, seen, "mlp_in")
    capture(block.mlp.adapter, seen, "branch_in")
    capture(block.attn, seen, "attn_out", "output")
    capture(block, seen, "block_in")
    model(tiny_images(2))
    assert torch.equal(seen["branch_in"], seen["block_in"] + seen["attn_out"])  # the pre-norm stream
    assert torch.equal(seen["branch_in"], seen["norm_in"])
    assert torch.equal(seen["mlp_in"], seen["norm_out"])


def test_adaptformer_block_matches_its_formula(tiny_vit):
    model = attach(tiny_vit(NUM_CLASSES), "adaptformer", {"dim": 4, "scale": 0.2}).eval()
    randomise(model)
    block, frozen = model.blocks[0], tiny_vit(NUM_CLASSES).blocks[0]
    branch = block.mlp.adapter
    x = torch.randn(2, 17, 64)
    with torch.no_grad():
        middle = x + frozen.attn(frozen.norm1(x))
        hidden = torch.relu(middle @ branch.down.weight.T + branch.down.bias)
        expected = middle + frozen.mlp(frozen.norm2(middle)) + 0.2 * (hidden @ branch.up.weight.T + branch.up.bias)
        assert torch.allclose(block(x), expected, atol=1e-5)


def bottleneck(module: DropoutBottleneck, y: torch.Tensor, scale: float) -> torch.Tensor:
    """A ReLU bottleneck (no dropout) from its weights."""
    return scale * (torch.relu(y @ module.down.weight.T + module.down.bias) @ module.up.weight.T + module.up.bias)


def trained_block(tiny_vit, method: str, values: dict, index: int) -> tuple[nn.Module, nn.Module, float]:
    """Block ``index`` of ``method`` in train mode (adapter dropout 0, so drop-path is the only randomness), the
    same block of the plain backbone, and its drop-path rate."""
    model = attach(tiny_vit(NUM_CLASSES, drop_path_rate=DROP_PATH), method, {**values, "dropout": 0.0})
    randomise(model)
    return model.blocks[index].train(), tiny_vit(NUM_CLASSES).blocks[index], DROP_PATH * index / (DEPTH - 1)


def test_houlsby_block_in_train_mode_drops_paths_as_petl_vision(tiny_vit):
    """PETL_Vision's ``sequential_after``: ``y = dp(attn(norm1(x))); x + dp(y + adapter(y))``, then the same around
    the MLP: four independent drop-path masks per block, drawn in that order."""
    block, frozen, rate = trained_block(tiny_vit, "adapter_houlsby", {"dim": 3, "scale": 0.5}, index=4)
    x = torch.randn(16, 17, 64)
    with torch.no_grad():
        torch.manual_seed(7)
        actual = block(x)
        torch.manual_seed(7)
        y = drop_path(frozen.attn(frozen.norm1(x)), rate, True)
        middle = x + drop_path(y + bottleneck(block.attn.adapter, y, 0.5), rate, True)
        y = drop_path(frozen.mlp(frozen.norm2(middle)), rate, True)
        expected = middle + drop_path(y + bottleneck(block.mlp.adapter, y, 0.5), rate, True)
        deterministic = block.eval()(x)
    assert torch.allclose(actual, expected, atol=1e-5)
    assert not torch.allclose(actual, deterministic, atol=1e-3)  # the masks did drop paths


def test_adaptformer_block_in_train_mode_draws_a_mask_per_branch(tiny_vit):
    """PETL_Vision's ``parallel`` with ``ln: before``: ``x + dp(mlp(norm2(x))) + dp(branch(x))``."""
    block, frozen, rate = trained_block(tiny_vit, "adaptformer", {"dim": 4, "scale": 0.2}, index=5)
    x = torch.randn(16, 17, 64)
    with torch.no_grad():
        torch.manual_seed(3)
        actual = block(x)
        torch.manual_seed(3)
        middle = x + drop_path(frozen.attn(frozen.norm1(x)), rate, True)
        expected = (middle + drop_path(frozen.mlp(frozen.norm2(middle)), rate, True)
                    + drop_path(bottleneck(block.mlp.adapter, middle, 0.2), rate, True))
        deterministic = block.eval()(x)
    assert torch.allclose(actual, expected, atol=1e-5)
    assert not torch.allclose(actual, deterministic, atol=1e-3)


def test_adaptformer_starts_with_a_zero_up_projection_and_kaiming_down(tiny_vit):
    branch = attach(tiny_vit(NUM_CLASSES), "adaptformer", {"dim": 4}).blocks[0].mlp.adapter
    assert torch.count_nonzero(branch.up.weight) == 0 and torch.count_nonzero(branch.up.bias) == 0
    assert isinstance(branch.act, nn.ReLU)
    assert 0 < branch.down.weight.abs().max() <= 1 / 64 ** 0.5  # kaiming-uniform(a=√5) bound 1/√fan_in


@pytest.mark.parametrize("method, dim, per_block", [("adapter_pfeiffer", 8, 1), ("adapter_houlsby", 8, 2),
                                                    ("adapter_lora_init", 64, 1), ("adaptformer", 16, 1)])
def test_vit_b_parameter_counts(method, dim, per_block):
    d = VIT_B_WIDTH
    expected = VIT_B_DEPTH * per_block * (d * dim + dim + dim * d + d)
    assert count_method_parameters("vit_base_patch16_224", method, {"dim": dim})["method"] == expected
