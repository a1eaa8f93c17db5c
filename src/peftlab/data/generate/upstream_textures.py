"""Texture families of the upstream set only: ``[N, S, S]`` patterns in [0, 1], none of them a ``textures`` class.

The ``textures`` task's eight families (stripes, waves, zigzag, checks, grid, dots, rings, blotches) are that task's
labels, so pretraining must not learn them; these eight teach the same skill (a repeated structure recognised
whatever its colours, scale, phase and orientation) on other structures: bricks, honeycomb, Voronoi cells,
spiral, starburst, speckle, concentric squares and marble veins. Each keeps several periods inside 32 px, so
the family is a function of the image.
"""

from __future__ import annotations

import numpy as np

from peftlab.data.generate.canvas import IMAGE_SIZE, col, local_coords, pixel_grid, smooth_noise
from peftlab.data.generate.patterns import Pattern

TAU = np.float32(2 * np.pi)


def _frame(rng: np.random.Generator, count: int, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates turned by a random angle about a random centre (``margin`` px inside the image)."""
    y, x = pixel_grid()
    cy, cx = rng.uniform(margin, IMAGE_SIZE - margin, (2, count))
    return local_coords(y, x, cy, cx, np.ones(count), rng.uniform(0, 2 * np.pi, count))


def _lines(distance: np.ndarray, width: np.ndarray) -> np.ndarray:
    """1 on lines (``distance`` below half the width, anti-aliased), 0 elsewhere."""
    return np.clip(col(width) / 2 - distance + 0.5, 0.0, 1.0)


def bricks(rng: np.random.Generator, count: int) -> np.ndarray:
    """Courses of bricks, every other course shifted by half a brick; mortar lines between them."""
    u, v = _frame(rng, count)
    height = col(rng.uniform(4.5, 7.0, count))
    length = height * col(rng.uniform(1.8, 2.6, count))
    course = np.floor(v / height)
    shifted = u / length + 0.5 * (course % 2)
    across = np.abs(v / height - np.round(v / height)) * height
    along = np.abs(shifted - np.round(shifted)) * length
    return _lines(np.minimum(across, along), rng.uniform(1.0, 1.8, count))


def _cell_edges(sites_y: np.ndarray, sites_x: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Edges of the Voronoi cells of ``[N, K]`` sites: where the nearest and second-nearest sites are equidistant."""
    y, x = pixel_grid()
    distance = np.sqrt((y[..., None] - sites_y[:, None, None, :]) ** 2 + (x[..., None] - sites_x[:, None, None, :]) ** 2)
    nearest = np.sort(distance, axis=-1)
    return _lines((nearest[..., 1] - nearest[..., 0]) / 2, width)


def honeycomb(rng: np.random.Generator, count: int) -> np.ndarray:
    """Regular hexagonal cells: the Voronoi edges of a triangular lattice, turned and scaled at random."""
    spacing = rng.uniform(6.5, 9.5, count)
    angle = rng.uniform(0, np.pi / 3, count)
    i, j = np.meshgrid(np.arange(-5, 6), np.arange(-5, 6))
    lattice_u = (i + 0.5 * j).ravel()[None, :] * spacing[:, None]
    lattice_v = (j * np.sqrt(3) / 2).ravel()[None, :] * spacing[:, None]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    cy, cx = rng.uniform(0, IMAGE_SIZE, (2, count, 1))
    return _cell_edges(cy + lattice_u * sin + lattice_v * cos, cx + lattice_u * cos - lattice_v * sin,
                       rng.uniform(1.0, 1.6, count))


def voronoi(rng: np.random.Generator, count: int) -> np.ndarray:
    """Irregular cells: the Voronoi edges of random sites (as cracked mud or cobbles)."""
    sites = 14
    return _cell_edges(*rng.uniform(-4, IMAGE_SIZE + 4, (2, count, sites)), rng.uniform(1.0, 1.6, count))


def spiral(rng: np.random.Generator, count: int) -> np.ndarray:
    """An Archimedean spiral of one to three arms around a point inside the image."""
    u, v = _frame(rng, count, margin=8.0)
    radius, theta = np.sqrt(u * u + v * v), np.arctan2(v, u)
    arms = col(rng.integers(1, 4, count).astype(np.float32))
    pitch = col(rng.uniform(4.0, 6.5, count))
    return 0.5 + 0.5 * np.tanh(4.0 * np.sin(theta * arms + radius / pitch * TAU))


def starburst(rng: np.random.Generator, count: int) -> np.ndarray:
    """Rays from a point inside the image (a sunburst, a wheel's spokes)."""
    u, v = _frame(rng, count, margin=8.0)
    rays = col(rng.integers(6, 11, count).astype(np.float32))
    return 0.5 + 0.5 * np.tanh(4.0 * np.sin(np.arctan2(v, u) * rays))


def speckle(rng: np.random.Generator, count: int) -> np.ndarray:
    """Fine random grain (sand, gravel): independent cells of one or two pixels."""
    grain = rng.integers(1, 3, count)
    out = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for size in (1, 2):
        chosen = np.flatnonzero(grain == size)
        cells = IMAGE_SIZE // size
        density = rng.uniform(0.3, 0.6, (chosen.size, 1, 1))
        noise = (rng.random((chosen.size, cells, cells)) < density).astype(np.float32)
        out[chosen] = noise.repeat(size, axis=1).repeat(size, axis=2)
    return out


def concentric_squares(rng: np.random.Generator, count: int) -> np.ndarray:
    """Nested square outlines around a point inside the image (the square cousin of rings)."""
    u, v = _frame(rng, count, margin=8.0)
    period = col(rng.uniform(4.5, 7.0, count))
    return 0.5 + 0.5 * np.tanh(4.0 * np.sin(np.maximum(np.abs(u), np.abs(v)) / period * TAU))


def marble(rng: np.random.Generator, count: int) -> np.ndarray:
    """Veins: thin stripes bent by turbulence (smooth noise), as polished marble or wood grain."""
    u, _ = _frame(rng, count)
    bend = smooth_noise(rng, count, 3) * col(rng.uniform(10.0, 16.0, count))
    phase = (u + bend) / col(rng.uniform(5.0, 8.0, count)) * TAU
    return np.clip(1.0 - np.abs(np.sin(phase)) * 3.0, 0.0, 1.0)


UPSTREAM_TEXTURES: tuple[Pattern, ...] = (bricks, honeycomb, voronoi, spiral, starburst, speckle, concentric_squares,
                                          marble)
