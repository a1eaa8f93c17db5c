"""Natural-group tasks: ``digits`` (handwritten digits in clutter) and ``textures`` (pattern families)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from peftlab.data.generate import shifts
from peftlab.data.generate.canvas import (
    IMAGE_SIZE,
    blend,
    col,
    contrasting_colors,
    paint,
    pixel_grid,
    random_colors,
    sample_bilinear,
    segment_distance,
    smooth_noise,
    soft_edge,
)
from peftlab.data.generate.patterns import render_patterns
from peftlab.data.generate.recipe import Recipe

GLYPH = 16  # the 8 × 8 scikit-learn digits, smoothed to 16 × 16 once


@lru_cache(maxsize=1)
def _digit_glyphs() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1797 × 8 × 8, no download), bicubic-upsampled to 16 × 16 in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    glyphs = np.stack([
        np.asarray(Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((GLYPH, GLYPH),
                                                                                 Image.Resampling.BICUBIC))
        for image in digits.images
    ]).astype(np.float32) / 255.0
    return glyphs, digits.target.astype(np.int64)


def _pick_glyphs(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    """Glyphs of the wanted classes; every 4th source digit is kept for the test set only."""
    glyphs, targets = _digit_glyphs()
    in_pool = (np.arange(len(targets)) % 4 == 0) == held_out
    picks = np.empty(len(labels), dtype=np.int64)
    for digit in range(10):
        wanted = np.flatnonzero(labels == digit)
        picks[wanted] = rng.choice(np.flatnonzero(in_pool & (targets == digit)), wanted.size)
    return glyphs[picks]


def _clutter(rng: np.random.Generator, canvas: np.ndarray, strokes: int) -> None:
    """Faint random strokes under the digit: structure a linear read-out of pixels cannot simply ignore."""
    count = len(canvas)
    y, x = pixel_grid()
    for _ in range(strokes):
        start, end = rng.uniform(-4, IMAGE_SIZE + 4, (2, count, 2))
        width = col(rng.uniform(0.5, 1.0, count))
        alpha = soft_edge(width - segment_distance(y, x, start, end)) * col(rng.uniform(0.2, 0.4, count))
        paint(canvas, alpha, random_colors(rng, count))


def render_digits(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    count = len(labels)
    glyphs = _pick_glyphs(rng, labels, held_out)
    ink, paper = contrasting_colors(rng, count, min_gap=0.45)
    canvas = blend(smooth_noise(rng, count, 3), paper, np.clip(paper + rng.uniform(-0.15, 0.15, (count, 3)), 0, 1))
    _clutter(rng, canvas, strokes=2)
    # Place the glyph: output pixel → glyph coordinates through scale, rotation, shear and offset.
    size = rng.uniform(19.0, 27.0, count)
    angle, shear = rng.uniform(-0.25, 0.25, count), rng.uniform(-0.15, 0.15, count)
    margin = size * 0.38
    cy, cx = (rng.uniform(margin, IMAGE_SIZE - margin) for _ in range(2))
    y, x = pixel_grid()
    dy, dx = (y - col(cy)) / col(size / GLYPH), (x - col(cx)) / col(size / GLYPH)
    cos, sin = col(np.cos(angle)), col(np.sin(angle))
    gy = dy * cos - dx * sin
    gx = dx * cos + dy * sin + col(shear) * gy
    coverage = np.clip(sample_bilinear(glyphs, gy + GLYPH / 2, gx + GLYPH / 2) * 1.5 - 0.15, 0.0, 1.0)
    paint(canvas, coverage, ink)
    return shifts.add_noise(rng, canvas, 0.02)


def shift_digits(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    return shifts.add_noise(rng, shifts.invert(images), 0.06)


def render_textures(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    count = len(labels)
    low, high = contrasting_colors(rng, count, min_gap=0.3)
    images = blend(render_patterns(rng, labels), low, high)
    images = shifts.uneven_light(rng, images, 0.2)
    return shifts.add_noise(rng, images, 0.02)


def shift_textures(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    return shifts.add_noise(rng, shifts.blur(shifts.desaturate(images, 0.8), 0.6), 0.06)


RECIPES = (
    Recipe("digits", render_digits, shift_digits,
           "scikit-learn 8×8 digits, upsampled, random colours (either polarity), scale, rotation, shear, offset, "
           "two faint strokes",
           "colours inverted, Gaussian noise σ=0.06"),
    Recipe("textures", render_textures, shift_textures,
           "8 pattern families (stripes, waves, zigzag, checks, grid, dots, rings, blotches), random colours, "
           "frequency, phase, orientation",
           "desaturated 80 %, blur σ=0.6 px, Gaussian noise σ=0.06"),
)
