"""Test helper: a timm ViT written in the original (JAX) ViT ``.npz`` layout, key names and all (Google's
``Transformer/encoderblock_<i>/MultiHeadDotProductAttention_1/query/kernel`` ...)."""

from __future__ import annotations

import numpy as np
import torch


def write_original_vit_npz(model: torch.nn.Module, path, pre_logits: bool = False) -> None:
    """Write ``model`` in the original (JAX) ViT ``.npz`` layout that timm's ``_load_weights`` reads; with
    ``pre_logits``, also the representation layer Google's ImageNet-21k files have (neither timm nor the paper
    code uses it)."""
    heads = model.blocks[0].attn.num_heads
    dim = model.embed_dim
    w = {
        "embedding/kernel": model.patch_embed.proj.weight.permute(2, 3, 1, 0),
        "embedding/bias": model.patch_embed.proj.bias,
        "cls": model.cls_token,
        "Transformer/posembed_input/pos_embedding": model.pos_embed,
        "Transformer/encoder_norm/scale": model.norm.weight,
        "Transformer/encoder_norm/bias": model.norm.bias,
    }
    if isinstance(model.head, torch.nn.Linear):
        w["head/kernel"], w["head/bias"] = model.head.weight.T, model.head.bias
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
    if pre_logits:
        w["pre_logits/kernel"], w["pre_logits/bias"] = torch.randn(dim, dim), torch.randn(dim)
    np.savez(path, **{k: v.detach().numpy() for k, v in w.items()})
