"""``run_robustness`` and ``peftlab robustness`` on a finished run written to disk (tiny backbone, tiny shards)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from peftlab.analysis.robustness import run_robustness
from peftlab.errors import PeftlabError

BACKBONE = "vit_mini_patch8_32"
NUM_CLASSES = 4
SUBSET = (1, 3)


def _shards(directory):
    from peftlab.data.shards import write_shard

    rng = np.random.default_rng(0)
    splits = {"test": rng.integers(0, NUM_CLASSES, 24), "shift-half": rng.choice(SUBSET, 16)}
    manifest = {"task": "toy", "group": "Natural", "num_classes": NUM_CLASSES, "image_size": 32, "splits": {}}
    for name, labels in splits.items():
        images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
        write_shard(directory / f"{name}.safetensors", images, labels, task="toy", split=name,
                    num_classes=NUM_CLASSES, class_subset=SUBSET if name.startswith("shift") else None)
        manifest["splits"][name] = {"count": len(labels)}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _finished_run(seed_dir, weights, method, values, recorded_shift=0.0):
    """A run as the final step leaves it; returns (fine-tuned model, zero-shot model) for reference logits."""
    from peftlab.backbones import create_backbone
    from peftlab.checkpoint import save_peft
    from peftlab.io import save_tensors
    from peftlab.methods import attach, trainable_state_dict

    generator = torch.Generator().manual_seed(3)
    zero = create_backbone(BACKBONE, weights, num_classes=NUM_CLASSES).eval()
    head = {"head.weight": torch.randn(NUM_CLASSES, 64, generator=generator),
            "head.bias": torch.randn(NUM_CLASSES, generator=generator)}
    with torch.no_grad():
        zero.head.weight.copy_(head["head.weight"])
        zero.head.bias.copy_(head["head.bias"])
    model = attach(create_backbone(BACKBONE, weights, num_classes=NUM_CLASSES), method, values).eval()
    with torch.no_grad():
        for name, tensor in trainable_state_dict(model).items():
            tensor.copy_(head[name] if name in head else tensor)
            tensor.add_(0.3 * torch.randn(tensor.shape, generator=generator))
    save_peft(model, seed_dir)
    save_tensors(seed_dir / "head_init.safetensors", head)
    save_tensors(seed_dir / "logits.safetensors", {"test.logits": torch.zeros(1, NUM_CLASSES),
                                                   "test.labels": torch.zeros(1, dtype=torch.long)})
    _write_metrics(seed_dir, accuracy=None)
    return model, zero


def _write_metrics(seed_dir, accuracy):
    """``metrics.json`` as a finished run writes it last: the recorded test accuracy and every file's sha256."""
    from peftlab.io import sha256_file
    from peftlab.paths import RUN_FILES

    files = {name: sha256_file(seed_dir / name) for name in RUN_FILES if name != "metrics.json"}
    (seed_dir / "metrics.json").write_text(json.dumps({"accuracy": {"test": accuracy}, "files_sha256": files}))


def _accuracy(model, split):
    from peftlab.training.evaluate import predict_logits, score

    logits = predict_logits(model, split.images, batch_size=64, device="cpu")
    return score(logits, split.labels, split.class_subset).accuracy


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from peftlab.backbones import create_backbone
    from peftlab.io import save_tensors

    root = tmp_path_factory.mktemp("robust")
    torch.manual_seed(0)
    weights = root / "backbone.safetensors"
    save_tensors(weights, create_backbone(BACKBONE).state_dict())
    shards = root / "shards" / "toy"
    shards.mkdir(parents=True)
    _shards(shards)
    config = {"study": {"name": "toy", "seeds": [0], "tasks": ["toy"], "methods": ["lora", "vpt_shallow"]},
              "data": {"root": "data/raw", "image_size": 32, "normalize": False},
              "backbone": {"name": BACKBONE, "weights": str(weights)},
              "training": {"epochs": 1, "warmup_epochs": 0, "batch_size": 8, "eval_batch_size": 64, "lr_min": 0.0,
                           "warmup_lr_init": 0.0, "drop_path": 0.0, "label_smoothing": 0.0, "threads": 1},
              "search": {"lr": [0.001], "weight_decay": [0.0]}, "grids": {},
              "robustness": {"tasks": ["toy"], "methods": ["lora", "vpt_shallow"], "alphas": [0.0, 0.5, 1.0]}}
    return root, weights, shards, config


def _by(rows, alpha, split):
    return next(r for r in rows if r["alpha"] == alpha and r["split"] == split)


