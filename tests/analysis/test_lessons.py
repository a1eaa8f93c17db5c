"""Lesson verdicts follow the numbers, their bootstrap intervals and the stated thresholds: each lesson reaches each
of the four states (holds, does not hold, inconclusive, not assessable) on hand-made inputs."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from peftlab.analysis.ensemble_results import TaskEnsembles
from peftlab.analysis.lessons import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_ASSESSABLE,
    Criterion,
    Precondition,
    backbone_precondition,
    lesson_complementary_errors,
    lesson_manyshot,
    lesson_robustness,
    lesson_similar_accuracy,
)
from peftlab.analysis.main_table import Cell, MainTable
from peftlab.analysis.manyshot import ShotPoint
from peftlab.analysis.outcomes import EnsembleOutcomes, Outcomes
from peftlab.analysis.wise_results import CurvePoint
from peftlab.errors import PeftlabError

GOOD = Precondition("backbone", True, "probe gain 40 pts")
WEAK = Precondition("backbone", False, "probe gain 10 pts")
RESAMPLES = 200  # fewer than the report's 400: the states below are far from the interval edges or by design in them


def right(accuracy: float, n: int, seed: int) -> np.ndarray:
    """A bool [n] with exactly round(accuracy · n) True, at positions that depend on ``seed``."""
    correct = np.zeros(n, dtype=bool)
    correct[: round(accuracy * n)] = True
    return np.random.default_rng(seed).permutation(correct)


# --- the criterion states -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("relation", "interval", "state"), [
    ("<=", (1.0, 1.9), "passes"), ("<=", (2.1, 3.0), "fails"), ("<=", (1.5, 2.5), "inconclusive"),
    ("<=", (2.0, 2.0), "passes"), (">", (0.1, 0.2), "passes"), (">", (-0.2, 0.0), "fails"),
    (">", (0.0, 0.3), "inconclusive"), (">=", (-1.0, 0.5), "passes"), (">=", (-3.0, -1.1), "fails"),
    (">=", (-1.5, 0.0), "inconclusive"), ("<=", None, "inconclusive")])
def test_a_criterion_passes_or_fails_only_when_its_whole_interval_is_on_one_side(relation, interval, state):
    threshold = -1.0 if relation == ">=" else 0.0 if relation == ">" else 2.0
    assert Criterion("c", 1.0, interval, relation, threshold).state == state


# --- the shared precondition ----------------------------------------------------------------------------------


def test_backbone_precondition_reads_the_probe_gain_against_the_stated_minimum(tmp_path):
    probe = tmp_path / "probe.json"
    strong = backbone_precondition({"gain_vs_random_init": 25.0, "mean": {"pretrained": 60.0}}, probe, None)
    weak = backbone_precondition({"gain_vs_random_init": 24.9}, probe, "weights/vit.npz")
    assert strong.met and "gain 25.0 pts" in strong.evidence and "pretrained 60.0 %" in strong.evidence
    assert not weak.met  # a measured probe wins over the published-weights premise
    published = backbone_precondition(None, probe, "weights/ViT-B_16.npz")
    assert published.met and "published weights file weights/ViT-B_16.npz" in published.evidence
    unknown = backbone_precondition(None, probe, None)
    assert not unknown.met and f"{probe} not found" in unknown.evidence
    with pytest.raises(PeftlabError, match="gain_vs_random_init"):
        backbone_precondition({"gain_vs_random_init": "high"}, probe, None)


# --- lesson 1 -------------------------------------------------------------------------------------------------


def lesson1_inputs(accuracies: dict[str, float], n: int) -> tuple[MainTable, Outcomes]:
    """Two tasks (two groups), two seeds per method; the seeds differ by one image."""
    table = MainTable(tasks=["a", "b"], methods=list(accuracies), groups={"a": "Natural", "b": "Structured"})
    outcomes = Outcomes()
    for m, (method, accuracy) in enumerate(accuracies.items()):
        for t, task in enumerate(table.tasks):
            runs = np.stack([right(accuracy + k / n, n, 100 * m + 10 * t + k) for k in (0, 1)])
            outcomes.final[(task, method)] = runs
            per_seed = list(runs.mean(axis=1))
            table.cells[(task, method)] = Cell(float(np.mean(per_seed)), float(np.std(per_seed, ddof=1)), per_seed,
                                               10, {}, None, Path("m.json"), (0, 1))
    return table, outcomes


def test_lesson1_each_state():
    close = {"full": 0.9, "linear": 0.5, "lora": 0.80, "bitfit": 0.79, "adapter_houlsby": 0.81}
    holds = lesson_similar_accuracy(*lesson1_inputs(close, 10_000), GOOD, RESAMPLES)
    assert holds.verdict == HOLDS
    assert holds.criteria[0].value == pytest.approx(1.0, abs=0.01)  # sample std of 79, 80, 81 points
    low, high = holds.criteria[0].interval
    assert 0.3 < low < 1.0 < high < 2.0  # test images and seeds move the std by a fraction of a point here
    assert [c.state for c in holds.criteria] == ["passes", "passes"]

    spread = lesson_similar_accuracy(*lesson1_inputs({"lora": 0.80, "bitfit": 0.70, "ssf": 0.81}, 10_000), GOOD,
                                     RESAMPLES)
    assert spread.verdict == FAILS and [c.state for c in spread.criteria] == ["fails", "fails"]

    few_images = lesson_similar_accuracy(*lesson1_inputs(close, 60), GOOD, RESAMPLES)  # the same means, 60 images
    assert few_images.verdict == INCONCLUSIVE
    assert few_images.criteria[0].interval[0] < 2.0 < few_images.criteria[0].interval[1]

    weak = lesson_similar_accuracy(*lesson1_inputs(close, 10_000), WEAK, RESAMPLES)
    assert weak.verdict == NOT_ASSESSABLE and weak.unmet == [WEAK]
    assert [c.state for c in weak.criteria] == ["passes", "passes"]  # computed and shown all the same


def test_lesson1_needs_three_complete_methods_and_their_logits():
    table, outcomes = lesson1_inputs({"lora": 0.80, "bitfit": 0.79, "ssf": 0.8}, 100)
    del table.cells[("b", "ssf")]
    lesson = lesson_similar_accuracy(table, outcomes, GOOD, RESAMPLES)
    assert lesson.verdict == NOT_ASSESSABLE and "at least 3" in lesson.unmet[0].statement
    table, outcomes = lesson1_inputs({"lora": 0.80, "bitfit": 0.79, "ssf": 0.8}, 100)
    del outcomes.final[("a", "lora")]
    outcomes.missing[("final", "a", "lora")] = "results/final/a/lora/runs/seed0/logits.safetensors: not found"
    lesson = lesson_similar_accuracy(table, outcomes, GOOD, RESAMPLES)
    assert lesson.verdict == NOT_ASSESSABLE and "logits.safetensors: not found" in lesson.unmet[0].evidence


# --- lesson 2 -------------------------------------------------------------------------------------------------


def lesson2_inputs(methods: dict[str, np.ndarray], ensemble: np.ndarray, best: str
                   ) -> tuple[dict[str, TaskEnsembles], Outcomes]:
    """One task; the summary's numbers computed here from the outcomes, as the ensembles step would."""
    jaccards = []
    for a, b in combinations(methods, 2):
        wrong_a, wrong_b = ~methods[a], ~methods[b]
        jaccards.append((wrong_a & wrong_b).sum() / (wrong_a | wrong_b).sum())
    gain = ensemble.mean() - methods[best].mean()
    summary = {"methods": list(methods), "seed": 0, "pairs": {"mean_error_jaccard": float(np.mean(jaccards)),
                                                             "mean_confident_overlap": 0.3},
               "top_k_by_val": {"members": list(methods), "logits": {"gain_over_best_single_by_val": float(gain)}},
               "best_single_by_val": {"method": best}}
    outcomes = Outcomes(ensembles={"t": EnsembleOutcomes(dict(methods), ensemble, methods[best])})
    return {"t": TaskEnsembles("t", summary, [], [])}, outcomes


