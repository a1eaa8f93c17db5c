"""WiSE-FT: the ends of the path are exactly the zero-shot and fine-tuned models, the middle is the linear mix."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from peftlab.analysis.robustness import (
    EvalSplit,
    check_alphas,
    interpolate,
    load_state_into,
    weight_endpoints,
    wise_in_outputs,
    wise_in_weights,
)
from peftlab.errors import PeftlabError

NUM_CLASSES = 5


def tiny_vit() -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                             num_classes=NUM_CLASSES).eval()


def fine_tuned(method: str, values: dict | None = None):
    """(model with ``method`` attached and its trained tensors moved away from the start, pretrained state,
    zero-shot head, the zero-shot reference model)."""
    from peftlab.methods import attach, trainable_state_dict

    backbone = tiny_vit()
    pretrained = {k: v.clone() for k, v in backbone.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    zero_head = {"head.weight": torch.randn(NUM_CLASSES, 32, generator=generator),
                 "head.bias": torch.randn(NUM_CLASSES, generator=generator)}
    reference = copy.deepcopy(backbone)
    load_state_into(reference, zero_head)
    model = attach(backbone, method, values or {})
    model.eval()
    with torch.no_grad():  # "fine-tuning": every trained tensor moves, LoRA's B leaves zero
        for tensor in trainable_state_dict(model).values():
            tensor.add_(0.2 * torch.randn(tensor.shape, generator=generator))
    return model, pretrained, zero_head, reference


def images() -> torch.Tensor:
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(("method", "values"), [("full", {}), ("lora", {"rank": 2}), ("bitfit", {})])
def test_alpha_zero_is_the_zero_shot_model_and_alpha_one_the_fine_tuned_model(method, values):
    model, pretrained, zero_head, reference = fine_tuned(method, values)
    x = images()
    with torch.no_grad():
        fine_logits = model(x)
        zero_logits = reference(x)
        endpoints = weight_endpoints(model, pretrained, zero_head)
        assert endpoints is not None
        load_state_into(model, endpoints.at(0.0))
        at_zero = model(x)
        load_state_into(model, endpoints.at(1.0))
        at_one = model(x)
    assert not torch.allclose(fine_logits, zero_logits, atol=1e-3)  # the two ends really differ
    torch.testing.assert_close(at_zero, zero_logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(at_one, fine_logits, rtol=0, atol=0)


def test_bitfit_halfway_equals_the_model_built_from_averaged_biases_and_head():
    model, pretrained, zero_head, reference = fine_tuned("bitfit")
    x = images()
    expected_model = copy.deepcopy(reference)
    fine = {k: v.clone() for k, v in model.named_parameters() if v.requires_grad}
    halfway = {k: (pretrained[k] + fine[k]) / 2 for k in fine if not k.startswith("head.")}
    halfway |= {k: (zero_head[k] + fine[k]) / 2 for k in ("head.weight", "head.bias")}
    load_state_into(expected_model, halfway)
    endpoints = weight_endpoints(model, pretrained, zero_head)
    with torch.no_grad():
        load_state_into(model, endpoints.at(0.5))
        torch.testing.assert_close(model(x), expected_model(x), rtol=1e-5, atol=1e-5)


class LinearHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def test_intermediate_alpha_on_a_linear_layer_matches_the_hand_computation():
    zero = {"head.weight": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "head.bias": torch.tensor([0.0, 0.0])}
    fine = {"head.weight": torch.tensor([[3.0, 0.0], [0.0, -1.0]]), "head.bias": torch.tensor([4.0, 0.0])}
    model = LinearHead()
    # α = 0.25: W = 0.75·I + 0.25·diag(3, −1) = diag(1.5, 0.5), b = (1, 0); x = (2, 2) → (4, 1).
    load_state_into(model, interpolate(zero, fine, 0.25))
    with torch.no_grad():
        out = model(torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(out, torch.tensor([[4.0, 1.0]]))


def test_rows_score_target_and_shift_splits_and_restore_the_fine_tuned_weights():
    model, pretrained, zero_head, reference = fine_tuned("lora", {"rank": 2})
    x = images()
    with torch.no_grad():
        labels = reference(x).argmax(1)  # the zero-shot model is right on every image
    fine_before = {k: v.clone() for k, v in model.named_parameters() if v.requires_grad}
    splits = [EvalSplit("test", x, labels),
              EvalSplit("shift-sub", x[:4], labels[:4], class_subset=torch.arange(NUM_CLASSES))]
    endpoints = weight_endpoints(model, pretrained, zero_head)

    def predict(m, images_):
        with torch.no_grad():
            return m(images_)

    rows = wise_in_weights(model, endpoints, splits, [0.0, 0.5, 1.0], predict)
    assert [(r["alpha"], r["split"]) for r in rows][:2] == [(0.0, "test"), (0.0, "shift-sub")]
    assert rows[0]["accuracy"] == 1.0 and rows[1]["accuracy"] == 1.0 and rows[1]["n"] == 4
    assert all(r["interpolation"] == "weights" for r in rows)
    for key, value in model.named_parameters():
        if value.requires_grad:
            assert torch.equal(value, fine_before[key])


def test_vpt_has_no_weight_space_identity_and_falls_back_to_labelled_output_mixing():
    model, pretrained, zero_head, reference = fine_tuned("vpt_shallow", {"num_tokens": 2})
    assert weight_endpoints(model, pretrained, zero_head) is None
    x = images()
    with torch.no_grad():
        labels = reference(x).argmax(1)
        fine_right = (model(x).argmax(1) == labels).double().mean().item()

    def predict(m, images_):
        with torch.no_grad():
            return m(images_)

    rows = wise_in_outputs(model, reference, [EvalSplit("test", x, labels)], [0.0, 1.0], predict)
    assert rows[0]["accuracy"] == 1.0 and rows[1]["accuracy"] == pytest.approx(fine_right)
    assert all(r["interpolation"] == "outputs" and "not WiSE-FT" in r["note"] for r in rows)


def test_alpha_grid_must_contain_both_ends():
    assert check_alphas([1.0, 0.0, 0.5]) == [0.0, 0.5, 1.0]
    with pytest.raises(PeftlabError, match="must include 0"):
        check_alphas([0.2, 1.0])
