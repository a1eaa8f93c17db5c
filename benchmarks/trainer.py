"""Benchmark of peftlab's trainer, in one run on the same data and model (CPU here; CUDA when present).

Rows:
- ``conventional``: a torch DataLoader reading PNG files with PIL + torchvision transforms every epoch (as
  PETL_Vision and most PEFT code bases do), the same model, optimiser, schedule and batch size;
- ``peftlab``: the trainer on resident uint8 data (``peftlab.training.loop.fit``);
- ``compute limit``: forward + backward + step repeated on one resident, already converted batch;
- linear-probe and partial-1 (last block of a 12-block model) searches over the paper's shared grid
  (lr {1e-3, 1e-2} x wd {1e-4, 1e-3}, ``--epochs`` each), uncached vs the frozen-computation cache (cold: the
  cache starts empty, so computing the prefix is included).

Ends with one JSON line: ``vs_conventional`` (peftlab / conventional images/s), ``of_compute_limit`` (peftlab /
compute-limit images/s), ``vs_conventional_ceiling`` (compute-limit / conventional images/s: the most that
removing the data pipeline can gain on this machine), ``cached_linear_probe`` and ``cached_partial_1``
(uncached / cached search time).

Times on the CPU are this process's CPU time (``time.process_time``), not wall time: the machine is shared, and
CPU time of a single-threaded run does not count other processes' load (on an idle machine the two agree). On
CUDA, wall time after a synchronize. The conventional loader uses ``num_workers=0`` so that both loops do all
their work in this process (worker processes would run the same decode on other cores, out of sight of the
clock). Throughput rows are the best of ``--repeats`` interleaved runs.

    .venv/bin/python benchmarks/trainer.py [--threads 1] [--device auto]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from peftlab.backbones import create_backbone
from peftlab.io import save_tensors
from peftlab.methods import attach
from peftlab.training.cache import FrozenCache
from peftlab.training.forward import ModelRunner
from peftlab.training.inputs import transform_for
from peftlab.training.loop import FitSettings, fit, steps_per_epoch
from peftlab.training.optim import build_adamw, set_lr
from peftlab.training.schedule import schedule_for
from peftlab.training.search import run_search
from peftlab.training.session import (
    BackboneSource,
    TrainingSession,
    configure_torch,
    resolve_device,
    seed_everything,
)

PARTS = ("throughput", "linear", "partial")
BACKBONE = "vit_mini_patch8_32"
NUM_CLASSES = 10
TRAIN, VAL = 800, 200
METHOD, METHOD_HPARAMS = "lora", {"rank": 8}
PAPER_GRID = [{"lr": lr, "weight_decay": wd} for lr in (1e-3, 1e-2) for wd in (1e-4, 1e-3)]
DEFAULT_STUDY = Path(__file__).resolve().parents[1] / "params.yaml"
TRAINING_KEYS = ("epochs", "warmup_epochs", "batch_size", "eval_batch_size", "lr_min", "warmup_lr_init", "drop_path",
                 "label_smoothing", "head_init")


def study_training(config_path: Path) -> dict:
    """The default study's training settings, so the numbers describe what ``make study`` runs."""
    import yaml

    training = yaml.safe_load(config_path.read_text())["training"]
    return {key: training[key] for key in TRAINING_KEYS}


TRAINING = study_training(DEFAULT_STUDY)


