"""The shard format: one safetensors file per split, and the task's ``manifest.json``.

A shard holds ``images`` uint8 ``[N, 3, S, S]`` (already resized), ``labels`` int64 ``[N]`` and, for a shift
set evaluated on a class subset, ``class_subset`` int64 ``[K]``; string metadata ``task``, ``split``,
``num_classes``. Loading memory-maps the file (``safe_open``), so reading a split costs one copy at most.

The manifest records each shard's sha256 (of the file's content: one sequential read, about 1.1 GB/s here, and
the same number ``sha256sum`` prints); loading checks it first, so a shard corrupted or replaced after it was
prepared (a bad download, a flipped byte, a file copied from another task) is an error naming the file, and no
job trains or scores on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftlab.errors import PeftlabError
from peftlab.io import read_json, require_keys

if TYPE_CHECKING:
    import numpy as np
    import torch

MANIFEST_NAME = "manifest.json"
SHARD_SUFFIX = ".safetensors"
MANIFEST_KEYS = ("task", "group", "num_classes", "image_size", "splits")


@dataclass(frozen=True)
class Split:
    """A loaded split: uint8 images ``[N, 3, S, S]``, int64 labels ``[N]``, and the shift set's class subset."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    class_subset: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def shard_path(task_dir: str | Path, split: str) -> Path:
    return Path(task_dir) / f"{split}{SHARD_SUFFIX}"


def write_shard(path: Path, images: np.ndarray, labels: np.ndarray, *, task: str, split: str, num_classes: int,
                class_subset: tuple[int, ...] | None = None) -> str:
    """Write one split atomically; returns its sha256 (for the manifest). Written from numpy
    (``safetensors.numpy``): preparing data never imports torch, which alone costs seconds and ~700 MB here; the
    file is the same safetensors format."""
    import numpy as np
    from safetensors.numpy import save_file

    from peftlab.io import write_safetensors

    tensors = {
        "images": np.ascontiguousarray(images, dtype=np.uint8),
        "labels": np.ascontiguousarray(labels, dtype=np.int64),
    }
    if class_subset is not None:
        tensors["class_subset"] = np.asarray(class_subset, dtype=np.int64)
    metadata = {"task": task, "split": split, "num_classes": str(num_classes)}
    return write_safetensors(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_manifest(task_dir: str | Path) -> dict[str, Any]:
    """The task's manifest (task, group, num_classes, image_size, splits), checked for its keys."""
    manifest_path = Path(task_dir) / MANIFEST_NAME
    manifest = read_json(manifest_path, what="shard manifest (run 'peftlab data prepare')")
    if not isinstance(manifest, dict):
        raise PeftlabError(f"{manifest_path}: a manifest must be a JSON object")
    require_keys(manifest, MANIFEST_KEYS, str(manifest_path))
    return manifest


def recorded_sha256(task_dir: str | Path, split: str) -> str | None:
    """The sha256 the task's manifest records for ``split`` (every manifest ``peftlab data prepare`` writes has
    one); None where there is no manifest or it records none (a hand-made test task)."""
    manifest_path = Path(task_dir) / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    record = (read_manifest(task_dir).get("splits") or {}).get(split)
    return (record.get("sha256") or None) if isinstance(record, dict) else None


def load_split(task_dir: str | Path, split: str) -> Split:
    """Load one split's shard, checked against the manifest's sha256; a missing, corrupt or altered file is an
    error naming it (and, when missing, the splits that exist)."""
    from safetensors import SafetensorError, safe_open

    from peftlab.io import verify_sha256

    path = shard_path(task_dir, split)
    if not path.is_file():
        existing = sorted(p.name[: -len(SHARD_SUFFIX)] for p in Path(task_dir).glob(f"*{SHARD_SUFFIX}"))
        hint = f"splits present: {existing}" if existing else "run 'peftlab data prepare' first"
        raise PeftlabError(f"{path}: shard for split '{split}' not found ({hint})")
    expected = recorded_sha256(task_dir, split)
    if expected is not None:
        verify_sha256(path, expected, Path(task_dir) / MANIFEST_NAME)
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = set(handle.keys())
            missing = {"images", "labels"} - names
            if missing:
                raise PeftlabError(f"{path}: shard lacks tensors {sorted(missing)}")
            metadata = handle.metadata() or {}
            images = handle.get_tensor("images")
            labels = handle.get_tensor("labels")
            subset = handle.get_tensor("class_subset") if "class_subset" in names else None
    except (SafetensorError, OSError) as exc:
        raise PeftlabError(f"{path}: not a readable safetensors shard ({exc})") from None
    if "num_classes" not in metadata:
        raise PeftlabError(f"{path}: shard metadata lacks 'num_classes'")
    return Split(images=images, labels=labels, num_classes=int(metadata["num_classes"]), class_subset=subset)
