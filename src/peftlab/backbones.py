"""Backbones: timm Vision Transformers built offline, with weights from local files only.

Importing this module registers two tiny ViTs with timm (``vit_mini_patch8_32``, ``vit_mini_patch4_32``) for
the offline study and the tests. ``create_backbone`` never downloads: a paper backbone needs its weights file
on disk (``--weights`` / ``backbone.weights``), and the error says which file to fetch.

The paper code's four backbones (ImageNet-21k, MAE, DINOv2 and CLIP ViTs) are one table, ``PAPER_BACKBONES``:
the file users have and its layout, the timm arguments (DINOv2 at 224 px, QuickGELU for OpenAI's CLIP), the
mean/std of ``data.normalize: true`` and the paper code's choices. Every use of a backbone reads that table;
the conversions themselves are timm's (``checkpoint_filter_fn``, ``_load_weights`` for ``.npz``).

The created model carries ``model.peftlab_backbone = {name, weights, weights_sha256, architecture}`` so a PEFT
checkpoint can record (and later check) exactly which backbone it was trained on.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from timm.models import generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, _cfg, _create_vision_transformer
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.io import sha256_file

# timm's register_model appends the model functions to this list.
__all__ = ["PAPER_BACKBONES", "PaperBackbone", "architecture", "backbone_info", "build_architecture",
           "convert_state_dict", "create_backbone", "input_normalization", "load_weights", "paper_backbone",
           "weights_sha256"]

MINI_VIT_ARGS = dict(img_size=32, embed_dim=64, depth=6, num_heads=4, mlp_ratio=4.0, class_token=True,
                     global_pool="token")

# Read by timm's register_model: the tiny models' input size and normalisation (no download URL).
default_cfgs = generate_default_cfgs({
    name: _cfg(input_size=(3, 32, 32), crop_pct=1.0, num_classes=1000)
    for name in ("vit_mini_patch8_32", "vit_mini_patch4_32")
})

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


@dataclass(frozen=True)
class PaperBackbone:
    """Everything one of the paper code's backbones needs, in one place (``PAPER_BACKBONES``).

    The paper code (OSU-MLB/PETL_Vision) builds each backbone in ``experiment/build_model.py::get_base_model``
    (a timm architecture + ``load_pretrained(<local file>)`` through timm's converters) and normalises inputs,
    when ``--normalized`` is on, with ``utils/global_var.py::MEAN_STD_DICT``. An entry records the same
    choices for peftlab, read by ``create_backbone`` (architecture arguments, file checks, conversion), by
    ``build_architecture`` (parameter counts) and by ``input_normalization`` (``data.normalize: true``).
    """

    name: str  # timm name: the config's ``backbone.name``
    paper_name: str | None  # the paper code's ``--pretrained_weights`` (None: not a paper backbone)
    weights_file: str  # the file users have, and where it comes from
    file_format: str  # its layout and how it is converted to timm's keys
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    normalization_source: str
    file_grid: int  # patches per side of the position embedding in the released file
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)  # timm arguments (DINOv2 at 224 px)
    drop_keys: tuple[str, ...] = ()  # key prefixes of the file that are not the image encoder
    npz: bool = False  # the released file is an original-ViT (JAX) .npz
    quickgelu_equivalent: str | None = None  # the name that computes what these weights were trained with
    notes: str = ""


_PAPER_MEAN_STD = "the paper code's utils/global_var.py MEAN_STD_DICT"
_CLIP_FILES = ("open_clip_pytorch_model.bin or model.safetensors from https://huggingface.co/timm/"
               "vit_base_patch16_clip_224.openai, or a state dict of OpenAI's CLIP ViT-B/16")
_CLIP_FORMAT = ("open_clip/OpenAI state dict (visual.* keys; the text tower and logit scale are skipped) or "
                "timm's keys, both through timm's checkpoint_filter_fn; visual.proj becomes the 512-d head")

PAPER_BACKBONES: dict[str, PaperBackbone] = {entry.name: entry for entry in (
    PaperBackbone(
        name="vit_base_patch16_224.orig_in21k", paper_name="vit_base_patch16_224_in21k",
        weights_file="ViT-B_16.npz (ImageNet-21k, original Google release: "
                     "https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz)",
        file_format="original ViT (JAX) .npz (Transformer/encoderblock_<i>/... keys) read by timm's "
                    "_load_weights; its pre_logits layer and 21843-class head are not used",
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        normalization_source=f"{_PAPER_MEAN_STD} (ImageNet mean/std; Google's pretraining used 0.5/0.5, "
                             "timm's pretrained_cfg for this name, which the paper code does not use)",
        file_grid=14, npz=True),
    PaperBackbone(
        name="vit_base_patch16_224.mae", paper_name="vit_base_mae",
        weights_file="mae_pretrain_vit_base.pth (facebookresearch/mae: "
                     "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth)",
        file_format="torch checkpoint {'model': state dict} in timm's key names; the decoder of a full "
                    "pretraining checkpoint (decoder_*, mask_token) is dropped",
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, normalization_source=_PAPER_MEAN_STD,
        file_grid=14, drop_keys=("decoder_", "mask_token"),
        notes="class-token pooling after the final norm, as the paper code builds it (its ViT-B/16 "
              "architecture), not MAE's fine-tuning recipe (average pooling + fc_norm)"),
    PaperBackbone(
        name="vit_base_patch14_dinov2.lvd142m", paper_name="vit_base_patch14_dinov2",
        weights_file="dinov2_vitb14_pretrain.pth (facebookresearch/dinov2: https://dl.fbaipublicfiles.com/"
                     "dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth) or model.safetensors from "
                     "https://huggingface.co/timm/vit_base_patch14_dinov2.lvd142m",
        file_format="DINOv2 state dict (timm's key names plus mask_token, which is dropped), position "
                    "embedding for 518 px",
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, normalization_source=_PAPER_MEAN_STD,
        file_grid=37, model_kwargs={"img_size": 224},
        notes="at 224 px as the paper code (vit_base_patch14_dinov2_petl, img_size=224): the 37x37 position "
              "embedding is resampled to 16x16 by timm's checkpoint_filter_fn (bicubic, antialiased); "
              "layer scale"),
    PaperBackbone(
        name="vit_base_patch16_clip_quickgelu_224.openai", paper_name="vit_base_patch16_clip_224",
        weights_file=_CLIP_FILES, file_format=_CLIP_FORMAT,
        mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD, normalization_source=f"{_PAPER_MEAN_STD} (OpenAI CLIP's)",
        file_grid=14,
        notes="QuickGELU and a pre-norm, as OpenAI trained it and the paper code builds it "
              "(vit_base_patch16_clip_224_petl); the zero-shot head: peftlab clip-head"),
    PaperBackbone(
        name="vit_base_patch16_clip_224.openai", paper_name=None,
        weights_file=_CLIP_FILES, file_format=_CLIP_FORMAT,
        mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD,
        normalization_source="OpenAI CLIP's (timm's pretrained_cfg)",
        file_grid=14, quickgelu_equivalent="vit_base_patch16_clip_quickgelu_224.openai",
        notes="timm's default for these weights computes exact GELU, which they were not trained with"),
)}


def paper_backbone(name: str | None) -> PaperBackbone | None:
    """The table entry of ``name``, or None for any other timm model (which keeps timm's own defaults)."""
    return PAPER_BACKBONES.get(name) if name else None


def input_normalization(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std inputs are normalised with when ``data.normalize`` is true: the table's (the paper code's)
    for a paper backbone; timm's ``pretrained_cfg`` for another model; ImageNet's when timm has none."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    timm_name = f"{cfg.get('architecture')}.{cfg.get('tag')}"  # a model timm built directly
    entry = paper_backbone(backbone_info(model)["name"]) or paper_backbone(timm_name)
    if entry is not None:
        return entry.mean, entry.std
    return tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)), tuple(cfg.get("std", IMAGENET_DEFAULT_STD))


