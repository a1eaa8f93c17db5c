"""Per-image test outcomes (right or wrong) of the study's runs, read from their saved logits.

The lesson criteria carry bootstrap intervals over test images, so they need more than the accuracies of the
summary files: which images each run got right. Those come from each seed's ``logits.safetensors``; within a
task every run must have scored the same images in the same order (the bootstrap pairs them), which is checked
here. An absent or diverged run is recorded as missing (the lesson that needs it says so), never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from peftlab.analysis.ensemble_results import TaskEnsembles
from peftlab.analysis.ensembles import ensemble_predictions, predictions
from peftlab.analysis.inputs import MissingInput, SplitLogits, load_split_logits, result_path
from peftlab.analysis.main_table import MainTable
from peftlab.analysis.manyshot import ShotPoint, largest_size_points
from peftlab.errors import PeftlabError
from peftlab.paths import FINAL_RUNS, MANYSHOT_RUNS, run_dir

TEST_SPLIT = "test"


@dataclass(frozen=True)
class EnsembleOutcomes:
    """One task's ensemble analysis as per-image outcomes on its seed: every method, the top-k logit ensemble
    (members chosen on validation) and the best single method chosen on validation."""

    methods: dict[str, np.ndarray]  # method -> bool [N]
    ensemble: np.ndarray  # bool [N]
    best_single: np.ndarray  # bool [N]


@dataclass
class Outcomes:
    """What the lesson bootstraps read; ``missing`` says, per key, why an entry is absent."""

    final: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (task, method) -> bool [S, N]
    manyshot: dict[tuple[str, str, int], np.ndarray] = field(default_factory=dict)  # (task, method, size)
    ensembles: dict[str, EnsembleOutcomes] = field(default_factory=dict)  # task
    missing: dict[tuple, str] = field(default_factory=dict)


class _TaskLabels:
    """The first labels seen per task; every later run of the task must have the same."""

    def __init__(self) -> None:
        self.first: dict[str, SplitLogits] = {}

    def check(self, key: str, logits: SplitLogits) -> None:
        reference = self.first.setdefault(key, logits)
        if reference is logits:
            return
        if not np.array_equal(reference.labels, logits.labels):
            raise PeftlabError(f"{logits.source}: test labels differ from {reference.source}; runs of one task "
                               "must score the same test images in the same order")


def _seed_logits(runs_dir: Path, seed: int, labels: _TaskLabels, task_key: str) -> SplitLogits:
    logits = load_split_logits(run_dir(runs_dir, seed) / "logits.safetensors", TEST_SPLIT)
    labels.check(task_key, logits)
    return logits


def _correct(logits: SplitLogits) -> np.ndarray:
    return predictions(logits.logits) == logits.labels


def _seed_outcomes(runs_dir: Path, seeds: Sequence[int], labels: _TaskLabels, task_key: str) -> np.ndarray:
    return np.stack([_correct(_seed_logits(runs_dir, seed, labels, task_key)) for seed in seeds])


def collect_outcomes(results: str | Path, table: MainTable, points: Sequence[ShotPoint],
                     ensembles: Mapping[str, TaskEnsembles]) -> Outcomes:
    """Per-image outcomes of every main-table cell, every many-shot point at its task's largest size, and every
    ensemble analysis; a run whose logits are absent or non-finite goes to ``missing``."""
    results = Path(results)
    outcomes = Outcomes()
    labels = _TaskLabels()
    for task, method, cell in table.filled():
        runs = result_path(results, FINAL_RUNS, task=task, method=method)
        try:
            outcomes.final[(task, method)] = _seed_outcomes(runs, cell.seeds, labels, task)
        except MissingInput as exc:
            outcomes.missing[("final", task, method)] = str(exc)
    for task, task_points in largest_size_points(points).items():
        for point in task_points:
            runs = (result_path(results, FINAL_RUNS, task=task, method=point.method) if point.source == "final"
                    else result_path(results, MANYSHOT_RUNS, task=task, size=point.size, method=point.method))
            try:
                outcomes.manyshot[(task, point.method, point.size)] = _seed_outcomes(
                    runs, point.seeds, labels, task)
            except MissingInput as exc:
                outcomes.missing[("manyshot", task, point.method, point.size)] = str(exc)
    for task, analysis in ensembles.items():
        try:
            outcomes.ensembles[task] = _ensemble_outcomes(results, task, analysis, labels)
        except MissingInput as exc:
            outcomes.missing[("ensembles", task)] = str(exc)
    return outcomes


def _ensemble_outcomes(results: Path, task: str, analysis: TaskEnsembles, labels: _TaskLabels) -> EnsembleOutcomes:
    summary = analysis.summary
    top, best = summary.get("top_k_by_val"), summary.get("best_single_by_val")
    if not top or not best:
        raise MissingInput(f"ensembles/{task}: no top-k ensemble or best single method chosen on validation")
    seed = int(summary.get("seed", 0))
    logits = {method: _seed_logits(result_path(results, FINAL_RUNS, task=task, method=method), seed, labels, task)
              for method in summary["methods"]}
    members = [logits[m].logits for m in _members(top["members"], logits, task)]
    truth = next(iter(logits.values())).labels
    return EnsembleOutcomes(methods={m: _correct(value) for m, value in logits.items()},
                            ensemble=ensemble_predictions(members, "logits") == truth,
                            best_single=_correct(logits[best["method"]]))


def _members(members: Iterable[str], logits: Mapping[str, SplitLogits], task: str) -> list[str]:
    members = list(members)
    unknown = [m for m in members if m not in logits]
    if unknown:
        raise PeftlabError(f"ensembles/{task}/summary.json: top-k members {unknown} are not among its methods")
    return members
