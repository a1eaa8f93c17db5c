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


def _pretrain(tmp_path, shards, backbone_file, name: str, **pretrain) -> dict:
    settings = {"epochs": 1, "warmup_epochs": 0, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.05,
                "label_smoothing": 0.1, "seed": 0, **pretrain}
    config = write_config(tmp_path / f"{name}.yaml", backbone_file,
                          backbone={"name": BACKBONE, "weights": None, "pretrain": settings})
    out = tmp_path / name
    assert main(["pretrain", "--config", str(config), "--data", str(shards), "--out", str(out)]) == 0
    return read_json(out / "card.json")


def test_pretraining_learns_a_learnable_upstream_set(tmp_path, backbone_file):
    """Four classes told apart by a coarse colour pattern under noise: 100 steps of 16 images from scratch."""
    shards = tmp_path / "shards"
    write_task(shards / "upstream", {"train": 320, "val": 80}, seed=3)
    card = _pretrain(tmp_path, shards, backbone_file, "learns", epochs=5, lr=1e-3, batch_size=16)
    losses = card["epoch_train_loss"]
    assert card["val_accuracy"] >= 0.75  # chance: 0.25
    assert losses[-1] < losses[0] - 0.3


def test_pretraining_is_deterministic_for_a_seed(tmp_path, backbone_file):
    shards = tmp_path / "shards"
    write_task(shards / "upstream", {"train": 64, "val": 32})
    first, again = (_pretrain(tmp_path, shards, backbone_file, name, epochs=2, crop_padding=4, flip=True)
                    for name in ("first", "again"))
    other = _pretrain(tmp_path, shards, backbone_file, "other", epochs=2, crop_padding=4, flip=True, seed=1)
    assert first["weights_sha256"] == again["weights_sha256"] != other["weights_sha256"]
    assert first["epoch_train_loss"] == again["epoch_train_loss"] and first["val_loss"] == again["val_loss"]
    assert first["settings"] == again["settings"] and first["settings"]["crop_padding"] == 4


def test_factor_heads_decode_the_generators_label_codes():
    from peftlab.data.generate import upstream
    from peftlab.training.pretrain import FactorHeads

    heads = FactorHeads.from_setting(dict(upstream.FACTORS), upstream.NUM_CLASSES, "params.yaml")
    codes = torch.randint(0, upstream.NUM_CLASSES, (500,))
    expected = upstream.decode(codes.numpy())
    for name, values in zip(heads.names, heads.targets(codes), strict=True):
        assert values.tolist() == expected[name].tolist()
    logits = torch.randn(500, heads.outputs)
    by_hand = sum(torch.nn.functional.cross_entropy(logits[:, start:start + size], torch.from_numpy(expected[name]))
                  for name, start, size in (("texture", 0, 9), ("shape", 9, 8), ("heading", 17, 8), ("count", 25, 3),
                                            ("position", 28, 9))) / 5
    assert torch.allclose(heads.loss(0.0)(logits, codes), by_hand)


def test_pretraining_with_factor_heads_scores_each_head(tmp_path, backbone_file):
    shards = tmp_path / "shards"
    write_task(shards / "upstream", {"train": 64, "val": 32})  # 4 classes = 2 × 2 factors
    card = _pretrain(tmp_path, shards, backbone_file, "heads", heads={"left": 2, "right": 2})
    assert card["heads"] == {"left": 2, "right": 2} and card["num_classes"] == 4 and card["upstream_classes"] == 4
    by_head = card["val_accuracy_by_head"]
    assert set(by_head) == {"left", "right"}
    assert abs(card["val_accuracy"] - (by_head["left"] + by_head["right"]) / 2) < 1e-9
    assert card["val_exact_match"] <= min(by_head.values())


def test_heads_that_do_not_multiply_to_the_class_count_are_an_error(tmp_path, backbone_file, capsys):
    shards = tmp_path / "shards"
    write_task(shards / "upstream", {"train": 64, "val": 32})
    config = write_config(tmp_path / "bad.yaml", backbone_file, backbone={
        "name": BACKBONE, "weights": None, "pretrain": {"epochs": 1, "heads": {"left": 2, "right": 3}}})
    out = tmp_path / "out"
    assert main(["pretrain", "--config", str(config), "--data", str(shards), "--out", str(out)]) == 2
    assert "bad.yaml: key 'backbone.pretrain.heads'" in capsys.readouterr().err and not out.exists()
