"""Unit shapes as inside-tests in a local frame (``u`` right, ``v`` up, about [-1, 1]²).

Each is a union of convex pieces, so an inside-test is a few comparisons on the whole batch at once.
"""

from __future__ import annotations

import numpy as np

from peftlab.data.generate.canvas import ShapeFn


def ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + (v / 0.55) ** 2 < 1.0


def square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) < 0.85) & (np.abs(v) < 0.85)


def ell(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    stem = (u > -0.8) & (u < -0.25) & (np.abs(v) < 0.9)
    foot = (u > -0.8) & (u < 0.8) & (v > -0.9) & (v < -0.35)
    return stem | foot


def heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    lobes = ((u - 0.45) ** 2 + (v - 0.35) ** 2 < 0.27) | ((u + 0.45) ** 2 + (v - 0.35) ** 2 < 0.27)
    point = (v < 0.45) & (v > -0.95) & (np.abs(u) < 0.96 * (v + 0.95) / 1.4)
    return lobes | point


def tee(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A T pointing along +v (its bar on top): mirror-symmetric, no rotational symmetry."""
    bar = (np.abs(u) < 0.9) & (v > 0.4) & (v < 0.95)
    stem = (np.abs(u) < 0.26) & (v > -0.95) & (v <= 0.4)
    return bar | stem


def crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A disc with a bite taken from below: bulges along +v."""
    return (u * u + v * v < 1.0) & (u * u + (v + 0.55) ** 2 > 0.72**2)


def half_disc(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The upper half of a disc, flat side down."""
    return (u * u + (v + 0.35) ** 2 < 1.0) & (v > -0.35)


def teardrop(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A round body below and a point along +v."""
    body = u * u + (v + 0.35) ** 2 < 0.62**2
    tip = (v > -0.35) & (v < 1.0) & (np.abs(u) < 0.6 * (1.0 - v) / 1.35)
    return body | tip


def flag(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A pole on the left with a banner at its top, flying right (chiral)."""
    pole = (np.abs(u + 0.68) < 0.22) & (np.abs(v) < 0.95)
    banner = (u > -0.68) & (u < 0.8) & (v > 0.15) & (v < 0.95)
    return pole | banner


def kite(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A quadrilateral widest a third of the way down from its top point (+v)."""
    return np.abs(u) < 0.75 * np.minimum((1.0 - v) / 0.65, (v + 1.0) / 1.35)


def arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Points along +u; mirror-symmetric about its axis but with no rotational symmetry."""
    shaft = (u > -1.0) & (u < 0.15) & (np.abs(v) < 0.2)
    head = (u >= 0.15) & (u < 1.0) & (np.abs(v) < 0.65 * (1.0 - u) / 0.85)
    return shaft | head


# The upstream set's shapes: no two are the same outline at another angle or scale, and none has a rotational
# symmetry, so both the shape and its heading (over the full turn) are functions of the image.
UPSTREAM_SHAPES: tuple[ShapeFn, ...] = (heart, ell, tee, crescent, half_disc, teardrop, flag, kite)
DSPRITES_SHAPES: tuple[ShapeFn, ...] = (square, ellipse, heart)
