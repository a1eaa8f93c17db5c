"""The report's figures (matplotlib, Agg backend: no display needed), one function per figure.

Every function takes already-collected numbers and a PNG path and returns the path, or None when there is
nothing to draw (the report then says why instead of showing an empty frame). Each method keeps one colour in
every figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from peftlab.analysis.ensemble_results import TaskEnsembles
from peftlab.analysis.main_table import MainTable
from peftlab.analysis.manyshot import ShotPoint, largest_size_points
from peftlab.analysis.released import ReferenceCheck
from peftlab.analysis.wise_results import TARGET_SPLIT, CurvePoint
from peftlab.io import atomic_path

DPI = 110
ANNOTATE_MAX_METHODS = 10
PAIR_METRICS = (("agreement", "prediction agreement"), ("error_jaccard", "error overlap (Jaccard)"),
                ("confident_overlap", "confident-set overlap"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def method_colours(methods: Sequence[str]) -> dict[str, tuple]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab20")
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # the ten saturated colours first, then their light pairs
    return {method: cmap(order[index % 20]) for index, method in enumerate(methods)}


def _wise_axes(ax, title: str, legend_size: float) -> None:
    """A WiSE-FT panel's frame: target accuracy along x, mean shift accuracy along y."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("target (test) accuracy (%)", fontsize=8)
    ax.set_ylabel("mean shift accuracy (%)", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=legend_size)


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def _grid(count: int, width: float = 4.2, height: float = 3.4, max_cols: int = 4):
    plt = _pyplot()
    cols = min(count, max_cols)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.axis("off")
    return fig, flat[:count]