def disjoint_errors(n: int, accuracy: float, count: int) -> dict[str, np.ndarray]:
    """Methods whose errors never overlap: method k is wrong on its own block of images."""
    wrong = round((1 - accuracy) * n)
    methods = {}
    for k in range(count):
        correct = np.ones(n, dtype=bool)
        correct[k * wrong:(k + 1) * wrong] = False
        methods[f"m{k}"] = correct
    return methods


def test_lesson2_each_state():
    methods = disjoint_errors(3000, 0.8, 3)
    holds = lesson_complementary_errors(*lesson2_inputs(methods, np.ones(3000, dtype=bool), "m0"), GOOD, RESAMPLES)
    assert holds.verdict == HOLDS
    assert holds.criteria[0].value == 0 and holds.criteria[0].interval == (0.0, 0.0)
    assert holds.criteria[1].value == pytest.approx(20.0)  # the majority is always right: 100 % vs 80 %

    same = {f"m{k}": right(0.8, 3000, 7) for k in range(3)}  # identical errors: Jaccard 1, no gain
    fails = lesson_complementary_errors(*lesson2_inputs(same, same["m0"], "m0"), GOOD, RESAMPLES)
    assert fails.verdict == FAILS and [c.state for c in fails.criteria] == ["fails", "fails"]

    methods = disjoint_errors(100, 0.8, 3)
    ensemble = methods["m0"].copy()
    ensemble[np.flatnonzero(~ensemble)[:1]] = True  # one image better than the best single: +1 pt on 100 images
    unsure = lesson_complementary_errors(*lesson2_inputs(methods, ensemble, "m0"), GOOD, RESAMPLES)
    assert unsure.verdict == INCONCLUSIVE and [c.state for c in unsure.criteria] == ["passes", "inconclusive"]

    assert lesson_complementary_errors({}, Outcomes(), GOOD, RESAMPLES).verdict == NOT_ASSESSABLE
    weak = lesson_complementary_errors(*lesson2_inputs(disjoint_errors(300, 0.8, 3), np.ones(300, dtype=bool), "m0"),
                                       WEAK, RESAMPLES)
    assert weak.verdict == NOT_ASSESSABLE and weak.criteria


