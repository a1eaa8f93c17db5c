"""Do the paper's four lessons hold for these results?  Verdicts computed from the numbers, with their uncertainty.

Each lesson is turned into criteria, each a number with a threshold (the constants below, fixed before any run
and printed in the report) and a 95 % bootstrap interval (``bootstrap.py``): over test images, resampled from the
runs' saved test logits with one draw shared by every method of a task, and over seeds where a run has several.
A criterion *passes* when its whole interval is on the passing side of the threshold, *fails* when it is wholly
on the other side, and is *inconclusive* when the interval straddles it. A lesson:

- *not assessable*: a precondition is unmet (the backbone is not shown to be good enough to test it, or the
  results it needs are missing; the report says which);
- *does not hold*: some criterion fails;
- *inconclusive*: none fails, but some interval straddles its threshold;
- *holds*: every criterion passes.

Every lesson is a claim about fine-tuning a *pretrained* backbone, so each shares one precondition: the frozen
features must beat the same architecture at random init by at least ``MIN_PROBE_GAIN_PTS`` in a linear probe
(``models/<backbone>/probe.json``). With features that weak, what decides the ranking is how much a method can
change the backbone, not how it is tuned. For a backbone loaded from a published weights file with no probe
file, the precondition is taken as met by the paper's own premise (a published pretrained backbone), and the
report says so.

Accuracies are fractions; differences and thresholds are in percentage points ("pts"). "PEFT methods" are the
study's methods other than the two baselines, full fine-tuning (``full``) and the linear probe (``linear``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from peftlab.analysis.bootstrap import CONFIDENCE, RESAMPLES, SEED, Resampler, interval
from peftlab.analysis.ensemble_results import TaskEnsembles
from peftlab.analysis.main_table import MainTable
from peftlab.analysis.manyshot import ShotPoint, largest_size_points
from peftlab.analysis.outcomes import EnsembleOutcomes, Outcomes
from peftlab.analysis.wise_results import TARGET_SPLIT, CurvePoint, best_balance, endpoint
from peftlab.errors import PeftlabError

FULL = "full"
BASELINES = frozenset({"full", "linear"})
SIMPLE_METHOD = "bitfit"

# --- thresholds: fixed before any run, never adjusted to an outcome -----------------------------------------
MIN_PROBE_GAIN_PTS = 25.0  # precondition of every lesson: linear-probe gain of the features over random init
LESSON1_MIN_METHODS = 3  # PEFT methods with results on every task
LESSON1_MAX_STD_PTS = 2.0  # sample std across PEFT methods of their mean of group means
LESSON1_MAX_SIMPLE_GAP_PTS = 3.0  # BitFit's distance below the best PEFT method
LESSON2_MAX_ERROR_JACCARD = 0.5  # mean over tasks and method pairs of both-wrong / either-wrong
LESSON2_MIN_ENSEMBLE_GAIN_PTS = 0.0  # top-k (by validation) logit ensemble minus best single (by validation)
LESSON3_MARGIN_PTS = 1.0  # median PEFT method may trail full fine-tuning by at most this, at the largest size
LESSON4_MIN_SHIFT_ADVANTAGE_PTS = 0.0  # PEFT's mean shift accuracy at α=1 minus full's
LESSON4_MIN_BALANCE_ADVANTAGE_PTS = 0.0  # full's best WiSE-FT balance minus the best PEFT method's

HOLDS, FAILS, INCONCLUSIVE, NOT_ASSESSABLE = "holds", "does not hold", "inconclusive", "not assessable"
PASSES, FAILS_CRITERION, STRADDLES = "passes", "fails", "inconclusive"

# One resampling stream per lesson, so a change to one lesson's criteria leaves the others' intervals alone.
_STREAMS = {1: SEED + 1, 2: SEED + 2, 3: SEED + 3, 4: SEED + 4}
_SYMBOLS = {"<=": "≤", ">": ">", ">=": "≥"}


def pts(value: float) -> float:
    return 100.0 * value


@dataclass(frozen=True)
class Criterion:
    """A number, its bootstrap interval and the threshold it is held against (``value relation threshold``)."""

    description: str
    value: float
    interval: tuple[float, float] | None
    relation: str  # "<=", ">", ">="
    threshold: float

    @property
    def threshold_text(self) -> str:
        return f"{_SYMBOLS[self.relation]} {self.threshold:g}".replace("-", "−")

    @property
    def state(self) -> str:
        """passes / fails / inconclusive, from where the interval lies against the threshold."""
        if self.interval is None:
            return STRADDLES
        low, high = self.interval
        if self.relation == "<=":
            return PASSES if high <= self.threshold else FAILS_CRITERION if low > self.threshold else STRADDLES
        if self.relation == ">":
            return PASSES if low > self.threshold else FAILS_CRITERION if high <= self.threshold else STRADDLES
        return PASSES if low >= self.threshold else FAILS_CRITERION if high < self.threshold else STRADDLES

    def as_dict(self) -> dict[str, Any]:
        return {"description": self.description, "value": self.value,
                "interval_low": self.interval[0] if self.interval else None,
                "interval_high": self.interval[1] if self.interval else None,
                "threshold": self.threshold_text, "state": self.state}


@dataclass(frozen=True)
class Precondition:
    """What a lesson needs before its criteria can speak to it, whether it is met, and the evidence."""

    statement: str
    met: bool
    evidence: str


@dataclass
class Lesson:
    number: int
    claim: str
    preconditions: list[Precondition] = field(default_factory=list)
    criteria: list[Criterion] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def need(self, statement: str, met: bool, evidence: str) -> bool:
        self.preconditions.append(Precondition(statement, met, evidence))
        return met

    @property
    def unmet(self) -> list[Precondition]:
        return [p for p in self.preconditions if not p.met]

    @property
    def verdict(self) -> str:
        if self.unmet or not self.criteria:
            return NOT_ASSESSABLE
        states = {c.state for c in self.criteria}
        return FAILS if FAILS_CRITERION in states else INCONCLUSIVE if STRADDLES in states else HOLDS


CLAIMS = {
    1: "Tuned carefully, PEFT methods reach similar accuracy, including simple ones such as BitFit.",
    2: "Methods with similar accuracy make different mistakes and different confident predictions, so "
       "ensembling them gains over the best single method.",
    3: "With many training images, PEFT is comparable to full fine-tuning with far fewer parameters.",
    4: "Under distribution shift PEFT keeps more robustness than full fine-tuning, but with WiSE-FT full "
       "fine-tuning balances target and shift accuracy better.",
}


# --- the shared precondition: a backbone good enough to test the lessons ------------------------------------

BACKBONE_STATEMENT = (f"a pretrained backbone whose frozen features beat the same architecture at random init by "
                      f"≥ {MIN_PROBE_GAIN_PTS:g} pts in a linear probe (mean over tasks)")


def backbone_precondition(probe: Mapping[str, Any] | None, probe_path: str | Path,
                          weights: str | None) -> Precondition:
    """From the backbone's ``probe.json`` when there is one; a published weights file without one is taken as
    the paper's premise (stated); a pipeline-pretrained backbone without one is unproven."""
    if probe is not None:
        try:
            gain = float(probe["gain_vs_random_init"])
            means = probe.get("mean") or {}
        except (KeyError, TypeError, ValueError):
            raise PeftlabError(f"{probe_path}: key 'gain_vs_random_init' must be a number (points)") from None
        shown = ", ".join(f"{k.replace('_', ' ')} {float(v):.1f} %" for k, v in means.items()
                          if isinstance(v, (int, float)))
        return Precondition(BACKBONE_STATEMENT, gain >= MIN_PROBE_GAIN_PTS,
                            f"{probe_path}: gain {gain:.1f} pts" + (f" ({shown})" if shown else ""))
    if weights:
        return Precondition(BACKBONE_STATEMENT, True,
                            f"published weights file {weights}, no probe file ({probe_path}): taken as the paper's "
                            "premise, a well-pretrained backbone (not measured)")
    return Precondition(BACKBONE_STATEMENT, False, f"{probe_path} not found: the probe gain of the backbone "
                                                   "pretrained in the pipeline is unknown (run the probe step)")


