"""A tiny random open_clip CLIP (test helper): the real image geometry (224 px, 16-px patches, so the
position embedding has ViT-B/16's 14×14 grid), QuickGELU as OpenAI's, width 32, two image blocks, one text
block, the real tokenizer's vocabulary and context length; a 512-d embedding so timm's default CLIP head (512
outputs) fits.

open_clip's init leaves every LayerNorm at weight 1 and bias 0, where a swapped mapping would go unnoticed, so
every tensor is perturbed."""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_CLIP = "peftlab-tiny-clip-vit-b16"
TINY_CLIP_CONFIG = {
    "embed_dim": 512,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
# timm arguments that shrink its CLIP ViT-B/16 to the tiny tower above
TIMM_TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def register_tiny_clip(directory: Path, name: str = TINY_CLIP, **changes) -> Path:
    """Write the tiny config (with top-level ``changes``) as ``<directory>/<name>.json`` and register it."""
    import open_clip

    path = Path(directory) / f"{name}.json"
    path.write_text(json.dumps(dict(TINY_CLIP_CONFIG, **changes)))
    open_clip.add_model_config(path)
    return path


def make_tiny_clip(name: str = TINY_CLIP, seed: int = 0) -> torch.nn.Module:
    """The registered model ``name`` with seeded random, perturbed weights, in eval mode."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.add_(0.05 * torch.randn_like(tensor))
    return model.eval()
