"""Style shifts applied to a task's test images: the same scenes and labels in a changed style.

Each task's shifted set (``shift/style.txt``) is its test set passed through a composition of these, so the
robustness study compares a model on exactly the same content before and after the shift (as ImageNet → its
variants change style, not classes).
"""

from __future__ import annotations

import numpy as np

from peftlab.data.generate.canvas import blend, col, gaussian_blur, luminance, random_colors, smooth_noise
from peftlab.data.generate.patterns import render_patterns


def invert(images: np.ndarray) -> np.ndarray:
    return 1.0 - images


def add_noise(rng: np.random.Generator, images: np.ndarray, sigma: float) -> np.ndarray:
    noise = rng.standard_normal(images.shape, dtype=np.float32)
    noise *= np.float32(sigma)
    return images + noise


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_blur(images, sigma)


def desaturate(images: np.ndarray, amount: float) -> np.ndarray:
    grey = luminance(images)[..., None]
    return images + amount * (grey - images)


def rotate_hue(images: np.ndarray, radians: float | np.ndarray) -> np.ndarray:
    """Rotate hue about the grey axis: Rodrigues' rotation around (1, 1, 1)/√3, one angle or one per image."""
    angles = np.broadcast_to(np.asarray(radians, dtype=np.float32), (len(images),))
    axis = np.full(3, 1 / np.sqrt(3), dtype=np.float32)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=np.float32)
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    rotation = (cos * np.eye(3, dtype=np.float32) + sin * cross + (1 - cos) * np.outer(axis, axis)).astype(np.float32)
    return np.einsum("nhwc,ndc->nhwd", images, rotation).astype(np.float32)


def haze(images: np.ndarray, amount: float, color=(0.85, 0.85, 0.9)) -> np.ndarray:
    return images + amount * (np.asarray(color, dtype=np.float32) - images)


def textured_background(rng: np.random.Generator, images: np.ndarray, strength: float = 0.45) -> np.ndarray:
    """Put a random low-contrast texture behind a bright object on black (coverage from the brightness)."""
    count = len(images)
    brightness = images.max(axis=-1)
    coverage = np.clip(brightness / np.maximum(col(brightness.reshape(count, -1).max(axis=1)), 1e-6), 0, 1)
    kinds = rng.integers(0, 8, count)
    texture = blend(render_patterns(rng, kinds), random_colors(rng, count, value=(0.1, 0.3)),
                    random_colors(rng, count, value=(0.3, 0.6))) * strength
    return images + (1.0 - coverage)[..., None] * texture


def uneven_light(rng: np.random.Generator, images: np.ndarray, amount: float) -> np.ndarray:
    light = 1.0 - amount + 2 * amount * smooth_noise(rng, len(images), 2)
    return images * light[..., None]
