"""Pretraining the tiny backbone of the offline mini study on its upstream set.

The mini study has no ImageNet-21k: ``peftlab pretrain`` trains ``backbone.name`` from scratch on the
generated ``upstream`` task (``train`` split; ``val`` scored at the end) with the same trainer as fine-tuning
(AdamW, warm-up + cosine per step, resident uint8 data) plus random crop (4-pixel zero padding) and flip.

``backbone.safetensors`` is the model's full timm state dict **including the upstream head** (metadata gives the
architecture and its ``num_classes``): ``timm.create_model(name, num_classes=<upstream classes>)`` loads it
strictly, and ``create_backbone(name, weights=..., num_classes=C)`` drops that head and creates a fresh one for
a downstream task. ``card.json`` records the settings, the data's hashes, validation accuracy, time and
provenance.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from peftlab.errors import PeftlabError
from peftlab.io import save_tensors, sha256_file, write_json
from peftlab.provenance import ResourceMeter, provenance
from peftlab.training.augment import RandomCropFlip
from peftlab.training.evaluate import runner_logits, score
from peftlab.training.forward import ModelRunner, precision_used
from peftlab.training.inputs import transform_for
from peftlab.training.loop import FitSettings, fit
from peftlab.training.records import finite_or_none
from peftlab.training.session import job_precision, seed_everything

UPSTREAM_TASK = "upstream"
PRETRAIN_DEFAULTS = {"epochs": 30, "warmup_epochs": 2, "batch_size": 256, "lr": 2e-3, "weight_decay": 0.05,
                     "label_smoothing": 0.1, "seed": 0}
CROP_PADDING = 4


def pretrain_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    return dict(PRETRAIN_DEFAULTS, **(config["backbone"].get("pretrain") or {}))


def run_pretrain(config: Mapping[str, Any], *, data_dir: str | Path, out_dir: str | Path, device: torch.device,
                 show_progress: bool = True) -> dict[str, Any]:
    """Pretrain, write ``backbone.safetensors`` and ``card.json``; returns the card."""
    from peftlab.backbones import create_backbone
    from peftlab.data.shards import load_split, shard_path

    settings_in = pretrain_settings(config)
    training = config["training"]
    task_dir = Path(data_dir) / UPSTREAM_TASK
    train, val = load_split(task_dir, "train"), load_split(task_dir, "val")
    meter = ResourceMeter(device=str(device))
    seed = int(settings_in["seed"])
    seed_everything(seed)
    name = config["backbone"]["name"]
    model = create_backbone(name, weights=None, num_classes=train.num_classes,
                            drop_path_rate=float(training.get("drop_path", 0.0))).to(device)
    model.requires_grad_(True)
    precision = job_precision(training)
    runner = ModelRunner(model, transform_for(model, config["data"]["normalize"], device), device=device,
                         compile=bool(training.get("compile", False)), precision=precision)
    settings = FitSettings(lr=float(settings_in["lr"]), weight_decay=float(settings_in["weight_decay"]),
                           epochs=int(settings_in["epochs"]), warmup_epochs=int(settings_in["warmup_epochs"]),
                           batch_size=int(settings_in["batch_size"]), lr_min=float(training["lr_min"]),
                           warmup_lr_init=float(training["warmup_lr_init"]),
                           label_smoothing=float(settings_in["label_smoothing"]))
    augment_generator = torch.Generator(device=device).manual_seed(seed + 1)
    result = fit(runner, train.images.to(device), train.labels.long().to(device), settings,
                 generator=torch.Generator().manual_seed(seed), progress=f"pretrain {name}" if show_progress else None,
                 augment=RandomCropFlip(CROP_PADDING, augment_generator))
    if result.status != "ok":
        raise PeftlabError(f"backbone.pretrain: pretraining diverged at epoch {result.epochs_run}; lower "
                           "backbone.pretrain.lr")
    val_logits = runner_logits(runner, val.images.to(device), batch_size=int(training.get("eval_batch_size", 512)))
    val_score = score(val_logits, val.labels)
    out_dir = Path(out_dir)
    weights_path = out_dir / "backbone.safetensors"
    save_tensors(weights_path, model.state_dict(), metadata={
        "format": "timm-state-dict", "architecture": name, "num_classes": str(train.num_classes),
        "head": "included (upstream classes)"})
    card = {
        "backbone": name, "num_classes": train.num_classes, "image_size": int(train.images.shape[-1]),
        "weights": weights_path.name, "weights_sha256": sha256_file(weights_path),
        "head": "included: the upstream classifier; create_backbone(name, weights, num_classes=C) replaces it",
        "settings": dict(settings.as_dict(), seed=seed, crop_padding=CROP_PADDING, flip=True,
                         drop_path=training.get("drop_path", 0.0), normalize=config["data"]["normalize"]),
        "data": {split: {"path": str(shard_path(task_dir, split)), "sha256": sha256_file(shard_path(task_dir, split)),
                         "count": len(loaded)} for split, loaded in (("train", train), ("val", val))},
        "val_accuracy": finite_or_none(val_score.accuracy), "val_loss": finite_or_none(val_score.loss),
        "train_loss": finite_or_none(result.train_loss),
        "epoch_train_loss": [finite_or_none(loss) for loss in result.epoch_losses],
        **meter.read(), "provenance": provenance(str(device), precision_used(device, precision)),
    }
    write_json(out_dir / "card.json", card)
    return card