def test_lora_rows_start_at_the_zero_shot_model_and_end_at_the_fine_tuned_model(study):
    from peftlab.data.shards import load_split

    root, weights, shards, config = study
    runs = root / "lora" / "runs"
    model, zero = _finished_run(runs / "seed0", weights, "lora", {"rank": 2})
    test, shift = load_split(shards, "test"), load_split(shards, "shift-half")
    _write_metrics(runs / "seed0", _accuracy(model, test))
    out = root / "wise-lora.csv"
    rows = run_robustness("toy", "lora", config, runs, out, shards_dir=shards, device="cpu")
    assert len(rows) == 3 * 2
    assert _by(rows, 0.0, "test")["accuracy"] == _accuracy(zero, test)
    assert _by(rows, 0.0, "shift-half")["accuracy"] == _accuracy(zero, shift)
    assert _by(rows, 1.0, "test")["accuracy"] == _accuracy(model, test)
    assert _by(rows, 1.0, "shift-half")["accuracy"] == _accuracy(model, shift)
    assert _by(rows, 1.0, "shift-half")["n"] == 16
    assert {r["interpolation"] for r in rows} == {"weights"} and {r["note"] for r in rows} == {""}
    with out.open() as handle:
        written = list(csv.DictReader(handle))
    assert list(written[0])[:6] == ["task", "method", "seed", "alpha", "split", "accuracy"]
    assert written[0]["head_source"] == "head_init"


def test_a_checkpoint_that_does_not_reproduce_its_run_is_flagged_on_every_row(study):
    root, weights, shards, config = study
    runs = root / "lora-bad" / "runs"
    _finished_run(runs / "seed0", weights, "lora", {"rank": 2})
    _write_metrics(runs / "seed0", 2.0)
    rows = run_robustness("toy", "lora", config, runs, root / "wise-bad.csv", shards_dir=shards, device="cpu")
    assert all("does not reproduce its run" in r["note"] for r in rows)


def test_vpt_rows_use_the_labelled_output_space_fallback(study):
    from peftlab.data.shards import load_split

    root, weights, shards, config = study
    runs = root / "vpt" / "runs"
    model, zero = _finished_run(runs / "seed0", weights, "vpt_shallow", {"num_tokens": 2})
    rows = run_robustness("toy", "vpt_shallow", config, runs, root / "wise-vpt.csv", shards_dir=shards, device="cpu")
    test = load_split(shards, "test")
    assert {r["interpolation"] for r in rows} == {"outputs"}
    assert all("not WiSE-FT" in r["note"] for r in rows)
    assert _by(rows, 0.0, "test")["accuracy"] == _accuracy(zero, test)
    assert _by(rows, 1.0, "test")["accuracy"] == _accuracy(model, test)


def test_missing_run_files_and_a_foreign_zero_shot_head_are_errors_naming_the_file(study):
    from peftlab.io import save_tensors

    root, weights, shards, config = study
    runs = root / "broken" / "runs"
    _finished_run(runs / "seed0", weights, "lora", {"rank": 2})
    (runs / "seed0" / "head_init.safetensors").unlink()
    with pytest.raises(PeftlabError, match=r"seed0/head_init.safetensors: not found"):
        run_robustness("toy", "lora", config, runs, root / "x.csv", shards_dir=shards, device="cpu")
    _finished_run(runs / "seed0", weights, "lora", {"rank": 2})
    checkpoint = runs / "seed0" / "peft.safetensors"
    data = bytearray(checkpoint.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a tensor: same size, same header, another model
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(PeftlabError, match=r"seed0/peft.safetensors: content does not match the sha256"):
        run_robustness("toy", "lora", config, runs, root / "x.csv", shards_dir=shards, device="cpu")
    assert not (root / "x.csv").exists()
    _finished_run(runs / "seed0", weights, "lora", {"rank": 2})
    head = root / "clip_head.safetensors"
    save_tensors(head, {"head.weight": torch.zeros(NUM_CLASSES, 32), "head.bias": torch.zeros(NUM_CLASSES)})
    config = dict(config, robustness=dict(config["robustness"], zero_shot_head=str(head)))
    with pytest.raises(PeftlabError, match=rf"{head}: head.weight \[4, 32\].*expected \[4, 64\]"):
        run_robustness("toy", "lora", config, runs, root / "x.csv", shards_dir=shards, device="cpu")


def test_cli_writes_the_table_and_rejects_a_method_outside_the_robustness_study(study, capsys):
    from peftlab.cli import main

    root, weights, shards, config = study
    runs = root / "cli" / "runs"
    _finished_run(runs / "seed0", weights, "lora", {"rank": 2})
    config_path = root / "params.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = root / "cli-wise.csv"
    common = ["--task", "toy", "--config", str(config_path), "--runs", str(runs), "--out", str(out),
              "--data", str(root / "shards"), "--device", "cpu"]
    assert main(["robustness", "--method", "lora", *common]) == 0
    assert out.is_file() and "α=1" in capsys.readouterr().out
    assert main(["robustness", "--method", "bitfit", *common]) == 2
    error = capsys.readouterr().err
    assert error.startswith("peftlab: error: --method bitfit: not in") and "robustness.methods" in error
