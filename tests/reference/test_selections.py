"""Published selections (``search.published``): the released choice replaces the search, completed from the
config's grid, in peftlab's names; a search job writes it as best.json without training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from peftlab.cli import main
from peftlab.config import search_points
from peftlab.errors import PeftlabError
from peftlab.methods import build_config
from peftlab.reference.selections import (
    PUBLISHED_BACKBONE,
    published_pairs,
    published_point,
    released_selection,
)
from peftlab.training.final import read_selected_hparams

PROJECT = Path(__file__).resolve().parents[2]


def _config(path: str = "config/paper.yaml") -> dict:
    return yaml.safe_load((PROJECT / path).read_text())


def test_every_released_pair_of_the_paper_study_gets_a_valid_point_from_its_grid():
    config = _config()
    used, searched = published_pairs(config)
    assert len(used) == 16 * 19  # the 16 released methods on the 19 tasks
    assert {method for _, method in searched} >= {"partial", "adapter_pfeiffer", "vqt", "hf_lora"}
    for task, method in used:
        point, released = published_point(config, task, method)
        build_config(method, point)  # a valid peftlab config
        assert point["lr"] == released.hparams["lr"] and point["weight_decay"] == released.hparams["weight_decay"]
        grid_keys = set(config["grids"].get(method) or {})
        assert grid_keys <= set(point)


def test_the_release_picks_the_searched_keys_and_the_grid_fixes_the_form():
    point, released = published_point(_config(), "dtd", "lora")
    assert released.released_method == "lora"
    assert point["form"] == "fused" and point["targets"] == "qkv"
    assert point["rank"] == released.hparams["rank"]
    assert point in search_points(_config(), "lora")  # the released point lies on the paper's grid


def test_a_grid_key_the_release_does_not_choose_must_have_one_value():
    config = _config()
    config["grids"]["lora"]["form"] = ["fused", "separate"]
    with pytest.raises(PeftlabError, match=r"grids\.lora\.form.*does not choose it"):
        published_point(config, "dtd", "lora")


def test_selections_released_for_one_backbone_are_never_used_for_another():
    """PETL_Vision's selections are of the ImageNet-21k ViT-B/16: the MAE study searches every pair, and asking it
    for published selections is an error naming the key and both backbones."""
    config = _config("config/paper-mae.yaml")
    used, searched = published_pairs(config)
    assert used == [] and len(searched) == len(config["study"]["tasks"]) * len(config["study"]["methods"])
    assert published_point(config, "dtd", "lora") is None
    config["search"]["published"] = True
    with pytest.raises(PeftlabError, match=r"search\.published.*orig_in21k.*vit_base_patch16_224\.mae"):
        published_pairs(config)
    with pytest.raises(PeftlabError, match=r"search\.published"):
        published_point(config, "dtd", "lora")


def test_methods_and_variants_without_a_release_are_searched():
    assert released_selection("dtd", "vqt") is None
    assert released_selection("digits", "lora") is None
    assert released_selection("cifar", "lora").variant == ""  # not the cifar_aug_norm run


def test_search_job_writes_the_published_selection_without_training(tmp_path):
    config = _config("config/tiny.yaml")
    config["study"]["tasks"] = ["dtd"]
    config["search"]["published"] = True
    config["backbone"]["name"] = PUBLISHED_BACKBONE  # the release's backbone
    config["data"].update(generate=None, root=str(tmp_path))  # VTAB-1k's dtd: real data, not the mini-suite
    config["manyshot"] = config["robustness"] = None
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "search" / "dtd" / "lora"
    # no shards, no weights: a published selection needs neither
    assert main(["search", "--task", "dtd", "--method", "lora", "--config", str(path), "--out", str(out)]) == 0
    best = json.loads((out / "best.json").read_text())
    released = released_selection("dtd", "lora")
    assert best["val_accuracy"] is None and best["trials"] == [] and "published selection" in best["rule"]
    assert best["published"]["released_method"] == "lora" and "245d262" in best["published"]["source"]
    assert best["selected"]["hparams"]["rank"] == released.hparams["rank"]
    assert list((out / "trials").iterdir()) == []
    assert read_selected_hparams(out / "best.json", "lora") == best["selected"]["hparams"]
