"""The upstream pretraining set: 64 classes = 8 shapes × 8 fill patterns, in random colours on soft backgrounds.

It plays ImageNet's role for the tiny ViT: generic shape and texture features that transfer to the Natural and
Specialized tasks more than to the Structured ones (counting, depth, position, orientation are not its labels).
"""

from __future__ import annotations

import numpy as np

from peftlab.data.generate import shifts
from peftlab.data.generate.canvas import (
    IMAGE_SIZE,
    blend,
    contrasting_colors,
    paint,
    shape_coverage,
    smooth_noise,
)
from peftlab.data.generate.patterns import PATTERNS, render_patterns
from peftlab.data.generate.shapes import UPSTREAM_SHAPES

NUM_CLASSES = len(UPSTREAM_SHAPES) * len(PATTERNS)


def render_upstream(rng: np.random.Generator, labels: np.ndarray, held_out: bool) -> np.ndarray:
    """Label ``shape * 8 + pattern``: the object's outline and the pattern filling it."""
    count = len(labels)
    shape_kind, pattern_kind = labels // len(PATTERNS), labels % len(PATTERNS)
    # The object's base colour stands out from the background, so its outline is visible whatever the fill.
    base, ink = contrasting_colors(rng, count, min_gap=0.35)
    _, paper = contrasting_colors(rng, count, min_gap=0.3, reference=base)
    canvas = blend(smooth_noise(rng, count, 3) * 0.3, paper, np.clip(paper + rng.uniform(-0.2, 0.2, (count, 3)), 0, 1))
    scale = rng.uniform(8.0, 13.0, count)
    cy, cx = rng.uniform(scale * 0.75, IMAGE_SIZE - scale * 0.75, (2, count))
    angle = rng.uniform(0, 2 * np.pi, count)
    coverage = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for kind, shape in enumerate(UPSTREAM_SHAPES):
        chosen = np.flatnonzero(shape_kind == kind)
        if chosen.size:
            coverage[chosen] = shape_coverage(shape, cy[chosen], cx[chosen], scale[chosen], angle[chosen])
    paint(canvas, coverage, blend(render_patterns(rng, pattern_kind), base, ink))
    return shifts.add_noise(rng, canvas, 0.02)