class Clock:
    """CPU time on the CPU, synchronised wall time on CUDA (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return time.perf_counter()
        return time.process_time()


def synthetic_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-coloured blocks plus noise (content does not matter for speed, only size and format)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, count)
    patterns = rng.uniform(0, 255, (NUM_CLASSES, 3, 4, 4)).repeat(8, 2).repeat(8, 3)
    images = np.clip(patterns[labels] + rng.normal(0, 40, (count, 3, 32, 32)), 0, 255).astype(np.uint8)
    return images, labels


def write_pngs(directory: Path, images: np.ndarray, labels: np.ndarray) -> list[tuple[Path, int]]:
    from PIL import Image

    entries = []
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = directory / f"{index:05d}.png"
        Image.fromarray(image.transpose(1, 2, 0)).save(path)
        entries.append((path, int(label)))
    return entries


def fresh_model(weights: Path, device: torch.device, depth: int | None = None) -> torch.nn.Module:
    seed_everything(0)
    extra = {"depth": depth} if depth else {}
    model = create_backbone(BACKBONE, weights=weights if not depth else None, num_classes=NUM_CLASSES,
                            drop_path_rate=TRAINING["drop_path"], **extra)
    return attach(model, METHOD, METHOD_HPARAMS).to(device)


def settings(epochs: int) -> FitSettings:
    return FitSettings.from_config(TRAINING, {"lr": 1e-3, "weight_decay": 1e-4}, epochs=epochs,
                                   warmup_epochs=min(1, epochs - 1))


def conventional_images_per_s(entries, weights, device, epochs: int, normalize: bool, clock: Clock) -> float:
    """PETL_Vision-style loop: PNG decode + Resize + ToTensor (+ Normalize) per image, every epoch."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    model = fresh_model(weights, device)
    steps = [transforms.Resize((32, 32), interpolation=transforms.InterpolationMode.BICUBIC), transforms.ToTensor()]
    if normalize:
        steps.append(transforms.Normalize(model.pretrained_cfg["mean"], model.pretrained_cfg["std"]))
    transform = transforms.Compose(steps)

    class PngDataset(Dataset):
        def __len__(self) -> int:
            return len(entries)

        def __getitem__(self, index: int):
            path, label = entries[index]
            with Image.open(path) as image:
                return transform(image.convert("RGB")), label

    loader = DataLoader(PngDataset(), batch_size=TRAINING["batch_size"], shuffle=True, num_workers=0,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
    config = settings(epochs)
    schedule = schedule_for(config.lr, epochs, config.warmup_epochs, len(loader),
                            warmup_lr_init=config.warmup_lr_init, lr_min=config.lr_min)
    optimizer = build_adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, device=device)
    model.train()
    step = 0
    start = clock()
    for _ in range(epochs):
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            set_lr(optimizer, schedule(step))
            optimizer.step()
            step += 1
    loss.item()
    return epochs * len(entries) / (clock() - start)


def peftlab_images_per_s(images, labels, weights, device, epochs: int, normalize: bool, clock: Clock) -> float:
    model = fresh_model(weights, device)
    runner = ModelRunner(model, transform_for(model, normalize, device), device=device)
    rows, targets = torch.from_numpy(images).to(device), torch.from_numpy(labels).long().to(device)
    start = clock()
    fit(runner, rows, targets, settings(epochs), generator=torch.Generator().manual_seed(0))
    return epochs * len(rows) / (clock() - start)


def compute_limit_images_per_s(weights, device, steps: int, normalize: bool, clock: Clock) -> float:
    """Forward + backward + AdamW step on one resident, already converted batch: no data handling at all."""
    model = fresh_model(weights, device)
    transform = transform_for(model, normalize, device)
    batch = transform(torch.randint(0, 256, (TRAINING["batch_size"], 3, 32, 32), dtype=torch.uint8).to(device))
    targets = torch.randint(0, NUM_CLASSES, (TRAINING["batch_size"],), device=device)
    optimizer = build_adamw(model.parameters(), lr=1e-3, weight_decay=1e-4, device=device)
    model.train()
    start = clock()
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(batch).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        set_lr(optimizer, 1e-3)
        optimizer.step()
    loss.item()
    return steps * len(batch) / (clock() - start)


def search_seconds(method: str, grid: list[dict], backbone: BackboneSource, splits, device, *, cached: bool,
                   epochs: int, workdir: Path, clock: Clock) -> float:
    training = dict(TRAINING, epochs=epochs)
    cache = FrozenCache(workdir / "cache", enabled=cached)
    session = TrainingSession(task_dir=workdir, backbone=backbone, training=training, normalize=False,
                              device=device, cache=cache, show_progress=False)
    for name, (images, labels) in splits.items():
        session.add_split(name, torch.from_numpy(images), torch.from_numpy(labels), NUM_CLASSES)
    start = clock()
    run_search(session, task="bench", method=method, points=grid, training=training, seed=0,
               out_dir=workdir / f"search-{method}-{'cached' if cached else 'uncached'}")
    return clock() - start


def deep_backbone_source(weights: Path, device: torch.device) -> BackboneSource:
    """A 12-block variant of the mini ViT (random weights, fixed seed) for the partial-1 row."""
    deep_state = fresh_model(weights, device, depth=12).state_dict()
    deep_backbone = {k: v for k, v in deep_state.items() if not k.startswith("head.") and "lora" not in k}

    def deep_factory(num_classes: int, drop_path_rate: float) -> torch.nn.Module:
        model = create_backbone(BACKBONE, num_classes=num_classes, drop_path_rate=drop_path_rate, depth=12)
        model.load_state_dict(copy.deepcopy(deep_backbone), strict=False)
        return model

    return BackboneSource(f"{BACKBONE}-depth12", factory=deep_factory)


