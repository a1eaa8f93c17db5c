"""What a generated task is: how to render images for given labels, and how to shift their style.

``render(rng, labels, held_out)`` returns float32 ``[N, S, S, 3]`` in [0, 1] whose content determines
``labels`` exactly (no label noise). ``held_out`` is True for the test set, where a task with a finite source
(the scikit-learn digits) draws from a disjoint pool. ``shift(rng, images)`` changes the style of rendered test
images without changing their labels. Group and class count come from ``peftlab.data.tasks.MINI_TASKS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Render = Callable[[np.random.Generator, np.ndarray, bool], np.ndarray]
Shift = Callable[[np.random.Generator, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Recipe:
    name: str
    render: Render
    shift: Shift
    description: str
    shift_description: str
