"""Trainable counts against PETL_Vision's released results: for every (method, selected settings) of the VTAB-1k
table and of the many-shot table, peftlab's count on ViT-B/16 without the head (meta device, the method's
defaults for everything the selection does not fix) equals the table's ``trainable_params_no_head``, the paper
code's own ``inserted_parameters``."""

from __future__ import annotations

import csv
import json

import pytest

from peftlab.methods.commands import count_method_parameters
from peftlab.reference import DATA_DIR
from peftlab.reference.names import peftlab_hparams, peftlab_method

BACKBONE = "vit_base_patch16_224"
TABLES = ("petl_vision_vtab1k.csv", "petl_vision_manyshot.csv")


def distinct_settings() -> dict[tuple, int]:
    """``(method, method hyper-parameters)`` → released count, each distinct setting once (a setting whose rows
    disagreed on the count would be a contradiction in the table itself)."""
    settings: dict[tuple, int] = {}
    for table in TABLES:
        with (DATA_DIR / table).open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                method, _ = peftlab_method(row["method"])
                hparams, _ = peftlab_hparams(row["method"], json.loads(row["selected"]))
                shaping = tuple(sorted((k, v) for k, v in hparams.items() if k not in ("lr", "weight_decay")))
                count = int(row["trainable_params_no_head"])
                assert settings.setdefault((method, shaping), count) == count, (table, row["method"], shaping)
    return settings


SETTINGS = distinct_settings()


def test_the_tables_cover_the_released_methods():
    assert {method for method, _ in SETTINGS} == {
        "adaptformer", "bitfit", "convpass", "difffit", "fact_tk", "fact_tt", "full", "linear", "layernorm",
        "lora", "adapter_lora_init", "adapter_houlsby", "repadapter", "ssf", "vpt_deep", "vpt_shallow"}
    assert len(SETTINGS) > 60  # every rank, dimension, token count and scale the searches selected


@pytest.mark.parametrize("method, shaping", sorted(SETTINGS), ids=[f"{m}-{dict(s)}" for m, s in sorted(SETTINGS)])
def test_count_equals_the_released_one(method, shaping):
    counted = count_method_parameters(BACKBONE, method, dict(shaping))["method"]
    assert counted == SETTINGS[(method, shaping)]
