"""benchmarks/gpu_check.py in its --dry mode (every part on the CPU, the mini ViT, one epoch), and its agreement
rule on planted search results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_dry_run_ends_with_one_json_line_covering_every_part(gpu_check, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PEFTLAB_CACHE_DIR", str(tmp_path / "cache"))
    assert gpu_check.main(["--dry", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["dry"] and result["device"] == "cpu" and result["gpu_name"] is None
    assert result["search"]["pass"] and set(result["search"]["methods"]) == {"linear", "lora"}
    assert set(result["throughput"]) == set(gpu_check.FAMILIES)
    for family, row in result["throughput"].items():
        assert row["images_per_s"]["peftlab"] > 0 and row["images_per_s"]["conventional"] > 0, family
        assert ("of_compute_limit" in row) == (family != "linear_cached")
    assert set(result["targets"]["pass"]) == set(gpu_check.FAMILIES)
    precision = result["precision"]
    assert not precision["bf16_effective"] and precision["logit_relative_error"] == 0.0 and precision["pass"]


def search(selected, val):
    return {"lora": {"selected": selected, "val": val}}


def test_agreement_allows_a_near_tie_and_catches_a_real_disagreement(gpu_check):
    tolerance = 0.025
    same = gpu_check.compare_searches(search("a", {"a": 0.80, "b": 0.70}), search("a", {"a": 0.81, "b": 0.70}),
                                      tolerance)
    assert same["pass"] and same["methods"]["lora"]["max_val_accuracy_diff"] == 0.01
    tie = gpu_check.compare_searches(search("a", {"a": 0.80, "b": 0.79}), search("b", {"a": 0.795, "b": 0.80}),
                                     tolerance)
    assert tie["methods"]["lora"]["agree"] and tie["pass"]
    apart = gpu_check.compare_searches(search("a", {"a": 0.80, "b": 0.60}), search("b", {"a": 0.60, "b": 0.80}),
                                       tolerance)
    assert not apart["methods"]["lora"]["agree"] and not apart["pass"]
    diverged = gpu_check.compare_searches(search("a", {"a": 0.8, "b": None}), search("a", {"a": 0.8, "b": 0.5}),
                                          tolerance)
    assert not diverged["pass"]
