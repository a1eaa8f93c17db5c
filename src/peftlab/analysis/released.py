"""Our results held against the numbers the paper's code base released (``peftlab.reference``).

A study opts in with a ``reference`` section in its config (``tables`` and ``tolerance_pts``). For every released
number whose task, method (and training size, test split, α) the study also has, a ``Comparison`` gives ours,
released and the difference in points; a difference beyond the tolerance is flagged. Released runs whose name
fixes a setting (``lora_32``: rank 32) are compared only with our runs at that setting; a run at another
setting is listed with a note instead of a difference. The released numbers compared are always the last-epoch
accuracies; the oracle column (best epoch chosen on test labels) is carried only to be shown, labelled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from peftlab.analysis.inputs import Notices, read_summary_metrics, result_path, task_groups
from peftlab.analysis.main_table import MainTable
from peftlab.analysis.manyshot import ShotPoint
from peftlab.analysis.wise_results import TARGET_SPLIT, CurvePoint, endpoint
from peftlab.paths import FINAL_METRICS
from peftlab.reference.names import ZERO_SHOT
from peftlab.reference.tables import ReleasedResult, Source, load_table

SCOPE = "released numbers"
ALPHA_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Comparison:
    """One released number and ours for the same task, method, split (size, α)."""

    task: str
    method: str
    released_method: str  # the code base's run name
    released_pct: float
    ours: float | None = None  # fraction, mean over seeds
    ours_std: float | None = None
    n_seeds: int = 0
    split: str = TARGET_SPLIT
    size: int | None = None
    alpha: float | None = None
    variant: str = ""
    oracle_pct: float | None = None  # shown labelled, never compared
    ours_params: int | None = None
    released_params: int | None = None
    ours_hparams: dict[str, Any] = field(default_factory=dict)
    released_hparams: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # why there is no difference (no result of ours, another setting)

    @property
    def difference_pts(self) -> float | None:
        """Ours minus released, in points; None without both or when the settings differ."""
        if self.ours is None or self.note:
            return None
        return 100 * self.ours - self.released_pct

    def flagged(self, tolerance_pts: float) -> bool:
        difference = self.difference_pts
        return difference is not None and abs(difference) > tolerance_pts


@dataclass(frozen=True)
class ReferenceCheck:
    """All comparisons with one released table, and what could not be compared."""

    table: str
    source: Source
    tolerance_pts: float
    rows: tuple[Comparison, ...]
    unmatched: tuple[str, ...] = ()  # sentences: released-only or ours-only entries
    dropped: tuple[str, ...] = ()  # rows of the released table left out, with the reason

    @property
    def compared(self) -> list[Comparison]:
        return [row for row in self.rows if row.difference_pts is not None]

    @property
    def flagged(self) -> list[Comparison]:
        return [row for row in self.rows if row.flagged(self.tolerance_pts)]

    def mean_differences(self, key: Callable[[Comparison], Any]) -> dict[Any, tuple[float, int]]:
        """Mean difference (pts) and count of compared rows per ``key(row)``, in first-seen order."""
        groups: dict[Any, list[float]] = {}
        for row in self.compared:
            groups.setdefault(key(row), []).append(row.difference_pts)
        return {k: (float(np.mean(v)), len(v)) for k, v in groups.items()}

    def summary(self) -> dict[str, Any]:
        differences = [row.difference_pts for row in self.compared]
        return {"compared": len(differences), "flagged": len(self.flagged), "tolerance_pts": self.tolerance_pts,
                "mean_difference_pts": round(float(np.mean(differences)), 4) if differences else None,
                "mean_abs_difference_pts": round(float(np.mean(np.abs(differences))), 4) if differences else None}


# --- settings a released run name fixes ---------------------------------------------------------------------


def effective_hparams(method: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Our run's method hyper-parameters with the method's defaults filled in (what a suffix is held against)."""
    from peftlab.methods import build_config

    return dataclasses.asdict(build_config(method, hparams))


def settings_note(released: ReleasedResult, ours: Mapping[str, Any]) -> str:
    """Empty when our run has every setting the released run's name fixes; else what differs."""
    if not released.fixed:
        return ""
    effective = effective_hparams(released.method, ours)
    differing = {key: value for key, value in released.fixed.items() if effective.get(key) != value}
    if not differing:
        return ""
    return (f"not compared: the released {released.released_method} has "
            + ", ".join(f"{k}={v} (ours {effective.get(k)})" for k, v in differing.items()))


