"""The paper code's names map onto peftlab's, for every row of the released tables."""

from __future__ import annotations

import csv
import json

import pytest

from peftlab.data.tasks import VTAB_TASKS
from peftlab.errors import PeftlabError
from peftlab.methods import build_config, get_method
from peftlab.reference import DATA_DIR
from peftlab.reference.names import peftlab_hparams, peftlab_method, peftlab_task


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("table", ["petl_vision_vtab1k.csv", "petl_vision_manyshot.csv"])
def test_every_released_selection_is_a_valid_peftlab_config(table):
    for row in _rows(table):
        method, _ = peftlab_method(row["method"])
        hparams, settings = peftlab_hparams(row["method"], json.loads(row["selected"]))
        build_config(method, hparams)  # raises on an unknown key or a value out of range
        assert set(settings) <= {"training.drop_path"}
        get_method(method)


def test_vtab_task_names_map_onto_the_task_table():
    tasks = {row["task"] for row in _rows("petl_vision_vtab1k.csv")} - {"cifar_aug_norm"}
    assert len(tasks) == 19
    assert {peftlab_task(task) for task in tasks} == set(VTAB_TASKS)


def test_size_suffix_fixes_the_rank_or_dimension():
    assert peftlab_method("lora_8") == ("lora", {"rank": 8})
    assert peftlab_method("fact_tk_128") == ("fact_tk", {"dim": 128})
    assert peftlab_method("rand_h_adapter_32") == ("adapter_houlsby", {"dim": 32})
    assert peftlab_method("ln") == ("layernorm", {})


def test_unknown_names_are_errors_naming_them():
    with pytest.raises(PeftlabError, match="zero_shot"):
        peftlab_method("zero_shot")
    with pytest.raises(PeftlabError, match="imagenet_x"):
        peftlab_task("imagenet_x")
    with pytest.raises(PeftlabError, match="mystery"):
        peftlab_hparams("lora", {"mystery": 1})
