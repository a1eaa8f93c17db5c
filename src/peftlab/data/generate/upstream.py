"""The upstream pretraining set: scenes whose every factor is labelled, for a multi-head objective.

It plays ImageNet's role for the tiny ViT. A single label per image teaches invariance to everything else in the
image: a set labelled by shape teaches the backbone to ignore position and heading, which are exactly what the
Structured tasks ask (development record in ``docs/training.md``). So each scene here is labelled with all of
its factors, and pretraining has one softmax head per factor (``backbone.pretrain.heads``):

| factor | values | what it is |
|---|---|---|
| texture | 9 | the background: plain (soft noise) or one of 8 upstream-only texture families (``upstream_textures``) |
| shape | 8 | the objects' outline: heart, ell, tee, crescent, half-disc, teardrop, flag, kite (none rotationally symmetric) |
| heading | 8 | the objects' rotation, 45° bins over the full turn |
| count | 3 | one to three objects, non-overlapping |
| position | 9 | the 3 × 3 cell of the main object (the largest; the others are drawn at 0.6 of its size) |

All objects of a scene share shape, heading (each drawn within the bin) and ink colour; the ink stands out from
the background (luminance gap ≥ 0.4). Continuous factors are drawn from the middle 70 % of their bin, so every
factor is a function of the image. The label is the mixed-radix code of the factors, most significant first:
``(((texture · 8 + shape) · 8 + heading) · 3 + count − 1) · 9 + position`` (15 552 codes), which the data layer
stores as one integer like any label.

None of it is a downstream task's label or image: the textures are not the ``textures`` classes, counts are of
one to three flat shapes (not ``clevr_count``'s 3–8 objects in perspective), the position is a 3 × 3 cell of a
main object among up to two smaller ones on a lit background (not ``dsprites_location``'s 8 x-bins of one bright shape on black), the heading
is of these shapes in 8 bins (not ``dsprites_orientation``'s arrow in 16); the suite's tests check the images
against every downstream test image by bytes.
"""

from __future__ import annotations

import math

import numpy as np

from peftlab.data.generate import shifts
from peftlab.data.generate.canvas import (
    IMAGE_SIZE,
    blend,
    contrasting_colors,
    luminance,
    paint,
    shape_coverage,
    smooth_noise,
)
from peftlab.data.generate.shapes import UPSTREAM_SHAPES
from peftlab.data.generate.upstream_textures import UPSTREAM_TEXTURES

BIN_FILL = 0.7  # heading and position are drawn from the middle 70 % of their bin
HEADING_BINS = 8
MAX_COUNT = 3
POSITION_CELLS = 3
POSITION_RANGE = (9.0, 23.0)  # the 3 × 3 grid of the main object's cells covers this square (px)
# Main object's scale (the shape's unit) per count, fewer objects drawn larger; the others are SMALL_SCALE of it.
# The farthest corner of a shape lies 1.31 units from its centre (the tee's bar), so an object's centre stays that
# far from the border, and two objects' centres the sum of theirs apart.
SCALE_BY_COUNT = {1: (5.5, 7.0), 2: (4.8, 6.0), 3: (4.2, 5.2)}
SMALL_SCALE = 0.6
EXTENT = 1.31

FACTORS: tuple[tuple[str, int], ...] = (
    ("texture", 1 + len(UPSTREAM_TEXTURES)),
    ("shape", len(UPSTREAM_SHAPES)),
    ("heading", HEADING_BINS),
    ("count", MAX_COUNT),
    ("position", POSITION_CELLS**2),
)
NUM_CLASSES = math.prod(values for _, values in FACTORS)


