"""Helpers for the data tests: a small generated suite's sizes, folder digests, a hand-made JPEG task.

Imported as ``data_fixtures`` (a unique module name: several test folders have their own ``conftest.py``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from peftlab.data.generate import SuiteSizes

# Small but complete: train800/val200 are always 800/200; everything else is shrunk.
SMALL = SuiteSizes(test=40, manyshot=120, manyshot_subsets=(60,), upstream=128)
SEED = 7
def tree_digest(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``root`` (hidden files included): a folder's exact state."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# A hand-made task in the real layout: JPEG images of several sizes and modes, paths with spaces.
TOY_CLASSES = 4  # the folder is named "kitti", the VTAB-1k alias of kitti_distance (4 classes, Structured)
TOY_SIZES = {"train800": 12, "val200": 4, "test": 8}


def _toy_image(rng: np.random.Generator, index: int) -> Image.Image:
    width, height = (40, 30) if index % 3 == 0 else (24, 24)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    return image.convert("L") if index % 5 == 0 else image


def make_toy_task(root: Path, name: str = "kitti", num_classes: int = TOY_CLASSES, seed: int = 0) -> Path:
    """``root/<name>/`` with JPEG images (one folder has a space in its name) and the four split lists."""
    rng = np.random.default_rng(seed)
    task_dir = root / name
    lines: dict[str, list[str]] = {}
    index = 0
    for split, count in TOY_SIZES.items():
        folder = task_dir / "images" / ("test set" if split == "test" else split)
        folder.mkdir(parents=True, exist_ok=True)
        lines[split] = []
        for k in range(count):
            path = folder / f"{k:03d}.jpg"
            _toy_image(rng, index).save(path, format="JPEG", quality=90)
            lines[split].append(f"{path.relative_to(task_dir)} {index % num_classes}")
            index += 1
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, split_lines in lines.items():
        (task_dir / f"{split}.txt").write_text("\n".join(split_lines) + "\n", encoding="utf-8")
    return task_dir
