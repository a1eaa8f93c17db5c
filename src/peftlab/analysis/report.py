"""``peftlab report``: everything the study produced, in one document, with the lessons checked from the numbers.

Reads the results tree (final metrics and their per-seed runs, search selections, ensemble analyses, WiSE-FT
tables, many-shot metrics), the backbone's probe file when there is one, and the released numbers of the
paper's code base when the config names them (``reference``); writes ``index.md`` and a self-contained
``index.html``, the figures (``figures/*.png``), the numbers behind every table and figure (``tables/*.csv``) and
``metrics.json`` (headline numbers for ``dvc metrics``). An input that is absent leaves its cell or curve out and
is listed under "Warnings", near the top; an input that is present but malformed stops the report with an error
naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peftlab.analysis import figures
from peftlab.analysis.costs import Costs, collect_costs, describe_devices
from peftlab.analysis.ensemble_results import TaskEnsembles, collect_ensembles
from peftlab.analysis.inputs import Notices, read_probe
from peftlab.analysis.lessons import THRESHOLDS, Lesson, backbone_precondition, evaluate_lessons
from peftlab.analysis.main_table import MainTable, average_rows, collect_main_table, hparam_rows, long_rows
from peftlab.analysis.manyshot import ShotPoint, collect_manyshot
from peftlab.analysis.outcomes import collect_outcomes
from peftlab.analysis.released import ReferenceCheck, collect_reference_checks
from peftlab.analysis.render import (
    Block,
    BulletList,
    Document,
    Figure,
    Heading,
    Paragraph,
    Warnings,
    to_html,
    to_markdown,
)
from peftlab.analysis.sections import (
    EXTENSION_TABLE_ID,
    costs_table,
    ensembles_table,
    header_blocks,
    hparams_table,
    lessons_blocks,
    main_table_block,
    manyshot_table,
    ppt,
    ranked_methods,
    reference_blocks,
    reference_rows,
    wise_table,
)
from peftlab.analysis.wise_results import CurvePoint, collect_wise
from peftlab.io import write_csv_rows, write_json, write_text
from peftlab.methods import get_method
from peftlab.methods.base import PAPER_FAMILY
from peftlab.paths import BACKBONE_PROBE, path
from peftlab.provenance import provenance


def method_families(methods: Sequence[str]) -> dict[str, str]:
    """Each method's family (``paper``, ``peftlab``, ``huggingface-peft``): the paper's table keeps its own."""
    return {method: get_method(method).family for method in methods}


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


def _average_rows(table: MainTable, families: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per method: the averages, its rank within its family's table by the mean of all tasks, and PPT."""
    rank = {}
    for family in dict.fromkeys(families.values()):
        ranked = [m for m in ranked_methods(table, [m for m in table.methods if families[m] == family])
                  if table.mean_of_tasks(m) is not None]
        rank.update({m: index for index, m in enumerate(ranked, start=1)})
    return [{**row, "family": families[row["method"]], "rank_in_family": rank.get(row["method"]),
             "ppt": ppt(row["mean_of_tasks"], row["method_params"])} for row in average_rows(table)]


def write_tables(out: Path, table: MainTable, families: Mapping[str, str], costs: Costs, ensembles, points, curves,
                 lessons: Sequence[Lesson], checks: Sequence[ReferenceCheck]) -> list[str]:
    """Every table's numbers as CSV; returns the file names written."""
    tables = out / "tables"
    written = {}
    main = long_rows(table)
    written["main_table"] = (main, list(main[0]) if main else ["task", "method"])
    averages = _average_rows(table, families)
    written["main_averages"] = (averages, list(averages[0]) if averages else ["method"])
    written["hparams"] = (hparam_rows(table), ["method", "task", "hparams", "val_accuracy"])
    cost_rows = [cost.as_row() for cost in costs.methods.values()]
    written["costs"] = (cost_rows, list(cost_rows[0]) if cost_rows else ["method"])
    for name in ("agreement", "ensembles"):
        written[name] = _flat_rows(ensembles, name)
    curve_rows = _curve_rows(curves)
    curve_fields = sorted({key for row in curve_rows for key in row}, key=lambda k: (k.startswith("accuracy_"), k))
    written["wise_curves"] = (curve_rows, curve_fields or ["task"])
    written["manyshot"] = ([p.as_row() for p in points], list(ShotPoint.__dataclass_fields__))
    lesson_rows = [{"lesson": lesson.number, "verdict": lesson.verdict, **c.as_dict()}
                   for lesson in lessons for c in lesson.criteria]
    written["lessons"] = (lesson_rows, ["lesson", "verdict", "description", "value", "interval_low",
                                        "interval_high", "threshold", "state"])
    for check in checks:
        rows = reference_rows(check)
        written[f"released_{check.table}"] = (rows, list(rows[0]) if rows else ["table"])
    for name, (rows, fields) in written.items():
        write_csv_rows(tables / f"{name}.csv", rows, fields)
    return list(written)


