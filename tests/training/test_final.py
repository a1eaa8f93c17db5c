"""Final runs: per-seed files in the documented formats, test and shift sets scored once, seeds summarised."""

import torch
from safetensors.torch import load_file
from training_fixtures import NUM_CLASSES, TASK

from peftlab.backbones import create_backbone
from peftlab.checkpoint import load_peft
from peftlab.cli import main
from peftlab.io import read_json, write_json
from peftlab.paths import RUN_FILES
from peftlab.training.evaluate import predict_logits


def write_best(path, method="lora", hparams=None):
    hparams = hparams or {"lr": 1e-3, "weight_decay": 1e-4, "rank": 2}
    write_json(path, {"task": TASK, "method": method, "selected": {"trial_id": "x", "hparams": hparams},
                      "val_accuracy": 0.5, "rule": "test", "trials": [], "provenance": {}})
    return path


def test_train_writes_every_seed_and_a_summary(tmp_path, shards, backbone_file, config_file):
    best = write_best(tmp_path / "best.json")
    out = tmp_path / "final"
    assert main(["train", "--task", TASK, "--method", "lora", "--hparams", str(best), "--seeds", "0", "1",
                 "--config", str(config_file), "--data", str(shards), "--out", str(out)]) == 0
    for seed in (0, 1):
        run_dir = out / "runs" / f"seed{seed}"
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(RUN_FILES)
        metrics = read_json(run_dir / "metrics.json")
        assert metrics["seed"] == seed and metrics["train_split"] == "train800val200"
        assert set(metrics["accuracy"]) == {"test", "shift-sub"}
        logits = load_file(str(run_dir / "logits.safetensors"))
        assert logits["test.logits"].shape == (48, NUM_CLASSES) and logits["test.logits"].dtype == torch.float32
        assert logits["shift-sub.labels"].dtype == torch.int64
        head = load_file(str(run_dir / "head_init.safetensors"))
        assert set(head) == {"head.weight", "head.bias"} and not head["head.bias"].any()  # prototypes: bias 0
    summary = read_json(out / "metrics.json")
    assert summary["seeds"] == [0, 1]
    assert set(summary["accuracy"]["test"]) == {"mean", "std", "per_seed"}
    assert summary["accuracy"]["test"]["per_seed"] == [read_json(out / "runs" / f"seed{s}" / "metrics.json")
                                                       ["accuracy"]["test"] for s in (0, 1)]

    # The checkpoint reproduces the saved test logits on a fresh backbone.
    model = load_peft(create_backbone("vit_mini_patch8_32", weights=backbone_file, num_classes=NUM_CLASSES),
                      out / "runs" / "seed0")
    images = load_file(str(shards / TASK / "test.safetensors"))["images"]
    saved = load_file(str(out / "runs" / "seed0" / "logits.safetensors"))["test.logits"]
    assert torch.allclose(predict_logits(model, images, batch_size=64, device="cpu"), saved, atol=1e-4)


def test_a_shift_set_over_a_class_subset_is_scored_on_its_logits(tmp_path, shards, backbone_file, config_file):
    best = write_best(tmp_path / "best.json", method="linear", hparams={"lr": 1e-3, "weight_decay": 1e-4})
    out = tmp_path / "final"
    assert main(["train", "--task", TASK, "--method", "linear", "--hparams", str(best), "--seeds", "0",
                 "--config", str(config_file), "--data", str(shards), "--out", str(out), "--epochs", "1",
                 "--warmup-epochs", "0"]) == 0
    logits = load_file(str(out / "runs" / "seed0" / "logits.safetensors"))
    subset = torch.tensor([1, 3])
    predicted = subset[logits["shift-sub.logits"][:, subset].argmax(1)]
    expected = (predicted == logits["shift-sub.labels"]).double().mean().item()
    assert read_json(out / "runs" / "seed0" / "metrics.json")["accuracy"]["shift-sub"] == round(expected, 6)
    assert read_json(out / "runs" / "seed0" / "metrics.json")["epochs"] == 1


def test_a_finished_seed_is_kept_on_rerun(tmp_path, shards, backbone_file, config_file):
    best = write_best(tmp_path / "best.json", method="linear", hparams={"lr": 1e-3, "weight_decay": 1e-4})
    args = ["train", "--task", TASK, "--method", "linear", "--hparams", str(best), "--seeds", "0", "--config",
            str(config_file), "--data", str(shards), "--out", str(tmp_path / "final"), "--epochs", "1"]
    assert main(args) == 0
    run_dir = tmp_path / "final" / "runs" / "seed0"
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    assert main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before
