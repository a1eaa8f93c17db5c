"""Pretraining the tiny backbone of the offline mini study on its upstream set.

The mini study has no ImageNet-21k: ``peftlab pretrain`` trains ``backbone.name`` from scratch on the
generated ``upstream`` task (``train`` split; ``val`` scored at the end) with the same trainer as fine-tuning
(AdamW, warm-up + cosine per step, resident uint8 data), optionally with random crop and flip.

``backbone.pretrain.heads`` (``{factor: values}``, most significant first) says the upstream label is the
mixed-radix code of several factors, as the generated set's is (``peftlab.data.generate.upstream``): the model
then has one softmax head per factor (its timm head has ``sum(values)`` outputs, the heads side by side) and the
loss is their mean cross-entropy, so every image teaches every factor. Without ``heads`` the label is one class.

``backbone.safetensors`` is the model's full timm state dict **including the upstream head** (metadata gives the
architecture and its ``num_classes``): ``timm.create_model(name, num_classes=<upstream classes>)`` loads it
strictly, and ``create_backbone(name, weights=..., num_classes=C)`` drops that head and creates a fresh one for
a downstream task. ``card.json`` records the settings, the data's hashes, validation accuracy, time and
provenance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from peftlab.errors import PeftlabError
from peftlab.io import save_tensors, sha256_file, write_json
from peftlab.provenance import ResourceMeter, provenance
from peftlab.training.augment import RandomCropFlip
from peftlab.training.evaluate import runner_logits
from peftlab.training.forward import ModelRunner, precision_used
from peftlab.training.inputs import transform_for
from peftlab.training.loop import FitSettings, fit
from peftlab.training.records import finite_or_none
from peftlab.training.session import job_precision, seed_everything

UPSTREAM_TASK = "upstream"
PRETRAIN_DEFAULTS = {"epochs": 30, "warmup_epochs": 2, "batch_size": 256, "lr": 2e-3, "weight_decay": 0.05,
                     "label_smoothing": 0.1, "seed": 0, "crop_padding": 0, "flip": False, "heads": None,
                     "drop_path": None}


@dataclass(frozen=True)
class FactorHeads:
    """Upstream labels as mixed-radix codes of factors (most significant first), one softmax head per factor."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]

    @classmethod
    def from_setting(cls, heads: Mapping[str, int] | None, num_classes: int, source: str) -> FactorHeads:
        """``backbone.pretrain.heads`` checked against the upstream class count (no heads: one factor)."""
        if not heads:
            return cls(("class",), (num_classes,))
        sizes = tuple(int(size) for size in heads.values())
        if math.prod(sizes) != num_classes:
            raise PeftlabError(f"{source}: key 'backbone.pretrain.heads' {dict(heads)}: the product of the factor "
                               f"sizes is {math.prod(sizes)}, but the upstream set has {num_classes} classes")
        return cls(tuple(heads), sizes)

    @property
    def outputs(self) -> int:
        return sum(self.sizes)

    def targets(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """Each factor's value of every label code."""
        values, rest = [], codes
        for size in reversed(self.sizes):
            values.append(rest % size)
            rest = torch.div(rest, size, rounding_mode="floor")
        return values[::-1]

    def split(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(logits, list(self.sizes), dim=1)

    def loss(self, label_smoothing: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        def mean_cross_entropy(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
            losses = [F.cross_entropy(head, target, label_smoothing=label_smoothing)
                      for head, target in zip(self.split(logits), self.targets(codes), strict=True)]
            return losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        return mean_cross_entropy

    def scores(self, logits: torch.Tensor, codes: torch.Tensor) -> dict[str, Any]:
        """Per-factor accuracy, their mean (``accuracy``), all factors right (``exact``), mean loss."""
        correct = [head.argmax(dim=1) == target for head, target in zip(self.split(logits), self.targets(codes),
                                                                             strict=True)]
        by_head = {name: float(hit.float().mean()) for name, hit in zip(self.names, correct, strict=True)}
        return {"accuracy": sum(by_head.values()) / len(by_head), "by_head": by_head,
                "exact": float(torch.stack(correct).all(dim=0).float().mean()),
                "loss": float(self.loss(0.0)(logits, codes))}


def pretrain_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    return dict(PRETRAIN_DEFAULTS, **(config["backbone"].get("pretrain") or {}))


def pretrain_threads(config: Mapping[str, Any]) -> int | None:
    """CPU threads of the pretraining job: ``backbone.pretrain.threads``, else ``training.threads``. It runs before
    any other training job (they all need the backbone), so it may use every core the training jobs share."""
    return (config["backbone"].get("pretrain") or {}).get("threads") or config["training"].get("threads")


def run_pretrain(config: Mapping[str, Any], *, data_dir: str | Path, out_dir: str | Path, device: torch.device,
                 show_progress: bool = True, source: str = "config") -> dict[str, Any]:
    """Pretrain, write ``backbone.safetensors`` and ``card.json``; returns the card. ``source`` (the config
    file) names where a bad setting came from."""
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
    heads = FactorHeads.from_setting(settings_in["heads"], train.num_classes, source)
    drop_path = float(settings_in["drop_path"] if settings_in["drop_path"] is not None
                      else training.get("drop_path", 0.0))
    model = create_backbone(name, weights=None, num_classes=heads.outputs, drop_path_rate=drop_path).to(device)
    model.requires_grad_(True)
    precision = job_precision(training)
    runner = ModelRunner(model, transform_for(model, config["data"]["normalize"], device), device=device,
                         compile=bool(training.get("compile", False)), precision=precision)
    settings = FitSettings(lr=float(settings_in["lr"]), weight_decay=float(settings_in["weight_decay"]),
                           epochs=int(settings_in["epochs"]), warmup_epochs=int(settings_in["warmup_epochs"]),
                           batch_size=int(settings_in["batch_size"]), lr_min=float(training["lr_min"]),
                           warmup_lr_init=float(training["warmup_lr_init"]),
                           label_smoothing=float(settings_in["label_smoothing"]))
    crop_padding, flip = int(settings_in["crop_padding"]), bool(settings_in["flip"])
    augment = (RandomCropFlip(crop_padding, torch.Generator(device=device).manual_seed(seed + 1), flip=flip)
               if crop_padding or flip else None)
    result = fit(runner, train.images.to(device), train.labels.long().to(device), settings,
                 generator=torch.Generator().manual_seed(seed), progress=f"pretrain {name}" if show_progress else None,
                 augment=augment, loss=heads.loss(settings.label_smoothing))
    if result.status != "ok":
        raise PeftlabError(f"backbone.pretrain: pretraining diverged at epoch {result.epochs_run}; lower "
                           "backbone.pretrain.lr")
    val_logits = runner_logits(runner, val.images.to(device), batch_size=int(training.get("eval_batch_size", 512)))
    val_score = heads.scores(val_logits, val.labels.long())
    out_dir = Path(out_dir)
    weights_path = out_dir / "backbone.safetensors"
    save_tensors(weights_path, model.state_dict(), metadata={
        "format": "timm-state-dict", "architecture": name, "num_classes": str(heads.outputs),
        "head": "included (upstream classes)"})
    card = {
        "backbone": name, "num_classes": heads.outputs, "upstream_classes": train.num_classes,
        "heads": dict(zip(heads.names, heads.sizes, strict=True)), "image_size": int(train.images.shape[-1]),
        "weights": weights_path.name, "weights_sha256": sha256_file(weights_path),
        "head": "included: the upstream classifier (one block of logits per head, in order); "
                "create_backbone(name, weights, num_classes=C) replaces it",
        "settings": dict(settings.as_dict(), seed=seed, crop_padding=crop_padding, flip=flip,
                         drop_path=drop_path, normalize=config["data"]["normalize"]),
        "data": {split: {"path": str(shard_path(task_dir, split)), "sha256": sha256_file(shard_path(task_dir, split)),
                         "count": len(loaded)} for split, loaded in (("train", train), ("val", val))},
        "val_accuracy": finite_or_none(val_score["accuracy"]), "val_accuracy_by_head": val_score["by_head"],
        "val_exact_match": val_score["exact"], "val_loss": finite_or_none(val_score["loss"]),
        "train_loss": finite_or_none(result.train_loss),
        "epoch_train_loss": [finite_or_none(loss) for loss in result.epoch_losses],
        **meter.read(), "provenance": provenance(str(device), precision_used(device, precision)),
    }
    write_json(out_dir / "card.json", card)
    return card
