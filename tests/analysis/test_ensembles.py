"""Agreement, error overlap, confidence overlap and ensembles on hand-made logits with known answers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from analysis_fixtures import one_hot_logits, run_logits_path, write_best, write_logits

from peftlab.analysis.ensembles import (
    MethodLogits,
    analyse_task,
    confident_indices,
    ensemble_accuracy,
    oracle_accuracy,
    pair_statistics,
    run_ensembles,
)
from peftlab.errors import PeftlabError

LABELS = np.array([0, 1, 2, 0, 1, 2])
# A is right on images 0-3 and confident there; B is right on 0, 1, 4, 5 and confident on 4, 5.
A = one_hot_logits([0, 1, 2, 0, 0, 0], [4, 4, 4, 4, 1, 1], 3)
B = one_hot_logits([0, 1, 0, 1, 1, 2], [1, 1, 1, 1, 3, 3], 3)
# C makes the same mistakes as A on images 4 and 5, with the same wrong label on 4 only.
C = one_hot_logits([0, 1, 2, 1, 0, 1], [2, 2, 2, 2, 2, 2], 3)


def test_pair_statistics_count_agreement_and_error_overlap_exactly():
    stats = pair_statistics(A, B, LABELS, confidence_fraction=0.5)
    assert stats["n"] == 6
    assert stats["accuracy_a"] == pytest.approx(4 / 6) and stats["accuracy_b"] == pytest.approx(4 / 6)
    assert stats["agreement"] == pytest.approx(2 / 6)
    assert stats["both_right"] == pytest.approx(2 / 6)
    assert stats["only_a_wrong"] == pytest.approx(2 / 6)
    assert stats["only_b_wrong"] == pytest.approx(2 / 6)
    assert stats["both_wrong"] == 0
    assert stats["error_jaccard"] == 0
    assert stats["same_wrong_label"] is None  # no image both get wrong


def test_error_jaccard_and_same_wrong_label_when_errors_are_shared():
    stats = pair_statistics(A, C, LABELS, confidence_fraction=1.0)
    # A wrong on {4, 5}; C wrong on {3, 4, 5}; both wrong on {4, 5}; same wrong label (0) on 4 only.
    assert stats["both_wrong"] == pytest.approx(2 / 6)
    assert stats["only_b_wrong"] == pytest.approx(1 / 6)
    assert stats["error_jaccard"] == pytest.approx(2 / 3)
    assert stats["same_wrong_label"] == pytest.approx(1 / 2)


def test_confident_sets_overlap_and_agreement():
    # ceil(0.5 * 6) = 3 images each: A's ties at logit 4 keep the lower indices {0, 1, 2}; B's are {4, 5, 0}.
    assert confident_indices(A, 0.5).tolist() == [0, 1, 2]
    assert confident_indices(B, 0.5).tolist() == [0, 4, 5]
    stats = pair_statistics(A, B, LABELS, confidence_fraction=0.5)
    assert stats["confident_n"] == 3
    assert stats["confident_overlap"] == pytest.approx(1 / 3)
    assert stats["confident_agreement"] == 1.0  # both predict class 0 on image 0


def test_logit_and_probability_averaging_and_oracle():
    # Where A and B disagree, the more confident one wins the logit average: every image is then right.
    assert ensemble_accuracy([A, B], LABELS, "logits") == 1.0
    assert ensemble_accuracy([A, B], LABELS, "probs") == 1.0
    assert oracle_accuracy([A, B], LABELS) == 1.0
    assert oracle_accuracy([A, C], LABELS) == pytest.approx(4 / 6)


def test_probability_averaging_differs_from_logit_averaging():
    # logits mean [2, 2.5, 2.5] picks class 1; probabilities: A puts 0.965 on class 0, B splits 0.498 / 0.498.
    one = np.array([0])
    a = np.array([[4.0, 0.0, 0.0]])
    b = np.array([[0.0, 5.0, 5.0]])
    assert ensemble_accuracy([a, b], one, "logits") == 0.0
    assert ensemble_accuracy([a, b], one, "probs") == 1.0
    with pytest.raises(PeftlabError, match="unknown ensemble rule"):
        ensemble_accuracy([a, b], one, "vote")


def test_top_k_is_chosen_on_validation_and_gains_are_relative_to_the_best_by_validation():
    methods = [MethodLogits("a", 0, A, 0.5), MethodLogits("b", 0, B, 0.9), MethodLogits("c", 0, C, 0.8)]
    agreement, ensembles, summary = analyse_task("toy", methods, LABELS, top_k=2, confidence_fraction=0.5)
    assert [(r["method_a"], r["method_b"]) for r in agreement] == [("a", "b"), ("a", "c"), ("b", "c")]
    top = {r["combine"]: r for r in ensembles if r["ensemble"] == "top2_by_val"}
    assert top["logits"]["members"] == "b;c"
    assert top["logits"]["best_member_by_val"] == "b"
    # b+c logits: images 0,1 right; 2: b says 0 (1) vs c says 2 (2) -> 2 right; 3: both say 1 -> wrong;
    # 4: b says 1 (3) vs c 0 (2) -> 1 right; 5: b 2 (3) vs c 1 (2) -> right. 5/6.
    assert top["logits"]["accuracy"] == pytest.approx(5 / 6)
    assert top["logits"]["gain_over_best_member_by_val"] == pytest.approx(5 / 6 - 4 / 6)
    assert summary["best_single_by_val"]["method"] == "b"
    # a and b tie on test accuracy (4/6): the earlier method in config order is named.
    assert summary["best_single_by_test"]["method"] == "a"
    assert summary["top_k_by_val"]["members"] == ["b", "c"]
    assert summary["top_k_by_val"]["logits"]["gain_over_best_single_by_val"] == pytest.approx(1 / 6)
    assert summary["all_methods"]["oracle"] == 1.0
    pair = {r["combine"]: r for r in ensembles if r["ensemble"] == "a+b"}
    assert pair["oracle"]["accuracy"] == 1.0 and pair["logits"]["gain_over_best_member_by_test"] == pytest.approx(2 / 6)


def test_fewer_than_two_methods_is_an_error():
    with pytest.raises(PeftlabError, match="at least 2 methods"):
        analyse_task("toy", [MethodLogits("a", 0, A, 0.5)], LABELS, top_k=2, confidence_fraction=0.5)


def _config(methods, seeds=(0, 1)):
    return {"study": {"seeds": list(seeds), "methods": list(methods)},
            "ensembles": {"top_k": 2, "confidence_fraction": 0.5}}


def _write_study(results, logits_by_method, seeds=(0,)):
    for method, logits in logits_by_method.items():
        for seed in seeds:
            write_logits(run_logits_path(results, "toy", method, seed), {"test": (logits, LABELS)})
        write_best(results, "toy", method, {"a": 0.5, "b": 0.9, "c": 0.8}.get(method, 0.1))


def test_command_writes_tables_and_warns_about_a_missing_method(tmp_path):
    results = tmp_path / "results"
    _write_study(results, {"a": A, "b": B, "c": C}, seeds=(0, 1))
    out = tmp_path / "out"
    summary = run_ensembles("toy", _config(["a", "b", "c", "ghost"]), results, out)
    assert summary["methods"] == ["a", "b", "c"]
    assert any("'ghost' left out" in w["message"] and "logits.safetensors" in w["message"]
               for w in summary["warnings"])
    with (out / "agreement.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # 3 method pairs plus one seed-0 vs seed-1 baseline per method.
    assert len(rows) == 6
    assert sum(1 for r in rows if r["seed_a"] != r["seed_b"]) == 3
    first = rows[0]
    assert (first["method_a"], first["method_b"]) == ("a", "b") and float(first["agreement"]) == pytest.approx(2 / 6)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["seed"] == 0 and saved["seed_baseline"]["mean_agreement"] == 1.0
    assert (out / "ensembles.csv").read_text().startswith("task,ensemble,kind,combine,members,accuracy")


def test_labels_that_differ_across_methods_name_the_file(tmp_path):
    results = tmp_path / "results"
    _write_study(results, {"a": A, "b": B})
    bad = run_logits_path(results, "toy", "b", 0)
    write_logits(bad, {"test": (B, LABELS[::-1].copy())})
    with pytest.raises(PeftlabError, match=rf"{bad}.*labels of 'b' differ"):
        run_ensembles("toy", _config(["a", "b"]), results, tmp_path / "out")


def test_logits_of_another_shape_name_the_file(tmp_path):
    results = tmp_path / "results"
    _write_study(results, {"a": A, "b": B})
    bad = run_logits_path(results, "toy", "b", 0)
    write_logits(bad, {"test": (np.zeros((6, 4)), LABELS)})
    with pytest.raises(PeftlabError, match=rf"{bad}.*shape \[6, 4\]"):
        run_ensembles("toy", _config(["a", "b"]), results, tmp_path / "out")


def test_a_logits_file_without_the_test_split_names_the_file(tmp_path):
    results = tmp_path / "results"
    _write_study(results, {"a": A, "b": B})
    bad = run_logits_path(results, "toy", "a", 0)
    write_logits(bad, {"val200": (A, LABELS)})
    with pytest.raises(PeftlabError, match=rf"{bad}.*no tensor 'test.logits'"):
        run_ensembles("toy", _config(["a", "b"]), results, tmp_path / "out")


def test_a_logits_file_that_no_longer_matches_its_run_record_is_an_error_naming_it(tmp_path):
    import json

    import torch

    from peftlab.analysis.inputs import load_split_logits
    from peftlab.errors import PeftlabError
    from peftlab.io import save_tensors, sha256_file

    path = tmp_path / "logits.safetensors"
    save_tensors(path, {"test.logits": torch.randn(4, 3), "test.labels": torch.tensor([0, 1, 2, 0])})
    (tmp_path / "metrics.json").write_text(json.dumps({"files_sha256": {"logits.safetensors": sha256_file(path)}}))
    assert load_split_logits(path).logits.shape == (4, 3)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PeftlabError, match=r"logits.safetensors: content does not match the sha256"):
        load_split_logits(path)
