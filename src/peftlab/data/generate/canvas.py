"""Vectorised drawing primitives shared by the mini-suite's task families.

Images are float32 ``[N, S, S, 3]`` in [0, 1]; masks and patterns ``[N, S, S]``. Every per-image parameter is
an ``[N]`` array, broadcast against the pixel grid, so a batch of thousands of images costs a few numpy passes
instead of a Python loop per pixel. Shapes are anti-aliased by supersampling, which keeps edges sub-pixel
accurate (labels such as a position bin depend on them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

IMAGE_SIZE = 32
SUPERSAMPLE = 3  # 3 × 3 samples per pixel for shape coverage

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # local (u, v) → inside (bool), unit-sized shape


def pixel_grid(size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)``, each ``[1, S, S]`` float32, origin at the top-left corner."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    return coords[None, :, None].repeat(size, 2), coords[None, None, :].repeat(size, 1)


def col(values: np.ndarray) -> np.ndarray:
    """``[N]`` → ``[N, 1, 1]`` for broadcasting against a pixel grid."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def balanced_labels(rng: np.random.Generator, count: int, num_classes: int) -> np.ndarray:
    """Labels as equal as possible per class, shuffled (the remainder goes to random classes)."""
    labels = np.concatenate([np.arange(num_classes).repeat(count // num_classes),
                             rng.choice(num_classes, count % num_classes, replace=False)])
    return rng.permutation(labels).astype(np.int64)


def hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``[N]`` HSV (hue in [0, 1)) → ``[N, 3]`` RGB."""
    hue, saturation, value = (np.asarray(a, dtype=np.float32) for a in (hue, saturation, value))
    k = (np.array([5.0, 3.0, 1.0], dtype=np.float32)[None, :] + hue[:, None] * 6.0) % 6.0
    return value[:, None] - value[:, None] * saturation[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def random_colors(rng: np.random.Generator, count: int, saturation=(0.3, 1.0), value=(0.3, 1.0)) -> np.ndarray:
    return hsv_to_rgb(rng.random(count), rng.uniform(*saturation, count), rng.uniform(*value, count))


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def contrasting_colors(rng: np.random.Generator, count: int, min_gap: float = 0.35,
                       reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two colours per image whose luminances differ by at least ``min_gap`` (which is darker is random);
    with ``reference`` the first colour is given and only the second is drawn."""
    first = random_colors(rng, count) if reference is None else reference
    second = random_colors(rng, count)
    for _ in range(50):
        bad = np.abs(luminance(first) - luminance(second)) < min_gap
        if not bad.any():
            break
        second[bad] = random_colors(rng, int(bad.sum()))
    bad = np.abs(luminance(first) - luminance(second)) < min_gap
    # Rare leftovers: black or white, whichever is farther from the first colour.
    second[bad] = np.where(luminance(first[bad])[:, None] > 0.5, np.float32(0.02), np.float32(0.98))
    return first, second


def fill(mask: np.ndarray, color: np.ndarray) -> np.ndarray:
    """``[N, S, S]`` weights × ``[N, 3]`` colour → ``[N, S, S, 3]``."""
    return mask[..., None] * color[:, None, None, :]


def blend(pattern: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Colour a ``[N, S, S]`` pattern in [0, 1] between two ``[N, 3]`` colours."""
    return fill(1.0 - pattern, low) + fill(pattern, high)


def paint(canvas: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Alpha-composite a coverage mask in a colour (``[N, 3]`` or ``[N, S, S, 3]``) over the canvas, in place."""
    color = color[:, None, None, :] if color.ndim == 2 else color
    update = color - canvas
    update *= alpha[..., None]
    canvas += update
    return canvas


def smooth_noise(rng: np.random.Generator, count: int, cells: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """Value noise in [0, 1]: a random ``(cells + 1)²`` lattice, bicubic-smoothly interpolated to ``S × S``."""
    lattice = rng.random((count, cells + 1, cells + 1), dtype=np.float32)
    position = (np.arange(size, dtype=np.float32) + 0.5) / size * cells
    index = np.minimum(position.astype(np.int64), cells - 1)
    t = position - index
    t = t * t * (3.0 - 2.0 * t)  # smoothstep between lattice points
    rows = lattice[:, index, :] * (1 - t)[None, :, None] + lattice[:, index + 1, :] * t[None, :, None]
    return rows[:, :, index] * (1 - t)[None, None, :] + rows[:, :, index + 1] * t[None, None, :]


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[N, S, S(, C)]`` with edge padding."""
    radius = max(1, int(np.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1, dtype=np.float32) / sigma) ** 2)
    kernel /= kernel.sum()
    out = images
    for axis in (1, 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        length = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(k, k + length), axis=axis) for k, w in enumerate(kernel))
    return out.astype(np.float32)


def local_coords(y: np.ndarray, x: np.ndarray, cy: np.ndarray, cx: np.ndarray, scale: np.ndarray,
                 angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates → a shape's unit frame (centre, scale, rotation counter-clockwise in radians)."""
    dy, dx = y - col(cy), x - col(cx)
    cos, sin = col(np.cos(angle)), col(np.sin(angle))
    # Image y points down, so a counter-clockwise rotation on screen uses -dy.
    u = (dx * cos - dy * sin) / col(scale)
    v = (dx * sin + dy * cos) / col(scale)
    return u, -v


def shape_coverage(shape: ShapeFn, cy: np.ndarray, cx: np.ndarray, scale: np.ndarray, angle: np.ndarray,
                   size: int = IMAGE_SIZE) -> np.ndarray:
    """Fraction of each pixel inside ``shape`` (placed at centre, scale, angle), by 3 × 3 supersampling."""
    y, x = pixel_grid(size)
    coverage = np.zeros((len(cy), size, size), dtype=np.float32)
    offsets = (np.arange(SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE - 0.5
    for oy in offsets:
        for ox in offsets:
            u, v = local_coords(y + oy, x + ox, cy, cx, scale, angle)
            coverage += shape(u, v)
    return coverage / SUPERSAMPLE**2


def sample_bilinear(source: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Sample ``[N, H, W]`` at fractional pixel positions ``[N, S, S]``; zero outside."""
    count, height, width = source.shape
    y0, x0 = np.floor(sy - 0.5), np.floor(sx - 0.5)
    fy, fx = sy - 0.5 - y0, sx - 0.5 - x0
    out = np.zeros(sy.shape, dtype=np.float32)
    batch = np.arange(count)[:, None, None]
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = (y0 + dy).astype(np.int64), (x0 + dx).astype(np.int64)
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            values = source[batch, np.clip(yy, 0, height - 1), np.clip(xx, 0, width - 1)]
            out += np.where(inside, values, 0.0) * wy * wx
    return out


def to_uint8(images: np.ndarray) -> np.ndarray:
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def segment_distance(y: np.ndarray, x: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance from each pixel to a segment per image (``start``, ``end``: ``[N, 2]`` as (y, x))."""
    y0, x0, y1, x1 = (col(a) for a in (start[:, 0], start[:, 1], end[:, 0], end[:, 1]))
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((y - y0) * dy + (x - x0) * dx) / np.maximum(dy * dy + dx * dx, 1e-6), 0.0, 1.0)
    return np.sqrt((y - y0 - t * dy) ** 2 + (x - x0 - t * dx) ** 2)


def soft_edge(distance_inside: np.ndarray) -> np.ndarray:
    """Coverage from a signed distance (positive inside), one pixel of anti-aliasing."""
    return np.clip(distance_inside + 0.5, 0.0, 1.0)
