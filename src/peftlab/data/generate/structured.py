"""Structured-group tasks: CLEVR-like scenes (count, distance) and dSprites-like shapes (location, orientation).

Labels are geometric facts of the scene (how many objects, how far the closest one, where, which way), drawn
first and rendered exactly; continuous parameters are sampled inside the middle of their label's bin, leaving a
gap between neighbouring bins, so that no image sits on a boundary (the label is a function of the image).
"""

from __future__ import annotations

import numpy as np

from peftlab.data.generate import shifts
from peftlab.data.generate.canvas import (
    IMAGE_SIZE,
    col,
    fill,
    paint,
    pixel_grid,
    random_colors,
    shape_coverage,
    soft_edge,
)
from peftlab.data.generate.recipe import Recipe
from peftlab.data.generate.shapes import DSPRITES_SHAPES, arrow

BIN_FILL = 0.7  # a parameter is drawn from the middle 70 % of its label's bin

# clevr_count: 3..8 objects; clevr_distance: the closest object's depth in 6 bins of perspective scale.
COUNT_OFFSET = 3
DISTANCE_BINS = 6
NEAR_SCALE = (0.25, 1.0)  # perspective scale p = (base − horizon) / (S − horizon) of the closest object
OBJECT_RADIUS = 5.0  # radius of an object at p = 1 (bottom edge), before its own size factor


def _radius(rng: np.random.Generator, scale: np.ndarray) -> np.ndarray:
    """Apparent radius: a damped perspective (far objects stay ≥ 2 px, so each one is countable)."""
    return OBJECT_RADIUS * (0.4 + 0.6 * scale) * rng.uniform(0.75, 1.1, scale.shape)


def _within_bins(rng: np.random.Generator, bins: np.ndarray, low: float, high: float, count: int) -> np.ndarray:
    width = (high - low) / count
    return low + (bins + 0.5 + rng.uniform(-BIN_FILL / 2, BIN_FILL / 2, len(bins))) * width


def _floor(rng: np.random.Generator, horizon: np.ndarray) -> np.ndarray:
    """Wall above the horizon, a lit floor below it fading with distance."""
    count = len(horizon)
    y, _ = pixel_grid()
    wall = random_colors(rng, count, saturation=(0.0, 0.15), value=(0.35, 0.6))
    ground = random_colors(rng, count, saturation=(0.0, 0.2), value=(0.45, 0.75))
    depth = np.clip((y - col(horizon)) / (IMAGE_SIZE - col(horizon)), 0, 1)
    canvas = fill(np.ones_like(depth), wall)
    floor = fill(0.75 + 0.25 * depth, ground)
    return paint(canvas, soft_edge(y - col(horizon)), floor)