def check_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:12]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise PeftlabError(f"unknown backbone '{name}' (not a timm model name){hint}")


def _model_kwargs(name: str, num_classes: int | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The table's timm arguments for ``name``, overridden by the caller's (tests shrink width and depth)."""
    entry = paper_backbone(name)
    merged = dict(entry.model_kwargs if entry else {}, **kwargs)
    if num_classes is not None:
        merged["num_classes"] = num_classes
    return merged


def create_backbone(name: str, weights: str | os.PathLike | None = None, num_classes: int | None = None,
                    drop_path_rate: float = 0.0, **kwargs: Any) -> nn.Module:
    """A timm model ``name`` with weights from the local file ``weights`` (or random init when None).

    ``weights``: ``.safetensors`` or a torch checkpoint (``.pth``/``.pt``/``.bin``, loaded with
    ``weights_only=True``; timm's ``checkpoint_filter_fn`` converts OpenAI-CLIP/open_clip/DINOv2 layouts and
    resamples the position embedding) or an original JAX ``.npz`` (timm's npz reader). A paper backbone
    (``PAPER_BACKBONES``) gets its table's timm arguments, its file is checked to be the released one
    (position-embedding grid) and keys that are not the image encoder are dropped. When ``num_classes`` is
    given the head is created fresh for it (the file's head is not used); otherwise the file's head is loaded
    if its shape matches.
    Every other tensor must match: a missing or unexpected key is an error naming the file.
    """
    import timm

    entry = paper_backbone(name)
    if kwargs.pop("pretrained", False) and weights is None:
        source = entry.weights_file if entry else f"a weights file for {name}"
        raise PeftlabError(f"backbone '{name}': no weights file given and downloads are disabled; "
                           f"download {source} and pass --weights / backbone.weights")
    check_name(name)
    if entry is not None and entry.quickgelu_equivalent and weights is not None:
        warnings.warn(f"{name} computes GELU, but its OpenAI weights were trained with QuickGELU; "
                      f"{entry.quickgelu_equivalent} (same weights file) matches the original exactly",
                      stacklevel=2)
    path = None if weights is None else _existing_weights_file(weights)
    model = timm.create_model(name, pretrained=False,
                              **_model_kwargs(name, num_classes, dict(kwargs, drop_path_rate=drop_path_rate)))
    if path is not None:
        load_weights(model, path, keep_head=num_classes is None, entry=entry)
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
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **_model_kwargs(name, num_classes, kwargs))
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


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def load_weights(model: nn.Module, path: Path, keep_head: bool = True,
                 entry: PaperBackbone | None = None) -> None:
    """Load the local file ``path`` into ``model`` (see ``create_backbone``); ``entry``: the paper backbone's
    table entry, whose file checks and dropped keys apply."""
    if path.suffix == ".npz":
        if entry is not None and not entry.npz:
            raise PeftlabError(f"{path}: {entry.name} is not loaded from an original-ViT .npz; "
                               f"use {entry.weights_file}")
        _load_npz(model, path, keep_head, entry)
        return
    model.load_state_dict(convert_state_dict(model, _read_state_dict(path), path, keep_head=keep_head,
                                             entry=entry), strict=False)


def convert_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: Path, *,
                       keep_head: bool = True, entry: PaperBackbone | None = None) -> dict[str, torch.Tensor]:
    """``state`` (read from ``path``) in ``model``'s keys and shapes, or a ``PeftlabError`` naming ``path``.

    The table entry's foreign keys are dropped and its file grid checked, then timm's ``checkpoint_filter_fn``
    converts the layout (OpenAI/open_clip CLIP, DINOv2) and resamples the position embedding. The head is kept
    only when asked and its shape fits; every other tensor must be there with the model's shape. Shapes only:
    it works on meta tensors, which is how the tests check the real ViT-B layouts without the real files."""
    if entry is not None:
        if entry.drop_keys:
            state = {k: v for k, v in state.items() if not k.startswith(entry.drop_keys)}
        _check_file_grid(path, _position_tokens({k: v.shape for k, v in state.items()}), entry)
    from timm.models.vision_transformer import checkpoint_filter_fn

    if isinstance(model, VisionTransformer):
        try:
            state = checkpoint_filter_fn(state, model)
        except Exception as exc:  # a foreign layout timm cannot convert: name the file
            raise PeftlabError(f"{path}: cannot convert to {type(model).__name__} "
                               f"({_one_line(exc)})") from None
    own = model.state_dict()
    head_keys = {k for k in own if k.startswith("head.")}
    state = {k: v for k, v in state.items()
             if not k.startswith("head.") or (keep_head and k in own and v.shape == own[k].shape)}
    missing = [k for k in own if k not in state and k not in head_keys]
    unexpected = [k for k in state if k not in own]
    expected = f"; {entry.name} reads {entry.file_format}" if entry is not None else ""
    if missing or unexpected:
        raise PeftlabError(f"{path}: weights do not match {type(model).__name__} "
                           f"(missing {missing[:4]}, unexpected {unexpected[:4]}){expected}")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if v.shape != own[k].shape]
    if wrong:
        raise PeftlabError(f"{path}: tensor shapes do not match the model: {'; '.join(wrong[:3])}{expected}")
    return state


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: name it
        if "TorchScript" in str(exc):
            raise PeftlabError(
                f"{path}: a TorchScript archive (OpenAI's CLIP release); save its state dict once with "
                f"torch.save(torch.jit.load(path, map_location='cpu').state_dict(), 'clip.pth') and pass that"
            ) from None
        raise PeftlabError(f"{path}: cannot read weights ({_one_line(exc)})") from None
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise PeftlabError(f"{path}: not a state dict (found {type(state).__name__})")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


# Where each layout keeps the absolute position embedding, and its token axis.
_POSITION_KEYS = (("pos_embed", 1), ("visual.positional_embedding", 0),
                  ("module.visual.positional_embedding", 0), ("visual.trunk.pos_embed", 1),
                  ("Transformer/posembed_input/pos_embedding", 1))


def _position_tokens(shapes: Mapping[str, Sequence[int]]) -> int | None:
    for key, axis in _POSITION_KEYS:
        if key in shapes:
            return int(shapes[key][axis])
    return None


def _check_file_grid(path: Path, tokens: int | None, entry: PaperBackbone) -> None:
    """The released file of a paper backbone has a known position-embedding grid (class token + grid²):
    another grid means another file (e.g. the 384-px ImageNet-1k fine-tuned ViT-B_16.npz), which would be
    resampled silently."""
    if tokens is None:
        return
    grid = round((tokens - 1) ** 0.5)
    if grid * grid + 1 != tokens or grid != entry.file_grid:
        found = f"{grid}x{grid} patches + class token" if grid * grid + 1 == tokens else f"{tokens} tokens"
        raise PeftlabError(f"{path}: position embedding for {found}, but {entry.name} expects "
                           f"{entry.file_grid}x{entry.file_grid} + class token: not {entry.weights_file}")


def _load_npz(model: nn.Module, path: Path, keep_head: bool, entry: PaperBackbone | None) -> None:
    """Original ViT (JAX) ``.npz`` via timm's reader; the head is reloaded only when kept and shapes match.

    timm's reader loads the blocks the model has and ignores the rest of the file, so the file's block count
    is checked here (a deeper file would load partially without a word)."""
    import re

    import numpy as np

    if not hasattr(model, "load_pretrained"):
        raise PeftlabError(f"{path}: .npz weights need a timm VisionTransformer, not {type(model).__name__}")
    try:
        with np.load(path) as archive:
            shapes = {key: archive[key].shape for key in archive.files if "posembed" in key}
            blocks = {int(match.group(1)) for key in archive.files
                      if (match := re.match(r"Transformer/encoderblock_(\d+)/", key))}
    except Exception as exc:
        raise PeftlabError(f"{path}: cannot read .npz weights ({_one_line(exc)})") from None
    if blocks and len(blocks) != len(model.blocks):
        raise PeftlabError(f"{path}: {len(blocks)} encoder blocks, but {type(model).__name__} has "
                           f"{len(model.blocks)}")
    if entry is not None:
        _check_file_grid(path, _position_tokens(shapes), entry)
    head_state = {k: v.clone() for k, v in model.get_classifier().state_dict().items()}
    try:
        model.load_pretrained(str(path))
    except Exception as exc:
        raise PeftlabError(f"{path}: cannot load .npz weights ({_one_line(exc)})") from None
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
