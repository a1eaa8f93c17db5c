"""Reading the written ensemble analyses back (``results/ensembles/<task>/``), for the report.

Kept apart from ``ensembles`` (which computes them) the way ``wise_results`` is kept apart from ``robustness``:
the report needs the tables, not the computation.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.analysis.inputs import Notices, result_path
from peftlab.errors import PeftlabError
from peftlab.io import read_json
from peftlab.paths import ENSEMBLES_DIR


@dataclass(frozen=True)
class TaskEnsembles:
    """One task's written ensemble analysis."""

    task: str
    summary: dict[str, Any]
    agreement: list[dict[str, Any]]
    ensembles: list[dict[str, Any]]

    def method_pairs(self) -> list[dict[str, Any]]:
        """Agreement rows between two methods (not the seed-to-seed baseline rows)."""
        return [row for row in self.agreement if row["method_a"] != row["method_b"]]


def _read_table(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise PeftlabError(f"{path}: ensemble table not found")
    with path.open(newline="", encoding="utf-8") as handle:
        return [{key: _parse_cell(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _parse_cell(value: str) -> Any:
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def read_task_ensembles(directory: str | Path, task: str) -> TaskEnsembles:
    directory = Path(directory)
    summary = read_json(directory / "summary.json", what="ensemble summary")
    return TaskEnsembles(task, summary, _read_table(directory / "agreement.csv"),
                         _read_table(directory / "ensembles.csv"))


def collect_ensembles(config: Mapping[str, Any], results: str | Path,
                      notices: Notices | None = None) -> dict[str, TaskEnsembles]:
    """The written analyses of every study task; a task without one becomes a notice."""
    notices = notices if notices is not None else Notices()
    found = {}
    for task in config["study"]["tasks"]:
        directory = result_path(results, ENSEMBLES_DIR, task=task)
        if not (directory / "summary.json").is_file():
            notices.add("ensembles", f"{directory / 'summary.json'} missing: no ensemble analysis for {task}")
            continue
        found[task] = read_task_ensembles(directory, task)
        for warning in found[task].summary.get("warnings", []):
            notices.add(warning.get("scope", f"ensembles/{task}"), warning.get("message", str(warning)))
    return found
