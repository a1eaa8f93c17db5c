"""Frozen-computation cache: the output of a method's frozen prefix, computed once per input set.

A linear probe trains only the head, so the backbone's pre-logit features of a split are the same in every
epoch, trial and seed; partial-k tunes the last k blocks, so the token sequence after the first ``depth - k``
blocks is too. ``FrozenCache`` computes such a prefix output once (eval mode, no grad, batched) per
(backbone weights, cache point, images, input transform, device type) and keeps it

- in memory for the rest of the process (every trial and seed of a search or final job), and
- on disk as ``<directory>/<key>.safetensors`` (written atomically), so the other jobs of the task — other
  methods' prototype heads, the final runs after the search — load it instead of recomputing.

The key is a SHA-256 of those identities, so a new backbone, other images or another normalisation never hit a
stale entry. Entries larger than ``max_bytes`` (e.g. ViT-B token sequences of a 70k-image test set) are not
cached: the caller falls back to the uncached path, which computes the same thing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from peftlab.io import save_tensors
from peftlab.methods import CachePoint
from peftlab.training.forward import (
    DEFAULT_PRECISION,
    autocast,
    precision_used,
    prefix_forward,
    prefix_modules,
)
from peftlab.training.inputs import InputTransform

DEFAULT_CACHE_DIR = "data/cache/frozen"
CACHE_DIR_ENV = "PEFTLAB_CACHE_DIR"
DEFAULT_MAX_BYTES = 2 * 2**30
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV, DEFAULT_CACHE_DIR))


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Hash of a tensor's bytes (and shape/dtype): identifies an image set without trusting file names."""
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tuple(data.shape)}|{data.dtype}|".encode())
    digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def state_sha256(model: nn.Module, skip_prefix: str = "head.") -> str:
    """Hash of a model's weights (without the head): the backbone's identity when it has no weights file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(skip_prefix):
            digest.update(name.encode())
            digest.update(tensor_sha256(tensor).encode())
    return digest.hexdigest()


class FrozenCache:
    """Prefix outputs by key, in memory and (when ``directory`` is set) on disk.

    ``enabled=False`` turns every lookup into a fresh computation (the uncached reference path).
    """

    def __init__(self, directory: str | Path | None = None, *, enabled: bool = True,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.enabled = enabled
        self.max_bytes = max_bytes
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = {"memory": 0, "disk": 0, "computed": 0}

    def key(self, *, backbone_id: str, point: CachePoint, images_id: str, transform: InputTransform,
            device: torch.device, precision: str = DEFAULT_PRECISION) -> str:
        material = {"version": FORMAT_VERSION, "backbone": backbone_id, "point": [point.kind, point.depth],
                    "images": images_id, "transform": transform.describe(), "device_type": device.type,
                    "autocast": "bf16" if precision_used(device, precision) == "bf16" else None}
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]

    def prefix_outputs(self, model: nn.Module, point: CachePoint, images: torch.Tensor, *, images_id: str,
                       backbone_id: str, transform: InputTransform, batch_size: int,
                       precision: str = DEFAULT_PRECISION) -> torch.Tensor | None:
        """The prefix output of every image (float32, on the images' device), or None when too large to keep."""
        device = images.device
        key = self.key(backbone_id=backbone_id, point=point, images_id=images_id, transform=transform,
                       device=device, precision=precision)
        if self.enabled and key in self._memory:
            self.hits["memory"] += 1
            return self._memory[key]
        if self.enabled:
            loaded = self._load(key, len(images), device)
            if loaded is not None:
                self.hits["disk"] += 1
                self._memory[key] = loaded
                return loaded
        outputs = compute_prefix(model, point, images, transform=transform, batch_size=batch_size,
                                 max_bytes=self.max_bytes, precision=precision)
        self.hits["computed"] += 1
        if outputs is not None and self.enabled:
            self._memory[key] = outputs
            self._store(key, outputs)
        return outputs

    def _path(self, key: str) -> Path | None:
        return self.directory / f"{key}.safetensors" if self.directory is not None else None

    def _load(self, key: str, rows: int, device: torch.device) -> torch.Tensor | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensor = load_file(str(path), device=str(device))["prefix"]
        except (SafetensorError, KeyError, OSError):
            return None  # unreadable entry: recompute and overwrite
        return tensor if tensor.shape[0] == rows else None

    def _store(self, key: str, outputs: torch.Tensor) -> None:
        path = self._path(key)
        if path is not None:
            save_tensors(path, {"prefix": outputs}, metadata={"format": f"peftlab-frozen-cache-{FORMAT_VERSION}"})


@torch.no_grad()
def compute_prefix(model: nn.Module, point: CachePoint, images: torch.Tensor, *, transform: InputTransform,
                   batch_size: int, max_bytes: int | None = None,
                   precision: str = DEFAULT_PRECISION) -> torch.Tensor | None:
    """Run the frozen prefix over ``images`` in eval mode, in ``precision`` (see ``forward.autocast``); None when
    the result would exceed ``max_bytes``."""
    modules = prefix_modules(model, point)
    was_training = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        chunks: list[torch.Tensor] = []
        for start in range(0, len(images), batch_size):
            x = transform(images[start:start + batch_size])
            with autocast(images.device, precision):
                out = prefix_forward(model, point, x).float()
            if not chunks and max_bytes is not None:
                if out[0].numel() * 4 * len(images) > max_bytes:
                    return None
            chunks.append(out)
    finally:
        for module, training in zip(modules, was_training, strict=True):
            module.train(training)
    return torch.cat(chunks) if chunks else torch.empty(0, device=images.device)