def trial_seconds(images, labels, weights, device, clock: Clock) -> float:
    """One lora trial (build, prototype head, 1 epoch on 1000 images, no eval) as a search runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        training = dict(TRAINING, epochs=1, warmup_epochs=0)
        session = TrainingSession(task_dir=Path(tmp), backbone=BackboneSource(BACKBONE, weights), training=training,
                                  normalize=False, device=device, cache=FrozenCache(None), show_progress=False)
        session.add_split("train", torch.from_numpy(images), torch.from_numpy(labels), NUM_CLASSES)
        hparams = {"lr": 1e-3, "weight_decay": 1e-4, **METHOD_HPARAMS}
        start = clock()
        session.run(METHOD, hparams, seed=0, train_split="train", eval_splits=[],
                    settings=FitSettings.from_config(training, hparams))
        return clock() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=TRAINING["epochs"], help="epochs per search trial")
    parser.add_argument("--throughput-epochs", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of the throughput rows")
    parser.add_argument("--normalize", action="store_true", help="mean/std normalisation (default: /255 only)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    configure_torch(device, args.threads)

    images, labels = synthetic_images(TRAIN + VAL, seed=0)
    train_images, train_labels = images[:TRAIN], labels[:TRAIN]
    splits = {"train800": (train_images, train_labels), "val200": (images[TRAIN:], labels[TRAIN:])}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        seed_everything(0)
        weights = workdir / "backbone.safetensors"
        save_tensors(weights, create_backbone(BACKBONE, num_classes=NUM_CLASSES).state_dict())
        (workdir / "png").mkdir()
        entries = write_pngs(workdir / "png", train_images, train_labels)

        clock, rows, result = Clock(device), [], {}
        if "throughput" in args.parts:
            epochs = args.throughput_epochs
            conventional, ours, limit = 0.0, 0.0, 0.0
            for _ in range(args.repeats):
                conventional = max(conventional, conventional_images_per_s(entries, weights, device, epochs,
                                                                           args.normalize, clock))
                ours = max(ours, peftlab_images_per_s(train_images, train_labels, weights, device, epochs,
                                                      args.normalize, clock))
                limit = max(limit, compute_limit_images_per_s(weights, device,
                                                              epochs * steps_per_epoch(TRAIN, 64), args.normalize,
                                                              clock))
            trial = trial_seconds(images, labels, weights, device, clock)
            rows += [("conventional (PNG + PIL + DataLoader)", f"{conventional:8.0f} img/s"),
                     ("peftlab trainer (resident uint8)", f"{ours:8.0f} img/s"),
                     ("compute limit (one resident batch)", f"{limit:8.0f} img/s"),
                     (f"one {METHOD} trial, 1000 images x 1 epoch", f"{trial:8.2f} s")]
            result.update(vs_conventional=round(ours / conventional, 3), of_compute_limit=round(ours / limit, 3),
                          vs_conventional_ceiling=round(limit / conventional, 3),
                          images_per_s={"peftlab": round(ours, 1), "conventional": round(conventional, 1),
                                        "compute_limit": round(limit, 1)}, trial_1000x1_s=round(trial, 3))
        if "linear" in args.parts:
            mini = BackboneSource(BACKBONE, weights)
            linear = {cached: search_seconds("linear", PAPER_GRID, mini, splits, device, cached=cached,
                                             epochs=args.epochs, workdir=workdir / f"linear-{cached}", clock=clock)
                      for cached in (False, True)}
            rows += [(f"linear-probe search, {len(PAPER_GRID)} trials, {label}", f"{linear[cached]:8.2f} s")
                     for cached, label in ((False, "uncached"), (True, "cached"))]
            result["cached_linear_probe"] = round(linear[False] / linear[True], 2)
        if "partial" in args.parts:
            deep = deep_backbone_source(weights, device)
            partial_grid = [dict(point, blocks=1) for point in PAPER_GRID]
            partial = {cached: search_seconds("partial", partial_grid, deep, splits, device, cached=cached,
                                              epochs=args.epochs, workdir=workdir / f"partial-{cached}",
                                              clock=clock)
                       for cached in (False, True)}
            rows += [(f"partial-1 search (12 blocks), {len(partial_grid)} trials, {label}",
                      f"{partial[cached]:8.2f} s") for cached, label in ((False, "uncached"), (True, "cached"))]
            result["cached_partial_1"] = round(partial[False] / partial[True], 2)

    width = max(len(name) for name, _ in rows)
    clock_name = "CPU time" if device.type == "cpu" else "wall time"
    print(f"device {device}, threads {torch.get_num_threads()}, {BACKBONE} + {METHOD} rank 8, batch 64, "
          f"{TRAIN} train images 32x32, search trials {args.epochs} epochs, {clock_name}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    result.update(device=str(device), threads=torch.get_num_threads(), clock=clock_name, epochs=args.epochs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
