"""``peftlab report``: everything the study produced, in one document, with the lessons checked from the numbers.

Reads the results tree (final metrics, search selections, ensemble analyses, WiSE-FT tables, many-shot
metrics), writes ``index.md`` and a self-contained ``index.html``, the figures (``figures/*.png``), the numbers
behind every table and figure (``tables/*.csv``) and ``metrics.json`` (headline numbers for ``dvc metrics``).
An input that is absent leaves its cell or curve out and is listed under "Warnings", near the top; an input
that is present but malformed stops the report with an error naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peftlab.analysis import figures
from peftlab.analysis.ensemble_results import TaskEnsembles, collect_ensembles
from peftlab.analysis.inputs import Notices
from peftlab.analysis.lessons import THRESHOLDS, Lesson, evaluate_lessons
from peftlab.analysis.main_table import MainTable, average_rows, collect_main_table, hparam_rows, long_rows
from peftlab.analysis.manyshot import ShotPoint, collect_manyshot
from peftlab.analysis.render import (
    BulletList,
    Document,
    Figure,
    Heading,
    Paragraph,
    Table,
    Warnings,
    to_html,
    to_markdown,
)
from peftlab.analysis.wise_results import CurvePoint, best_balance, collect_wise, endpoint
from peftlab.io import write_csv_rows, write_json, write_text
from peftlab.provenance import provenance

MAIN_TABLE_ID = "main-table"


# --- formatting ---------------------------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def mean_std(mean: float, std: float, n_seeds: int) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if n_seeds > 1 else f"{100 * mean:.2f}"


def signed_pts(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.2f}"


def param_count(value: float | None) -> str:
    if value is None:
        return "–"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# --- sections -----------------------------------------------------------------------------------------------


def main_table_block(table: MainTable) -> Table:
    groups = table.group_names
    header = ["Method", *table.tasks, *(f"{g} mean" for g in groups), f"Mean of {len(table.tasks)} tasks",
              f"Mean of {len(groups)} group means", "Params (no head)"]
    rows = []
    for method in table.methods:
        cells = []
        for task in table.tasks:
            cell = table.cell(task, method)
            cells.append(mean_std(cell.mean, cell.std, len(cell.per_seed)) if cell else "–")
        cells += [percent(table.group_mean(method, g)) for g in groups]
        cells += [percent(table.mean_of_tasks(method)), percent(table.mean_of_group_means(method)),
                  param_count(table.params(method))]
        rows.append([method, *cells])
    membership = "; ".join(f"{g}: {', '.join(table.tasks_of(g))}" for g in groups)
    caption = ("Test top-1 accuracy (%), mean ± std over seeds; averages are means of the per-task means and are "
               f"left empty ('–') where a task is missing. Groups: {membership}. Params: trainable parameters "
               "without the classification head, mean over tasks.")
    return Table(header, rows, caption=caption, element_id=MAIN_TABLE_ID)


def lessons_blocks(lessons: Sequence[Lesson]) -> list:
    blocks: list = [Heading("Lessons of the paper, checked on these results", anchor="lessons"), Paragraph(
        "Each verdict is computed from the numbers in this report with the thresholds shown (constants in "
        "peftlab/analysis/lessons.py): a lesson holds when every criterion passes. 'PEFT methods' excludes the "
        "full fine-tuning and linear-probe baselines.")]
    for lesson in lessons:
        blocks.append(Heading(f"Lesson {lesson.number}: {lesson.claim}", level=3))
        blocks.append(Paragraph(f"Verdict: **{lesson.verdict}**"
                                + (f" ({lesson.missing})" if lesson.missing else "")))
        items = [f"{c.description}: {_number(c.value)} (needs {c.threshold}) → {'passes' if c.passed else 'fails'}"
                 for c in lesson.criteria]
        items += lesson.details
        if items:
            blocks.append(BulletList(items))
    return blocks


def ensembles_table(ensembles: Mapping[str, TaskEnsembles]) -> Table:
    header = ["Task", "Seed", "Methods", "Best single (val) → test", "Best single on test", "Top-k (val)", "Logit avg",
              "Gain (pts)", "Prob avg", "Oracle", "Agreement", "Error Jaccard", "Confident overlap",
              "Seed-pair error Jaccard"]
    rows = []
    for task, result in ensembles.items():
        s = result.summary
        by_val, by_test, top = s.get("best_single_by_val"), s["best_single_by_test"], s.get("top_k_by_val")
        baseline = (s.get("seed_baseline") or {}).get("mean_error_jaccard")
        rows.append([
            task, str(s.get("seed", "–")), str(len(s["methods"])),
            f"{by_val['method']} {percent(by_val['test_accuracy'])}" if by_val else "–",
            f"{by_test['method']} {percent(by_test['test_accuracy'])}",
            "+".join(top["members"]) if top else "–",
            percent(top["logits"]["accuracy"]) if top else "–",
            signed_pts(top["logits"]["gain_over_best_single_by_val"]) if top else "–",
            percent(top["probs"]["accuracy"]) if top else "–",
            percent(top["oracle"]["accuracy"]) if top else "–",
            _number(s["pairs"]["mean_agreement"]), _number(s["pairs"]["mean_error_jaccard"]),
            _number(s["pairs"]["mean_confident_overlap"]), _number(baseline),
        ])
    return Table(header, rows, caption=(
        "Per task, on one seed's test logits (not averaged over seeds, which would itself be an ensemble): the "
        "best single method chosen on validation and its test accuracy; the best on test "
        "(an optimistic reference, chosen on test labels); the top-k methods by validation accuracy and their "
        "logit-average / probability-average / oracle accuracy (%); gain = logit average minus the best single "
        "method by validation; mean pairwise agreement, error Jaccard (both wrong / either wrong) and overlap of "
        "the most confident test images; the same error Jaccard between two seeds of one method."))


def wise_table(curves: Mapping[tuple[str, str], Sequence[CurvePoint]]) -> Table:
    header = ["Task", "Method", "Interpolation", "Target α=0", "Shift α=0", "Target α=1", "Shift α=1",
              "Best-balance α", "Target there", "Shift there"]
    rows = []
    for (task, method), points in sorted(curves.items()):
        zero, one, best = endpoint(points, 0.0), endpoint(points, 1.0), best_balance(points)
        rows.append([task, method, points[0].interpolation,
                     percent(zero.target if zero else None), percent(zero.shift if zero else None),
                     percent(one.target if one else None), percent(one.shift if one else None),
                     f"{best.alpha:g}", percent(best.target), percent(best.shift)])
    return Table(header, rows, caption=(
        "WiSE-FT θ(α) = (1−α)·θ_zero-shot + α·θ_fine-tuned, accuracy (%) on the target test set and mean over the "
        "shift sets, mean over seeds. Best balance: the α maximising (target + shift) / 2. 'outputs' rows mix "
        "logits instead of weights (methods without an identity point, such as VPT)."))


def manyshot_table(points: Sequence[ShotPoint]) -> Table:
    rows = [[p.task, p.method, str(p.size), p.source, mean_std(p.accuracy_mean, p.accuracy_std, p.n_seeds),
             param_count(p.method_params)] for p in points]
    return Table(["Task", "Method", "Training images", "Runs", "Test accuracy (%)", "Params (no head)"], rows,
                 caption="Many-shot results; 'final' points are the low-shot runs on train800val200.",
                 collapsed=len(rows) > 30)


def hparams_table(table: MainTable) -> Table:
    rows = [[r["method"], r["task"], r["hparams"], percent(r["val_accuracy"])] for r in hparam_rows(table)]
    return Table(["Method", "Task", "Selected hyper-parameters", "Val accuracy (%)"], rows,
                 caption="Hyper-parameters selected on val200 (best.json) for the final runs",
                 collapsed=len(rows) > 30)


# --- outputs ------------------------------------------------------------------------------------------------


def _flat_rows(ensembles: Mapping[str, TaskEnsembles], attribute: str) -> tuple[list[dict], list[str]]:
    rows = [row for result in ensembles.values() for row in getattr(result, attribute)]
    fields = list(rows[0]) if rows else ["task"]
    return rows, fields


def _curve_rows(curves: Mapping[tuple[str, str], Sequence[CurvePoint]]) -> list[dict]:
    return [{"task": p.task, "method": p.method, "alpha": p.alpha, "target_accuracy": p.target,
             "shift_accuracy": p.shift, "balance": p.balance, "interpolation": p.interpolation, "n_seeds": p.n_seeds,
             **{f"accuracy_{split}": value for split, value in p.per_shift.items()}}
            for points in curves.values() for p in points]


def write_tables(out: Path, table: MainTable, ensembles, points, curves, lessons) -> None:
    tables = out / "tables"
    main = long_rows(table)
    write_csv_rows(tables / "main_table.csv", main, list(main[0]) if main else ["task", "method"])
    averages = average_rows(table)
    write_csv_rows(tables / "main_averages.csv", averages, list(averages[0]) if averages else ["method"])
    write_csv_rows(tables / "hparams.csv", hparam_rows(table), ["method", "task", "hparams", "val_accuracy"])
    for name, attribute in (("agreement", "agreement"), ("ensembles", "ensembles")):
        rows, fields = _flat_rows(ensembles, attribute)
        write_csv_rows(tables / f"{name}.csv", rows, fields)
    curve_rows = _curve_rows(curves)
    curve_fields = sorted({key for row in curve_rows for key in row}, key=lambda k: (k.startswith("accuracy_"), k))
    write_csv_rows(tables / "wise_curves.csv", curve_rows, curve_fields or ["task"])
    write_csv_rows(tables / "manyshot.csv", [p.as_row() for p in points], list(ShotPoint.__dataclass_fields__))
    lesson_rows = [{"lesson": lesson.number, "verdict": lesson.verdict, "criterion": c.description, "value": c.value,
                    "threshold": c.threshold, "passed": c.passed} for lesson in lessons for c in lesson.criteria]
    write_csv_rows(tables / "lessons.csv", lesson_rows,
                   ["lesson", "verdict", "criterion", "value", "threshold", "passed"])


def headline_metrics(config: Mapping[str, Any], table: MainTable, ensembles: Mapping[str, TaskEnsembles],
                     lessons: Sequence[Lesson], notices: Notices) -> dict[str, Any]:
    """Numbers for ``dvc metrics``: averages per method, ensemble gains, lesson verdicts (true/false/null)."""
    def known(values: Mapping[str, float | None]) -> dict[str, float]:
        return {key: round(value, 6) for key, value in values.items() if value is not None}

    gains = [e.summary["top_k_by_val"]["logits"]["gain_over_best_single_by_val"] for e in ensembles.values()
             if e.summary.get("top_k_by_val")]
    gains = [g for g in gains if g is not None]
    return {
        "study": config["study"]["name"],
        "mean_of_tasks": known({m: table.mean_of_tasks(m) for m in table.methods}),
        "mean_of_group_means": known({m: table.mean_of_group_means(m) for m in table.methods}),
        "ensembles": {"tasks": len(ensembles),
                      **({"mean_top_k_gain_over_best_by_val": round(sum(gains) / len(gains), 6)} if gains else {})},
        "lessons": {f"lesson{lesson.number}_holds": {"holds": True, "does not hold": False}.get(lesson.verdict)
                    for lesson in lessons},
        "warnings": len(notices),
    }


def build_document(config: Mapping[str, Any], config_path: str, results: Path, out: Path, table: MainTable,
                   ensembles, points, curves, lessons, notices: Notices, figure_paths: Mapping[str, Path | None]):
    study = config["study"]
    doc = Document(f"peftlab report: study '{study['name']}'")
    info = provenance()
    doc.add(Paragraph(
        f"Config {config_path}; results {results}; {len(study['tasks'])} tasks, {len(study['methods'])} methods, "
        f"seeds {study['seeds']}; backbone {config['backbone']['name']}. Built by peftlab "
        f"{info['packages'].get('peftlab')} at git revision {info['git_revision'] or 'unknown'}."))
    doc.add(Warnings([f"[{n.scope}] {n.message}" for n in notices]))

    def figure(key: str, caption: str, missing: str) -> None:
        path = figure_paths.get(key)
        doc.add(Figure(path, caption) if path else Paragraph(f"(No figure: {missing}.)"))

    doc.add(Heading("Main results", anchor="main"), main_table_block(table))
    figure("accuracy_vs_params", "Accuracy (mean of group means) against trainable parameters without head; "
           "methods with results on every task.", "no method has results on every task")
    doc.add(*lessons_blocks(lessons))
    doc.add(Heading("Selected hyper-parameters", anchor="hparams"), hparams_table(table))

    doc.add(Heading("Different methods, different mistakes: agreement and ensembles", anchor="ensembles"))
    if ensembles:
        figure("pairwise", "Pairwise prediction agreement, error overlap (Jaccard of the error sets) and overlap of "
               "the most confident test images, mean over tasks; the diagonal compares two seeds of one method.",
               "fewer than two methods")
        figure("ensemble_gains", "Gain of the top-k ensemble (methods chosen on validation accuracy) over the best "
               "single method chosen on validation, per task; hatched: the oracle upper bound.",
               "no task has validation accuracies for a top-k ensemble")
        doc.add(ensembles_table(ensembles))
    else:
        doc.add(Paragraph("No ensemble analysis was found (run 'peftlab ensembles')."))

    doc.add(Heading("Robustness to distribution shift: WiSE-FT", anchor="robustness"))
    if curves:
        figure("wise", "Target against shift accuracy along α from the zero-shot model (ring) to the fine-tuned "
               "model (dot); dashed: output-space interpolation for methods without a weight-space identity.",
               "no curve")
        doc.add(wise_table(curves))
    else:
        doc.add(Paragraph("No WiSE-FT table was found (run 'peftlab robustness')."))

    doc.add(Heading("Many-shot: accuracy against data and parameters", anchor="manyshot"))
    if points:
        figure("manyshot", "Test accuracy against training-set size (mean ± std over seeds).", "no point")
        figure("manyshot_params", "Test accuracy against trainable parameters at each task's largest size.",
               "no method with trainable parameters")
        doc.add(manyshot_table(points))
    else:
        doc.add(Paragraph("No many-shot result was found."))
    doc.add(Heading("Tables and thresholds", anchor="files"), BulletList(
        [f"tables/{name}.csv" for name in ("main_table", "main_averages", "hparams", "agreement", "ensembles",
                                             "wise_curves", "manyshot", "lessons")]
        + [f"lesson thresholds: {', '.join(f'{k}={v:g}' for k, v in THRESHOLDS.items())}"]))
    return doc


def build_report(config: Mapping[str, Any], results: str | Path, out: str | Path,
                 config_path: str = "params.yaml") -> dict[str, Any]:
    """Collect, check, plot and write the whole report; returns the headline metrics."""
    results, out = Path(results), Path(out)
    notices = Notices()
    table = collect_main_table(config, results, notices)
    ensembles = collect_ensembles(config, results, notices)
    points = collect_manyshot(config, results, notices)
    curves = collect_wise(config, results, notices)
    lessons = evaluate_lessons(table, ensembles, points, curves)

    colours = figures.method_colours(_all_methods(config))
    figure_dir = out / "figures"
    figure_paths = {
        "accuracy_vs_params": figures.accuracy_vs_params(table, colours, figure_dir / "accuracy_vs_params.png"),
        "pairwise": figures.pairwise_heatmaps(ensembles, config["study"]["methods"], figure_dir / "pairwise.png"),
        "ensemble_gains": figures.ensemble_gains(ensembles, figure_dir / "ensemble_gains.png"),
        "wise": figures.wise_curves(curves, colours, figure_dir / "wise_ft.png"),
        "manyshot": figures.manyshot_curves(points, colours, figure_dir / "manyshot.png"),
        "manyshot_params": figures.manyshot_params(points, colours, figure_dir / "manyshot_params.png"),
    }
    _remove_stale_figures(figure_dir, {p for p in figure_paths.values() if p})
    write_tables(out, table, ensembles, points, curves, lessons)
    document = build_document(config, config_path, results, out, table, ensembles, points, curves, lessons,
                              notices, figure_paths)
    write_text(out / "index.md", to_markdown(document, out))
    write_text(out / "index.html", to_html(document))
    metrics = headline_metrics(config, table, ensembles, lessons, notices)
    write_json(out / "metrics.json", metrics)
    return metrics


def _all_methods(config: Mapping[str, Any]) -> list[str]:
    methods = list(config["study"]["methods"])
    for section in ("manyshot", "robustness"):
        for method in (config.get(section) or {}).get("methods", []):
            if method not in methods:
                methods.append(method)
    return methods


def _remove_stale_figures(figure_dir: Path, current: set[Path]) -> None:
    """A figure from an earlier report whose inputs are now gone must not linger beside the new report."""
    if figure_dir.is_dir():
        for png in figure_dir.glob("*.png"):
            if png not in current:
                png.unlink()
