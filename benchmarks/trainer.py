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
removing the data pipeline can gain on this machine), ``of_conventional_ceiling`` (``vs_conventional /
vs_conventional_ceiling``: the share of that ceiling reached; algebraically the same ratio as
``of_compute_limit``, so its target of 0.95 is the stricter one), ``cached_linear_probe`` and
``cached_partial_1`` (uncached / cached search time).

Times on the CPU are this process's CPU time (``time.process_time``), not wall time: the machine is shared, and
CPU time of a single-threaded run does not count other processes' load (on an idle machine the two agree). On
CUDA, wall time after a synchronize. The conventional loader uses ``num_workers=0`` so that both loops do all
their work in this process (worker processes would run the same decode on other cores, out of sight of the
clock). Throughput rows are the best of ``--repeats`` interleaved runs. ``benchmarks/gpu_check.py`` runs the same
three loops (``Workload``) for ViT-B/16 at 224 px per method family.

    .venv/bin/python benchmarks/trainer.py [--threads 1] [--device auto] [--precision bf16]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from peftlab.backbones import create_backbone
from peftlab.io import save_tensors
from peftlab.methods import attach
from peftlab.training.cache import FrozenCache
from peftlab.training.forward import DEFAULT_PRECISION, PRECISIONS, ModelRunner, autocast, precision_used
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


@dataclass(frozen=True)
class Workload:
    """What a throughput row trains: the backbone at its image size, the method, the batch, the arithmetic and
    the conventional loader's workers (0 on the CPU: all work in this process; PETL_Vision uses 4)."""

    backbone: str = BACKBONE
    image_size: int = 32
    num_classes: int = NUM_CLASSES
    method: str = METHOD
    hparams: Mapping = field(default_factory=lambda: dict(METHOD_HPARAMS))
    batch_size: int = TRAINING["batch_size"]
    precision: str = DEFAULT_PRECISION
    num_workers: int = 0
    depth: int | None = None

    def settings(self, epochs: int) -> FitSettings:
        return FitSettings.from_config(dict(TRAINING, batch_size=self.batch_size),
                                       {"lr": 1e-3, "weight_decay": 1e-4}, epochs=epochs,
                                       warmup_epochs=min(1, epochs - 1))


class Clock:
    """CPU time on the CPU, synchronised wall time on CUDA (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return time.perf_counter()
        return time.process_time()


def synthetic_images(count: int, seed: int, size: int = 32,
                     num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Class-coloured blocks plus noise (content does not matter for speed, only size and format)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, count)
    patterns = rng.uniform(0, 255, (num_classes, 3, 4, 4)).repeat(size // 4, 2).repeat(size // 4, 3)
    images = np.clip(patterns[labels] + rng.normal(0, 40, (count, 3, size, size)), 0, 255).astype(np.uint8)
    return images, labels


def write_pngs(directory: Path, images: np.ndarray, labels: np.ndarray) -> list[tuple[Path, int]]:
    from PIL import Image

    entries = []
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = directory / f"{index:05d}.png"
        Image.fromarray(image.transpose(1, 2, 0)).save(path)
        entries.append((path, int(label)))
    return entries


def fresh_model(weights: Path | None, device: torch.device, workload: Workload = Workload()) -> torch.nn.Module:
    """The workload's backbone (weights from ``weights``; random for a ``depth`` variant or None) with its method."""
    seed_everything(0)
    extra = {"depth": workload.depth} if workload.depth else {}
    model = create_backbone(workload.backbone, weights=weights if not workload.depth else None,
                            num_classes=workload.num_classes, drop_path_rate=TRAINING["drop_path"], **extra)
    return attach(model, workload.method, dict(workload.hparams)).to(device)


