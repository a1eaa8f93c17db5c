"""Do the paper's four lessons hold for these results?  Verdicts computed from the numbers, never written.

Each lesson is turned into criteria with explicit thresholds (the constants below, printed in the report). A
lesson "holds" when every criterion passes, "does not hold" when one fails, and is "not assessable" when the
results needed are missing (the report lists which). Accuracies are fractions; differences and thresholds are
in percentage points ("pts").

"PEFT methods" are the study's methods other than the two baselines: full fine-tuning (``full``) and the linear
probe (``linear``), which the paper also treats as references, not as PEFT methods under comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median

import numpy as np

from peftlab.analysis.ensemble_results import TaskEnsembles
from peftlab.analysis.main_table import MainTable
from peftlab.analysis.manyshot import ShotPoint, largest_size_points
from peftlab.analysis.wise_results import CurvePoint, best_balance, endpoint

FULL = "full"
BASELINES = frozenset({"full", "linear"})
SIMPLE_METHOD = "bitfit"

LESSON1_MAX_STD_PTS = 2.0  # sample std across PEFT methods of their mean of group means
LESSON1_MAX_SIMPLE_GAP_PTS = 3.0  # BitFit's distance below the best PEFT method
LESSON2_MAX_ERROR_JACCARD = 0.5  # mean over tasks and method pairs of both-wrong / either-wrong
LESSON2_MIN_ENSEMBLE_GAIN_PTS = 0.0  # top-k (by validation) logit ensemble minus best single (by validation)
LESSON3_MARGIN_PTS = 1.0  # median PEFT method may trail full fine-tuning by at most this, at the largest size
LESSON4_MIN_SHIFT_ADVANTAGE_PTS = 0.0  # PEFT's mean shift accuracy at α=1 minus full's
LESSON4_MIN_BALANCE_ADVANTAGE_PTS = 0.0  # full's best WiSE-FT balance minus the best PEFT method's

HOLDS, FAILS, NOT_ASSESSABLE = "holds", "does not hold", "not assessable"


def pts(value: float) -> float:
    return 100.0 * value


@dataclass(frozen=True)
class Criterion:
    description: str
    value: float | None
    threshold: str
    passed: bool | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Lesson:
    number: int
    claim: str
    criteria: list[Criterion] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    missing: str | None = None

    @property
    def verdict(self) -> str:
        if self.missing or not self.criteria:
            return NOT_ASSESSABLE
        return HOLDS if all(c.passed for c in self.criteria) else FAILS

    def as_dict(self) -> dict:
        return {"number": self.number, "claim": self.claim, "verdict": self.verdict, "missing": self.missing,
                "criteria": [c.as_dict() for c in self.criteria], "details": list(self.details)}


CLAIMS = {
    1: "Tuned carefully, PEFT methods reach similar accuracy, including simple ones such as BitFit.",
    2: "Methods with similar accuracy make different mistakes and different confident predictions, so "
       "ensembling them gains over the best single method.",
    3: "With many training images, PEFT is comparable to full fine-tuning with far fewer parameters.",
    4: "Under distribution shift PEFT keeps more robustness than full fine-tuning, but with WiSE-FT full "
       "fine-tuning balances target and shift accuracy better.",
}


def peft_methods(methods: Sequence[str]) -> list[str]:
    return [m for m in methods if m not in BASELINES]


def lesson_similar_accuracy(table: MainTable) -> Lesson:
    lesson = Lesson(1, CLAIMS[1])
    complete = peft_methods(table.complete_methods())
    if len(complete) < 3:
        lesson.missing = f"needs at least 3 PEFT methods with results on every task; have {complete or 'none'}"
        return lesson
    averages = {m: table.mean_of_group_means(m) for m in complete}
    values = np.array([pts(v) for v in averages.values()])
    std = float(np.std(values, ddof=1))
    lesson.criteria.append(Criterion(
        f"sample std across {len(complete)} PEFT methods of the mean of group means (pts)", std,
        f"≤ {LESSON1_MAX_STD_PTS:g}", std <= LESSON1_MAX_STD_PTS))
    best = max(averages, key=averages.get)
    worst = min(averages, key=averages.get)
    lesson.details.append(f"range {values.max() - values.min():.2f} pts: best {best} {pts(averages[best]):.2f}, "
                          f"lowest {worst} {pts(averages[worst]):.2f}")
    if SIMPLE_METHOD in averages:
        gap = pts(averages[best] - averages[SIMPLE_METHOD])
        lesson.criteria.append(Criterion(f"{SIMPLE_METHOD} below the best PEFT method ({best}) (pts)", gap,
                                         f"≤ {LESSON1_MAX_SIMPLE_GAP_PTS:g}", gap <= LESSON1_MAX_SIMPLE_GAP_PTS))
    else:
        lesson.details.append(f"{SIMPLE_METHOD} has no complete results: its criterion is not evaluated")
    return lesson


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def lesson_complementary_errors(ensembles: Mapping[str, TaskEnsembles]) -> Lesson:
    lesson = Lesson(2, CLAIMS[2])
    if not ensembles:
        lesson.missing = "no ensemble analysis (results/ensembles/<task>/summary.json) was found"
        return lesson
    jaccard = _mean([e.summary["pairs"]["mean_error_jaccard"] for e in ensembles.values()])
    gains = {task: e.summary["top_k_by_val"]["logits"]["gain_over_best_single_by_val"]
             for task, e in ensembles.items() if e.summary.get("top_k_by_val")}
    gains = {task: gain for task, gain in gains.items() if gain is not None}
    if jaccard is None or not gains:
        lesson.missing = "the ensemble analyses hold no error overlap or no top-k gain (validation accuracies missing?)"
        return lesson
    lesson.criteria.append(Criterion(
        f"error Jaccard (both wrong / either wrong), mean over {len(ensembles)} tasks and method pairs", jaccard,
        f"≤ {LESSON2_MAX_ERROR_JACCARD:g}", jaccard <= LESSON2_MAX_ERROR_JACCARD))
    mean_gain = pts(float(np.mean(list(gains.values()))))
    lesson.criteria.append(Criterion(
        f"top-k logit ensemble (chosen on validation) minus best single method (chosen on validation), mean over "
        f"{len(gains)} tasks (pts)", mean_gain, f"> {LESSON2_MIN_ENSEMBLE_GAIN_PTS:g}",
        mean_gain > LESSON2_MIN_ENSEMBLE_GAIN_PTS))
    positive = sum(1 for gain in gains.values() if gain > 0)
    lesson.details.append(f"the ensemble gains on {positive} of {len(gains)} tasks")
    baseline = _mean([(e.summary.get("seed_baseline") or {}).get("mean_error_jaccard") for e in ensembles.values()])
    if baseline is not None:
        lesson.details.append(f"for reference, two seeds of the same method have error Jaccard {baseline:.3f} "
                              f"(methods: {jaccard:.3f})")
    overlap = _mean([e.summary["pairs"]["mean_confident_overlap"] for e in ensembles.values()])
    if overlap is not None:
        lesson.details.append(f"of one method's most confident test images, {100 * overlap:.1f}% are also among "
                              "another method's most confident, on average")
    return lesson


def lesson_manyshot(points: Sequence[ShotPoint]) -> Lesson:
    lesson = Lesson(3, CLAIMS[3])
    largest = largest_size_points(points)
    gaps, assessed = [], []
    for task, task_points in sorted(largest.items()):
        full = next((p for p in task_points if p.method == FULL), None)
        peft = [p for p in task_points if p.method not in BASELINES]
        if full is None or not peft:
            lesson.details.append(f"{task}: needs full fine-tuning and a PEFT method at the largest size")
            continue
        gap = pts(median(p.accuracy_mean for p in peft) - full.accuracy_mean)
        gaps.append(gap)
        assessed.append(task)
        params = median(p.method_params for p in peft)
        lesson.details.append(
            f"{task} at {full.size} images: median of {len(peft)} PEFT methods {gap:+.2f} pts vs full, with a median "
            f"{params / max(full.method_params, 1):.2%} of full fine-tuning's trainable parameters")
    if not gaps:
        lesson.missing = "no many-shot task has both full fine-tuning and a PEFT method at its largest size"
        return lesson
    worst = min(gaps)
    lesson.criteria.append(Criterion(
        f"median PEFT accuracy minus full fine-tuning at the largest size, worst of {len(gaps)} tasks "
        f"({', '.join(assessed)}) (pts)", worst, f"≥ −{LESSON3_MARGIN_PTS:g}", worst >= -LESSON3_MARGIN_PTS))
    return lesson


def lesson_robustness(curves: Mapping[tuple[str, str], Sequence[CurvePoint]]) -> Lesson:
    lesson = Lesson(4, CLAIMS[4])
    tasks = sorted({task for task, method in curves if method == FULL})
    advantages, full_balances, peft_balances = [], [], {}
    for task in tasks:
        full_end = endpoint(curves[(task, FULL)], 1.0)
        peft = {m: c for (t, m), c in curves.items() if t == task and m not in BASELINES}
        peft_ends = [e for c in peft.values() if (e := endpoint(c, 1.0)) is not None]
        if full_end is None or not peft_ends:
            lesson.details.append(f"{task}: needs α = 1 for full fine-tuning and a PEFT method")
            continue
        advantages.append(pts(float(np.mean([e.shift for e in peft_ends])) - full_end.shift))
        full_balances.append(best_balance(curves[(task, FULL)]).balance)
        for method, points in peft.items():
            if points[0].interpolation == "weights":
                peft_balances.setdefault(method, []).append(best_balance(points).balance)
    if not advantages:
        lesson.missing = "no robustness task has WiSE-FT curves of both full fine-tuning and a PEFT method"
        return lesson
    advantage = float(np.mean(advantages))
    lesson.criteria.append(Criterion(
        f"mean shift accuracy at α = 1 of PEFT methods minus full fine-tuning, mean over {len(advantages)} tasks "
        "(pts)", advantage, f"> {LESSON4_MIN_SHIFT_ADVANTAGE_PTS:g}", advantage > LESSON4_MIN_SHIFT_ADVANTAGE_PTS))
    complete = {m: v for m, v in peft_balances.items() if len(v) == len(full_balances)}
    if not complete:
        lesson.details.append("no PEFT method has weight-space WiSE-FT curves on every task: balance not compared")
        lesson.missing = "no weight-space PEFT curve to compare WiSE-FT balances with"
        return lesson
    best_peft = max(complete, key=lambda m: np.mean(complete[m]))
    margin = pts(float(np.mean(full_balances)) - float(np.mean(complete[best_peft])))
    lesson.criteria.append(Criterion(
        "full fine-tuning's best WiSE-FT balance (max over α of (target + shift) / 2) minus the best PEFT "
        f"method's ({best_peft}), mean over tasks (pts); a tie (e.g. both best at the shared zero-shot end) does "
        "not show that full fine-tuning balances better", margin, f"> {LESSON4_MIN_BALANCE_ADVANTAGE_PTS:g}",
        margin > LESSON4_MIN_BALANCE_ADVANTAGE_PTS))
    return lesson


def evaluate_lessons(table: MainTable, ensembles: Mapping[str, TaskEnsembles], points: Sequence[ShotPoint],
                     curves: Mapping[tuple[str, str], Sequence[CurvePoint]]) -> list[Lesson]:
    return [lesson_similar_accuracy(table), lesson_complementary_errors(ensembles), lesson_manyshot(points),
            lesson_robustness(curves)]


THRESHOLDS = {
    "lesson1_max_std_pts": LESSON1_MAX_STD_PTS,
    "lesson1_max_simple_gap_pts": LESSON1_MAX_SIMPLE_GAP_PTS,
    "lesson2_max_error_jaccard": LESSON2_MAX_ERROR_JACCARD,
    "lesson2_min_ensemble_gain_pts": LESSON2_MIN_ENSEMBLE_GAIN_PTS,
    "lesson3_margin_pts": LESSON3_MARGIN_PTS,
    "lesson4_min_shift_advantage_pts": LESSON4_MIN_SHIFT_ADVANTAGE_PTS,
    "lesson4_min_balance_advantage_pts": LESSON4_MIN_BALANCE_ADVANTAGE_PTS,
}
