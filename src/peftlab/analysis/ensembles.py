"""Do methods that reach similar accuracy make the same mistakes?  (the paper's lesson 2)

From each method's saved test logits of one task this computes, for every pair of methods: how often their
predictions agree, how their errors overlap (both wrong / only A / only B / both right), how much their
high-confidence predictions overlap and agree; and how much output-space ensembles gain: logit averaging and
probability averaging of every pair and of the top-k methods chosen on **validation** accuracy (``best.json``),
compared with the best single method (chosen on validation; the best on test is reported too, labelled as
such), with the oracle (some method is right) as an upper bound.

Seeds: the analysis uses one seed's logits (``--seed``, default the first of ``study.seeds``), not logits averaged
over seeds: an average over seeds is already an ensemble (of seeds), and its gain would be mixed into the
methods' complementarity we want to measure. Where a method has a second seed, the same pairwise statistics
between its two seeds are reported as a baseline (``seed_a != seed_b``): method-to-method disagreement means
something only where it exceeds seed-to-seed disagreement.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from peftlab.analysis.inputs import (
    MissingInput,
    Notices,
    SplitLogits,
    load_split_logits,
    read_best,
    result_path,
)
from peftlab.errors import PeftlabError
from peftlab.io import write_csv_rows, write_json
from peftlab.paths import BEST, FINAL_RUNS, run_dir
from peftlab.provenance import provenance

AGREEMENT_FIELDS = (
    "task", "method_a", "method_b", "seed_a", "seed_b", "n", "accuracy_a", "accuracy_b", "agreement",
    "both_right", "only_a_wrong", "only_b_wrong", "both_wrong", "error_jaccard", "same_wrong_label",
    "confident_n", "confident_overlap", "confident_agreement",
)
ENSEMBLE_FIELDS = (
    "task", "ensemble", "kind", "combine", "members", "accuracy", "best_member_by_val",
    "best_member_by_val_test_accuracy", "gain_over_best_member_by_val", "best_member_by_test",
    "best_member_by_test_accuracy", "gain_over_best_member_by_test",
)
COMBINE_RULES = ("logits", "probs")


def predictions(logits: np.ndarray) -> np.ndarray:
    """Top-1 class (the first of tied maxima, as ``argmax`` everywhere)."""
    return np.argmax(logits, axis=1)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def confident_indices(logits: np.ndarray, fraction: float) -> np.ndarray:
    """The ``ceil(fraction · N)`` test images with the highest top-1 probability (ties: lower index first)."""
    if not 0 < fraction <= 1:
        raise PeftlabError(f"ensembles.confidence_fraction must be in (0, 1], got {fraction}")
    count = max(1, math.ceil(fraction * len(logits)))
    confidence = softmax(logits).max(axis=1)
    return np.sort(np.argsort(-confidence, kind="stable")[:count])


def _fraction(mask: np.ndarray) -> float:
    return float(mask.mean())


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def pair_statistics(logits_a: np.ndarray, logits_b: np.ndarray, labels: np.ndarray,
                    confidence_fraction: float) -> dict[str, Any]:
    """Agreement, error overlap and high-confidence overlap of two sets of predictions on the same images.

    ``error_jaccard`` = both wrong / at least one wrong (1: identical error sets); ``same_wrong_label`` = of the
    images both get wrong, the fraction where they predict the same wrong class. ``confident_overlap`` = the
    share of A's most confident images that are also among B's (both sets have the same size);
    ``confident_agreement`` = how often A and B predict the same class on the images in both sets.
    """
    pred_a, pred_b = predictions(logits_a), predictions(logits_b)
    right_a, right_b = pred_a == labels, pred_b == labels
    both_wrong = ~right_a & ~right_b
    any_wrong = int((~right_a | ~right_b).sum())
    confident_a = confident_indices(logits_a, confidence_fraction)
    confident_b = confident_indices(logits_b, confidence_fraction)
    shared = np.intersect1d(confident_a, confident_b, assume_unique=True)
    return {
        "n": int(len(labels)),
        "accuracy_a": _fraction(right_a),
        "accuracy_b": _fraction(right_b),
        "agreement": _fraction(pred_a == pred_b),
        "both_right": _fraction(right_a & right_b),
        "only_a_wrong": _fraction(~right_a & right_b),
        "only_b_wrong": _fraction(right_a & ~right_b),
        "both_wrong": _fraction(both_wrong),
        "error_jaccard": _ratio(int(both_wrong.sum()), any_wrong),
        "same_wrong_label": _ratio(int((both_wrong & (pred_a == pred_b)).sum()), int(both_wrong.sum())),
        "confident_n": int(len(confident_a)),
        "confident_overlap": len(shared) / len(confident_a),
        "confident_agreement": _fraction(pred_a[shared] == pred_b[shared]) if len(shared) else None,
    }


def ensemble_predictions(member_logits: Sequence[np.ndarray], combine: str) -> np.ndarray:
    """Average the members' logits (``logits``) or softmax probabilities (``probs``), then take the top-1."""
    if combine == "logits":
        return predictions(np.mean(member_logits, axis=0))
    if combine == "probs":
        return predictions(np.mean([softmax(logits) for logits in member_logits], axis=0))
    raise PeftlabError(f"unknown ensemble rule '{combine}'; allowed: {', '.join(COMBINE_RULES)}")