def conventional_images_per_s(entries, weights, device, epochs: int, normalize: bool, clock: Clock,
                              workload: Workload = Workload()) -> float:
    """PETL_Vision-style loop: PNG decode + Resize + ToTensor (+ Normalize) per image, every epoch."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    model = fresh_model(weights, device, workload)
    size = workload.image_size
    steps = [transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
             transforms.ToTensor()]
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

    loader = DataLoader(PngDataset(), batch_size=workload.batch_size, shuffle=True, num_workers=workload.num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
    config = workload.settings(epochs)
    schedule = schedule_for(config.lr, epochs, config.warmup_epochs, len(loader),
                            warmup_lr_init=config.warmup_lr_init, lr_min=config.lr_min)
    optimizer = build_adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, device=device)
    model.train()
    step = 0
    start = clock()
    for _ in range(epochs):
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with autocast(device, workload.precision):
                loss = F.cross_entropy(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            set_lr(optimizer, schedule(step))
            optimizer.step()
            step += 1
    loss.item()
    return epochs * len(entries) / (clock() - start)


def peftlab_images_per_s(images, labels, weights, device, epochs: int, normalize: bool, clock: Clock,
                         workload: Workload = Workload()) -> float:
    model = fresh_model(weights, device, workload)
    runner = ModelRunner(model, transform_for(model, normalize, device), device=device, precision=workload.precision)
    rows, targets = torch.from_numpy(images).to(device), torch.from_numpy(labels).long().to(device)
    start = clock()
    fit(runner, rows, targets, workload.settings(epochs), generator=torch.Generator().manual_seed(0))
    return epochs * len(rows) / (clock() - start)


def compute_limit_images_per_s(weights, device, steps: int, normalize: bool, clock: Clock,
                               workload: Workload = Workload()) -> float:
    """Forward + backward + AdamW step on one resident, already converted batch: no data handling at all."""
    model = fresh_model(weights, device, workload)
    transform = transform_for(model, normalize, device)
    size = workload.image_size
    batch = transform(torch.randint(0, 256, (workload.batch_size, 3, size, size), dtype=torch.uint8).to(device))
    targets = torch.randint(0, workload.num_classes, (workload.batch_size,), device=device)
    optimizer = build_adamw(model.parameters(), lr=1e-3, weight_decay=1e-4, device=device)
    model.train()
    start = clock()
    for _ in range(steps):
        with autocast(device, workload.precision):
            loss = F.cross_entropy(model(batch).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        set_lr(optimizer, 1e-3)
        optimizer.step()
    loss.item()
    return steps * len(batch) / (clock() - start)


def throughput(entries, images, labels, weights, device, *, epochs: int, repeats: int, normalize: bool,
               clock: Clock, workload: Workload = Workload()) -> tuple[dict[str, float], dict[str, float]]:
    """Images/s of the three loops on the same images and model, best of ``repeats`` interleaved runs, and on
    CUDA each loop's peak allocated GPU memory in MB (the resident images included; {} on the CPU)."""
    steps = epochs * steps_per_epoch(len(images), workload.batch_size)
    loops = {
        "conventional": lambda: conventional_images_per_s(entries, weights, device, epochs, normalize, clock,
                                                          workload),
        "peftlab": lambda: peftlab_images_per_s(images, labels, weights, device, epochs, normalize, clock, workload),
        "compute_limit": lambda: compute_limit_images_per_s(weights, device, steps, normalize, clock, workload),
    }
    best, peak = dict.fromkeys(loops, 0.0), {}
    for _ in range(repeats):
        for name, loop in loops.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            best[name] = max(best[name], loop())
            if device.type == "cuda":
                peak[name] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    return best, peak


def search_seconds(method: str, grid: list[dict], backbone: BackboneSource, splits, device, *, cached: bool,
                   epochs: int, workdir: Path, clock: Clock, precision: str = DEFAULT_PRECISION) -> float:
    training = dict(TRAINING, epochs=epochs)
    cache = FrozenCache(workdir / "cache", enabled=cached)
    session = TrainingSession(task_dir=workdir, backbone=backbone, training=training, normalize=False,
                              device=device, cache=cache, show_progress=False, precision=precision)
    for name, (images, labels) in splits.items():
        session.add_split(name, torch.from_numpy(images), torch.from_numpy(labels), NUM_CLASSES)
    start = clock()
    run_search(session, task="bench", method=method, points=grid, training=training, seed=0,
               out_dir=workdir / f"search-{method}-{'cached' if cached else 'uncached'}")
    return clock() - start


