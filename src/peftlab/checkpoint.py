"""PEFT checkpoints: the trained tensors only (method tensors and head) plus a JSON sidecar saying what they fit.

``peft.safetensors`` holds ``trainable_state_dict(model)`` — no frozen backbone tensor — and ``peft.json`` holds
``method``, ``config``, ``backbone{name, weights_sha256, architecture}``, ``num_classes``, ``tensors_sha256``
(the sha256 of ``peft.safetensors``) and ``provenance``. Loading checks the tensors file against that hash (a
truncated or flipped file, or one copied from another run, is an error naming it) and the backbone
(architecture fingerprint and weights hash) before any tensor is touched, so trained tensors are never silently
applied to a different backbone.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from torch import nn

from peftlab.errors import PeftlabError
from peftlab.io import read_json, save_tensors, verify_sha256, write_json

TENSORS_NAME = "peft.safetensors"
SIDECAR_SUFFIX = ".json"
SIDECAR_KEYS = ("method", "config", "backbone", "num_classes", "tensors_sha256", "provenance")


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(tensors, sidecar)``: ``path`` is the ``.safetensors`` file, or a directory holding ``peft.safetensors``."""
    path = Path(path)
    tensors = path if path.suffix == ".safetensors" else path / TENSORS_NAME
    return tensors, tensors.with_suffix(SIDECAR_SUFFIX)


def save_peft(model: nn.Module, path: str | os.PathLike, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write the trained tensors and their sidecar (atomically); return the tensors file's path."""
    from peftlab.backbones import backbone_info
    from peftlab.methods import attached, trainable_state_dict
    from peftlab.provenance import provenance

    info = attached(model)
    backbone = backbone_info(model)
    tensors_path, sidecar_path = checkpoint_paths(path)
    meta: dict[str, Any] = {
        "method": info.name,
        "config": dataclasses.asdict(info.config),
        "backbone": {key: backbone[key] for key in ("name", "weights_sha256", "architecture")},
        "num_classes": model.num_classes,
        "provenance": provenance(str(next(model.parameters()).device)),
    }
    for key, value in (extra_meta or {}).items():
        if key in meta or key == "tensors_sha256":
            raise ValueError(f"extra_meta key '{key}' would overwrite a checkpoint field")
        meta[key] = value
    meta["tensors_sha256"] = save_tensors(tensors_path, trainable_state_dict(model), metadata={"method": info.name})
    write_json(sidecar_path, meta)
    return tensors_path


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of the checkpoint at ``path`` (file or directory), checked for its keys."""
    _, sidecar_path = checkpoint_paths(path)
    meta = read_json(sidecar_path, what="PEFT checkpoint sidecar")
    if not isinstance(meta, dict):
        raise PeftlabError(f"{sidecar_path}: a PEFT checkpoint sidecar must be a JSON object")
    for key in SIDECAR_KEYS:
        if key not in meta:
            raise PeftlabError(f"{sidecar_path}: missing key '{key}'" + (
                " (written by an older peftlab that recorded no hash: re-run the training job)"
                if key == "tensors_sha256" else ""))
    return meta


def load_peft(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a PEFT checkpoint into ``model`` (a backbone from ``create_backbone``, or one with the same method
    already attached): check the backbone, attach the method if needed, then load the tensors strictly."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from peftlab.methods import attach, build_config, trainable_state_dict

    tensors_path, sidecar_path = checkpoint_paths(path)
    meta = read_sidecar(path)
    if not tensors_path.is_file():
        raise PeftlabError(f"{tensors_path}: PEFT checkpoint tensors not found")
    verify_sha256(tensors_path, meta["tensors_sha256"], sidecar_path)
    _check_backbone(model, meta["backbone"], sidecar_path)
    config = build_config(meta["method"], meta["config"])
    if hasattr(model, "peft"):
        if model.peft.name != meta["method"] or model.peft.config != config:
            raise PeftlabError(f"{sidecar_path}: checkpoint is {meta['method']} {meta['config']}, but the model has "
                               f"{model.peft.name} {dataclasses.asdict(model.peft.config)} attached")
        if model.num_classes != meta["num_classes"]:
            raise PeftlabError(f"{sidecar_path}: checkpoint has {meta['num_classes']} classes, the model's head "
                               f"{model.num_classes}")
    else:
        if model.num_classes != meta["num_classes"]:
            model.reset_classifier(meta["num_classes"])
        was_training = model.training
        attach(model, meta["method"], config)
        model.train(was_training)  # modules added by the method follow the model's mode
    expected = trainable_state_dict(model)
    device = next(iter(expected.values())).device
    try:
        tensors = load_file(str(tensors_path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise PeftlabError(f"{tensors_path}: not a readable safetensors checkpoint ({exc})") from None
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise PeftlabError(f"{tensors_path}: tensors do not match {meta['method']} on this backbone "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    wrong = [f"{k} {list(tensors[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
             if tensors[k].shape != v.shape]
    if wrong:
        raise PeftlabError(f"{tensors_path}: tensor shapes differ from the model: {'; '.join(wrong[:3])}")
    with torch.no_grad():
        model.load_state_dict(tensors, strict=False)
    return model


def _check_backbone(model: nn.Module, saved: dict[str, Any], sidecar_path: Path) -> None:
    from peftlab.backbones import backbone_info

    current = backbone_info(model)
    if current["architecture"] != saved.get("architecture"):
        differ = {k: (saved.get("architecture", {}).get(k), v) for k, v in current["architecture"].items()
                  if saved.get("architecture", {}).get(k) != v}
        raise PeftlabError(f"{sidecar_path}: checkpoint was trained on a different architecture "
                           f"({saved.get('name')} vs {current['name']}; checkpoint vs model: {differ})")
    if current["weights_sha256"] != saved.get("weights_sha256"):
        raise PeftlabError(f"{sidecar_path}: checkpoint was trained on backbone weights with sha256 "
                           f"{saved.get('weights_sha256')}, but the model's weights have {current['weights_sha256']}")
