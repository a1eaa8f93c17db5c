"""Published selections: the hyper-parameters the paper's code selected, in place of a search.

With ``search.published: true`` a search job whose (task, method) has a released VTAB-1k selection (the
``vtab1k`` table, main protocol only) trains nothing: it writes the released choice as its ``best.json``, and
the final runs retrain it with every seed as usual. That reproduces the paper's table for the cost of its
final runs. Methods or tasks without a released selection are searched as usual, and the config check says which.
The release is of one backbone, ``PUBLISHED_BACKBONE`` (ImageNet-21k ViT-B/16): a study on another backbone has
no released selection, and asking for them there is an error.

A released selection names the shared ``lr``/``weight_decay`` and the method's searched keys (LoRA's rank, an
adapter's dim and scale, ...). The method's other keys come from the config's grid, which must give them a single
value there (LoRA's ``form``); a key the grid searches over but the release does not select is an error, since
no single point would follow from the release.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.reference.tables import ReleasedResult, load_table

PUBLISHED_TABLE = "vtab1k"
PUBLISHED_BACKBONE = "vit_base_patch16_224.orig_in21k"  # PETL_Vision's vit_base_patch16_224_in21k
SHARED_KEYS = ("lr", "weight_decay")


def published_enabled(config: Mapping[str, Any]) -> bool:
    return bool((config.get("search") or {}).get("published", False))


def _released_for(config: Mapping[str, Any]) -> bool:
    """Whether the config's backbone is the released one; asking for selections on another is an error."""
    backbone = config["backbone"]["name"]
    if backbone == PUBLISHED_BACKBONE:
        return True
    if published_enabled(config):
        raise PeftlabError(f"key 'search.published': PETL_Vision released selections for {PUBLISHED_BACKBONE} only, "
                           f"and backbone.name is {backbone}; set search.published: false")
    return False


def released_selection(task: str, method: str) -> ReleasedResult | None:
    """The released VTAB-1k run of ``method`` on ``task`` (main protocol), or None."""
    rows = [row for row in load_table(PUBLISHED_TABLE).rows
            if row.task == task and row.method == method and not row.variant]
    if len(rows) > 1:
        raise PeftlabError(f"reference table {PUBLISHED_TABLE}: {len(rows)} released runs of {method} on {task}")
    return rows[0] if rows else None


def published_point(config: Mapping[str, Any], task: str, method: str) -> tuple[dict[str, Any], ReleasedResult] | None:
    """``(hyper-parameters, released row)`` of the released selection, completed from the config's grid, or None
    when the paper's code released none for this (task, method)."""
    released = released_selection(task, method) if _released_for(config) else None
    if released is None:
        return None
    selected = {**released.fixed, **released.hparams}
    missing = [key for key in SHARED_KEYS if key not in selected]
    if missing:
        raise PeftlabError(f"reference {released.released_method} on {task}: the release selects no {missing}")
    point = {key: selected[key] for key in SHARED_KEYS}
    grid = (config.get("grids") or {}).get(method) or {}
    for key, values in grid.items():
        if key in selected:
            continue
        if len(values) != 1:
            raise PeftlabError(f"key 'grids.{method}.{key}': searches {values}, but the released selection of "
                               f"{method} on {task} ({released.released_method}) does not choose it; with "
                               "search.published give it one value")
        point[key] = values[0]
    point.update({key: value for key, value in selected.items() if key not in SHARED_KEYS})
    return point, released


def published_pairs(config: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The study's (task, method) pairs split into (released selection used, searched as usual)."""
    used, searched = [], []
    if not _released_for(config):
        return used, [(task, method) for task in config["study"]["tasks"] for method in config["study"]["methods"]]
    for task in config["study"]["tasks"]:
        for method in config["study"]["methods"]:
            (used if released_selection(task, method) is not None else searched).append((task, method))
    return used, searched