def deep_backbone_source(weights: Path, device: torch.device) -> BackboneSource:
    """A 12-block variant of the mini ViT (random weights, fixed seed) for the partial-1 row."""
    deep_state = fresh_model(weights, device, Workload(depth=12)).state_dict()
    deep_backbone = {k: v for k, v in deep_state.items() if not k.startswith("head.") and "lora" not in k}

    def deep_factory(num_classes: int, drop_path_rate: float) -> torch.nn.Module:
        model = create_backbone(BACKBONE, num_classes=num_classes, drop_path_rate=drop_path_rate, depth=12)
        model.load_state_dict(copy.deepcopy(deep_backbone), strict=False)
        return model

    return BackboneSource(f"{BACKBONE}-depth12", factory=deep_factory)


def trial_seconds(images, labels, weights, device, clock: Clock, precision: str = DEFAULT_PRECISION) -> float:
    """One lora trial (build, prototype head, 1 epoch on 1000 images, no eval) as a search runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        training = dict(TRAINING, epochs=1, warmup_epochs=0)
        session = TrainingSession(task_dir=Path(tmp), backbone=BackboneSource(BACKBONE, weights), training=training,
                                  normalize=False, device=device, cache=FrozenCache(None), show_progress=False,
                                  precision=precision)
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
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions of the throughput rows")
    parser.add_argument("--normalize", action="store_true", help="mean/std normalisation (default: /255 only)")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                        help="bf16: bf16 autocast on CUDA; fp32: float32 (the CPU always runs float32)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    configure_torch(device, args.threads, args.precision)
    workload = Workload(precision=args.precision)

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
            best, _ = throughput(entries, train_images, train_labels, weights, device,
                                 epochs=args.throughput_epochs, repeats=args.repeats, normalize=args.normalize,
                                 clock=clock, workload=workload)
            conventional, ours, limit = best["conventional"], best["peftlab"], best["compute_limit"]
            trial = trial_seconds(images, labels, weights, device, clock, args.precision)
            rows += [("conventional (PNG + PIL + DataLoader)", f"{conventional:8.0f} img/s"),
                     ("peftlab trainer (resident uint8)", f"{ours:8.0f} img/s"),
                     ("compute limit (one resident batch)", f"{limit:8.0f} img/s"),
                     (f"one {METHOD} trial, 1000 images x 1 epoch", f"{trial:8.2f} s")]
            result.update(vs_conventional=round(ours / conventional, 3), of_compute_limit=round(ours / limit, 3),
                          vs_conventional_ceiling=round(limit / conventional, 3),
                          of_conventional_ceiling=round((ours / conventional) / (limit / conventional), 3),
                          images_per_s={"peftlab": round(ours, 1), "conventional": round(conventional, 1),
                                        "compute_limit": round(limit, 1)}, trial_1000x1_s=round(trial, 3))
        if "linear" in args.parts:
            mini = BackboneSource(BACKBONE, weights)
            linear = {cached: search_seconds("linear", PAPER_GRID, mini, splits, device, cached=cached,
                                             epochs=args.epochs, workdir=workdir / f"linear-{cached}", clock=clock,
                                             precision=precision_used(device, args.precision))
                      for cached in (False, True)}
            rows += [(f"linear-probe search, {len(PAPER_GRID)} trials, {label}", f"{linear[cached]:8.2f} s")
                     for cached, label in ((False, "uncached"), (True, "cached"))]
            result["cached_linear_probe"] = round(linear[False] / linear[True], 2)
        if "partial" in args.parts:
            deep = deep_backbone_source(weights, device)
            partial_grid = [dict(point, blocks=1) for point in PAPER_GRID]
            partial = {cached: search_seconds("partial", partial_grid, deep, splits, device, cached=cached,
                                              epochs=args.epochs, workdir=workdir / f"partial-{cached}",
                                              clock=clock, precision=args.precision)
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
    result.update(device=str(device), threads=torch.get_num_threads(), clock=clock_name, epochs=args.epochs,
                  precision=precision_used(device, args.precision))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
