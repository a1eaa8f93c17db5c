"""Procedural texture patterns: ``[N, S, S]`` in [0, 1] with random frequency, phase and orientation.

Shared by the ``textures`` task (the pattern is the label) and the upstream set (pattern × shape classes).
Frequencies are in cycles per image width; ranges are chosen so that every family stays recognisable at
32 × 32 (the label must be a function of the image), while colour, phase and orientation vary freely.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from peftlab.data.generate.canvas import IMAGE_SIZE, col, pixel_grid, smooth_noise

Pattern = Callable[[np.random.Generator, int], np.ndarray]
TAU = np.float32(2 * np.pi)


def _rotated(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates rotated by a random angle about a random centre: ``(u, v)``, each ``[N, S, S]``."""
    y, x = pixel_grid()
    angle = rng.uniform(0, np.pi, count)
    cy, cx = rng.uniform(0, IMAGE_SIZE, (2, count))
    dy, dx = y - col(cy), x - col(cx)
    cos, sin = col(np.cos(angle)), col(np.sin(angle))
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _soft_square(wave: np.ndarray, duty: np.ndarray, sharpness: float = 4.0) -> np.ndarray:
    return 0.5 + 0.5 * np.tanh(sharpness * (wave - col(duty)))


def _cycles(rng: np.random.Generator, count: int, low: float, high: float) -> np.ndarray:
    return col(rng.uniform(low, high, count)) * TAU / IMAGE_SIZE


def stripes(rng: np.random.Generator, count: int) -> np.ndarray:
    u, _ = _rotated(rng, count)
    return _soft_square(np.sin(u * _cycles(rng, count, 3.0, 6.5)), rng.uniform(-0.4, 0.4, count))


def fine_stripes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Stripes at twice the usual frequency (water ripples in ``terrain``; not a ``textures`` class)."""
    u, _ = _rotated(rng, count)
    return 0.5 + 0.5 * np.sin(u * _cycles(rng, count, 7.0, 10.0))


def waves(rng: np.random.Generator, count: int) -> np.ndarray:
    u, v = _rotated(rng, count)
    bend = col(rng.uniform(2.0, 3.5, count)) * np.sin(v * _cycles(rng, count, 1.3, 2.3))
    return _soft_square(np.sin((u + bend) * _cycles(rng, count, 3.0, 5.5)), rng.uniform(-0.3, 0.3, count))


def zigzag(rng: np.random.Generator, count: int) -> np.ndarray:
    u, v = _rotated(rng, count)
    phase = v * _cycles(rng, count, 1.5, 2.5) / TAU
    triangle = 4.0 * np.abs(phase - np.floor(phase + 0.5)) - 1.0  # in [-1, 1], sharp corners
    bend = col(rng.uniform(2.5, 4.0, count)) * triangle
    return _soft_square(np.sin((u + bend) * _cycles(rng, count, 3.0, 5.5)), rng.uniform(-0.3, 0.3, count))


def checks(rng: np.random.Generator, count: int) -> np.ndarray:
    u, v = _rotated(rng, count)
    frequency = _cycles(rng, count, 2.0, 4.0)
    return _soft_square(np.sin(u * frequency) * np.sin(v * frequency) * 3.0, np.zeros(count))


def grid(rng: np.random.Generator, count: int) -> np.ndarray:
    u, v = _rotated(rng, count)
    frequency = _cycles(rng, count, 2.5, 4.5)
    lines = np.maximum(np.cos(u * frequency), np.cos(v * frequency))
    return _soft_square(lines, rng.uniform(0.6, 0.8, count), sharpness=8.0)


def dots(rng: np.random.Generator, count: int) -> np.ndarray:
    u, v = _rotated(rng, count)
    frequency = _cycles(rng, count, 3.0, 5.0) / TAU
    du = u * frequency - np.floor(u * frequency) - 0.5
    dv = v * frequency - np.floor(v * frequency) - 0.5
    radius = col(rng.uniform(0.2, 0.32, count))
    return _soft_square(radius - np.sqrt(du * du + dv * dv), np.zeros(count), sharpness=25.0)


def rings(rng: np.random.Generator, count: int) -> np.ndarray:
    y, x = pixel_grid()
    cy, cx = rng.uniform(4, IMAGE_SIZE - 4, (2, count))
    radius = np.sqrt((y - col(cy)) ** 2 + (x - col(cx)) ** 2)
    phase = col(rng.uniform(0, TAU, count))
    return _soft_square(np.sin(radius * _cycles(rng, count, 3.0, 5.5) + phase), rng.uniform(-0.3, 0.3, count))


def blotches(rng: np.random.Generator, count: int) -> np.ndarray:
    cells = rng.integers(4, 8, count)
    noise = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for value in np.unique(cells):
        chosen = np.flatnonzero(cells == value)
        noise[chosen] = smooth_noise(rng, chosen.size, int(value))
    return 0.5 + 0.5 * np.tanh(8.0 * (noise - col(rng.uniform(0.4, 0.6, count))))


PATTERNS: tuple[Pattern, ...] = (stripes, waves, zigzag, checks, grid, dots, rings, blotches)
PATTERN_NAMES = tuple(pattern.__name__ for pattern in PATTERNS)


def render_patterns(rng: np.random.Generator, kinds: np.ndarray, patterns=PATTERNS) -> np.ndarray:
    """One pattern per image, ``kinds[i]`` indexing ``patterns``."""
    out = np.empty((len(kinds), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for kind, pattern in enumerate(patterns):
        chosen = np.flatnonzero(kinds == kind)
        if chosen.size:
            out[chosen] = pattern(rng, chosen.size)
    return out
