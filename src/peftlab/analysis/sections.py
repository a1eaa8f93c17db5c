"""The report's sections as document blocks (``render.py``): numbers formatted once, for Markdown and HTML alike.

Every builder takes already-collected results and returns blocks; ``report.py`` decides their order and writes
the files. Accuracies arrive as fractions and are shown in %; differences in points (pts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from peftlab.analysis.costs import Costs
from peftlab.analysis.ensemble_results import TaskEnsembles
from peftlab.analysis.lessons import Lesson
from peftlab.analysis.main_table import MainTable, format_hparams, hparam_rows
from peftlab.analysis.manyshot import ShotPoint
from peftlab.analysis.released import Comparison, ReferenceCheck, group_of
from peftlab.analysis.render import BEST_CLASS, FLAGGED_CLASS, Block, BulletList, Heading, Paragraph, Table
from peftlab.analysis.wise_results import CurvePoint, best_balance, endpoint
from peftlab.reference.tables import COMMIT, REPOSITORY

MAIN_TABLE_ID = "main-table"
EXTENSION_TABLE_ID = "extension-table"
COSTS_TABLE_ID = "costs-table"
FLAG = "⚑"
PPT_SCALE = 1e7  # V-PETL Bench's parameter scale (10 M)

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


def number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def ppt(accuracy: float | None, method_params: float | None) -> float | None:
    """V-PETL Bench's parameter-aware score, PPT = (M/100)·exp(−log10(P/10⁷ + 1)), M the accuracy in %, P the
    trainable parameters without the head."""
    if accuracy is None or method_params is None:
        return None
    return accuracy * math.exp(-math.log10(method_params / PPT_SCALE + 1))


def _mark_best(rows: Sequence[Sequence[str]], columns: Sequence[int]) -> dict[tuple[int, int], str]:
    """The highest value of each column (as displayed, so ties are all marked)."""
    marks = {}
    for column in columns:
        values = {}
        for index, row in enumerate(rows):
            try:
                values[index] = float(row[column].split(" ")[0])
            except ValueError:
                continue
        if values:
            best = max(values.values())
            marks.update({(index, column): BEST_CLASS for index, value in values.items() if value == best})
    return marks


# --- header -------------------------------------------------------------------------------------------------


def header_blocks(config: Mapping[str, Any], config_path: str, results: Any, built_by: Mapping[str, Any],
                  devices: str) -> list:
    study = config["study"]
    return [Paragraph(
        f"Config {config_path}; results {results}; {len(study['tasks'])} tasks, {len(study['methods'])} methods, "
        f"seeds {study['seeds']}; backbone {config['backbone']['name']}. Built by peftlab "
        f"{built_by['packages'].get('peftlab')} at git revision {built_by['git_revision'] or 'unknown'}."),
        Paragraph(f"Final runs ran on (device, precision, GPU, from their metrics files): {devices}.")]


# --- main table ---------------------------------------------------------------------------------------------


def ranked_methods(table: MainTable, methods: Sequence[str]) -> list[str]:
    """By mean of all tasks, best first; methods without one (a missing task) after, in config order."""
    known = [m for m in methods if table.mean_of_tasks(m) is not None]
    return sorted(known, key=lambda m: -table.mean_of_tasks(m)) + [m for m in methods if m not in known]


def main_table_block(table: MainTable, methods: Sequence[str] | None = None, *, element_id: str = MAIN_TABLE_ID,
                     label: str = "") -> Table:
    """Ranked by the mean of all tasks, the best of each accuracy column marked, with PPT."""
    methods = ranked_methods(table, table.methods if methods is None else methods)
    groups = table.group_names
    header = ["Rank", "Method", *table.tasks, *(f"{g} mean" for g in groups), f"Mean of {len(table.tasks)} tasks",
              f"Mean of {len(groups)} group means", "Params (no head)", "PPT"]
    rows = []
    for rank, method in enumerate(methods, start=1):
        cells = []
        for task in table.tasks:
            cell = table.cell(task, method)
            cells.append(mean_std(cell.mean, cell.std, len(cell.per_seed)) if cell else "–")
        cells += [percent(table.group_mean(method, g)) for g in groups]
        mean = table.mean_of_tasks(method)
        score = ppt(mean, table.params(method))
        cells += [percent(mean), percent(table.mean_of_group_means(method)), param_count(table.params(method)),
                  number(score, 3)]
        rows.append([str(rank) if mean is not None else "–", method, *cells])
    accuracy_columns = [*range(2, len(header) - 2), len(header) - 1]
    membership = "; ".join(f"{g}: {', '.join(table.tasks_of(g))}" for g in groups)
    caption = (f"{label}Test top-1 accuracy (%), mean ± std over seeds, ranked by the mean of all tasks; the best of "
               "each column is marked. Averages are means of the per-task means and are left empty ('–') where a "
               f"task is missing. Groups: {membership}. Params: trainable parameters without the classification "
               "head, mean over tasks. PPT (V-PETL Bench): (M/100)·exp(−log10(P/10⁷ + 1)) with M the mean of all "
               "tasks (%) and P the parameters without head.")
    return Table(header, rows, caption=caption, element_id=element_id,
                 cell_classes=_mark_best(rows, accuracy_columns))


def costs_table(costs: Costs, order: Sequence[str], families: Mapping[str, str]) -> Table:
    rows = []
    for method in order:
        cost = costs.methods.get(method)
        if cost is None:
            continue
        rows.append([method, families.get(method, "–"), str(cost.runs), f"{cost.time_s_per_run:.1f}",
                     f"{cost.time_s_total:.0f}", number(cost.peak_memory_mb, 0), param_count(cost.method_params),
                     param_count(cost.head_params)])
    return Table(["Method", "Family", "Runs", "Train time per run (s)", "Train time, all runs (s)",
                  "Peak memory (MB)", "Trainable params (no head)", "Head params"], rows, element_id=COSTS_TABLE_ID, caption=(
        "Cost of the final runs (every task and seed the method has): wall time of a run (training and "
        "evaluation), the highest peak memory of a run (CUDA allocator peak on a GPU, resident set on a CPU) and "
        "trainable parameters (mean over tasks). Search trials are not counted."))


def hparams_table(table: MainTable) -> Table:
    rows = [[r["method"], r["task"], r["hparams"], percent(r["val_accuracy"])] for r in hparam_rows(table)]
    return Table(["Method", "Task", "Selected hyper-parameters", "Val accuracy (%)"], rows,
                 caption="Hyper-parameters selected on val200 (best.json) for the final runs",
                 collapsed=len(rows) > 30)


# --- lessons ------------------------------------------------------------------------------------------------


def _interval(lesson_criterion) -> str:
    if lesson_criterion.interval is None:
        return "no interval"
    low, high = lesson_criterion.interval
    return f"95% CI [{low:.3f}, {high:.3f}]"


def lessons_blocks(lessons: Sequence[Lesson]) -> list:
    blocks: list = [Heading("Lessons of the paper, checked on these results", anchor="lessons"), Paragraph(
        "Each verdict is computed from the numbers in this report with the thresholds shown (constants in "
        "peftlab/analysis/lessons.py, fixed before any run) and 95% bootstrap intervals over test images "
        "(resampled from the saved test logits, one draw shared by the methods of a task) and over seeds where "
        "there are several. A criterion passes when its whole interval is on the passing side of its threshold "
        "and fails when it is wholly on the other side. Verdicts: **holds** (every criterion passes), "
        "**does not hold** (some criterion fails), **inconclusive** (none fails, some interval straddles its "
        "threshold), **not assessable** (a precondition is unmet). 'PEFT methods' excludes the full "
        "fine-tuning and linear-probe baselines.")]
    for lesson in lessons:
        blocks.append(Heading(f"Lesson {lesson.number}: {lesson.claim}", level=3))
        reason = "; ".join(p.statement for p in lesson.unmet)
        blocks.append(Paragraph(f"Verdict: **{lesson.verdict}**" + (f" (precondition not met: {reason})"
                                                                     if reason else "")))
        blocks.append(BulletList([f"Precondition {'met' if p.met else 'NOT met'}: {p.statement} ({p.evidence})"
                                  for p in lesson.preconditions]))
        items = [f"{c.description}: {number(c.value)}, {_interval(c)} (needs {c.threshold_text}) → {c.state}"
                 for c in lesson.criteria]
        items += lesson.details
        if items:
            blocks.append(BulletList(items))
    return blocks


# --- ensembles, robustness, many-shot ------------------------------------------------------------------------


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
            number(s["pairs"]["mean_agreement"]), number(s["pairs"]["mean_error_jaccard"]),
            number(s["pairs"]["mean_confident_overlap"]), number(baseline),
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


# --- against the released numbers ---------------------------------------------------------------------------

TITLES = {"vtab1k": "VTAB-1k", "manyshot": "many-shot", "clip_robustness": "CLIP robustness (fine-tuned models)",
          "clip_wise": "CLIP WiSE-FT curves"}


def _difference(row: Comparison, tolerance: float) -> str:
    difference = row.difference_pts
    if difference is None:
        return "–"
    return f"{difference:+.2f}" + (f" {FLAG}" if row.flagged(tolerance) else "")


def _ours(row: Comparison) -> str:
    return "–" if row.ours is None else mean_std(row.ours, row.ours_std or 0.0, row.n_seeds)


def _where(row: Comparison) -> str:
    parts = [row.task]
    if row.size is not None:
        parts.append(f"{row.size} images")
    if row.split != "test":
        parts.append(row.split)
    if row.alpha is not None:
        parts.append(f"α={row.alpha:g}")
    return ", ".join(parts)


def _long_table(check: ReferenceCheck) -> Table:
    header = ["Where", "Method", "Released run", "Ours (%)", "Released (%)", "Difference (pts)",
              "Released, best epoch on test (oracle, not compared)", "Our selection", "Released selection", "Note"]
    rows, classes = [], {}
    for index, row in enumerate(check.rows):
        rows.append([_where(row), row.method, row.released_method + (f" ({row.variant})" if row.variant else ""),
                     _ours(row), f"{row.released_pct:.2f}", _difference(row, check.tolerance_pts),
                     "–" if row.oracle_pct is None else f"{row.oracle_pct:.2f}", format_hparams(row.ours_hparams),
                     format_hparams(row.released_hparams), row.note])
        if row.flagged(check.tolerance_pts):
            classes[(index, 5)] = FLAGGED_CLASS
    return Table(header, rows, caption=(
        f"{TITLES[check.table]}: every released number of this study's tasks and methods, ours beside it "
        f"({FLAG}: |difference| > {check.tolerance_pts:g} pts). The released number is the last epoch's test accuracy "
        "of the final run; the oracle column picks the epoch on test labels and is shown for reference only."),
        collapsed=len(rows) > 30, cell_classes=classes)


def _vtab_matrix(check: ReferenceCheck, tasks: Sequence[str], methods: Sequence[str]) -> Table:
    by_cell = {(r.task, r.method): r for r in check.rows}
    groups = list(dict.fromkeys(group_of(t) for t in tasks))
    per_method_group = check.mean_differences(lambda r: (r.method, group_of(r.task)))
    per_method = check.mean_differences(lambda r: r.method)
    per_group = check.mean_differences(lambda r: group_of(r.task))
    header = ["Method", *tasks, *(f"{g} mean" for g in groups), "Mean (compared tasks)", f"Beyond ±{check.tolerance_pts:g}"]
    rows, classes = [], {}
    shown = [m for m in methods if any((t, m) in by_cell for t in tasks)]
    for r_index, method in enumerate(shown):
        cells = []
        for t_index, task in enumerate(tasks):
            row = by_cell.get((task, method))
            cells.append(_difference(row, check.tolerance_pts) if row else "")
            if row is not None and row.flagged(check.tolerance_pts):
                classes[(r_index, 1 + t_index)] = FLAGGED_CLASS
        cells += [_mean_cell(per_method_group.get((method, g))) for g in groups]
        flagged = sum(1 for r in check.flagged if r.method == method)
        rows.append([method, *cells, _mean_cell(per_method.get(method)), str(flagged)])
    overall = check.mean_differences(lambda r: "all")
    rows.append(["all methods", *([""] * len(tasks)), *(_mean_cell(per_group.get(g)) for g in groups),
                 _mean_cell(overall.get("all")), str(len(check.flagged))])
    return Table(header, rows, caption=(
        f"Ours minus released (pts), per task and method; {FLAG}: beyond the tolerance of ±{check.tolerance_pts:g} "
        "pts. Means are over the tasks where both exist (their number in brackets). Empty: no released number."),
        row_classes=[""] * len(shown) + ["aggregate"], cell_classes=classes)


def _mean_cell(entry: tuple[float, int] | None) -> str:
    return "–" if entry is None else f"{entry[0]:+.2f} ({entry[1]})"


def _grouped_means(check: ReferenceCheck, label: str, key) -> Table:
    means = check.mean_differences(key)
    rows = [[str(k), f"{m:+.2f}", str(n), str(sum(1 for r in check.flagged if key(r) == k))]
            for k, (m, n) in means.items()]
    return Table([label, "Mean difference (pts)", "Compared", f"Beyond ±{check.tolerance_pts:g}"], rows,
                 caption=f"{TITLES[check.table]}: mean of ours minus released per {label.lower()}.")


def reference_blocks(checks: Sequence[ReferenceCheck], table: MainTable, figures: Mapping[str, Block]) -> list:
    """The section holding our results against the released ones, one subsection per released table;
    ``figures`` holds the ``released_scatter`` and ``released_wise`` figure blocks (or why there is none)."""
    if not checks:
        return []
    blocks: list = [Heading("Against the paper code's released numbers", anchor="released"), Paragraph(
        f"The numbers released by the paper's code base ({REPOSITORY}, commit {COMMIT}), shipped with peftlab as "
        "package data (peftlab/reference/data), held against ours under peftlab's task, method and "
        "hyper-parameter names. A released run whose name fixes a setting (lora_32: rank 32) is compared only with "
        "our run at that setting."), figures["released_scatter"]]
    for check in checks:
        blocks += [Heading(TITLES[check.table], level=3), Paragraph(
            f"Source: {check.source.cite()} (peftlab/reference/data/{check.source.file}). Tolerance "
            f"±{check.tolerance_pts:g} pts: {len(check.compared)} results compared, {len(check.flagged)} beyond it.")]
        notes = list(check.unmatched) + [f"left out of the released table: {d}" for d in check.dropped]
        if notes:
            blocks.append(BulletList(notes))
        if check.table == "vtab1k":
            blocks.append(_vtab_matrix(check, table.tasks, table.methods))
        elif check.table == "clip_robustness":
            blocks.append(_grouped_means(check, "Split", lambda r: r.split))
        else:
            blocks.append(_grouped_means(check, "Method", lambda r: r.method))
        if check.table == "clip_wise":
            blocks.append(figures["released_wise"])
        blocks.append(_long_table(check))
    return blocks


def reference_rows(check: ReferenceCheck) -> list[dict[str, Any]]:
    """The numbers behind a comparison table, unrounded (one CSV per released table)."""
    return [{"table": check.table, "task": r.task, "method": r.method, "released_method": r.released_method,
             "variant": r.variant, "split": r.split, "size": r.size, "alpha": r.alpha, "ours": r.ours,
             "ours_std": r.ours_std, "n_seeds": r.n_seeds, "released_pct": r.released_pct,
             "difference_pts": r.difference_pts, "flagged": r.flagged(check.tolerance_pts),
             "tolerance_pts": check.tolerance_pts, "released_oracle_best_epoch_on_test_pct": r.oracle_pct,
             "ours_params": r.ours_params, "released_params": r.released_params,
             "ours_hparams": format_hparams(r.ours_hparams), "released_hparams": format_hparams(r.released_hparams),
             "note": r.note, "source": check.source.cite()} for r in check.rows]
