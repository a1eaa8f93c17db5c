"""`peftlab probe`: frozen class-token features vs the same architecture at random init vs raw pixels."""

import json

import numpy as np
import pytest
import torch
from training_fixtures import BACKBONE, TASK, write_config, write_task

from peftlab.cli import main
from peftlab.data.probe import logistic_probe
from peftlab.io import read_json, save_tensors
from peftlab.training.probe import COLUMNS, class_token_features, probe_models, probed_test_indices


def test_logistic_probe_reads_out_a_linear_label_and_not_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    signal = np.eye(4)[labels] * 3 + rng.normal(0, 1, (400, 4))
    noise = rng.normal(0, 1, (400, 4))
    scores = logistic_probe(signal[:300], labels[:300], {"signal": (signal[300:], labels[300:])})
    chance = logistic_probe(noise[:300], labels[:300], {"noise": (noise[300:], labels[300:])})
    assert scores["signal"] > 0.9 and chance["noise"] < 0.45


def test_probed_test_images_are_all_images_up_to_the_cap_then_a_fixed_sorted_sample():
    assert torch.equal(probed_test_indices(5, cap=8), torch.arange(5))
    chosen = probed_test_indices(100, cap=10)
    assert len(chosen) == len(set(chosen.tolist())) == 10 and torch.equal(chosen, chosen.sort().values)
    assert 0 <= int(chosen.min()) and int(chosen.max()) < 100 and not torch.equal(chosen, torch.arange(10))
    assert torch.equal(chosen, probed_test_indices(100, cap=10))


def test_features_are_the_class_token_after_the_final_norm():
    model = probe_models(BACKBONE, None, torch.device("cpu"))["random_init"]
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    features = class_token_features(model, images, normalize=False, device=torch.device("cpu"), batch_size=2)
    with torch.no_grad():  # a hand-written forward: patch tokens, class token, position, blocks, norm
        x = model.patch_embed(images.float() / 255)
        x = torch.cat([model.cls_token.expand(len(x), -1, -1), x], dim=1) + model.pos_embed
        for block in model.blocks:
            x = block(x)
        expected = model.norm(x)[:, 0]
    assert np.allclose(features, expected.numpy(), atol=1e-5)


@pytest.fixture
def probe_shards(tmp_path):
    root = tmp_path / "shards"
    write_task(root / TASK, {"train800val200": 96, "test": 40})
    return root


def test_probe_writes_the_contract_file(tmp_path, probe_shards, backbone_file):
    config = write_config(tmp_path / "params.yaml", backbone_file)
    out = tmp_path / "models" / BACKBONE / "probe.json"
    assert main(["probe", "--config", str(config), "--data", str(probe_shards), "--out", str(out),
                 "--max-test-images", "30"]) == 0
    probe = read_json(out)
    accuracy = probe["tasks"][TASK]
    assert set(accuracy) == set(COLUMNS) and all(0 <= value <= 100 for value in accuracy.values())
    assert accuracy["raw_pixels"] > 90  # the toy task is a coarse colour pattern per class: linear in pixels
    assert probe["mean"] == accuracy  # one task: the mean is that task
    assert probe["gain_vs_random_init"] == pytest.approx(accuracy["pretrained"] - accuracy["random_init"], abs=0.011)
    assert probe["counts"][TASK] == {"train800val200": 96, "test": 30, "test_available": 40}
    assert probe["settings"]["test_images_per_task"]["max"] == 30
    assert {"provenance", "weights_sha256", "time_s"} <= set(probe)


def test_a_backbone_that_is_the_random_init_scores_the_same_as_random_init(tmp_path, probe_shards):
    """The pretrained and random-init columns go through the same code: equal weights give equal accuracy."""
    same = probe_models(BACKBONE, None, torch.device("cpu"))["random_init"]
    weights = tmp_path / "random.safetensors"
    save_tensors(weights, same.state_dict())
    config = write_config(tmp_path / "params.yaml", weights)
    out = tmp_path / "probe.json"
    assert main(["probe", "--config", str(config), "--data", str(probe_shards), "--out", str(out)]) == 0
    probe = json.loads(out.read_text())
    assert probe["tasks"][TASK]["pretrained"] == probe["tasks"][TASK]["random_init"]
    assert probe["gain_vs_random_init"] == 0


def test_a_missing_shard_is_one_error_line_and_no_file(tmp_path, probe_shards, backbone_file, capsys):
    config = write_config(tmp_path / "params.yaml", backbone_file)
    out = tmp_path / "probe.json"
    assert main(["probe", "--config", str(config), "--data", str(probe_shards), "--out", str(out),
                 "--tasks", TASK, "absent"]) == 2
    assert "absent/train800val200.safetensors" in capsys.readouterr().err and not out.exists()