def _draw_objects(rng: np.random.Generator, canvas: np.ndarray, base: np.ndarray, x: np.ndarray,
                  radius: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Draw ``[N, K]`` objects (spheres, cubes, cylinders) far to near: ``base`` is where each touches the floor."""
    count, slots = base.shape
    order = np.argsort(np.where(active, base, -1.0), axis=1)  # inactive first (never drawn), then far to near
    base, x, radius, active = (np.take_along_axis(a, order, axis=1) for a in (base, x, radius, active))
    y, px = pixel_grid()
    kinds = rng.integers(0, 3, (count, slots))
    colors = random_colors(rng, count * slots, saturation=(0.4, 1.0), value=(0.45, 1.0)).reshape(count, slots, 3)
    for slot in range(slots):
        on = np.flatnonzero(active[:, slot])
        if on.size == 0:
            continue
        r, cx = col(radius[on, slot]), col(x[on, slot])
        cy = col(base[on, slot]) - r
        dy, dx = y - cy, px - cx
        color = colors[on, slot]
        kind = kinds[on, slot][:, None, None]
        # sphere: shaded disc with a highlight toward the light (upper left)
        dist = np.sqrt(dx * dx + dy * dy)
        sphere = soft_edge(r - dist)
        light = np.clip(0.55 + 0.45 * (-(dx + dy) / (1.6 * r) + np.sqrt(np.clip(1 - (dist / r) ** 2, 0, 1))), 0, 1.3)
        # cube: a front face and a lighter top face
        front = soft_edge(np.minimum(0.85 * r - np.abs(dx), 0.85 * r - np.abs(dy)))
        top_y = -0.85 * r - dy  # height above the front face's top edge
        top = soft_edge(np.minimum(np.minimum(top_y, 0.4 * r - top_y), 0.85 * r - np.abs(dx - 0.6 * top_y)))
        # cylinder: a body and an elliptic lid
        body = soft_edge(np.minimum(0.8 * r - np.abs(dx), np.minimum(dy + 0.5 * r, r - dy)))
        lid = soft_edge(np.minimum(1.0, (1 - np.sqrt((dx / (0.8 * r)) ** 2 + ((dy + 0.5 * r) / (0.35 * r)) ** 2)) * r))
        alpha = np.where(kind == 0, sphere, np.where(kind == 1, np.maximum(front, top), np.maximum(body, lid)))
        shade = np.where(kind == 0, light, np.where(kind == 1, 0.75 + 0.3 * (top > front), 0.75 + 0.3 * (lid > 0.5)))
        canvas[on] = paint(canvas[on], alpha, fill(shade, color))
    return canvas


def _place(rng: np.random.Generator, horizon: np.ndarray, wanted: np.ndarray, slots: int):
    """Non-overlapping objects, ``wanted[i]`` per image: greedy acceptance of random candidates, restarting an
    image whose scene got too crowded to fit the rest. Crowded scenes use slightly smaller objects."""
    count = len(wanted)
    base = np.zeros((count, slots), np.float32)
    x, radius = np.zeros_like(base), np.zeros_like(base)
    placed = np.zeros(count, np.int64)
    shrink = np.clip(np.sqrt(5.5 / wanted), 0.8, 1.0)
    for attempt in range(3000):
        todo = placed < wanted
        if not todo.any():
            break
        if attempt % 100 == 99:
            placed[todo] = 0
        scale = rng.uniform(0.2, 1.0, count)
        cand_base = horizon + scale * (IMAGE_SIZE - horizon)
        cand_r = _radius(rng, scale) * shrink
        cand_x = rng.uniform(cand_r, IMAGE_SIZE - cand_r)
        taken = np.arange(slots)[None, :] < placed[:, None]
        gap_x = np.abs(cand_x[:, None] - x) - (cand_r[:, None] + radius) * 0.9
        gap_y = np.abs((cand_base - cand_r)[:, None] - (base - radius)) - (cand_r[:, None] + radius)
        clear = ~((gap_x < 0.5) & (gap_y < 0.5) & taken).any(axis=1)
        accept = np.flatnonzero(todo & clear)
        slot = placed[accept]
        base[accept, slot], x[accept, slot], radius[accept, slot] = cand_base[accept], cand_x[accept], cand_r[accept]
        placed[accept] += 1
    if (placed < wanted).any():
        raise RuntimeError("clevr_count: could not place all objects; the scene parameters are too tight")
    return base, x, radius, np.arange(slots)[None, :] < wanted[:, None]


def render_clevr_count(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    horizon = rng.uniform(7, 10, len(labels)).astype(np.float32)
    canvas = _floor(rng, horizon)
    wanted = labels + COUNT_OFFSET
    base, x, radius, active = _place(rng, horizon, wanted, int(COUNT_OFFSET + labels.max()))
    _draw_objects(rng, canvas, base, x, radius, active)
    return shifts.add_noise(rng, canvas, 0.02)


def render_clevr_distance(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    count, slots = len(labels), 5
    horizon = rng.uniform(7, 10, count).astype(np.float32)
    canvas = _floor(rng, horizon)
    nearest = _within_bins(rng, labels, *NEAR_SCALE, DISTANCE_BINS)
    # The others stand farther away (smaller scale), at least a third of a bin behind the closest one.
    margin = (NEAR_SCALE[1] - NEAR_SCALE[0]) / DISTANCE_BINS / 3
    scale = rng.uniform(0.12, 1.0, (count, slots)) * (nearest[:, None] - margin - 0.12) + 0.12
    scale[:, 0] = nearest
    active = np.arange(slots)[None, :] < rng.integers(2, slots + 1, count)[:, None]
    base = horizon[:, None] + scale * (IMAGE_SIZE - horizon[:, None])
    radius = _radius(rng, scale)
    x = rng.uniform(radius, IMAGE_SIZE - radius)
    _draw_objects(rng, canvas, base, x, radius, active)
    return shifts.add_noise(rng, canvas, 0.02)


def shift_clevr_count(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """A different camera: colours turned, lower contrast, noisier."""
    return shifts.add_noise(rng, 0.5 + 0.75 * (shifts.rotate_hue(images, 2.5) - 0.5), 0.04)


def shift_clevr_distance(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    return shifts.add_noise(rng, shifts.invert(images), 0.04)


LOCATION_BINS = 8
LOCATION_RANGE = (6.0, 26.0)  # centre x of the shape, in pixels
ORIENTATION_BINS = 16


def _shape_batch(rng: np.random.Generator, cy, cx, scale, angle) -> np.ndarray:
    kinds = rng.integers(0, len(DSPRITES_SHAPES), len(cy))
    coverage = np.zeros((len(cy), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for kind, shape in enumerate(DSPRITES_SHAPES):
        chosen = np.flatnonzero(kinds == kind)
        if chosen.size:
            coverage[chosen] = shape_coverage(shape, cy[chosen], cx[chosen], scale[chosen], angle[chosen])
    return coverage


def _on_black(rng: np.random.Generator, coverage: np.ndarray) -> np.ndarray:
    brightness = rng.uniform(0.7, 1.0, len(coverage)).astype(np.float32)
    return np.repeat(coverage[..., None] * col(brightness)[..., None], 3, axis=-1)


def render_dsprites_location(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    """The bright shape's x bin; three to six dim shapes elsewhere (at most 45 % of its brightness)."""
    count = len(labels)
    scale = rng.uniform(3.0, 6.0, count)
    cx = _within_bins(rng, labels, *LOCATION_RANGE, LOCATION_BINS)
    cy = rng.uniform(scale + 1, IMAGE_SIZE - scale - 1)
    images = _on_black(rng, _shape_batch(rng, cy, cx, scale, rng.uniform(0, 2 * np.pi, count)))
    brightness = images.max(axis=(1, 2, 3))
    specks = rng.integers(3, 7, count)
    for slot in range(6):
        on = np.flatnonzero(specks > slot)
        size = rng.uniform(2.5, 6.0, on.size)
        dust = _shape_batch(rng, *rng.uniform(2, IMAGE_SIZE - 2, (2, on.size)), size, rng.uniform(0, 6.3, on.size))
        level = col(brightness[on] * rng.uniform(0.2, 0.45, on.size))
        images[on] = np.maximum(images[on], (dust * level)[..., None])
    return images


def render_dsprites_orientation(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    count = len(labels)
    scale = rng.uniform(6.0, 10.0, count)
    cy, cx = rng.uniform(scale * 0.9, IMAGE_SIZE - scale * 0.9, (2, count))
    angle = _within_bins(rng, labels, 0.0, 2 * np.pi, ORIENTATION_BINS)
    return _on_black(rng, shape_coverage(arrow, cy, cx, scale, angle))


def shift_dsprites(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    return shifts.textured_background(rng, images)


RECIPES = (
    Recipe("clevr_count", render_clevr_count, shift_clevr_count,
           "3–8 non-overlapping spheres, cubes, cylinders on a floor in perspective; label = count − 3",
           "hue turned 2.5 rad, contrast 75 %, Gaussian noise σ=0.04"),
    Recipe("clevr_distance", render_clevr_distance, shift_clevr_distance,
           "2–5 objects in perspective; label = depth bin (6) of the closest object",
           "colours inverted, Gaussian noise σ=0.04"),
    Recipe("dsprites_location", render_dsprites_location, shift_dsprites,
           "a square, ellipse or heart on black, random scale, rotation, y, with 3–6 dim shapes; label = "
           "x-position bin (8) of the bright shape",
           "random low-contrast texture behind the shape"),
    Recipe("dsprites_orientation", render_dsprites_orientation, shift_dsprites,
           "an arrow on black, random scale and position; label = orientation bin (16 over 360°)",
           "random low-contrast texture behind the shape"),
)
