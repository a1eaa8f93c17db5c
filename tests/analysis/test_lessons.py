"""Lesson verdicts follow the numbers and the stated thresholds; missing inputs make a lesson not assessable."""

from __future__ import annotations

from pathlib import Path

import pytest

from peftlab.analysis.ensemble_results import TaskEnsembles
from peftlab.analysis.lessons import (
    FAILS,
    HOLDS,
    NOT_ASSESSABLE,
    lesson_complementary_errors,
    lesson_manyshot,
    lesson_robustness,
    lesson_similar_accuracy,
)
from peftlab.analysis.main_table import Cell, MainTable
from peftlab.analysis.manyshot import ShotPoint
from peftlab.analysis.wise_results import CurvePoint


def table_with(accuracies: dict[str, float]) -> MainTable:
    table = MainTable(tasks=["a", "b"], methods=list(accuracies), groups={"a": "Natural", "b": "Structured"})
    for method, accuracy in accuracies.items():
        for task in table.tasks:
            table.cells[(task, method)] = Cell(accuracy, 0.0, [accuracy], 10, {}, None, Path("m.json"))
    return table


def test_lesson1_holds_when_peft_methods_are_close_and_fails_when_spread():
    close = lesson_similar_accuracy(table_with({"full": 0.9, "linear": 0.5, "lora": 0.80, "bitfit": 0.79,
                                                "adapter_houlsby": 0.81}))
    assert close.verdict == HOLDS
    assert close.criteria[0].value == pytest.approx(1.0)  # sample std of 79, 80, 81 points
    spread = lesson_similar_accuracy(table_with({"lora": 0.80, "bitfit": 0.70, "adapter_houlsby": 0.81}))
    assert spread.verdict == FAILS
    assert [c.passed for c in spread.criteria] == [False, False]  # std 6.1 pts; BitFit 11 pts below


def test_lesson1_is_not_assessable_with_fewer_than_three_complete_peft_methods():
    table = table_with({"lora": 0.80, "bitfit": 0.79, "ssf": 0.8})
    del table.cells[("b", "ssf")]
    lesson = lesson_similar_accuracy(table)
    assert lesson.verdict == NOT_ASSESSABLE and "at least 3" in lesson.missing


def ensembles_with(jaccard: float, gain: float) -> dict[str, TaskEnsembles]:
    summary = {"methods": ["a", "b"], "pairs": {"mean_error_jaccard": jaccard, "mean_confident_overlap": 0.3},
               "top_k_by_val": {"logits": {"gain_over_best_single_by_val": gain}},
               "seed_baseline": {"mean_error_jaccard": 0.6}}
    return {"t": TaskEnsembles("t", summary, [], [])}


def test_lesson2_needs_low_error_overlap_and_a_positive_ensemble_gain():
    assert lesson_complementary_errors(ensembles_with(0.3, 0.02)).verdict == HOLDS
    assert lesson_complementary_errors(ensembles_with(0.3, 0.0)).verdict == FAILS  # gain must be > 0
    assert lesson_complementary_errors(ensembles_with(0.7, 0.02)).verdict == FAILS
    assert lesson_complementary_errors({}).verdict == NOT_ASSESSABLE


def point(method: str, size: int, accuracy: float, params: int = 100) -> ShotPoint:
    return ShotPoint("t", method, size, "manyshot", accuracy, 0.0, 2, params)


def test_lesson3_compares_the_median_peft_method_with_full_at_the_largest_size():
    points = [point("full", 100, 0.5, 10_000), point("full", 1000, 0.90, 10_000), point("lora", 1000, 0.895),
              point("bitfit", 1000, 0.80), point("ssf", 1000, 0.91), point("linear", 1000, 0.1, 0),
              point("lora", 100, 0.2)]
    lesson = lesson_manyshot(points)
    assert lesson.verdict == HOLDS  # median of 89.5, 80, 91 is 89.5: 0.5 pts below full, within 1
    assert lesson.criteria[0].value == pytest.approx(-0.5)
    worse = lesson_manyshot([p if p.method != "lora" else point("lora", 1000, 0.85) for p in points])
    assert worse.verdict == FAILS
    assert lesson_manyshot([point("lora", 1000, 0.9)]).verdict == NOT_ASSESSABLE


def curve(method: str, targets: list[float], shifts: list[float], kind: str = "weights") -> list[CurvePoint]:
    alphas = [0.0, 0.5, 1.0]
    return [CurvePoint("t", method, a, x, y, {"shift-x": y}, kind, 1) for a, x, y in zip(alphas, targets, shifts,
                                                                                          strict=True)]


def test_lesson4_needs_peft_more_robust_at_alpha_one_and_full_better_balanced_with_wise_ft():
    full = curve("full", [0.5, 0.85, 0.9], [0.5, 0.6, 0.3])  # best balance 0.725 at α=0.5
    lora = curve("lora", [0.5, 0.7, 0.85], [0.5, 0.55, 0.45])  # best balance 0.65 at α=1
    assert lesson_robustness({("t", "full"): full, ("t", "lora"): lora}).verdict == HOLDS
    strong_lora = curve("lora", [0.5, 0.9, 0.9], [0.5, 0.6, 0.6])
    lesson = lesson_robustness({("t", "full"): full, ("t", "lora"): strong_lora})
    assert lesson.verdict == FAILS and [c.passed for c in lesson.criteria] == [True, False]
    only_outputs = lesson_robustness({("t", "full"): full, ("t", "vpt_deep"): curve("vpt_deep", [0.5, 0.6, 0.7],
                                                                                     [0.5, 0.5, 0.5], "outputs")})
    assert only_outputs.verdict == NOT_ASSESSABLE  # an output-space curve is not WiSE-FT
    assert lesson_robustness({("t", "lora"): lora}).verdict == NOT_ASSESSABLE


def test_lesson4_a_tie_at_the_shared_zero_shot_end_does_not_show_full_balances_better():
    full = curve("full", [0.9, 0.7, 0.8], [0.8, 0.5, 0.3])
    lora = curve("lora", [0.9, 0.85, 0.85], [0.8, 0.6, 0.5])
    lesson = lesson_robustness({("t", "full"): full, ("t", "lora"): lora})
    assert lesson.criteria[1].value == 0 and lesson.verdict == FAILS
