"""The report built from a tiny hand-made finished results tree: files, numbers, rendering, missing inputs."""

from __future__ import annotations

import csv
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import (
    TREE_METHODS,
    TREE_PARAMS,
    TREE_SEEDS,
    TREE_TASKS,
    TREE_TIME_S,
    tree_config,
    write_json,
    write_probe,
    write_results_tree,
)
from chromium import chromium_binary, inspect, screenshot

from peftlab.analysis.inputs import Notices
from peftlab.analysis.main_table import collect_main_table
from peftlab.analysis.report import build_report
from peftlab.analysis.sections import main_table_block
from peftlab.errors import PeftlabError

REPO = Path(__file__).resolve().parents[2]
FIGURES = {"accuracy_vs_params.png", "pairwise.png", "ensemble_gains.png", "wise_ft.png", "manyshot.png",
           "manyshot_params.png"}
TABLES = {"main_table.csv", "main_averages.csv", "hparams.csv", "costs.csv", "agreement.csv", "ensembles.csv",
          "wise_curves.csv", "manyshot.csv", "lessons.csv"}
GROUPS = {"digits": "Natural", "textures": "Natural", "cells": "Specialized", "clevr_count": "Structured",
          "mystery": "Other"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    config = tree_config(REPO / "params.yaml")
    written = write_results_tree(root / "results", config)
    probe = write_probe(root / "models" / "probe.json", gain=30.0)
    metrics = build_report(config, root / "results", root / "reports", probe_path=probe)
    return root, config, written, metrics


def fresh_tree(tmp_path):
    config = tree_config(REPO / "params.yaml")
    write_results_tree(tmp_path / "results", config)
    return config


class TableReader(HTMLParser):
    """Cell texts of the table with a given id."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def html_table(html: str, table_id: str = "main-table") -> dict[str, dict[str, str]]:
    """Rows of the table with that id, keyed by their "Method" cell (or first cell), in document order."""
    reader = TableReader(table_id)
    reader.feed(html)
    header, *rows = reader.rows
    key = header.index("Method") if "Method" in header else 0
    return {row[key]: dict(zip(header, row, strict=True)) for row in rows}


def main_table(html: str) -> dict[str, dict[str, str]]:
    return html_table(html, "main-table")


def test_report_writes_every_output(built):
    root, _, _, metrics = built
    reports = root / "reports"
    for name in ("index.md", "index.html", "metrics.json"):
        assert (reports / name).stat().st_size > 0
    assert {p.name for p in (reports / "figures").glob("*.png")} == FIGURES
    for png in (reports / "figures").glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
    assert {p.name for p in (reports / "tables").glob("*.csv")} == TABLES
    assert json.loads((reports / "metrics.json").read_text()) == metrics
    assert set(metrics["lessons"]) == {f"lesson{k}_holds" for k in (1, 2, 3, 4)}


def test_main_table_numbers_equal_the_metrics_files(built):
    root, _, written, _ = built
    html = (root / "reports" / "index.html").read_text()
    table = main_table(html)
    means = {m: np.mean([np.mean(written[(t, m)]) for t in TREE_TASKS]) for m in TREE_METHODS}
    assert list(table) == sorted(TREE_METHODS, key=lambda m: -means[m])  # ranked by the mean of all tasks
    assert [table[m]["Rank"] for m in table] == ["1", "2", "3", "4", "5"]
    for (task, method), per_seed in written.items():
        metrics = json.loads((root / "results" / "final" / task / method / "metrics.json").read_text())
        mean, std = metrics["accuracy"]["test"]["mean"], metrics["accuracy"]["test"]["std"]
        assert mean == pytest.approx(np.mean(per_seed)) and std == pytest.approx(np.std(per_seed, ddof=1))
        assert table[method][task] == f"{100 * mean:.2f} ± {100 * std:.2f}"
    with (root / "reports" / "tables" / "main_table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(TREE_TASKS) * len(TREE_METHODS)
    for row in rows:
        metrics = json.loads((root / "results" / "final" / row["task"] / row["method"] / "metrics.json").read_text())
        assert float(row["test_accuracy_mean"]) == metrics["accuracy"]["test"]["mean"]
        assert float(row["test_accuracy_std"]) == metrics["accuracy"]["test"]["std"]
        assert row["group"] == GROUPS[row["task"]]


def test_both_averages_are_reported_and_labelled(built):
    root, _, written, metrics = built
    table = main_table((root / "reports" / "index.html").read_text())
    for method in TREE_METHODS:
        means = {task: np.mean(written[(task, method)]) for task in TREE_TASKS}
        of_tasks = np.mean(list(means.values()))
        groups = {}
        for task, group in GROUPS.items():
            groups.setdefault(group, []).append(means[task])
        of_groups = np.mean([np.mean(v) for v in groups.values()])
        assert table[method]["Mean of 5 tasks"] == f"{100 * of_tasks:.2f}"
        assert table[method]["Mean of 4 group means"] == f"{100 * of_groups:.2f}"
        assert table[method]["Natural mean"] == f"{100 * (means['digits'] + means['textures']) / 2:.2f}"
        assert metrics["mean_of_tasks"][method] == pytest.approx(of_tasks, abs=1e-6)
        assert metrics["mean_of_group_means"][method] == pytest.approx(of_groups, abs=1e-6)
    assert table["full"]["Params (no head)"] == "85K" and table["linear"]["Params (no head)"] == "0"


def test_lessons_section_states_a_computed_verdict_for_each_lesson(built):
    root, _, _, metrics = built
    text = (root / "reports" / "index.md").read_text()
    for number in (1, 2, 3, 4):
        assert f"### Lesson {number}:" in text
    verdicts = [line for line in text.splitlines() if line.startswith("Verdict: ")]
    assert len(verdicts) == 4
    for line, key in zip(verdicts, sorted(metrics["lesson_verdicts"]), strict=True):
        assert line.startswith(f"Verdict: **{metrics['lesson_verdicts'][key]}**")
        assert metrics["lessons"][f"{key}_holds"] == {"holds": True, "does not hold": False}.get(
            metrics["lesson_verdicts"][key])
    assert "needs ≤ 2" in text and "needs ≥ −1" in text  # thresholds printed beside the values
    assert "95% CI [" in text and "Precondition met: a pretrained backbone" in text  # the probe file of the fixture
    with (root / "reports" / "tables" / "lessons.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 and all(float(r["interval_low"]) <= float(r["interval_high"]) for r in rows)
    assert {r["state"] for r in rows} <= {"passes", "fails", "inconclusive"}


def test_costs_and_devices_come_from_the_per_seed_metrics(built):
    root, *_ = built
    html = (root / "reports" / "index.html").read_text()
    costs = html_table(html, "costs-table")
    runs = len(TREE_TASKS) * len(TREE_SEEDS)
    for method in TREE_METHODS:
        assert costs[method]["Runs"] == str(runs)
        assert costs[method]["Train time per run (s)"] == f"{TREE_TIME_S[method]:.1f}"
        assert costs[method]["Train time, all runs (s)"] == f"{TREE_TIME_S[method] * runs:.0f}"
        # the fixture's peak memory is 100 MB × (1 + seed) + params / 1000: the highest is seed 1's
        assert costs[method]["Peak memory (MB)"] == f"{200 + TREE_PARAMS[method] / 1000:.0f}"
    assert f"cpu, fp32: {runs * len(TREE_METHODS)} runs" in html  # the header, from the files' provenance


def test_main_table_marks_the_best_of_each_column_and_scores_ppt(built):
    root, _, written, _ = built
    html = (root / "reports" / "index.html").read_text()
    reader = TableReader("main-table")
    reader.feed(html)
    table = main_table(html)
    for method, row in table.items():
        mean = np.mean([np.mean(written[(t, method)]) for t in TREE_TASKS])  # fraction
        params = TREE_PARAMS[method]
        expected = (100 * mean / 100) * np.exp(-np.log10(params / 1e7 + 1))  # V-PETL Bench's PPT, M in %
        assert row["PPT"] == f"{expected:.3f}"
    marked = re.findall(r'<td class="best">([^<]*)</td>', html.split('id="main-table"')[1].split("</table>")[0])
    for task in TREE_TASKS:
        best = max(np.mean(written[(task, m)]) for m in TREE_METHODS)
        assert f"{100 * best:.2f}" in {cell.split(" ")[0] for cell in marked}
    best_of_tasks = max(table[m]["Mean of 5 tasks"] for m in table)
    assert best_of_tasks in marked and "**" + best_of_tasks + "**" in (root / "reports" / "index.md").read_text()


def test_html_is_self_contained(built):
    root, *_ = built
    html = (root / "reports" / "index.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(FIGURES)
    assert "<script" not in html and 'src="figures/' not in html
    assert "figures/pairwise.png" in (root / "reports" / "index.md").read_text()


def test_html_renders_in_headless_chromium(built, tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    root, *_ = built
    page = root / "reports" / "index.html"
    found, console = inspect(binary, page, tmp_path)
    assert found["errors"] == [] and console == []
    assert found["images"] == len(FIGURES) and found["broken"] == 0
    assert found["tableRows"] == 1 + len(TREE_METHODS)
    # the main table and the first plot are inside the 1280×2000 window the screenshot captures
    assert 0 < found["tableTop"] < 2000 and 0 < found["firstImageTop"] < 1800
    png = root / "reports-screenshot.png"
    result = screenshot(binary, page, png, tmp_path / "profile-shot")
    assert result.returncode == 0 and png.is_file(), result.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32) / 255
    assert pixels.shape == (2000, 1280, 3)
    assert pixels.std() > 0.05  # not blank
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.3
    assert colourful.sum() > 2000  # plot markers and lines, not only black text on white


def test_missing_inputs_leave_cells_empty_are_listed_as_warnings_and_drop_stale_figures(tmp_path):
    config = fresh_tree(tmp_path)
    build_report(config, tmp_path / "results", tmp_path / "reports")
    assert (tmp_path / "reports" / "figures" / "wise_ft.png").exists()
    missing = tmp_path / "results" / "final" / "cells" / "lora" / "metrics.json"
    missing.unlink()
    shutil.rmtree(tmp_path / "results" / "robustness")
    shutil.rmtree(tmp_path / "results" / "ensembles" / "digits")
    metrics = build_report(config, tmp_path / "results", tmp_path / "reports")
    html = (tmp_path / "reports" / "index.html").read_text()
    table = main_table(html)
    assert table["lora"]["cells"] == "–"
    assert table["lora"]["Mean of 5 tasks"] == "–" and table["lora"]["Mean of 4 group means"] == "–"
    assert table["lora"]["Natural mean"] != "–"  # the groups it has are complete
    assert "lora" not in metrics["mean_of_tasks"]
    assert f"{missing} missing" in html
    assert "wise.csv missing" in html and "ensembles/digits/summary.json missing" in html
    assert "No WiSE-FT table was found" in html
    assert not (tmp_path / "reports" / "figures" / "wise_ft.png").exists()  # no stale figure from the first build
    assert metrics["lessons"]["lesson4_holds"] is None  # not assessable without the curves
    assert "Verdict: **not assessable**" in (tmp_path / "reports" / "index.md").read_text()


def test_a_malformed_metrics_file_is_an_error_naming_it(tmp_path):
    config = fresh_tree(tmp_path)
    bad = tmp_path / "results" / "final" / "digits" / "full" / "metrics.json"
    write_json(bad, {"task": "digits", "method": "full", "accuracy": {"test": 0.5}, "trainable_params": {}})
    with pytest.raises(PeftlabError, match=rf"{bad}: accuracy\['test'\] must be"):
        build_report(config, tmp_path / "results", tmp_path / "reports")
    bad.write_text("{not json")
    with pytest.raises(PeftlabError, match=rf"{bad}: malformed summary metrics file"):
        build_report(config, tmp_path / "results", tmp_path / "reports")


def test_a_diverged_method_is_left_out_with_a_warning(tmp_path):
    config = fresh_tree(tmp_path)
    diverged = tmp_path / "results" / "final" / "mystery" / "vpt_deep" / "metrics.json"
    metrics = json.loads(diverged.read_text())
    metrics["accuracy"]["test"] = {"mean": None, "std": None, "per_seed": [None, None]}
    write_json(diverged, metrics)
    notices = Notices()
    table = collect_main_table(config, tmp_path / "results", notices)
    assert table.cell("mystery", "vpt_deep") is None and table.mean_of_tasks("vpt_deep") is None
    last = main_table_block(table).rows[-1]  # a method without a mean of all tasks ranks last, unranked
    assert last[:2] == ["–", "vpt_deep"] and last[2 + TREE_TASKS.index("mystery")] == "–"
    assert [n.message for n in notices] == [f"{diverged}: no finite accuracy for split 'test' (every seed "
                                            "diverged?): cell left empty"]


def test_extension_methods_are_kept_out_of_the_papers_table(tmp_path):
    config = fresh_tree(tmp_path)
    results = tmp_path / "results"
    for task in TREE_TASKS:  # DoRA (family "peftlab") with LoRA's numbers
        for stage in ("final", "search"):
            shutil.copytree(results / stage / task / "lora", results / stage / task / "dora")
    config["study"]["methods"].append("dora")
    build_report(config, results, tmp_path / "reports")
    html = (tmp_path / "reports" / "index.html").read_text()
    assert "dora" not in main_table(html) and set(main_table(html)) == set(TREE_METHODS)
    extension = html_table(html, "extension-table")
    assert list(extension) == ["dora"] and extension["dora"]["Rank"] == "1"
    assert extension["dora"]["Mean of 5 tasks"] == main_table(html)["lora"]["Mean of 5 tasks"]
    assert "Extension methods (not in the paper)" in html and "dora: peftlab" in html
    assert html_table(html, "costs-table")["dora"]["Family"] == "peftlab"
