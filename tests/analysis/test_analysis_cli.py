"""``peftlab ensembles`` and ``peftlab report`` from the command line: outputs, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from analysis_fixtures import tree_config, write_probe, write_results_tree

from peftlab.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_ensembles_and_report_commands(tmp_path, capsys):
    config = tree_config(REPO / "params.yaml")
    results = tmp_path / "results"
    write_results_tree(results, config)
    config_path = tmp_path / "params.yaml"
    config_path.write_text(yaml.safe_dump(config))

    out = tmp_path / "ens"
    assert main(["ensembles", "--task", "cells", "--config", str(config_path), "--results", str(results),
                 "--out", str(out), "--seed", "1"]) == 0
    assert "cells: 5 methods" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["seed"] == 1

    probe = write_probe(tmp_path / "probe.json", gain=12.0)  # below the lessons' precondition
    assert main(["report", "--config", str(config_path), "--results", str(results),
                 "--out", str(tmp_path / "reports"), "--probe", str(probe)]) == 0
    printed = capsys.readouterr().out
    assert "report →" in printed and "lesson1: not assessable" in printed
    assert "gain 12.0 pts" in (tmp_path / "reports" / "index.md").read_text()
    assert (tmp_path / "reports" / "index.html").is_file()


def test_unknown_task_and_missing_logits_are_one_line_errors(tmp_path, capsys):
    config = tree_config(REPO / "params.yaml")
    config_path = tmp_path / "params.yaml"
    config_path.write_text(yaml.safe_dump(config))
    args = ["--config", str(config_path), "--results", str(tmp_path / "results"), "--out", str(tmp_path / "o")]
    assert main(["ensembles", "--task", "nope", *args]) == 2
    assert capsys.readouterr().err.startswith("peftlab: error: --task nope: not in")
    assert main(["ensembles", "--task", "cells", *args]) == 2
    error = capsys.readouterr().err
    assert "at least 2 methods" in error and "logits.safetensors: logits file not found" in error
    assert len(error.strip().splitlines()) == 1