def _pick(candidates: Sequence[ReleasedResult], ours: Mapping[str, Any]) -> list[tuple[ReleasedResult, str]]:
    """The released runs our run matches; if none does, one row saying which settings were released."""
    notes = [(row, settings_note(row, ours)) for row in candidates]
    matching = [(row, "") for row, note in notes if not note]
    if matching or len(notes) < 2:
        return matching or notes
    effective = effective_hparams(candidates[0].method, ours)
    released = {key: sorted({row.fixed[key] for row in candidates}) for key in candidates[0].fixed}
    return [(candidates[0], "not compared: no released run at " + ", ".join(
        f"{key}={effective.get(key)} (released: {', '.join(map(str, values))})" for key, values in released.items()))]


def _index(rows: Iterable[ReleasedResult], key: Callable[[ReleasedResult], tuple]) -> dict[tuple, list]:
    index: dict[tuple, list[ReleasedResult]] = {}
    for row in rows:
        index.setdefault(key(row), []).append(row)
    return index


def _released_fields(row: ReleasedResult) -> dict[str, Any]:
    return {"task": row.task, "method": row.method, "released_method": row.released_method,
            "released_pct": row.accuracy_pct, "split": row.split, "size": row.size, "alpha": row.alpha,
            "variant": row.variant, "oracle_pct": row.oracle_pct, "released_params": row.params,
            "released_hparams": dict(row.hparams)}


# --- the four tables ----------------------------------------------------------------------------------------


def compare_vtab(table: MainTable, tolerance_pts: float) -> ReferenceCheck:
    """Per (task, method) of the study with a released VTAB-1k number (the main protocol, not ``aug_norm``)."""
    reference = load_table("vtab1k")
    released = _index((r for r in reference.rows if not r.variant), lambda r: (r.task, r.method))
    rows = []
    for method in table.methods:
        for task in table.tasks:
            cell = table.cell(task, method)
            for row in released.get((task, method), []):
                ours = {"ours": cell.mean, "ours_std": cell.std, "n_seeds": len(cell.per_seed),
                        "ours_params": cell.method_params, "ours_hparams": dict(cell.hparams)} if cell else {}
                rows.append(Comparison(**_released_fields(row), **ours,
                                       note="" if cell else "no result of ours"))
    return ReferenceCheck("vtab1k", reference.source, tolerance_pts, tuple(rows),
                          _unmatched(table.methods, {m for _, m in released}, table.tasks, {t for t, _ in released}),
                          reference.dropped)


def _unmatched(methods: Sequence[str], released_methods: set[str], tasks: Sequence[str],
               released_tasks: set[str]) -> tuple[str, ...]:
    notes = []
    ours_only = [m for m in methods if m not in released_methods]
    if ours_only:
        notes.append(f"no released number for the methods {', '.join(ours_only)}")
    tasks_only = [t for t in tasks if t not in released_tasks]
    if tasks_only:
        notes.append(f"no released number for the tasks {', '.join(tasks_only)}")
    released_only = sorted(released_methods - set(methods))
    if released_only:
        notes.append(f"released methods not in this study: {', '.join(released_only)}")
    return tuple(notes)


def compare_manyshot(points: Sequence[ShotPoint], tolerance_pts: float) -> ReferenceCheck:
    """Per many-shot point of ours (task, size, method) with a released run at the same training size."""
    reference = load_table("manyshot")
    released = _index(reference.rows, lambda r: (r.task, r.size, r.method))
    rows, seen = [], set()
    for point in points:
        if point.source != "manyshot":
            continue  # the low-shot final runs are held against the VTAB-1k table
        seen.add((point.task, point.size))
        for row, note in _pick(released.get((point.task, point.size, point.method), []), point.hparams):
            rows.append(Comparison(**_released_fields(row), ours=point.accuracy_mean, ours_std=point.accuracy_std,
                                   n_seeds=point.n_seeds, ours_params=point.method_params,
                                   ours_hparams=dict(point.hparams), note=note))
    sizes = _index(reference.rows, lambda r: (r.task,))
    unmatched = [f"{task}: released sizes {sorted({r.size for r in rs})}, ours "
                 f"{sorted({s for t, s in seen if t == task}) or 'none'}"
                 for (task,), rs in sizes.items() if any(p.task == task for p in points)]
    return ReferenceCheck("manyshot", reference.source, tolerance_pts, tuple(rows), tuple(unmatched),
                          reference.dropped)


HparamsOf = Callable[[str, str], Mapping[str, Any] | None]


def compare_clip_robustness(curves: Mapping[tuple[str, str], Sequence[CurvePoint]], hparams_of: HparamsOf,
                            tolerance_pts: float) -> ReferenceCheck:
    """Per (method, test split): our fine-tuned model (α = 1 of its curve) against the released one; the
    released zero-shot model against α = 0 (the same model for every curve)."""
    reference = load_table("clip_robustness")
    released = _index(reference.rows, lambda r: (r.task, r.method))
    rows = []
    for (task, method), points in sorted(curves.items()):
        end = endpoint(points, 1.0)
        ours_hparams = dict(hparams_of(task, method) or {})
        candidates = released.get((task, method), [])
        for row in candidates:
            note = settings_note(row, ours_hparams)
            rows.append(_curve_comparison(row, end, ours_hparams, note))
    zero = next((endpoint(points, 0.0) for (task, _), points in sorted(curves.items())
                 if endpoint(points, 0.0) is not None), None)
    if zero is not None:
        rows += [_curve_comparison(row, zero, {}, "") for row in released.get((zero.task, ZERO_SHOT), [])]
    return ReferenceCheck("clip_robustness", reference.source, tolerance_pts, tuple(rows),
                          _curve_unmatched(curves, {m for _, m in released}), reference.dropped)


