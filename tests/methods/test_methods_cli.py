"""``peftlab methods`` and ``peftlab params``: output formats and one-line errors (exit 2) naming the bad key."""

from __future__ import annotations

import json

import pytest

from peftlab.cli import main
from peftlab.methods import list_methods


def test_methods_json_lists_every_method(capsys):
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == [spec.name for spec in list_methods()]
    lora = next(row for row in rows if row["name"] == "lora")
    assert lora["mergeable"] is True
    assert {h["name"]: h["default"] for h in lora["hparams"]}["rank"] == 8
    assert next(row for row in rows if row["name"] == "vpt_deep")["mergeable"] is False


def test_methods_text(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "lora" in out and "rank=8" in out


def test_params_json(capsys):
    argv = ["params", "--backbone", "vit_mini_patch8_32", "--method", "lora", "--set", "rank=2",
            "--num-classes", "10", "--json"]
    assert main(argv) == 0
    counts = json.loads(capsys.readouterr().out)
    assert set(counts) == {"total", "trainable", "method", "head"}
    assert counts["method"] == 6 * 2 * 2 * (64 + 64) and counts["head"] == 10 * 64 + 10
    assert counts["trainable"] == counts["method"] + counts["head"]


def test_params_text(capsys):
    assert main(["params", "--backbone", "vit_mini_patch8_32", "--method", "bitfit"]) == 0
    assert "trainable" in capsys.readouterr().out


@pytest.mark.parametrize("extra, named", [
    (["--method", "lora", "--set", "rank=-1"], "rank"),
    (["--method", "lora", "--set", "rank=abc"], "rank"),
    (["--method", "vpt_deep", "--set", "num_tokens=0"], "num_tokens"),
    (["--method", "lora", "--set", "rank"], "rank"),
    (["--method", "nope"], "nope"),
    (["--method", "partial", "--set", "blocks=9"], "blocks"),
])
def test_params_bad_input_is_one_line_exit_2(capsys, extra, named):
    assert main(["params", "--backbone", "vit_mini_patch8_32", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("peftlab: error:") and named in err


@pytest.mark.parametrize("backbone, named", [("resnet18", "VisionTransformer"), ("not_a_model", "not_a_model")])
def test_params_bad_backbone(capsys, backbone, named):
    assert main(["params", "--backbone", backbone, "--method", "lora"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err