def headline_metrics(config: Mapping[str, Any], table: MainTable, ensembles: Mapping[str, TaskEnsembles],
                     lessons: Sequence[Lesson], checks: Sequence[ReferenceCheck], costs: Costs,
                     notices: Notices) -> dict[str, Any]:
    """Numbers for ``dvc metrics``: averages per method, ensemble gains, lesson verdicts (true/false/null), the
    comparison with the released numbers, and where the runs ran."""
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
        "lesson_verdicts": {f"lesson{lesson.number}": lesson.verdict for lesson in lessons},
        "released": {check.table: check.summary() for check in checks},
        "devices": describe_devices(costs.runs_on),
        "warnings": len(notices),
    }


def build_document(config: Mapping[str, Any], config_path: str, results: Path, table: MainTable,
                   families: Mapping[str, str], costs: Costs, ensembles, points, curves, lessons,
                   checks: Sequence[ReferenceCheck], notices: Notices, figure_paths: Mapping[str, Path | None],
                   csv_names: Sequence[str]) -> Document:
    study = config["study"]
    doc = Document(f"peftlab report: study '{study['name']}'")
    doc.add(*header_blocks(config, config_path, results, provenance(), describe_devices(costs.runs_on)))
    doc.add(Warnings([f"[{n.scope}] {n.message}" for n in notices]))

    def figure(key: str, caption: str, missing: str) -> Block:
        figure_path = figure_paths.get(key)
        return Figure(figure_path, caption) if figure_path else Paragraph(f"(No figure: {missing}.)")

    paper = [m for m in table.methods if families[m] == PAPER_FAMILY]
    extension = [m for m in table.methods if families[m] != PAPER_FAMILY]
    doc.add(Heading("Main results", anchor="main"),
            main_table_block(table, paper, label="The paper's methods. "))
    if extension:
        doc.add(Heading("Extension methods (not in the paper)", level=3, anchor="extension"),
                main_table_block(table, extension, element_id=EXTENSION_TABLE_ID, label=(
                    "Methods beyond the paper ("
                    + ", ".join(f"{m}: {families[m]}" for m in extension)
                    + "), ranked among themselves. ")))
    doc.add(figure("accuracy_vs_params", "Accuracy (mean of group means) against trainable parameters without head; "
                   "methods with results on every task.", "no method has results on every task"))
    doc.add(Heading("What each method costs", anchor="costs"))
    doc.add(costs_table(costs, [*ranked_methods(table, paper), *ranked_methods(table, extension)], families)
            if costs.methods else Paragraph("No final run's per-seed metrics file was found."))
    doc.add(*reference_blocks(checks, table, {
        "released_scatter": figure("released_scatter", "Ours against released, one point per compared result (red "
                                   "edge: beyond the tolerance); the grey band is ± the tolerance.",
                                   "no result of ours has a released counterpart"),
        "released_wise": figure("released_wise", "WiSE-FT curves, ours (solid) and released (dashed): target "
                                "against mean shift accuracy over the test sets both have, at the α both have.",
                                "no method has both curves")}))
    doc.add(*lessons_blocks(lessons))
    doc.add(Heading("Selected hyper-parameters", anchor="hparams"), hparams_table(table))

    doc.add(Heading("Different methods, different mistakes: agreement and ensembles", anchor="ensembles"))
    if ensembles:
        doc.add(figure("pairwise", "Pairwise prediction agreement, error overlap (Jaccard of the error sets) and "
                       "overlap of the most confident test images, mean over tasks; the diagonal compares two seeds of "
                       "one method.", "fewer than two methods"),
                figure("ensemble_gains", "Gain of the top-k ensemble (methods chosen on validation accuracy) over the "
                       "best single method chosen on validation, per task; hatched: the oracle upper bound.",
                       "no task has validation accuracies for a top-k ensemble"),
                ensembles_table(ensembles))
    else:
        doc.add(Paragraph("No ensemble analysis was found (run 'peftlab ensembles')."))

    doc.add(Heading("Robustness to distribution shift: WiSE-FT", anchor="robustness"))
    if curves:
        doc.add(figure("wise", "Target against shift accuracy along α from the zero-shot model (ring) to the "
                       "fine-tuned model (dot); dashed: output-space interpolation for methods without a weight-space "
                       "identity.", "no curve"), wise_table(curves))
    else:
        doc.add(Paragraph("No WiSE-FT table was found (run 'peftlab robustness')."))

    doc.add(Heading("Many-shot: accuracy against data and parameters", anchor="manyshot"))
    if points:
        doc.add(figure("manyshot", "Test accuracy against training-set size (mean ± std over seeds).", "no point"),
                figure("manyshot_params", "Test accuracy against trainable parameters at each task's largest size.",
                       "no method with trainable parameters"),
                manyshot_table(points))
    else:
        doc.add(Paragraph("No many-shot result was found."))
    doc.add(Heading("Tables and thresholds", anchor="files"), BulletList(
        [f"tables/{name}.csv" for name in csv_names]
        + [f"lesson thresholds: {', '.join(f'{k}={v:g}' for k, v in THRESHOLDS.items())}"]))
    return doc


