"""Many-shot points and WiSE-FT curves read back from their files."""

from __future__ import annotations

import pytest
from analysis_fixtures import write_summary_metrics, write_wise_csv

from peftlab.analysis.inputs import Notices
from peftlab.analysis.manyshot import collect_manyshot, largest_size_points, training_size
from peftlab.analysis.wise_results import best_balance, collect_wise, curve, read_wise_csv
from peftlab.errors import PeftlabError


def test_training_size_comes_from_the_split_name():
    assert training_size("manyshot-5000", "m.json") == 5000
    assert training_size("train800val200", "m.json") == 1000
    with pytest.raises(PeftlabError, match="m.json: train_split 'train_all'"):
        training_size("train_all", "m.json")


def manyshot_config():
    return {"manyshot": {"tasks": ["t"], "sizes": [2000, 6000], "methods": ["full", "lora"]}}


def test_collect_manyshot_places_final_and_manyshot_runs_and_notes_missing_points(tmp_path):
    results = tmp_path / "results"
    write_summary_metrics(results / "final" / "t" / "lora", "t", "lora", [0.5, 0.6], 10)
    for size in (2000, 6000):
        write_summary_metrics(results / "manyshot" / "t" / str(size) / "lora", "t", "lora", [0.7], 10,
                              train_split=f"manyshot-{size}")
    write_summary_metrics(results / "manyshot" / "t" / "6000" / "full", "t", "full", [0.8], 1000,
                          train_split="manyshot-6000")
    notices = Notices()
    points = collect_manyshot(manyshot_config(), results, notices)
    assert [(p.method, p.size, p.source) for p in points] == [
        ("full", 6000, "manyshot"), ("lora", 1000, "final"), ("lora", 2000, "manyshot"), ("lora", 6000, "manyshot")]
    assert points[1].accuracy_mean == pytest.approx(0.55) and points[1].n_seeds == 2
    assert {p.method for p in largest_size_points(points)["t"]} == {"full", "lora"}
    assert len(notices) == 2  # full: no final run and no 2000-image run
    assert any("manyshot/t/2000/full/metrics.json missing" in n.message for n in notices)


def test_a_run_in_the_folder_of_another_size_is_an_error(tmp_path):
    results = tmp_path / "results"
    bad = write_summary_metrics(results / "manyshot" / "t" / "2000" / "lora", "t", "lora", [0.7], 10,
                                train_split="manyshot-6000")
    with pytest.raises(PeftlabError, match=rf"{bad}: trained on manyshot-6000"):
        collect_manyshot(manyshot_config(), results)


def wise_rows(method, seeds=(0, 1), kind="weights"):
    rows = []
    for seed in seeds:
        for alpha in (0.0, 1.0):
            rows += [{"method": method, "seed": seed, "alpha": alpha, "split": "test", "accuracy": 0.5 + 0.3 * alpha
                      + 0.1 * seed, "n": 200, "interpolation": kind},
                     {"method": method, "seed": seed, "alpha": alpha, "split": "shift-a", "accuracy": 0.4, "n": 50,
                      "interpolation": kind},
                     {"method": method, "seed": seed, "alpha": alpha, "split": "shift-b", "accuracy": 0.2 * alpha,
                      "n": 80, "interpolation": kind}]
    return rows


def test_curve_averages_seeds_and_shift_sets(tmp_path):
    path = write_wise_csv(tmp_path / "wise.csv", wise_rows("lora"))
    points = curve("t", "lora", read_wise_csv(path), path)
    assert [p.alpha for p in points] == [0.0, 1.0]
    assert points[1].target == pytest.approx(0.85) and points[1].shift == pytest.approx(0.3)
    assert points[1].per_shift == pytest.approx({"shift-a": 0.4, "shift-b": 0.2})
    assert best_balance(points).alpha == 1.0
    assert {split: pytest.approx(values) for split, values in points[1].seed_accuracy.items()} == {
        "test": (0.8, 0.9), "shift-a": (0.4, 0.4), "shift-b": (0.2, 0.2)}
    assert points[1].count == {"test": 200, "shift-a": 50, "shift-b": 80}  # for the lessons' binomial redraws


def test_a_split_scored_on_different_image_counts_is_an_error(tmp_path):
    rows = wise_rows("lora")
    rows[-1]["n"] = 81
    path = write_wise_csv(tmp_path / "wise.csv", rows)
    with pytest.raises(PeftlabError, match=r"each split must score one positive number of images; got \{'shift-b'"):
        curve("t", "lora", read_wise_csv(path), path)


def test_curves_with_mismatched_seeds_or_without_a_shift_split_are_errors(tmp_path):
    rows = wise_rows("lora")[:-1]  # seed 1 lacks shift-b at α=1
    path = write_wise_csv(tmp_path / "wise.csv", rows)
    with pytest.raises(PeftlabError, match="do not share the same α grid and splits"):
        curve("t", "lora", read_wise_csv(path), path)
    only_test = [r for r in wise_rows("lora") if r["split"] == "test"]
    path = write_wise_csv(tmp_path / "wise2.csv", only_test)
    with pytest.raises(PeftlabError, match="at least one 'shift-\\*' row"):
        curve("t", "lora", read_wise_csv(path), path)


def test_collect_wise_notes_absent_tables_and_output_space_curves(tmp_path):
    results = tmp_path / "results"
    write_wise_csv(results / "robustness" / "t" / "vpt_deep" / "wise.csv", wise_rows("vpt_deep", kind="outputs"))
    notices = Notices()
    curves = collect_wise({"robustness": {"tasks": ["t"], "methods": ["full", "vpt_deep"]}}, results, notices)
    assert list(curves) == [("t", "vpt_deep")]
    messages = [n.message for n in notices]
    assert any("full/wise.csv missing" in m for m in messages)
    assert any("output-space interpolation" in m for m in messages)
