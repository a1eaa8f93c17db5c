"""Trainable-parameter counts on ViT-B/16 (built on the meta device, no weights, head excluded) against the
published figures the paper quotes. Published figures are rounded (to 0.01 M or 0.001 M), so a count matches
when it is within 2% of the figure or rounds to it."""

from __future__ import annotations

import pytest

from peftlab.methods import get_method
from peftlab.methods.commands import count_method_parameters

BACKBONE = "vit_base_patch16_224"

# method, hyper-parameters, published trainable parameters in M (head excluded), decimals printed
PUBLISHED = [
    ("lora", {"rank": 8, "form": "separate", "targets": "qv"}, 0.29, 2),  # the LoRA paper's q, v
    ("lora", {"rank": 8}, 0.29, 2),  # PETL_Vision's one A and B on qkv
    ("vpt_deep", {"num_tokens": 10}, 0.09, 2),
    ("vpt_shallow", {"num_tokens": 10}, 0.008, 3),
    ("bitfit", {}, 0.10, 2),
    ("layernorm", {}, 0.04, 2),
    ("adapter_pfeiffer", {"dim": 8}, 0.16, 2),
    ("adapter_houlsby", {"dim": 8}, 0.31, 2),
]


@pytest.mark.parametrize("method, values, published, decimals", PUBLISHED,
                         ids=[f"{row[0]}-{'-'.join(map(str, row[1].values()))}" for row in PUBLISHED])
def test_parameter_count_matches_the_published_figure(method, values, published, decimals):
    try:
        get_method(method)
    except Exception:
        pytest.skip(f"method '{method}' is not registered yet")
    counted = count_method_parameters(BACKBONE, method, values)["method"] / 1e6
    assert abs(counted - published) <= 0.02 * published or round(counted, decimals) == published, counted


def test_exact_counts_of_the_formulas():
    """ViT-B/16: d = 768, 12 blocks, MLP 3072."""
    d, depth = 768, 12
    assert count_method_parameters(BACKBONE, "lora", {"rank": 8})["method"] == depth * 8 * (d + 3 * d)  # A, B [3d, r]
    assert count_method_parameters(BACKBONE, "lora", {"rank": 8, "form": "separate", "targets": "qv"})[
        "method"] == depth * 2 * 8 * (d + d)
    assert count_method_parameters(BACKBONE, "vpt_deep", {"num_tokens": 10})["method"] == depth * 10 * d
    assert count_method_parameters(BACKBONE, "ssf")["method"] == depth * 2 * (d + d + 3 * d + d + 4 * d + d) + 4 * d
    assert count_method_parameters(BACKBONE, "linear", num_classes=100) == {
        "total": 85_798_656 + 100 * d + 100, "trainable": 100 * d + 100, "method": 0, "head": 100 * d + 100}
