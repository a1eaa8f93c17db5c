"""Backbones: timm Vision Transformers built offline, with weights from local files only.

Importing this module registers two tiny ViTs with timm (``vit_mini_patch8_32``, ``vit_mini_patch4_32``) for
the offline study and the tests. ``create_backbone`` never downloads: a paper backbone needs its weights file
on disk (``--weights`` / ``backbone.weights``), and the error says which file to fetch.

The created model carries ``model.peftlab_backbone = {name, weights, weights_sha256, architecture}`` so a PEFT
checkpoint can record (and later check) exactly which backbone it was trained on.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, _cfg, _create_vision_transformer
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.io import sha256_file

# timm's register_model appends the model functions to this list.
__all__ = ["architecture", "backbone_info", "build_architecture", "create_backbone", "load_weights", "weights_sha256"]

MINI_VIT_ARGS = dict(img_size=32, embed_dim=64, depth=6, num_heads=4, mlp_ratio=4.0, class_token=True,
                     global_pool="token")

# Read by timm's register_model: the tiny models' input size and normalisation (no download URL).
default_cfgs = generate_default_cfgs({
    name: _cfg(input_size=(3, 32, 32), crop_pct=1.0, num_classes=1000)
    for name in ("vit_mini_patch8_32", "vit_mini_patch4_32")
})

# Where to get the weights of the paper's backbones (they are never downloaded at run time).
WEIGHT_SOURCES = {
    "vit_base_patch16_224.orig_in21k": "ViT-B_16.npz (ImageNet-21k, original Google release: "
    "https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz)",
    "vit_base_patch16_clip_224.openai": "open_clip_pytorch_model.bin or model.safetensors from the Hugging Face "
    "repository timm/vit_base_patch16_clip_224.openai",
    "vit_base_patch16_clip_quickgelu_224.openai": "open_clip_pytorch_model.bin or model.safetensors from the "
    "Hugging Face repository timm/vit_base_patch16_clip_224.openai",
}

# OpenAI's CLIP was trained with QuickGELU; timm's ``*_clip_224.openai`` models use exact GELU on the same weights.
QUICKGELU_EQUIVALENT = {"vit_base_patch16_clip_224.openai": "vit_base_patch16_clip_quickgelu_224.openai"}

WEIGHT_SUFFIXES = (".safetensors", ".npz", ".pth", ".pt", ".bin")


@register_model
def vit_mini_patch8_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Tiny ViT for the offline study: 32×32 input, 8×8 patches (16 tokens + class), dim 64, depth 6."""
    return _create_vision_transformer("vit_mini_patch8_32", pretrained=pretrained,
                                      **dict(MINI_VIT_ARGS, patch_size=8, **kwargs))


