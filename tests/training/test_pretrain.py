"""`peftlab pretrain`: a backbone file timm and create_backbone load, and a card describing it."""

import timm
import torch
from safetensors.torch import load_file
from training_fixtures import BACKBONE, NUM_CLASSES, write_config, write_task

from peftlab.backbones import create_backbone
from peftlab.cli import main
from peftlab.io import read_json, sha256_file


def test_pretrain_writes_loadable_weights_and_a_card(tmp_path, backbone_file):
    shards = tmp_path / "shards"
    write_task(shards / "upstream", {"train": 64, "val": 32})
    config = write_config(tmp_path / "params.yaml", backbone_file)
    out = tmp_path / "models" / BACKBONE
    assert main(["pretrain", "--config", str(config), "--data", str(shards), "--out", str(out)]) == 0

    state = load_file(str(out / "backbone.safetensors"))
    strict = timm.create_model(BACKBONE, num_classes=NUM_CLASSES)
    strict.load_state_dict(state)  # head included: a complete timm state dict
    downstream = create_backbone(BACKBONE, weights=out / "backbone.safetensors", num_classes=7)
    assert downstream.get_classifier().out_features == 7
    assert torch.equal(downstream.pos_embed, state["pos_embed"])

    card = read_json(out / "card.json")
    assert card["weights_sha256"] == sha256_file(out / "backbone.safetensors")
    assert card["num_classes"] == NUM_CLASSES and 0.0 <= card["val_accuracy"] <= 1.0
    assert card["data"]["train"]["sha256"] == sha256_file(shards / "upstream" / "train.safetensors")
    assert {"settings", "time_s", "provenance"} <= set(card)