def ensemble_accuracy(member_logits: Sequence[np.ndarray], labels: np.ndarray, combine: str) -> float:
    return _fraction(ensemble_predictions(member_logits, combine) == labels)


def oracle_accuracy(member_logits: Sequence[np.ndarray], labels: np.ndarray) -> float:
    """Share of images that at least one member gets right: no combination rule can do better."""
    right = np.zeros(len(labels), dtype=bool)
    for logits in member_logits:
        right |= predictions(logits) == labels
    return _fraction(right)


@dataclass(frozen=True)
class MethodLogits:
    """A method's test logits for the analysis, with its validation accuracy (None when unknown)."""

    method: str
    seed: int
    logits: np.ndarray
    val_accuracy: float | None


def check_same_test_set(methods: Sequence[SplitLogits], names: Sequence[str]) -> None:
    """All methods must have scored the same images with the same classes, or pairing them is meaningless."""
    if len(methods) < 2:
        return
    reference, reference_name = methods[0], names[0]
    for candidate, name in zip(methods[1:], names[1:], strict=True):
        if candidate.logits.shape != reference.logits.shape:
            raise PeftlabError(
                f"{candidate.source}: test logits of '{name}' have shape {list(candidate.logits.shape)} but "
                f"{reference.source} ('{reference_name}') has {list(reference.logits.shape)}; both must score "
                "the same test set"
            )
        if not np.array_equal(candidate.labels, reference.labels):
            mismatches = int((candidate.labels != reference.labels).sum())
            raise PeftlabError(
                f"{candidate.source}: test labels of '{name}' differ from {reference.source} ('{reference_name}') "
                f"at {mismatches} positions; both must score the same test set in the same order"
            )


def best_by(members: Sequence[str], scores: Mapping[str, float | None]) -> str | None:
    """The member with the highest score; ties go to the earlier member (config order). None without scores."""
    known = [m for m in members if scores.get(m) is not None]
    if not known:
        return None
    return max(known, key=lambda m: (scores[m], -members.index(m)))


def _ensemble_row(task: str, name: str, kind: str, combine: str, members: Sequence[str], accuracy: float,
                  test_accuracy: Mapping[str, float], val_accuracy: Mapping[str, float | None]) -> dict:
    by_val = best_by(members, val_accuracy)
    by_test = best_by(members, test_accuracy)
    val_best_accuracy = test_accuracy[by_val] if by_val else None
    return {
        "task": task, "ensemble": name, "kind": kind, "combine": combine, "members": ";".join(members),
        "accuracy": accuracy,
        "best_member_by_val": by_val or "",
        "best_member_by_val_test_accuracy": val_best_accuracy,
        "gain_over_best_member_by_val": accuracy - val_best_accuracy if by_val else None,
        "best_member_by_test": by_test,
        "best_member_by_test_accuracy": test_accuracy[by_test],
        "gain_over_best_member_by_test": accuracy - test_accuracy[by_test],
    }


def _ensembles_of(task: str, name: str, kind: str, members: Sequence[str], logits: Mapping[str, np.ndarray],
                  labels: np.ndarray, test_accuracy: Mapping[str, float],
                  val_accuracy: Mapping[str, float | None]) -> list[dict]:
    member_logits = [logits[m] for m in members]
    rows = [
        _ensemble_row(task, name, kind, combine, members, ensemble_accuracy(member_logits, labels, combine),
                      test_accuracy, val_accuracy)
        for combine in COMBINE_RULES
    ]
    rows.append(_ensemble_row(task, name, kind, "oracle", members, oracle_accuracy(member_logits, labels),
                              test_accuracy, val_accuracy))
    return rows