# --- lesson 3 -------------------------------------------------------------------------------------------------


def lesson3_inputs(accuracies: dict[str, float], n: int) -> tuple[list[ShotPoint], Outcomes]:
    points, outcomes = [], Outcomes()
    for m, (method, accuracy) in enumerate(accuracies.items()):
        runs = np.stack([right(accuracy, n, 50 + m)])
        outcomes.manyshot[("t", method, 5000)] = runs
        points.append(ShotPoint("t", method, 5000, "manyshot", float(runs.mean()), 0.0, 1,
                                10_000 if method == "full" else 100, (0,)))
        points.append(ShotPoint("t", method, 500, "manyshot", 0.5, 0.0, 1, 100, (0,)))  # smaller size: not used
    return points, outcomes


def test_lesson3_each_state():
    holds = lesson_manyshot(*lesson3_inputs({"full": 0.90, "lora": 0.899, "bitfit": 0.80, "ssf": 0.91,
                                             "linear": 0.1}, 20_000), GOOD, RESAMPLES)
    assert holds.verdict == HOLDS  # median of 89.9, 80, 91 is 89.9: 0.1 pts below full, within 1
    assert holds.criteria[0].value == pytest.approx(-0.1)
    fails = lesson_manyshot(*lesson3_inputs({"full": 0.90, "lora": 0.85, "bitfit": 0.80, "ssf": 0.91}, 20_000),
                            GOOD, RESAMPLES)
    assert fails.verdict == FAILS
    unsure = lesson_manyshot(*lesson3_inputs({"full": 0.90, "lora": 0.89, "bitfit": 0.80, "ssf": 0.91}, 200),
                             GOOD, RESAMPLES)
    assert unsure.verdict == INCONCLUSIVE and unsure.criteria[0].interval[0] < -1 < unsure.criteria[0].interval[1]
    no_full = lesson_manyshot(*lesson3_inputs({"lora": 0.9}, 100), GOOD, RESAMPLES)
    assert no_full.verdict == NOT_ASSESSABLE and not no_full.criteria


# --- lesson 4 -------------------------------------------------------------------------------------------------


def curve(method: str, targets: list[float], shifts: list[float], n: int, kind: str = "weights") -> list[CurvePoint]:
    alphas = [0.0, 0.5, 1.0]
    return [CurvePoint("t", method, a, x, y, {"shift-x": y}, kind, 1, {"test": (x,), "shift-x": (y,)},
                       {"test": n, "shift-x": n}) for a, x, y in zip(alphas, targets, shifts, strict=True)]


def test_lesson4_each_state():
    def lesson(full, lora, n):
        return lesson_robustness({("t", "full"): curve("full", *full, n), ("t", "lora"): curve("lora", *lora, n)},
                                 GOOD, RESAMPLES)

    full = ([0.5, 0.85, 0.9], [0.5, 0.6, 0.3])  # best balance 0.725 at α=0.5
    lora = ([0.5, 0.7, 0.85], [0.5, 0.55, 0.45])  # best balance 0.65 at α=1; shift at α=1 15 pts above full's
    holds = lesson(full, lora, 50_000)
    assert holds.verdict == HOLDS and [c.value for c in holds.criteria] == pytest.approx([15.0, 7.5])
    strong = lesson(full, ([0.5, 0.9, 0.9], [0.5, 0.6, 0.6]), 50_000)
    assert strong.verdict == FAILS and [c.state for c in strong.criteria] == ["passes", "fails"]
    close = lesson(full, ([0.5, 0.84, 0.88], [0.5, 0.6, 0.45]), 300)  # 0.5 pts of balance on 300 images
    assert close.verdict == INCONCLUSIVE and [c.state for c in close.criteria] == ["passes", "inconclusive"]
    only_outputs = lesson_robustness({("t", "full"): curve("full", *full, 500),
                                      ("t", "vpt_deep"): curve("vpt_deep", [0.5, 0.6, 0.7], [0.5, 0.5, 0.5], 500,
                                                               "outputs")}, GOOD, RESAMPLES)
    assert only_outputs.verdict == NOT_ASSESSABLE  # an output-space curve is not WiSE-FT
    assert lesson_robustness({("t", "lora"): curve("lora", *lora, 500)}, GOOD, RESAMPLES).verdict == NOT_ASSESSABLE


def test_lesson4_a_tie_at_the_shared_zero_shot_end_does_not_show_full_balances_better():
    full = curve("full", [0.9, 0.7, 0.8], [0.8, 0.5, 0.3], 10_000)
    lora = curve("lora", [0.9, 0.85, 0.85], [0.8, 0.6, 0.5], 10_000)
    lesson = lesson_robustness({("t", "full"): full, ("t", "lora"): lora}, GOOD, RESAMPLES)
    assert lesson.criteria[1].value == 0 and lesson.criteria[1].interval == (0.0, 0.0)  # α=0 drawn once for both
    assert lesson.verdict == FAILS
