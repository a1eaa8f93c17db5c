"""Decoding listed images into uint8 arrays, once, optionally in worker processes.

Each file is read once: its bytes are hashed (sha256, for the content-leakage check) and decoded fully from
memory, so a truncated or corrupt file fails here rather than in training. Images are converted to RGB and
resized to ``size × size`` with bicubic resampling when their size differs (aspect ratio is not kept, as in the
processed VTAB-1k pipelines that resize straight to 224 × 224).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from peftlab.errors import PeftlabError

Decoded = tuple[str, np.ndarray]  # (sha256 of the file bytes, uint8 [3, size, size])


def decode_image(path: Path, size: int) -> Decoded:
    """Hash and fully decode one image file; any read or decode failure is a ``PeftlabError`` naming it."""
    from PIL import Image

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PeftlabError(f"{path}: cannot read image ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode every byte: truncated files raise here
            rgb = image.convert("RGB")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, zlib.error ... for bad files
        raise PeftlabError(f"{path}: corrupt or truncated image ({type(exc).__name__}: {exc})") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return digest, np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def image_size_of(path: Path) -> tuple[int, int]:
    """Width and height from the file header (no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:
        raise PeftlabError(f"{path}: corrupt or truncated image ({type(exc).__name__}: {exc})") from None


def decode_images(paths: Sequence[Path], size: int, workers: int = 1) -> Iterator[Decoded]:
    """Decoded images in the order of ``paths``; ``workers > 1`` decodes in that many processes."""
    decode = partial(decode_image, size=size)
    if workers <= 1 or len(paths) < 256:
        yield from map(decode, paths)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(decode, paths, chunksize=64)