def _scatter_by_params(ax, entries: Sequence[tuple[str, float, float]], colours: Mapping[str, tuple]) -> None:
    """Points at (parameters, accuracy %); methods training no parameter besides the head (the linear probe)
    cannot sit on a log axis and are drawn as a dotted horizontal line instead."""
    for method, params, accuracy in entries:
        if params > 0:
            ax.scatter([params], [accuracy], color=colours.get(method), s=36, zorder=3)
            ax.annotate(method, (params, accuracy), textcoords="offset points", xytext=(4, 3), fontsize=7)
    for method, params, accuracy in entries:
        if params <= 0:
            ax.axhline(accuracy, linestyle=":", color=colours.get(method), linewidth=1.2)
            ax.annotate(f"{method} (head only)", (0.01, accuracy), xycoords=("axes fraction", "data"),
                        textcoords="offset points", xytext=(0, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters without head (log scale)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)


def accuracy_vs_params(table: MainTable, colours: Mapping[str, tuple], path: Path) -> Path | None:
    """Mean of group means against trainable parameters without head (methods with every task only)."""
    entries = [(m, table.params(m) or 0.0, 100 * table.mean_of_group_means(m)) for m in table.complete_methods()]
    if not any(params > 0 for _, params, _ in entries):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    _scatter_by_params(ax, entries, colours)
    ax.set_ylabel("test accuracy, mean of group means (%)", fontsize=8)
    return _save(fig, path)


def pair_matrix(ensembles: Mapping[str, TaskEnsembles], methods: Sequence[str], key: str) -> np.ndarray:
    """Method × method mean over tasks of a pairwise statistic; the diagonal holds the seed-to-seed baseline."""
    index = {m: i for i, m in enumerate(methods)}
    sums, counts = np.zeros((len(methods),) * 2), np.zeros((len(methods),) * 2)
    for task_ensembles in ensembles.values():
        for row in task_ensembles.agreement:
            a, b, value = row["method_a"], row["method_b"], row.get(key)
            if a not in index or b not in index or value is None:
                continue
            for i, j in {(index[a], index[b]), (index[b], index[a])}:
                sums[i, j] += value
                counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def pairwise_heatmaps(ensembles: Mapping[str, TaskEnsembles], methods: Sequence[str], path: Path) -> Path | None:
    present = [m for m in methods if any(m in e.summary["methods"] for e in ensembles.values())]
    if len(present) < 2:
        return None
    plt = _pyplot()
    size = max(4.0, 0.32 * len(present) + 2.5)
    fig, axes = plt.subplots(1, len(PAIR_METRICS), figsize=(size * len(PAIR_METRICS), size), layout="constrained")
    for ax, (key, title) in zip(axes, PAIR_METRICS, strict=True):
        matrix = pair_matrix(ensembles, present, key)
        image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(present)), present, rotation=90, fontsize=7)
        ax.set_yticks(range(len(present)), present, fontsize=7)
        ax.set_title(f"{title}\n(mean over {len(ensembles)} tasks; diagonal: two seeds)", fontsize=9)
        if len(present) <= ANNOTATE_MAX_METHODS:
            for (i, j), value in np.ndenumerate(matrix):
                if not np.isnan(value):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if value < 0.6 else "black")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def ensemble_gains(ensembles: Mapping[str, TaskEnsembles], path: Path) -> Path | None:
    """Per task: top-k ensemble (chosen on validation) minus the best single method (chosen on validation)."""
    tasks = [t for t, e in ensembles.items() if e.summary.get("top_k_by_val")
             and e.summary["top_k_by_val"]["logits"]["gain_over_best_single_by_val"] is not None]
    if not tasks:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(tasks) + 2), 4.2), layout="constrained")
    x = np.arange(len(tasks))
    width = 0.27
    for offset, (combine, label) in enumerate((("logits", "logit average"), ("probs", "probability average"),
                                               ("oracle", "oracle of the top-k (upper bound)"))):
        gains = [100 * ensembles[t].summary["top_k_by_val"][combine]["gain_over_best_single_by_val"] for t in tasks]
        ax.bar(x + (offset - 1) * width, gains, width, label=label, alpha=0.55 if combine == "oracle" else 1.0,
               hatch="//" if combine == "oracle" else None)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, tasks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy gain over best single method (pts)")
    ax.set_title("top-k ensemble (methods chosen on validation) vs best single method (chosen on validation)",
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def wise_curves(curves: Mapping[tuple[str, str], Sequence[CurvePoint]], colours: Mapping[str, tuple],
                path: Path) -> Path | None:
    """Target accuracy (x) against mean shift accuracy (y) along α, per task; α = 0 ringed, α = 1 filled."""
    tasks = sorted({task for task, _ in curves})
    if not tasks:
        return None
    fig, axes = _grid(len(tasks), width=4.6, height=4.0, max_cols=3)
    for ax, task in zip(axes, tasks, strict=True):
        for (curve_task, method), points in curves.items():
            if curve_task != task:
                continue
            xs, ys = [100 * p.target for p in points], [100 * p.shift for p in points]
            style = "--" if points[0].interpolation == "outputs" else "-"
            label = method + (" (output space)" if style == "--" else "")
            ax.plot(xs, ys, style, color=colours.get(method), marker=".", markersize=4, linewidth=1.3, label=label)
            ax.scatter([xs[0]], [ys[0]], facecolors="none", edgecolors=colours.get(method), s=50, zorder=3)
            ax.scatter([xs[-1]], [ys[-1]], color=colours.get(method), s=30, zorder=3)
        _wise_axes(ax, f"{task}: WiSE-FT (ring α=0, dot α=1)", legend_size=6.5)
    return _save(fig, path)


def manyshot_curves(points: Sequence[ShotPoint], colours: Mapping[str, tuple], path: Path) -> Path | None:
    tasks = sorted({p.task for p in points})
    if not tasks:
        return None
    fig, axes = _grid(len(tasks), width=4.6, height=3.6, max_cols=3)
    for ax, task in zip(axes, tasks, strict=True):
        for method in sorted({p.method for p in points if p.task == task}):
            series = sorted((p for p in points if p.task == task and p.method == method), key=lambda p: p.size)
            ax.errorbar([p.size for p in series], [100 * p.accuracy_mean for p in series],
                        yerr=[100 * p.accuracy_std for p in series], marker="o", markersize=3, capsize=2,
                        color=colours.get(method), label=method, linewidth=1.2)
        ax.set_xscale("log")
        ax.set_title(f"{task}: accuracy vs training images", fontsize=9)
        ax.set_xlabel("training images (log scale)", fontsize=8)
        ax.set_ylabel("test accuracy (%)", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def manyshot_params(points: Sequence[ShotPoint], colours: Mapping[str, tuple], path: Path) -> Path | None:
    largest = largest_size_points(points)
    tasks = sorted(t for t, ps in largest.items() if any(p.method_params > 0 for p in ps))
    if not tasks:
        return None
    fig, axes = _grid(len(tasks), width=4.6, height=3.6, max_cols=3)
    for ax, task in zip(axes, tasks, strict=True):
        _scatter_by_params(ax, [(p.method, p.method_params, 100 * p.accuracy_mean) for p in largest[task]], colours)
        ax.set_title(f"{task}: at {largest[task][0].size} training images", fontsize=9)
        ax.set_ylabel("test accuracy (%)", fontsize=8)
    return _save(fig, path)


def released_scatter(checks: Sequence[ReferenceCheck], colours: Mapping[str, tuple], path: Path) -> Path | None:
    """Ours (y) against released (x) per compared result, one panel per released table; the band is ± tolerance."""
    panels = [c for c in checks if c.table != "clip_wise" and c.compared]
    if not panels:
        return None
    fig, axes = _grid(len(panels), width=4.8, height=4.4, max_cols=3)
    for ax, check in zip(axes, panels, strict=True):
        rows = check.compared
        low = min(min(r.released_pct, 100 * r.ours) for r in rows) - 2
        high = max(max(r.released_pct, 100 * r.ours) for r in rows) + 2
        line = np.array([low, high])
        ax.fill_between(line, line - check.tolerance_pts, line + check.tolerance_pts, color="0.9", zorder=0,
                        label=f"± {check.tolerance_pts:g} pts")
        ax.plot(line, line, color="0.4", linewidth=0.8)
        for method in dict.fromkeys(r.method for r in rows):
            mine = [r for r in rows if r.method == method]
            ax.scatter([r.released_pct for r in mine], [100 * r.ours for r in mine], s=14, label=method,
                       color=colours.get(method, "0.55"), edgecolors=["red" if r.flagged(check.tolerance_pts) else "none"
                                                              for r in mine], zorder=3)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_title(f"{check.table}: ours vs released ({len(rows)} results, {len(check.flagged)} flagged)",
                     fontsize=9)
        ax.set_xlabel("released (%)", fontsize=8)
        ax.set_ylabel("ours (%)", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def released_wise(check: ReferenceCheck | None, colours: Mapping[str, tuple], path: Path) -> Path | None:
    """Per method: our WiSE-FT curve (solid) and the released one (dashed), target against mean shift accuracy
    over the test sets both have, at the α both have."""
    if check is None:
        return None
    curves: dict[str, dict[float, list]] = {}
    for row in check.compared:
        curves.setdefault(row.method, {}).setdefault(row.alpha, []).append(row)
    drawable = {}
    for method, by_alpha in curves.items():
        points = []
        for _, rows in sorted(by_alpha.items()):
            target = [r for r in rows if r.split == TARGET_SPLIT]
            shifts = [r for r in rows if r.split != TARGET_SPLIT]
            if target and shifts:
                points.append((100 * target[0].ours, float(np.mean([100 * r.ours for r in shifts])),
                               target[0].released_pct, float(np.mean([r.released_pct for r in shifts]))))
        if len(points) > 1:
            drawable[method] = np.array(points)
    if not drawable:
        return None
    fig, axes = _grid(len(drawable), width=4.0, height=3.6, max_cols=4)
    for ax, (method, points) in zip(axes, drawable.items(), strict=True):
        colour = colours.get(method)
        ax.plot(points[:, 0], points[:, 1], "-", marker=".", color=colour, label="ours")
        ax.plot(points[:, 2], points[:, 3], "--", marker=".", color=colour, alpha=0.6, label="released")
        for x, y in ((0, 1), (2, 3)):
            ax.scatter([points[0, x]], [points[0, y]], facecolors="none", edgecolors=colour, s=50, zorder=3)
        _wise_axes(ax, f"{method} (ring: α = 0)", legend_size=7)
    return _save(fig, path)
