"""The paper code's method forms (OSU-MLB/PETL_Vision) against references written independently of peftlab:
LoRA's fused form against huggingface peft's LoRA on ``qkv``, VPT-shallow against a hand-written forward, and
SSF's placement on a CLIP-style backbone. (FacT-TK's update: ``test_fact.py``; the adapters' drop-path in training:
``test_adapters.py``, ``test_convpass.py``.)"""

from __future__ import annotations

import pytest
import torch
from method_helpers import NUM_CLASSES, eval_logits, relative_error

from peftlab.methods import attach, merge, method_state_dict
from peftlab.methods.commands import count_method_parameters

RANK, DEPTH, WIDTH, TOKENS = 4, 6, 64, 17


def lora_pair(tiny_vit):
    """peftlab's default LoRA and huggingface peft's LoRA on ``qkv`` (r = 4, alpha = r, dropout 0.1) on the same
    timm model, with the same random (non-zero) A and B in every block."""
    from peft import LoraConfig, get_peft_model

    ours = attach(tiny_vit(NUM_CLASSES), "lora", {"rank": RANK})
    reference = get_peft_model(tiny_vit(NUM_CLASSES), LoraConfig(r=RANK, lora_alpha=RANK, lora_dropout=0.1,
                                                                 target_modules=["qkv"]))
    torch.manual_seed(2)
    tensors = {}
    for index in range(DEPTH):
        a, b = torch.randn(RANK, WIDTH) * 0.3, torch.randn(3 * WIDTH, RANK) * 0.3
        tensors[f"base_model.model.blocks.{index}.attn.qkv.lora_A.default.weight"] = a
        tensors[f"base_model.model.blocks.{index}.attn.qkv.lora_B.default.weight"] = b
        ours.load_state_dict({f"blocks.{index}.attn.qkv.delta.lora_A": a, f"blocks.{index}.attn.qkv.delta.lora_B": b},
                             strict=False)
    missing, unexpected = reference.load_state_dict(tensors, strict=False)
    assert not unexpected and not any("lora" in key for key in missing)
    assert set(method_state_dict(ours)) == {key.removeprefix("base_model.model.").replace(".lora_", ".delta.lora_")
                                            .removesuffix(".default.weight") for key in tensors}
    return ours, reference


def test_fused_lora_computes_huggingface_peft_s_lora_on_qkv(tiny_vit, tiny_images):
    images = tiny_images(4)
    ours, reference = lora_pair(tiny_vit)
    with torch.no_grad():
        expected = reference.eval()(images)
        assert relative_error(eval_logits(ours, images), expected) < 1e-5
        assert relative_error(eval_logits(ours, images), eval_logits(tiny_vit(NUM_CLASSES), images)) > 1e-2
        # training mode: one dropout mask on the update's input, drawn in the same order as peft's
        torch.manual_seed(11)
        ours_train = ours.train()(images)
        torch.manual_seed(11)
        reference_train = reference.train()(images)
    assert relative_error(ours_train, reference_train) < 1e-5
    assert relative_error(ours_train, expected) > 1e-4  # the dropout did act


def test_fused_lora_merges_into_peft_s_merged_weights(tiny_vit):
    ours, reference = lora_pair(tiny_vit)
    merged = merge(ours).state_dict()
    expected = reference.merge_and_unload().state_dict()
    assert set(merged) == set(expected)
    for key, value in expected.items():
        assert torch.allclose(merged[key], value, atol=1e-6, rtol=1e-5), key


def test_fused_and_separate_lora_have_petl_vision_s_count_at_every_rank():
    d, depth = 768, 12
    for rank in (1, 8, 32):
        fused = count_method_parameters("vit_base_patch16_224", "lora", {"rank": rank})["method"]
        separate = count_method_parameters("vit_base_patch16_224", "lora",
                                           {"rank": rank, "form": "separate", "targets": "qv"})["method"]
        assert fused == separate == depth * rank * (d + 3 * d)  # A [r, d] + B [3d, r]; 294,912 at r = 8


@pytest.mark.parametrize("tokens", [1, 5])
def test_vpt_shallow_computes_petl_vision_s_forward(tiny_vit, tiny_images, tokens):
    """Written out: prompts enter after the class token before block 0 and leave after block 0; the other
    blocks, the final norm and the head see the original tokens only."""
    images = tiny_images(3)
    model = attach(tiny_vit(NUM_CLASSES), "vpt_shallow", {"num_tokens": tokens})
    (prompts,) = method_state_dict(model).values()
    plain = tiny_vit(NUM_CLASSES).eval()
    with torch.no_grad():
        x = plain.norm_pre(plain._pos_embed(plain.patch_embed(images)))
        x = torch.cat([x[:, :1], prompts.expand(3, -1, -1), x[:, 1:]], dim=1)
        x = plain.blocks[0](x)
        x = torch.cat([x[:, :1], x[:, 1 + tokens:]], dim=1)
        for block in plain.blocks[1:]:
            x = block(x)
        expected = plain.head(plain.norm(x)[:, 0])
        persistent = attach(tiny_vit(NUM_CLASSES), "vpt_shallow", {"num_tokens": tokens, "form": "persistent"})
        persistent.load_state_dict(model.state_dict())
        assert relative_error(eval_logits(model, images), expected) < 1e-5
        assert relative_error(eval_logits(persistent, images), expected) > 1e-3  # the VPT paper's form differs


def test_ssf_leaves_a_pre_norm_unmodulated_as_petl_vision(tiny_vit):
    """PETL_Vision's CLIP ViT has ``norm_pre`` and no SSF after it: the same count as without a pre-norm."""
    with_pre_norm = attach(tiny_vit(NUM_CLASSES, pre_norm=True), "ssf")
    assert not any(name.startswith("norm_pre") and p.requires_grad for name, p in with_pre_norm.named_parameters())
    assert (count_method_parameters("vit_base_patch16_clip_224", "ssf")["method"]
            == count_method_parameters("vit_base_patch16_224", "ssf")["method"])