def analyse_task(task: str, methods: Sequence[MethodLogits], labels: np.ndarray, *, top_k: int,
                 confidence_fraction: float, seed_baselines: Sequence[tuple[MethodLogits, MethodLogits]] = (),
                 notices: Notices | None = None) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Agreement rows, ensemble rows and a summary for one task (methods in config order)."""
    notices = notices if notices is not None else Notices()
    if len(methods) < 2:
        raise PeftlabError(
            f"ensembles for task '{task}' need the test logits of at least 2 methods; have "
            f"{[m.method for m in methods] or 'none'}" + _notice_suffix(notices)
        )
    names = [m.method for m in methods]
    logits = {m.method: m.logits for m in methods}
    test_accuracy = {name: _fraction(predictions(logits[name]) == labels) for name in names}
    val_accuracy = {m.method: m.val_accuracy for m in methods}

    agreement_rows = []
    for a, b in itertools.combinations(methods, 2):
        stats = pair_statistics(a.logits, b.logits, labels, confidence_fraction)
        agreement_rows.append({"task": task, "method_a": a.method, "method_b": b.method,
                               "seed_a": a.seed, "seed_b": b.seed, **stats})
    baseline_rows = []
    for a, b in seed_baselines:
        stats = pair_statistics(a.logits, b.logits, labels, confidence_fraction)
        baseline_rows.append({"task": task, "method_a": a.method, "method_b": b.method,
                              "seed_a": a.seed, "seed_b": b.seed, **stats})

    ensemble_rows = []
    for a, b in itertools.combinations(names, 2):
        ensemble_rows += _ensembles_of(task, f"{a}+{b}", "pair", [a, b], logits, labels, test_accuracy,
                                       val_accuracy)
    ranked = [name for name in sorted(names, key=lambda n: (-(val_accuracy[n] or 0.0), names.index(n)))
              if val_accuracy[name] is not None]
    for k in range(2, min(top_k, len(ranked)) + 1):
        ensemble_rows += _ensembles_of(task, f"top{k}_by_val", "top_k", ranked[:k], logits, labels,
                                       test_accuracy, val_accuracy)
    if len(ranked) < min(top_k, len(names)):
        notices.add(f"ensembles/{task}", f"top-k ensembles use only {len(ranked)} methods with a validation "
                                         f"accuracy (best.json); top_k={top_k}")
    ensemble_rows += _ensembles_of(task, "all", "all", names, logits, labels, test_accuracy, val_accuracy)

    summary = _summary(task, names, test_accuracy, val_accuracy, ranked, top_k, agreement_rows, baseline_rows,
                       ensemble_rows)
    summary["warnings"] = [n.as_dict() for n in notices]
    return agreement_rows + baseline_rows, ensemble_rows, summary


def _notice_suffix(notices: Notices) -> str:
    return "".join(f"; {n.message}" for n in notices)


def _mean_of(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row[key] is not None]
    return float(np.mean(values)) if values else None


def _summary(task: str, names: Sequence[str], test_accuracy: Mapping[str, float],
             val_accuracy: Mapping[str, float | None], ranked: Sequence[str], top_k: int,
             agreement_rows: Sequence[dict], baseline_rows: Sequence[dict],
             ensemble_rows: Sequence[dict]) -> dict[str, Any]:
    best_val = best_by(list(names), val_accuracy)
    best_test = best_by(list(names), test_accuracy)
    k = min(top_k, len(ranked))
    top = {row["combine"]: row for row in ensemble_rows if row["ensemble"] == f"top{k}_by_val"}
    everything = {row["combine"]: row for row in ensemble_rows if row["ensemble"] == "all"}
    pair_gains = [row["gain_over_best_member_by_val"] for row in ensemble_rows
                  if row["kind"] == "pair" and row["combine"] == "logits"]

    def top_k_entry() -> dict[str, Any] | None:
        if k < 2:
            return None
        entry: dict[str, Any] = {"k": k, "members": ranked[:k]}
        for combine in (*COMBINE_RULES, "oracle"):
            row = top[combine]
            entry[combine] = {"accuracy": row["accuracy"],
                              "gain_over_best_single_by_val": row["gain_over_best_member_by_val"],
                              "gain_over_best_single_by_test": row["accuracy"] - test_accuracy[best_test]}
        return entry

    return {
        "task": task,
        "methods": list(names),
        "n_test": agreement_rows[0]["n"],
        "accuracy": {"test": dict(test_accuracy), "val": dict(val_accuracy)},
        "best_single_by_val": ({"method": best_val, "test_accuracy": test_accuracy[best_val],
                                "val_accuracy": val_accuracy[best_val]} if best_val else None),
        "best_single_by_test": {"method": best_test, "test_accuracy": test_accuracy[best_test],
                                "note": "chosen on test labels: an optimistic reference, not a selection"},
        "top_k_by_val": top_k_entry(),
        "all_methods": {combine: everything[combine]["accuracy"] for combine in (*COMBINE_RULES, "oracle")},
        "pairs": {
            "mean_agreement": _mean_of(agreement_rows, "agreement"),
            "mean_error_jaccard": _mean_of(agreement_rows, "error_jaccard"),
            "mean_confident_overlap": _mean_of(agreement_rows, "confident_overlap"),
            "mean_confident_agreement": _mean_of(agreement_rows, "confident_agreement"),
            "mean_logit_ensemble_gain_over_better_by_val": (float(np.mean([g for g in pair_gains if g is not None]))
                                                            if any(g is not None for g in pair_gains) else None),
        },
        "seed_baseline": ({
            "pairs": len(baseline_rows),
            "mean_agreement": _mean_of(baseline_rows, "agreement"),
            "mean_error_jaccard": _mean_of(baseline_rows, "error_jaccard"),
            "mean_confident_overlap": _mean_of(baseline_rows, "confident_overlap"),
        } if baseline_rows else None),
    }


# --- files --------------------------------------------------------------------------------------------------


def _load_method(results: Path, task: str, method: str, seed: int, split: str) -> SplitLogits:
    logits_path = run_dir(result_path(results, FINAL_RUNS, task=task, method=method), seed) / "logits.safetensors"
    return load_split_logits(logits_path, split)


def _val_accuracy(results: Path, task: str, method: str, notices: Notices) -> float | None:
    best_path = result_path(results, BEST, task=task, method=method)
    if not best_path.is_file():
        notices.add(f"ensembles/{task}", f"{best_path} missing: '{method}' has no validation accuracy and is "
                                         "left out of the top-k-by-validation ensembles")
        return None
    value = read_best(best_path)["val_accuracy"]
    if value is None:  # a published selection (search.published): no validation run here
        notices.add(f"ensembles/{task}", f"{best_path}: '{method}' is a published selection without a validation "
                                         "accuracy and is left out of the top-k-by-validation ensembles")
        return None
    return float(value)


def run_ensembles(task: str, config: Mapping[str, Any], results: str | Path, out_dir: str | Path,
                  seed: int | None = None, split: str = "test") -> dict[str, Any]:
    """Read every study method's logits for ``task`` and write agreement.csv, ensembles.csv, summary.json.

    A method whose logits file is absent is left out with a warning in summary.json; a file that is present
    but malformed, or that scores a different test set, is an error naming it.
    """
    results = Path(results)
    options = config.get("ensembles") or {}
    top_k = int(options.get("top_k", 3))
    confidence_fraction = float(options.get("confidence_fraction", 0.2))
    seeds = list(config["study"]["seeds"])
    seed = seeds[0] if seed is None else seed
    notices = Notices()
    scope = f"ensembles/{task}"

    loaded: list[tuple[str, SplitLogits]] = []
    for method in config["study"]["methods"]:
        try:
            loaded.append((method, _load_method(results, task, method, seed, split)))
        except MissingInput as exc:
            notices.add(scope, f"'{method}' left out: {exc}")
    check_same_test_set([logits for _, logits in loaded], [name for name, _ in loaded])
    methods = [MethodLogits(name, seed, logits.logits, _val_accuracy(results, task, name, notices))
               for name, logits in loaded]

    baselines = []
    other_seeds = [s for s in seeds if s != seed]
    for method, reference in zip(methods, loaded, strict=True):
        for other in other_seeds:
            try:
                second = _load_method(results, task, method.method, other, split)
            except MissingInput:
                continue
            check_same_test_set([reference[1], second], [f"{method.method} seed {seed}",
                                                         f"{method.method} seed {other}"])
            baselines.append((method, MethodLogits(method.method, other, second.logits, method.val_accuracy)))
            break

    labels = loaded[0][1].labels if loaded else np.zeros(0, dtype=np.int64)
    agreement, ensembles, summary = analyse_task(task, methods, labels, top_k=top_k,
                                                 confidence_fraction=confidence_fraction,
                                                 seed_baselines=baselines, notices=notices)
    summary.update({"seed": seed, "split": split, "top_k": top_k, "confidence_fraction": confidence_fraction,
                    "provenance": provenance()})
    out_dir = Path(out_dir)
    write_csv_rows(out_dir / "agreement.csv", [_csv_ready(r) for r in agreement], AGREEMENT_FIELDS)
    write_csv_rows(out_dir / "ensembles.csv", [_csv_ready(r) for r in ensembles], ENSEMBLE_FIELDS)
    write_json(out_dir / "summary.json", summary)
    return summary


def _csv_ready(row: Mapping[str, Any]) -> dict[str, Any]:
    """None becomes an empty cell; floats are rounded to 6 decimals."""
    return {key: ("" if value is None else round(value, 6) if isinstance(value, float) else value)
            for key, value in row.items()}