@register_model
def vit_mini_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Tiny ViT, 4×4 patches (64 tokens + class), otherwise as ``vit_mini_patch8_32``."""
    return _create_vision_transformer("vit_mini_patch4_32", pretrained=pretrained,
                                      **dict(MINI_VIT_ARGS, patch_size=4, **kwargs))


def check_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:12]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise PeftlabError(f"unknown backbone '{name}' (not a timm model name){hint}")


def create_backbone(name: str, weights: str | os.PathLike | None = None, num_classes: int | None = None,
                    drop_path_rate: float = 0.0, **kwargs: Any) -> nn.Module:
    """A timm model ``name`` with weights from the local file ``weights`` (or random init when None).

    ``weights``: ``.safetensors`` or a torch checkpoint (``.pth``/``.pt``/``.bin``, loaded with
    ``weights_only=True``; timm's filter converts OpenAI-CLIP/other layouts) or an original JAX ``.npz``
    (loaded by timm's npz reader). When ``num_classes`` is given the head is created fresh for it (the file's
    head is not used); otherwise the file's head is loaded if its shape matches. Every other tensor must match:
    a missing or unexpected key is an error naming the file.
    """
    import timm

    if kwargs.pop("pretrained", False) and weights is None:
        source = WEIGHT_SOURCES.get(name, f"a weights file for {name}")
        raise PeftlabError(f"backbone '{name}': no weights file given and downloads are disabled; "
                           f"download {source} and pass --weights / backbone.weights")
    check_name(name)
    if name in QUICKGELU_EQUIVALENT and weights is not None:
        warnings.warn(f"{name} computes GELU, but its OpenAI weights were trained with QuickGELU; "
                      f"{QUICKGELU_EQUIVALENT[name]} (same weights file) matches the original exactly", stacklevel=2)
    model_kwargs = dict(kwargs, drop_path_rate=drop_path_rate)
    if num_classes is not None:
        model_kwargs["num_classes"] = num_classes
    path = None if weights is None else _existing_weights_file(weights)
    model = timm.create_model(name, pretrained=False, **model_kwargs)
    if path is not None:
        load_weights(model, path, keep_head=num_classes is None)
    model.peftlab_backbone = {
        "name": name,
        "weights": None if path is None else str(path),
        "weights_sha256": None if path is None else weights_sha256(path),
        "architecture": architecture(model),
    }
    return model


def build_architecture(name: str, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """The model ``name`` on the meta device (shapes only, no memory, no init cost): for parameter counts."""
    import timm

    check_name(name)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **kwargs)
    model.peftlab_backbone = {"name": name, "weights": None, "weights_sha256": None,
                              "architecture": architecture(model)}
    return model


def weights_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a weights file (what a PEFT checkpoint records about its backbone)."""
    return sha256_file(path)


def _existing_weights_file(weights: str | os.PathLike) -> Path:
    path = Path(weights)
    if not path.is_file():
        raise PeftlabError(f"{path}: backbone weights file not found")
    if not path.name.endswith(WEIGHT_SUFFIXES):
        raise PeftlabError(f"{path}: unsupported weights file type; use one of {', '.join(WEIGHT_SUFFIXES)}")
    return path


def load_weights(model: nn.Module, path: Path, keep_head: bool = True) -> None:
    """Load the local file ``path`` into ``model`` (see ``create_backbone``)."""
    if path.suffix == ".npz":
        _load_npz(model, path, keep_head)
        return
    state = _read_state_dict(path)
    from timm.models.vision_transformer import checkpoint_filter_fn

    if isinstance(model, VisionTransformer):
        state = checkpoint_filter_fn(state, model)
    own = model.state_dict()
    head_keys = {k for k in own if k.startswith("head.")}
    for key in list(state):
        if key.startswith("head.") and (not keep_head or key not in own or state[key].shape != own[key].shape):
            del state[key]
    missing = [k for k in own if k not in state and k not in head_keys]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise PeftlabError(f"{path}: weights do not match {type(model).__name__} "
                           f"(missing {missing[:4]}, unexpected {unexpected[:4]})")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if wrong:
        raise PeftlabError(f"{path}: tensor shapes do not match the model: {'; '.join(wrong[:3])}")
    model.load_state_dict(state, strict=False)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: name it
        raise PeftlabError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise PeftlabError(f"{path}: not a state dict (found {type(state).__name__})")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _load_npz(model: nn.Module, path: Path, keep_head: bool) -> None:
    """Original ViT (JAX) ``.npz`` via timm's reader; the head is reloaded only when kept and shapes match."""
    if not hasattr(model, "load_pretrained"):
        raise PeftlabError(f"{path}: .npz weights need a timm VisionTransformer, not {type(model).__name__}")
    head_state = {k: v.clone() for k, v in model.get_classifier().state_dict().items()}
    try:
        model.load_pretrained(str(path))
    except Exception as exc:
        raise PeftlabError(f"{path}: cannot load .npz weights ({type(exc).__name__}: {exc})") from None
    if not keep_head:
        model.get_classifier().load_state_dict(head_state)


def architecture(model: nn.Module) -> dict[str, Any]:
    """A fingerprint of a (not yet PEFT-modified) ViT: what must match for trained tensors to fit it."""
    if not isinstance(model, VisionTransformer):
        return {"class": type(model).__name__}
    block = model.blocks[0]
    return {
        "class": type(model).__name__,
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_hidden_dim": block.mlp.fc1.out_features,
        "patch_size": list(model.patch_embed.patch_size),
        "img_size": list(model.patch_embed.img_size) if model.patch_embed.img_size else None,
        "class_token": model.has_class_token,
        "reg_tokens": model.num_reg_tokens,
        "global_pool": model.global_pool,
        "pre_norm": not isinstance(model.norm_pre, nn.Identity),
        "act": type(block.mlp.act).__name__,
    }


def backbone_info(model: nn.Module) -> dict[str, Any]:
    """``model.peftlab_backbone`` (set by ``create_backbone``), or what can be said about a plain timm model."""
    info = getattr(model, "peftlab_backbone", None)
    if info is not None:
        return info
    return {"name": getattr(model, "default_cfg", {}).get("architecture"), "weights": None,
            "weights_sha256": None, "architecture": architecture(model)}