def _curve_accuracy(point: CurvePoint | None, split: str) -> float | None:
    if point is None:
        return None
    return point.target if split == TARGET_SPLIT else point.per_shift.get(split)


def _curve_comparison(row: ReleasedResult, point: CurvePoint | None, ours_hparams: Mapping[str, Any],
                      note: str) -> Comparison:
    accuracy = _curve_accuracy(point, row.split)
    if accuracy is None and not note:
        note = f"no result of ours on {row.split}" + (f" at α = {row.alpha:g}" if row.alpha is not None else "")
    seeds = point.seed_accuracy.get(row.split, ()) if point else ()
    return Comparison(**_released_fields(row), ours=accuracy,
                      ours_std=float(np.std(seeds, ddof=1)) if len(seeds) > 1 else 0.0 if seeds else None,
                      n_seeds=len(seeds), ours_hparams=dict(ours_hparams), note=note)


def _curve_unmatched(curves: Mapping[tuple[str, str], Sequence[CurvePoint]], released: set[str]) -> tuple[str, ...]:
    ours = sorted({m for _, m in curves})
    notes = []
    if any(m not in released for m in ours):
        notes.append(f"no released number for the methods {', '.join(m for m in ours if m not in released)}")
    others = sorted(released - set(ours) - {ZERO_SHOT})
    if others:
        notes.append(f"released methods not in this study: {', '.join(others)}")
    return tuple(notes)


def compare_clip_wise(curves: Mapping[tuple[str, str], Sequence[CurvePoint]], hparams_of: HparamsOf,
                      tolerance_pts: float) -> ReferenceCheck:
    """Per (method, test split, α) of the WiSE-FT curves where both have that α."""
    reference = load_table("clip_wise")
    released = _index(reference.rows, lambda r: (r.task, r.method))
    rows = []
    for (task, method), points in sorted(curves.items()):
        ours_hparams = dict(hparams_of(task, method) or {})
        for row in released.get((task, method), []):
            point = next((p for p in points if abs(p.alpha - row.alpha) <= ALPHA_TOLERANCE), None)
            if point is None:
                continue  # an α of the released grid that ours does not have: nothing to compare
            rows.append(_curve_comparison(row, point, ours_hparams, settings_note(row, ours_hparams)))
    return ReferenceCheck("clip_wise", reference.source, tolerance_pts, tuple(rows),
                          _curve_unmatched(curves, {m for _, m in released}), reference.dropped)


# --- from the config ----------------------------------------------------------------------------------------


def collect_reference_checks(config: Mapping[str, Any], results: str | Path, table: MainTable,
                             points: Sequence[ShotPoint], curves: Mapping[tuple[str, str], Sequence[CurvePoint]],
                             notices: Notices) -> list[ReferenceCheck]:
    """The comparisons the config's ``reference`` section asks for (none without one)."""
    section = config.get("reference")
    if not section:
        return []
    tolerance = float(section["tolerance_pts"])
    hparams_of = _hparams_lookup(table, results)
    makers = {"vtab1k": lambda: compare_vtab(table, tolerance),
              "manyshot": lambda: compare_manyshot(points, tolerance),
              "clip_robustness": lambda: compare_clip_robustness(curves, hparams_of, tolerance),
              "clip_wise": lambda: compare_clip_wise(curves, hparams_of, tolerance)}
    checks = [makers[name]() for name in section["tables"]]
    for check in checks:
        if check.flagged:
            notices.add(SCOPE, f"{check.table}: {len(check.flagged)} of {len(check.compared)} results differ from "
                               f"the released numbers by more than ±{tolerance:g} pts (flagged in its table)")
    return checks


def _hparams_lookup(table: MainTable, results: str | Path) -> HparamsOf:
    """Our final runs' hyper-parameters: from the main table, else from the run's summary metrics file."""
    def lookup(task: str, method: str) -> Mapping[str, Any] | None:
        cell = table.cell(task, method)
        if cell is not None:
            return cell.hparams
        metrics = result_path(results, FINAL_METRICS, task=task, method=method)
        return read_summary_metrics(metrics).get("hparams") if metrics.is_file() else None
    return lookup


def group_of(task: str) -> str:
    return task_groups([task])[task]