def build_report(config: Mapping[str, Any], results: str | Path, out: str | Path,
                 config_path: str = "params.yaml", probe_path: str | Path | None = None) -> dict[str, Any]:
    """Collect, check, plot and write the whole report; returns the headline metrics.

    ``probe_path``: the backbone's probe file (default ``models/<backbone>/probe.json``), for the lessons'
    precondition."""
    results, out = Path(results), Path(out)
    backbone = config["backbone"]
    probe_path = Path(probe_path) if probe_path else path(BACKBONE_PROBE, backbone=backbone["name"])
    notices = Notices()
    table = collect_main_table(config, results, notices)
    ensembles = collect_ensembles(config, results, notices)
    points = collect_manyshot(config, results, notices)
    curves = collect_wise(config, results, notices)
    costs = collect_costs(table, results, notices)
    outcomes = collect_outcomes(results, table, points, ensembles)
    lessons = evaluate_lessons(table, ensembles, points, curves, outcomes,
                               backbone_precondition(read_probe(probe_path), probe_path, backbone.get("weights")))
    checks = collect_reference_checks(config, results, table, points, curves, notices)
    families = method_families(_all_methods(config))

    colours = figures.method_colours(_all_methods(config))
    figure_dir = out / "figures"
    by_table = {check.table: check for check in checks}
    figure_paths = {
        "accuracy_vs_params": figures.accuracy_vs_params(table, colours, figure_dir / "accuracy_vs_params.png"),
        "pairwise": figures.pairwise_heatmaps(ensembles, config["study"]["methods"], figure_dir / "pairwise.png"),
        "ensemble_gains": figures.ensemble_gains(ensembles, figure_dir / "ensemble_gains.png"),
        "wise": figures.wise_curves(curves, colours, figure_dir / "wise_ft.png"),
        "manyshot": figures.manyshot_curves(points, colours, figure_dir / "manyshot.png"),
        "manyshot_params": figures.manyshot_params(points, colours, figure_dir / "manyshot_params.png"),
        "released_scatter": figures.released_scatter(checks, colours, figure_dir / "released_scatter.png"),
        "released_wise": figures.released_wise(by_table.get("clip_wise"), colours, figure_dir / "released_wise.png"),
    }
    _remove_stale(figure_dir, "*.png", {p for p in figure_paths.values() if p})
    csv_names = write_tables(out, table, families, costs, ensembles, points, curves, lessons, checks)
    _remove_stale(out / "tables", "*.csv", {out / "tables" / f"{name}.csv" for name in csv_names})
    document = build_document(config, config_path, results, table, families, costs, ensembles, points, curves,
                              lessons, checks, notices, figure_paths, csv_names)
    write_text(out / "index.md", to_markdown(document, out))
    write_text(out / "index.html", to_html(document))
    metrics = headline_metrics(config, table, ensembles, lessons, checks, costs, notices)
    write_json(out / "metrics.json", metrics)
    return metrics


def _all_methods(config: Mapping[str, Any]) -> list[str]:
    methods = list(config["study"]["methods"])
    for section in ("manyshot", "robustness"):
        for method in (config.get(section) or {}).get("methods", []):
            if method not in methods:
                methods.append(method)
    return methods


def _remove_stale(directory: Path, pattern: str, current: set[Path]) -> None:
    """A figure or table from an earlier report whose inputs are now gone must not linger beside the new one."""
    if directory.is_dir():
        for stale in directory.glob(pattern):
            if stale not in current:
                stale.unlink()