def decode(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Mixed-radix label codes → one array of values per factor (``count`` as 0-based: objects − 1)."""
    factors, rest = {}, np.asarray(labels, dtype=np.int64)
    for name, values in reversed(FACTORS):
        factors[name], rest = rest % values, rest // values
    return factors


def encode(factors: dict[str, np.ndarray]) -> np.ndarray:
    code = np.zeros_like(np.asarray(factors[FACTORS[0][0]]), dtype=np.int64)
    for name, values in FACTORS:
        code = code * values + np.asarray(factors[name], dtype=np.int64)
    return code


def _within_bins(rng: np.random.Generator, bins: np.ndarray, low: float, high: float, count: int) -> np.ndarray:
    width = (high - low) / count
    return low + (bins + 0.5 + rng.uniform(-BIN_FILL / 2, BIN_FILL / 2, bins.shape)) * width


def _background(rng: np.random.Generator, texture: np.ndarray, paper: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """Soft noise in the paper colour; for ``texture`` ≥ 1 that upstream texture in a second tone, which moves
    away from the ink's luminance so the objects keep their contrast."""
    count = len(texture)
    canvas = blend(smooth_noise(rng, count, 3) * 0.3, paper, np.clip(paper + rng.uniform(-0.15, 0.15, (count, 3)), 0, 1))
    away = np.where(luminance(ink) > luminance(paper), -1.0, 1.0)[:, None].astype(np.float32)
    tone = np.clip(paper + away * rng.uniform(0.25, 0.4, (count, 1)), 0, 1)
    for kind, pattern in enumerate(UPSTREAM_TEXTURES, start=1):
        chosen = np.flatnonzero(texture == kind)
        if chosen.size:
            canvas[chosen] = paint(canvas[chosen], pattern(rng, chosen.size), tone[chosen])
    return canvas


def _place(rng: np.random.Generator, objects: np.ndarray, main: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Centres ``[N, MAX_COUNT, 2]``: slot 0 is the main object at ``main``; the others are drawn uniformly,
    ``EXTENT · scale`` inside the image and clear of every object placed before them (greedy, per slot)."""
    count = len(objects)
    centres = np.repeat(main[:, None, :], MAX_COUNT, axis=1)
    sizes = scale[:, None] * np.array([1.0] + [SMALL_SCALE] * (MAX_COUNT - 1), dtype=np.float32)[None, :]
    for slot in range(1, MAX_COUNT):
        todo = objects > slot
        for _ in range(2000):
            if not todo.any():
                break
            chosen = np.flatnonzero(todo)
            margin = EXTENT * sizes[chosen, slot]
            trial = rng.uniform(margin[:, None], IMAGE_SIZE - margin[:, None], (chosen.size, 2))
            gaps = np.linalg.norm(centres[chosen, :slot] - trial[:, None, :], axis=-1)
            clear = (gaps >= EXTENT * (sizes[chosen, :slot] + sizes[chosen, slot:slot + 1]) + 0.5).all(axis=1)
            centres[chosen[clear], slot] = trial[clear]
            todo[chosen[clear]] = False
        if todo.any():
            raise RuntimeError(f"upstream: could not place object {slot + 1} in {int(todo.sum())} of {count} scenes")
    return centres


def render_upstream(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    """Scenes for label codes (see the module docstring)."""
    factors = decode(labels)
    count = len(labels)
    objects = factors["count"] + 1
    ink, paper = contrasting_colors(rng, count, min_gap=0.4)
    canvas = _background(rng, factors["texture"], paper, ink)
    low, high = np.array([SCALE_BY_COUNT[n] for n in objects], dtype=np.float32).T
    scale = rng.uniform(low, high)
    row, column = factors["position"] // POSITION_CELLS, factors["position"] % POSITION_CELLS
    main = np.stack([_within_bins(rng, row, *POSITION_RANGE, POSITION_CELLS),
                     _within_bins(rng, column, *POSITION_RANGE, POSITION_CELLS)], axis=1)
    centres = _place(rng, objects, main, scale)
    coverage = np.zeros(canvas.shape[:3], np.float32)
    for slot in range(MAX_COUNT):
        on = np.flatnonzero(objects > slot)
        angle = _within_bins(rng, factors["heading"][on], 0.0, 2 * np.pi, HEADING_BINS)
        for kind, shape in enumerate(UPSTREAM_SHAPES):
            chosen = on[factors["shape"][on] == kind]
            if chosen.size:
                size = scale[chosen] * (1.0 if slot == 0 else SMALL_SCALE)
                drawn = shape_coverage(shape, centres[chosen, slot, 0], centres[chosen, slot, 1], size,
                                       angle[factors["shape"][on] == kind])
                coverage[chosen] = np.maximum(coverage[chosen], drawn)
    paint(canvas, coverage, ink)
    return shifts.add_noise(rng, canvas, 0.02)