# --- shared pieces ------------------------------------------------------------------------------------------


def peft_methods(methods: Sequence[str]) -> list[str]:
    return [m for m in methods if m not in BASELINES]


def _criterion(description: str, value: float, replicates: np.ndarray, relation: str,
               threshold: float) -> Criterion:
    return Criterion(description, value, interval(replicates), relation, threshold)


def _absent(missing: Mapping[tuple, str], keys: Sequence[tuple]) -> str:
    """The reasons of the first few absent per-image outcomes, for a lesson that needs them."""
    reasons = [missing.get(key, f"no outcomes for {'/'.join(map(str, key[1:]))}") for key in keys]
    more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
    return "; ".join(reasons[:3]) + more


def _paired_accuracies(resampler: Resampler, runs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per method ``[B]``: accuracy over resampled images (one draw for all methods) and resampled seeds."""
    names = list(runs)
    columns = np.concatenate([runs[name].T for name in names], axis=1)  # [N, sum of seeds]
    means = resampler.image_means(columns)
    result, start = {}, 0
    for name in names:
        seeds = runs[name].shape[0]
        result[name] = resampler.seed_means(means[:, start:start + seeds])
        start += seeds
    return result


# --- lesson 1 -----------------------------------------------------------------------------------------------


def _spread_statistics(accuracy: np.ndarray, group_of_task: Sequence[int], n_groups: int,
                       simple: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """From accuracies ``[..., M, T]``: the std across methods of their mean of group means, and the best
    method's lead over the simple one (both pts, ``[...]``)."""
    groups = np.stack([accuracy[..., [t for t, g in enumerate(group_of_task) if g == k]].mean(axis=-1)
                       for k in range(n_groups)], axis=-1)
    averages = 100 * groups.mean(axis=-1)  # [..., M]
    std = averages.std(axis=-1, ddof=1)
    gap = averages.max(axis=-1) - averages[..., simple] if simple is not None else None
    return std, gap


def lesson_similar_accuracy(table: MainTable, outcomes: Outcomes, backbone: Precondition,
                            resamples: int = RESAMPLES) -> Lesson:
    lesson = Lesson(1, CLAIMS[1])
    lesson.need(backbone.statement, backbone.met, backbone.evidence)
    complete = peft_methods(table.complete_methods())
    if not lesson.need(f"at least {LESSON1_MIN_METHODS} PEFT methods with results on every task",
                       len(complete) >= LESSON1_MIN_METHODS, f"complete: {', '.join(complete) or 'none'}"):
        return lesson
    absent = [("final", t, m) for m in complete for t in table.tasks if (t, m) not in outcomes.final]
    if not lesson.need("the test logits of those runs (for the interval over test images)", not absent,
                       _absent(outcomes.missing, absent) if absent else "all present"):
        return lesson
    groups = table.group_names
    group_of_task = [groups.index(table.groups[t]) for t in table.tasks]
    simple = complete.index(SIMPLE_METHOD) if SIMPLE_METHOD in complete else None
    point = np.array([[table.cell(t, m).mean for t in table.tasks] for m in complete])
    resampler = Resampler(resamples, _STREAMS[1])
    replicates = np.empty((resamples, len(complete), len(table.tasks)))
    for t, task in enumerate(table.tasks):
        by_method = _paired_accuracies(resampler, {m: outcomes.final[(task, m)] for m in complete})
        replicates[:, :, t] = np.stack([by_method[m] for m in complete], axis=1)
    std, gap = _spread_statistics(point, group_of_task, len(groups), simple)
    std_b, gap_b = _spread_statistics(replicates, group_of_task, len(groups), simple)
    lesson.criteria.append(_criterion(
        f"sample std across {len(complete)} PEFT methods of the mean of group means (pts)", float(std), std_b,
        "<=", LESSON1_MAX_STD_PTS))
    averages = {m: table.mean_of_group_means(m) for m in complete}
    best, worst = max(averages, key=averages.get), min(averages, key=averages.get)
    lesson.details.append(f"range {pts(averages[best] - averages[worst]):.2f} pts: best {best} "
                          f"{pts(averages[best]):.2f}, lowest {worst} {pts(averages[worst]):.2f}")
    if simple is not None:
        lesson.criteria.append(_criterion(
            f"{SIMPLE_METHOD} below the best PEFT method (pts; the best is {best} on these numbers, recomputed in "
            "each replicate)", float(gap), gap_b, "<=", LESSON1_MAX_SIMPLE_GAP_PTS))
    else:
        lesson.details.append(f"{SIMPLE_METHOD} has no complete results: its criterion is not evaluated")
    return lesson


# --- lesson 2 -----------------------------------------------------------------------------------------------


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the finite entries along ``axis``; NaN (without a warning) where there is none."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=axis)
    return np.where(counts > 0, np.where(finite, values, 0.0).sum(axis=axis) / np.maximum(counts, 1), np.nan)


def _ensemble_replicates(resampler: Resampler, task: EnsembleOutcomes) -> tuple[np.ndarray, np.ndarray]:
    """``[B]`` mean error Jaccard over the task's method pairs and ``[B]`` top-k gain (pts), same image draw."""
    names = list(task.methods)
    wrong = {m: ~task.methods[m] for m in names}
    pairs = list(combinations(names, 2))
    columns = [wrong[m] for m in names] + [wrong[a] & wrong[b] for a, b in pairs]
    columns.append(task.ensemble.astype(np.float32) - task.best_single.astype(np.float32))
    means = resampler.image_means(np.stack(columns, axis=1).astype(np.float32))
    single = {m: means[:, i] for i, m in enumerate(names)}
    both = means[:, len(names):len(names) + len(pairs)]
    either = np.stack([single[a] + single[b] for a, b in pairs], axis=1) - both
    jaccard = np.where(either > 0, both / np.where(either > 0, either, 1), np.nan)
    mean_jaccard = _nanmean(jaccard, axis=1)  # a pair without any error in a replicate has no Jaccard
    return mean_jaccard, 100 * means[:, -1]


def lesson_complementary_errors(ensembles: Mapping[str, TaskEnsembles], outcomes: Outcomes,
                                backbone: Precondition, resamples: int = RESAMPLES) -> Lesson:
    lesson = Lesson(2, CLAIMS[2])
    lesson.need(backbone.statement, backbone.met, backbone.evidence)
    gains = {task: e.summary["top_k_by_val"]["logits"]["gain_over_best_single_by_val"]
             for task, e in ensembles.items() if e.summary.get("top_k_by_val")}
    gains = {task: gain for task, gain in gains.items() if gain is not None}
    tasks = list(gains)
    jaccard = _mean([ensembles[task].summary["pairs"]["mean_error_jaccard"] for task in tasks])
    if not lesson.need("ensemble analyses (results/ensembles/<task>/summary.json) with a top-k ensemble chosen on "
                       "validation and an error overlap", jaccard is not None,
                       f"{len(ensembles)} analyses, {len(gains)} with a top-k gain"):
        return lesson
    absent = [("ensembles", task) for task in tasks if task not in outcomes.ensembles]
    if not lesson.need("the test logits of the analysed seed (for the interval over test images)", not absent,
                       _absent(outcomes.missing, absent) if absent else "all present"):
        return lesson
    resampler = Resampler(resamples, _STREAMS[2])
    per_task = [_ensemble_replicates(resampler, outcomes.ensembles[task]) for task in tasks]
    jaccard_b = _nanmean(np.stack([j for j, _ in per_task], axis=1), axis=1)
    gain_b = np.stack([g for _, g in per_task], axis=1).mean(axis=1)
    lesson.criteria.append(_criterion(
        f"error Jaccard (both wrong / either wrong), mean over {len(tasks)} tasks and method pairs", jaccard,
        jaccard_b, "<=", LESSON2_MAX_ERROR_JACCARD))
    lesson.criteria.append(_criterion(
        f"top-k logit ensemble (chosen on validation) minus best single method (chosen on validation), mean over "
        f"{len(gains)} tasks (pts)", pts(float(np.mean(list(gains.values())))), gain_b, ">",
        LESSON2_MIN_ENSEMBLE_GAIN_PTS))
    positive = sum(1 for gain in gains.values() if gain > 0)
    lesson.details.append(f"the ensemble gains on {positive} of {len(gains)} tasks; intervals over the test images of "
                          "the analysed seed (the analysis compares one seed's runs by design)")
    baseline = _mean([(e.summary.get("seed_baseline") or {}).get("mean_error_jaccard") for e in ensembles.values()])
    if baseline is not None:
        lesson.details.append(f"for reference, two seeds of the same method have error Jaccard {baseline:.3f} "
                              f"(methods: {jaccard:.3f})")
    overlap = _mean([e.summary["pairs"]["mean_confident_overlap"] for e in ensembles.values()])
    if overlap is not None:
        lesson.details.append(f"of one method's most confident test images, {100 * overlap:.1f}% are also among "
                              "another method's most confident, on average")
    return lesson


# --- lesson 3 -----------------------------------------------------------------------------------------------


def lesson_manyshot(points: Sequence[ShotPoint], outcomes: Outcomes, backbone: Precondition,
                    resamples: int = RESAMPLES) -> Lesson:
    lesson = Lesson(3, CLAIMS[3])
    lesson.need(backbone.statement, backbone.met, backbone.evidence)
    assessed: dict[str, tuple[ShotPoint, list[ShotPoint]]] = {}
    for task, task_points in sorted(largest_size_points(points).items()):
        full = next((p for p in task_points if p.method == FULL), None)
        peft = [p for p in task_points if p.method not in BASELINES]
        if full is None or not peft:
            lesson.details.append(f"{task}: needs full fine-tuning and a PEFT method at the largest size")
            continue
        assessed[task] = (full, peft)
    if not lesson.need("full fine-tuning and a PEFT method at the largest many-shot size of some task",
                       bool(assessed), f"tasks: {', '.join(assessed) or 'none'}"):
        return lesson
    keys = [(p.task, p.method, p.size) for full, peft in assessed.values() for p in (full, *peft)]
    absent = [("manyshot", *key) for key in keys if key not in outcomes.manyshot]
    if not lesson.need("the test logits of those runs (for the interval over test images)", not absent,
                       _absent(outcomes.missing, absent) if absent else "all present"):
        return lesson
    resampler = Resampler(resamples, _STREAMS[3])
    gaps, gaps_b = [], []
    for task, (full, peft) in assessed.items():
        runs = {p.method: outcomes.manyshot[(task, p.method, p.size)] for p in (full, *peft)}
        accuracy = _paired_accuracies(resampler, runs)
        gaps.append(pts(median(p.accuracy_mean for p in peft) - full.accuracy_mean))
        gaps_b.append(100 * (np.median(np.stack([accuracy[p.method] for p in peft]), axis=0) - accuracy[FULL]))
        params = median(p.method_params for p in peft)
        lesson.details.append(
            f"{task} at {full.size} images: median of {len(peft)} PEFT methods {gaps[-1]:+.2f} pts vs full, with a "
            f"median {params / max(full.method_params, 1):.2%} of full fine-tuning's trainable parameters")
    lesson.criteria.append(_criterion(
        f"median PEFT accuracy minus full fine-tuning at the largest size, worst of {len(gaps)} tasks "
        f"({', '.join(assessed)}) (pts)", min(gaps), np.min(np.stack(gaps_b), axis=0), ">=", -LESSON3_MARGIN_PTS))
    return lesson


# --- lesson 4 -----------------------------------------------------------------------------------------------


def _curve_array(points: Sequence[CurvePoint]) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed accuracies ``[S, A, P]`` (P: the test split, then the shift splits) and image counts ``[P]``."""
    splits = [TARGET_SPLIT, *sorted(points[0].per_shift)]
    accuracy = np.array([[[p.seed_accuracy[s][k] for s in splits] for p in points]
                         for k in range(points[0].n_seeds)])
    return accuracy, np.array([points[0].count[s] for s in splits])


def _task_curve_replicates(resampler: Resampler, curves: Mapping[str, Sequence[CurvePoint]]
                           ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per method ``[B, A]`` shift accuracy (mean of the shift sets) and balance along its curve: each (seed, α,
    split) accuracy redrawn as a binomial proportion over its image count, then the seeds redrawn. Where every
    curve of the task starts from the same zero-shot model (equal α = 0 accuracies), α = 0 is drawn once for all,
    so a tie there stays a tie in every replicate."""
    arrays = {method: _curve_array(points) for method, points in curves.items()}
    zero = {method: next((i for i, p in enumerate(points) if p.alpha == 0.0), None) for method, points in curves.items()}
    starts = [(arrays[m][0][:, zero[m]], arrays[m][1]) for m in curves if zero[m] is not None]
    shared = None
    if len(starts) == len(curves) and all(a.shape == starts[0][0].shape and np.array_equal(a, starts[0][0])
                                          and np.array_equal(c, starts[0][1]) for a, c in starts):
        shared = resampler.binomial_means(*starts[0])  # [B, S, P]
    result = {}
    for method, (accuracy, counts) in arrays.items():
        drawn = resampler.binomial_means(accuracy, counts)  # [B, S, A, P]
        if shared is not None:
            drawn[:, :, zero[method]] = shared
        drawn = resampler.seed_means(drawn)  # [B, A, P]
        shift = drawn[..., 1:].mean(axis=-1)
        result[method] = (shift, (drawn[..., 0] + shift) / 2)
    return result


def lesson_robustness(curves: Mapping[tuple[str, str], Sequence[CurvePoint]], backbone: Precondition,
                      resamples: int = RESAMPLES) -> Lesson:
    lesson = Lesson(4, CLAIMS[4])
    lesson.need(backbone.statement, backbone.met, backbone.evidence)
    tasks = []
    for task in sorted({task for task, method in curves if method == FULL}):
        peft = [m for (t, m), c in curves.items() if t == task and m not in BASELINES and endpoint(c, 1.0)]
        if endpoint(curves[(task, FULL)], 1.0) is None or not peft:
            lesson.details.append(f"{task}: needs α = 1 for full fine-tuning and a PEFT method")
            continue
        tasks.append(task)
    if not lesson.need("WiSE-FT curves (wise.csv) of full fine-tuning and a PEFT method with α = 1 on some task",
                       bool(tasks), f"tasks: {', '.join(tasks) or 'none'}"):
        return lesson
    weight_space = {m for (t, m), c in curves.items() if t in tasks and m not in BASELINES
                    and c[0].interpolation == "weights"}
    complete = sorted(m for m in weight_space if all((t, m) in curves for t in tasks))
    resampler = Resampler(resamples, _STREAMS[4])
    replicates = {(task, method): value for task in tasks for method, value in _task_curve_replicates(
        resampler, {m: points for (t, m), points in sorted(curves.items()) if t == task}).items()}
    advantages, advantages_b = [], []
    for task in tasks:
        peft = [m for (t, m), c in curves.items() if t == task and m not in BASELINES and endpoint(c, 1.0)]
        full_at_one = _alpha_index(curves[(task, FULL)], 1.0)
        advantages.append(pts(float(np.mean([endpoint(curves[(task, m)], 1.0).shift for m in peft]))
                              - endpoint(curves[(task, FULL)], 1.0).shift))
        peft_b = np.mean([replicates[(task, m)][0][:, _alpha_index(curves[(task, m)], 1.0)] for m in peft], axis=0)
        advantages_b.append(100 * (peft_b - replicates[(task, FULL)][0][:, full_at_one]))
    lesson.criteria.append(_criterion(
        f"mean shift accuracy at α = 1 of PEFT methods minus full fine-tuning, mean over {len(tasks)} tasks (pts)",
        float(np.mean(advantages)), np.mean(advantages_b, axis=0), ">", LESSON4_MIN_SHIFT_ADVANTAGE_PTS))
    if not lesson.need("a PEFT method with a weight-space WiSE-FT curve on every such task (an output-space "
                       "curve is not WiSE-FT)", bool(complete), f"weight-space: {', '.join(complete) or 'none'}"):
        return lesson

    def balances(of: Callable[[str, str], Any]) -> tuple[Any, dict[str, Any]]:
        full = np.mean([of(t, FULL) for t in tasks], axis=0)
        return full, {m: np.mean([of(t, m) for t in tasks], axis=0) for m in complete}

    full_balance, peft_balance = balances(lambda t, m: best_balance(curves[(t, m)]).balance)
    full_b, peft_b = balances(lambda t, m: replicates[(t, m)][1].max(axis=1))
    best_peft = max(peft_balance, key=peft_balance.get)
    lesson.criteria.append(_criterion(
        "full fine-tuning's best WiSE-FT balance (max over α of (target + shift) / 2) minus the best PEFT "
        f"method's ({best_peft} on these numbers), mean over tasks (pts); a tie (e.g. both best at the shared "
        "zero-shot end) does not show that full fine-tuning balances better",
        pts(float(full_balance - peft_balance[best_peft])),
        100 * (full_b - np.max(np.stack(list(peft_b.values())), axis=0)), ">", LESSON4_MIN_BALANCE_ADVANTAGE_PTS))
    lesson.details.append("intervals: each curve accuracy redrawn as a binomial proportion over its test images "
                          "(wise.csv keeps no per-image outcomes; α = 0, the zero-shot model every curve shares, "
                          "drawn once per task), seeds redrawn where there are several")
    return lesson


def _alpha_index(points: Sequence[CurvePoint], alpha: float) -> int:
    return next(i for i, p in enumerate(points) if p.alpha == alpha)


def evaluate_lessons(table: MainTable, ensembles: Mapping[str, TaskEnsembles], points: Sequence[ShotPoint],
                     curves: Mapping[tuple[str, str], Sequence[CurvePoint]], outcomes: Outcomes,
                     backbone: Precondition, resamples: int = RESAMPLES) -> list[Lesson]:
    return [lesson_similar_accuracy(table, outcomes, backbone, resamples),
            lesson_complementary_errors(ensembles, outcomes, backbone, resamples),
            lesson_manyshot(points, outcomes, backbone, resamples),
            lesson_robustness(curves, backbone, resamples)]


THRESHOLDS = {
    "min_probe_gain_pts": MIN_PROBE_GAIN_PTS,
    "lesson1_min_methods": LESSON1_MIN_METHODS,
    "lesson1_max_std_pts": LESSON1_MAX_STD_PTS,
    "lesson1_max_simple_gap_pts": LESSON1_MAX_SIMPLE_GAP_PTS,
    "lesson2_max_error_jaccard": LESSON2_MAX_ERROR_JACCARD,
    "lesson2_min_ensemble_gain_pts": LESSON2_MIN_ENSEMBLE_GAIN_PTS,
    "lesson3_margin_pts": LESSON3_MARGIN_PTS,
    "lesson4_min_shift_advantage_pts": LESSON4_MIN_SHIFT_ADVANTAGE_PTS,
    "lesson4_min_balance_advantage_pts": LESSON4_MIN_BALANCE_ADVANTAGE_PTS,
    "bootstrap_resamples": RESAMPLES,
    "bootstrap_confidence": CONFIDENCE,
}
