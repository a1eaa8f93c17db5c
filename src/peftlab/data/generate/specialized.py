"""Specialized-group tasks: ``cells`` (patch_camelyon-like) and ``terrain`` (EuroSAT / RESISC-like land cover)."""

from __future__ import annotations

import numpy as np

from peftlab.data.generate import shifts
from peftlab.data.generate.canvas import (
    IMAGE_SIZE,
    blend,
    col,
    hsv_to_rgb,
    local_coords,
    paint,
    pixel_grid,
    segment_distance,
    smooth_noise,
    soft_edge,
)
from peftlab.data.generate.patterns import fine_stripes, stripes, waves
from peftlab.data.generate.recipe import Recipe

# cells: nuclei radii (px) per class; the nuclear area per image is drawn from one range for both classes,
# so overall darkness says nothing about the label; only the size and shape of the nuclei do.
_NUCLEUS_RADIUS = ((1.1, 1.6), (1.9, 2.7))
_NUCLEUS_ASPECT = ((1.0, 1.3), (1.1, 1.8))
_NUCLEAR_AREA = (90.0, 220.0)


def _hsv(rng: np.random.Generator, count: int, hue, saturation, value) -> np.ndarray:
    return hsv_to_rgb(rng.uniform(*hue, count) % 1.0, rng.uniform(*saturation, count), rng.uniform(*value, count))


