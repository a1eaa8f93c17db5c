"""Unit shapes as inside-tests in a local frame (``u`` right, ``v`` up, about [-1, 1]²).

Each is a union of convex pieces, so an inside-test is a few comparisons on the whole batch at once.
"""

from __future__ import annotations

import numpy as np

from peftlab.data.generate.canvas import ShapeFn


def disc(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v < 1.0


def ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + (v / 0.55) ** 2 < 1.0


def square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) < 0.85) & (np.abs(v) < 0.85)


def diamond(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(u) + np.abs(v) < 1.0


def triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (v > -0.7) & (v < 1.0 - 1.7 * np.abs(u) / 1.0)


def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au < 0.32) & (av < 0.95)) | ((au < 0.95) & (av < 0.32))


def ell(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    stem = (u > -0.8) & (u < -0.25) & (np.abs(v) < 0.9)
    foot = (u > -0.8) & (u < 0.8) & (v > -0.9) & (v < -0.35)
    return stem | foot


def ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    radius2 = u * u + v * v
    return (radius2 < 1.0) & (radius2 > 0.3)


def heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    lobes = ((u - 0.45) ** 2 + (v - 0.35) ** 2 < 0.27) | ((u + 0.45) ** 2 + (v - 0.35) ** 2 < 0.27)
    point = (v < 0.45) & (v > -0.95) & (np.abs(u) < 0.96 * (v + 0.95) / 1.4)
    return lobes | point


def arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Points along +u; mirror-symmetric about its axis but with no rotational symmetry."""
    shaft = (u > -1.0) & (u < 0.15) & (np.abs(v) < 0.2)
    head = (u >= 0.15) & (u < 1.0) & (np.abs(v) < 0.65 * (1.0 - u) / 0.85)
    return shaft | head


UPSTREAM_SHAPES: tuple[ShapeFn, ...] = (disc, square, triangle, diamond, cross, ell, ring, heart)
DSPRITES_SHAPES: tuple[ShapeFn, ...] = (square, ellipse, heart)