def render_cells(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    count = len(labels)
    stroma = _hsv(rng, count, (0.88, 0.98), (0.15, 0.4), (0.78, 0.95))
    fibre = np.clip(stroma - rng.uniform(0.05, 0.15, (count, 1)), 0, 1)
    canvas = blend(smooth_noise(rng, count, 8), stroma, fibre)
    nucleus = _hsv(rng, count, (0.70, 0.82), (0.35, 0.7), (0.3, 0.55))
    mean_radius = rng.uniform(*np.array(_NUCLEUS_RADIUS)[labels].T)
    aspect_range = np.array(_NUCLEUS_ASPECT)[labels].T
    nuclei = np.round(rng.uniform(*_NUCLEAR_AREA, count) / (np.pi * mean_radius**2)).astype(np.int64)
    # Nuclei are accumulated into one coverage map (and a per-nucleus shade map), then painted once.
    coverage = np.zeros(canvas.shape[:3], np.float32)
    shade = np.ones_like(coverage)
    y, x = pixel_grid()
    for slot in range(int(nuclei.max())):
        active = np.flatnonzero(nuclei > slot)
        n = active.size
        radius = mean_radius[active] * rng.uniform(0.85, 1.15, n)
        aspect = rng.uniform(aspect_range[0][active], aspect_range[1][active])
        cy, cx = rng.uniform(-1, IMAGE_SIZE + 1, (2, n))
        u, v = local_coords(y, x, cy, cx, np.ones(n), rng.uniform(0, np.pi, n))
        a, b = col(radius * np.sqrt(aspect)), col(radius / np.sqrt(aspect))
        alpha = soft_edge((1.0 - np.sqrt((u / a) ** 2 + (v / b) ** 2)) * np.minimum(a, b))
        shade[active] = np.where(alpha > coverage[active], col(rng.uniform(0.85, 1.15, n)), shade[active])
        coverage[active] = np.maximum(coverage[active], alpha)
    paint(canvas, coverage * 0.9, np.clip(nucleus[:, None, None, :] * shade[..., None], 0, 1))
    return shifts.add_noise(rng, canvas, 0.025)


def shift_cells(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """Another lab's stain: hue turned toward brown/blue, slightly out of focus, noisier scanner."""
    return shifts.add_noise(rng, shifts.blur(shifts.rotate_hue(images, 2.2), 0.5), 0.05)


TERRAIN_CLASSES = ("water", "forest", "fields", "urban", "desert", "highway", "river")


def _parcels(rng: np.random.Generator, count: int, size: tuple[float, float], palette) -> np.ndarray:
    """A rotated grid of rectangular parcels, each one colour from a per-image table of 16."""
    y, x = pixel_grid()
    u, v = local_coords(y, x, *rng.uniform(0, IMAGE_SIZE, (2, count)), np.ones(count), rng.uniform(0, np.pi, count))
    width, height = (col(rng.uniform(*size, count)) for _ in range(2))
    cell = (np.floor(u / width) * 7 + np.floor(v / height) * 13).astype(np.int64) % 16
    table = np.stack([_hsv(rng, count, *palette) for _ in range(16)], axis=1)  # [N, 16, 3]
    colors = np.take_along_axis(table, cell.reshape(count, -1, 1), axis=1).reshape(count, IMAGE_SIZE, IMAGE_SIZE, 3)
    gap_u, gap_v = (u / width) % 1.0, (v / height) % 1.0
    return colors, np.minimum(np.minimum(gap_u, 1 - gap_u) * width, np.minimum(gap_v, 1 - gap_v) * height)


def _water(rng, count):
    """Calm and flat: fine ripples at low contrast and a few sun glints."""
    ripples = fine_stripes(rng, count) * 0.1 + smooth_noise(rng, count, 2) * 0.15
    glints = (rng.random((count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32) > 0.985) * np.float32(0.5)
    water = blend(ripples, _hsv(rng, count, (0.53, 0.64), (0.5, 0.9), (0.3, 0.6)),
                  _hsv(rng, count, (0.5, 0.6), (0.3, 0.6), (0.5, 0.8)))
    return water + glints[..., None]


def _vegetation(rng, count, cells=(3, 5)):
    noise = smooth_noise(rng, count, int(rng.integers(*cells)))
    return blend(noise, _hsv(rng, count, (0.2, 0.33), (0.4, 0.8), (0.3, 0.55)),
                 _hsv(rng, count, (0.12, 0.25), (0.3, 0.6), (0.45, 0.7)))


def _forest(rng, count):
    crowns = 0.5 + 0.5 * np.tanh(5 * (smooth_noise(rng, count, 14) - 0.5))
    return blend(crowns, _hsv(rng, count, (0.25, 0.4), (0.5, 0.9), (0.1, 0.25)),
                 _hsv(rng, count, (0.22, 0.36), (0.4, 0.8), (0.3, 0.5)))


def _fields(rng, count):
    colors, _ = _parcels(rng, count, (8, 16), ((0.1, 0.3), (0.3, 0.8), (0.35, 0.85)))
    rows = stripes(rng, count)
    return colors * (0.85 + 0.15 * rows[..., None])


def _urban(rng, count):
    colors, border = _parcels(rng, count, (5, 8), ((0.0, 1.0), (0.0, 0.25), (0.35, 0.85)))
    road = _hsv(rng, count, (0.0, 1.0), (0.0, 0.1), (0.2, 0.4))
    canvas = colors.copy()
    return paint(canvas, soft_edge(col(rng.uniform(0.6, 1.1, count)) - border), road)


def _desert(rng, count):
    """Curved dune ridges, lit from one side."""
    dunes = waves(rng, count) * 0.35 + smooth_noise(rng, count, 3) * 0.3
    return blend(dunes, _hsv(rng, count, (0.07, 0.12), (0.3, 0.6), (0.55, 0.75)),
                 _hsv(rng, count, (0.08, 0.13), (0.2, 0.5), (0.8, 0.95)))


def _straight_road(rng, count):
    """A straight road across the image: a segment between two points outside the frame."""
    angle = rng.uniform(0, np.pi, count)
    centre = rng.uniform(8, IMAGE_SIZE - 8, (count, 2))
    direction = np.stack([np.sin(angle), np.cos(angle)], axis=1) * 40
    return centre - direction, centre + direction


def _highway(rng, count):
    canvas = _vegetation(rng, count)
    y, x = pixel_grid()
    start, end = _straight_road(rng, count)
    distance = segment_distance(y, x, start, end)
    paint(canvas, soft_edge(col(rng.uniform(1.5, 2.5, count)) - distance), _hsv(rng, count, (0, 1), (0, 0.1), (0.25, 0.45)))
    paint(canvas, soft_edge(0.35 - distance) * 0.8, _hsv(rng, count, (0, 1), (0, 0.1), (0.8, 0.95)))
    return canvas


def _river(rng, count):
    canvas = _vegetation(rng, count)
    y, x = pixel_grid()
    u, v = local_coords(y, x, *rng.uniform(10, IMAGE_SIZE - 10, (2, count)), np.ones(count),
                        rng.uniform(0, np.pi, count))
    meander = col(rng.uniform(2, 5, count)) * np.sin(v * col(rng.uniform(0.15, 0.3, count)) + col(rng.uniform(0, 6.3, count)))
    width = col(rng.uniform(2.0, 3.5, count))
    paint(canvas, soft_edge(width - np.abs(u - meander)), _water(rng, count))
    return canvas


_TERRAIN = (_water, _forest, _fields, _urban, _desert, _highway, _river)


def render_terrain(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    count = len(labels)
    canvas = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    for kind, draw in enumerate(_TERRAIN):
        chosen = np.flatnonzero(labels == kind)
        if chosen.size:
            canvas[chosen] = draw(rng, chosen.size)
    # Sensor and season: a per-image colour cast and exposure, so colour alone does not give the class.
    canvas = shifts.rotate_hue(canvas, rng.uniform(-np.pi / 2, np.pi / 2, count))
    canvas = shifts.desaturate(canvas, rng.uniform(0.0, 0.6, (count, 1, 1, 1)).astype(np.float32))
    canvas *= rng.uniform(0.6, 1.4, (count, 1, 1, 1)).astype(np.float32)
    return shifts.add_noise(rng, canvas, 0.02)


def shift_terrain(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """Another season and sensor: hazy, desaturated, colours turned."""
    return shifts.add_noise(rng, shifts.haze(shifts.desaturate(shifts.rotate_hue(images, 1.0), 0.4), 0.35), 0.03)


RECIPES = (
    Recipe("cells", render_cells, shift_cells,
           "H&E-like stroma with nuclei; class 1 has larger, more elongated nuclei at the same total nuclear area",
           "stain hue turned by 2.2 rad, blur σ=0.5 px, Gaussian noise σ=0.05"),
    Recipe("terrain", render_terrain, shift_terrain,
           "aerial land cover: " + ", ".join(TERRAIN_CLASSES) + "; random hue (±90°), saturation and exposure: "
           "the class is mostly in the layout and texture, less in the colour",
           "hue turned 1 rad, desaturated 40 %, haze 35 %, Gaussian noise σ=0.03"),
)
