"""One-shot check of peftlab's CUDA paths on a machine with a GPU; ends with one JSON line.

1. search: the same tiny search (the mini ViT on a synthetic 10-class task, linear probe and LoRA over the paper's
   shared lr x weight-decay grid) on CUDA and on the CPU, both float32. Each trial's validation accuracy must
   agree within ACCURACY_TOLERANCE, and the selections must agree (or the CUDA selection must score within the
   tolerance of the CPU's best on the CPU: a near tie).
2. throughput: ViT-B/16 at 224 px per method family (LoRA, Pfeiffer adapter, VPT-deep, full fine-tuning, linear
   probe with the frozen-computation cache) in bf16: peftlab's trainer against the PETL_Vision-style loop of
   benchmarks/trainer.py (DataLoader with PETL_Vision's 4 workers, PIL decode, bicubic resize every epoch) on the
   same PNG images, the compute limit (one resident batch), and each loop's peak GPU memory. Targets:
   TARGETS (>= 1.5x the conventional loop, >= 0.9 of the compute limit).
3. precision: bf16 autocast against float32 on CUDA: the search of part 1 again in bf16 (same tolerance), and the
   relative error of ViT-B/16's logits on one batch (LOGIT_TOLERANCE).

Weights are random (nothing is downloaded; the GPU machine has no network): speed does not depend on them, and
each agreement check compares two runs from the same weights. ``--dry`` runs every part on the CPU with the mini
ViT at 32 px, a few images and one epoch (the CUDA side is the CPU too): it checks the script, not the GPU.

    .venv/bin/python benchmarks/gpu_check.py          # on a GPU machine: a few minutes
    .venv/bin/python benchmarks/gpu_check.py --dry    # on the CPU, seconds (tests/benchmarks)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from trainer import (
    BACKBONE,
    NUM_CLASSES,
    PAPER_GRID,
    TRAINING,
    Clock,
    Workload,
    conventional_images_per_s,
    synthetic_images,
    throughput,
    write_pngs,
)

from peftlab.backbones import create_backbone
from peftlab.hardware import gpu_name
from peftlab.io import save_tensors
from peftlab.training.cache import FrozenCache
from peftlab.training.forward import ModelRunner, precision_used
from peftlab.training.inputs import transform_for
from peftlab.training.search import run_search
from peftlab.training.session import (
    BackboneSource,
    TrainingSession,
    configure_torch,
    resolve_device,
    seed_everything,
)

ACCURACY_TOLERANCE = 0.025  # 5 of 200 validation images
LOGIT_TOLERANCE = 0.05  # relative L2 error of bf16 logits against float32
TARGETS = {"vs_conventional": 1.5, "of_compute_limit": 0.9}
SEARCH_METHODS = {"linear": {}, "lora": {"rank": 8}}
FAMILIES = {"lora": ("lora", {"rank": 8}), "adapter": ("adapter_pfeiffer", {"dim": 8, "scale": 1.0}),
            "vpt_deep": ("vpt_deep", {"num_tokens": 10}), "full": ("full", {}), "linear_cached": ("linear", {})}
PETL_VISION_WORKERS = 4  # OSU-MLB/PETL_Vision experiment/build_loader.py: num_workers = 4, pin_memory = True


@dataclass(frozen=True)
class Scale:
    """How much each part runs."""

    backbone: str
    image_size: int
    images: int  # throughput: training images (PNG files for the conventional loop)
    epochs: int
    repeats: int
    search_train: int
    search_val: int
    search_epochs: int
    search_points: int  # of PAPER_GRID


FULL = Scale("vit_base_patch16_224", 224, images=512, epochs=3, repeats=2, search_train=800, search_val=200,
             search_epochs=TRAINING["epochs"], search_points=len(PAPER_GRID))
DRY = Scale(BACKBONE, 32, images=64, epochs=1, repeats=1, search_train=64, search_val=32, search_epochs=1,
            search_points=2)


# --- 1 and 3: the same search on two devices or in two precisions ------------------------------------------
def run_searches(device: torch.device, precision: str, scale: Scale, workdir: Path) -> dict[str, dict]:
    """Per method: the selected trial and every trial's validation accuracy."""
    weights = workdir / "mini.safetensors"
    if not weights.is_file():
        seed_everything(0)
        save_tensors(weights, create_backbone(BACKBONE, num_classes=NUM_CLASSES).state_dict())
    images, labels = synthetic_images(scale.search_train + scale.search_val, seed=1)
    training = dict(TRAINING, epochs=scale.search_epochs, warmup_epochs=min(TRAINING["warmup_epochs"],
                                                                            scale.search_epochs - 1))
    session = TrainingSession(task_dir=workdir, backbone=BackboneSource(BACKBONE, weights), training=training,
                              normalize=False, device=device, cache=FrozenCache(None), show_progress=False,
                              precision=precision)
    cut = scale.search_train
    session.add_split("train800", torch.from_numpy(images[:cut]), torch.from_numpy(labels[:cut]), NUM_CLASSES)
    session.add_split("val200", torch.from_numpy(images[cut:]), torch.from_numpy(labels[cut:]), NUM_CLASSES)
    results = {}
    for method, extra in SEARCH_METHODS.items():
        points = [dict(point, **extra) for point in PAPER_GRID[:scale.search_points]]
        best = run_search(session, task="gpu-check", method=method, points=points, training=training, seed=0,
                          out_dir=workdir / f"search-{device.type}-{precision}-{method}")
        results[method] = {"selected": best["selected"]["trial_id"],
                           "val": {trial["trial_id"]: trial["val_accuracy"] for trial in best["trials"]}}
    return results


def compare_searches(first: dict[str, dict], second: dict[str, dict], tolerance: float) -> dict:
    """Per method: both selections, whether they agree (same trial, or ``first``'s selection within the
    tolerance of ``second``'s best), and the largest difference of a trial's validation accuracy."""
    methods = {}
    for method, one in first.items():
        other = second[method]
        diffs = [abs(one["val"][trial] - other["val"][trial]) if None not in (one["val"][trial], other["val"][trial])
                 else (0.0 if one["val"][trial] == other["val"][trial] else float("inf")) for trial in one["val"]]
        best_other = max(value for value in other["val"].values() if value is not None)
        chosen = other["val"][one["selected"]]
        agree = one["selected"] == other["selected"] or (chosen is not None and best_other - chosen <= tolerance)
        methods[method] = {"selected": [one["selected"], other["selected"]], "agree": agree,
                           "max_val_accuracy_diff": round(max(diffs), 4)}
    passed = all(m["agree"] and m["max_val_accuracy_diff"] <= tolerance for m in methods.values())
    return {"tolerance": tolerance, "methods": methods, "pass": passed}


# --- 2: throughput per family ----------------------------------------------------------------------------
def cached_linear_images_per_s(images, labels, device, epochs: int, clock: Clock, workload: Workload) -> float:
    """A linear-probe run as a search runs it: features computed once by the frozen-computation cache (cold),
    then the head trains for ``epochs`` on them."""
    with tempfile.TemporaryDirectory() as tmp:
        training = dict(TRAINING, epochs=epochs, warmup_epochs=min(1, epochs - 1), batch_size=workload.batch_size,
                        head_init="random")
        session = TrainingSession(task_dir=Path(tmp), backbone=BackboneSource(workload.backbone), training=training,
                                  normalize=False, device=device, cache=FrozenCache(None), show_progress=False,
                                  precision=workload.precision)
        session.add_split("train", torch.from_numpy(images), torch.from_numpy(labels), workload.num_classes)
        # Outside the clock, as a search job does once for all its trials: build the backbone, hash its weights.
        session.backbone.create(workload.num_classes, float(training["drop_path"]), device)
        session.backbone.identity()
        hparams = {"lr": 1e-3, "weight_decay": 1e-4}
        start = clock()
        session.run("linear", hparams, seed=0, train_split="train", eval_splits=[],
                    settings=workload.settings(epochs))
        return epochs * len(images) / (clock() - start)


def family_throughput(family: str, entries, images, labels, device, scale: Scale, clock: Clock) -> dict:
    method, hparams = FAMILIES[family]
    workload = Workload(backbone=scale.backbone, image_size=scale.image_size, method=method, hparams=hparams,
                        precision="bf16", num_workers=PETL_VISION_WORKERS if device.type == "cuda" else 0)
    if method == "linear":
        best = {"conventional": 0.0, "peftlab": 0.0}
        for _ in range(scale.repeats):
            best["conventional"] = max(best["conventional"], conventional_images_per_s(
                entries, None, device, scale.epochs, False, clock, workload))
            best["peftlab"] = max(best["peftlab"], cached_linear_images_per_s(
                images, labels, device, scale.epochs, clock, workload))
        peak = {}
    else:
        best, peak = throughput(entries, images, labels, None, device, epochs=scale.epochs, repeats=scale.repeats,
                                normalize=False, clock=clock, workload=workload)
    row = {"images_per_s": {name: round(value, 1) for name, value in best.items()},
           "vs_conventional": round(best["peftlab"] / best["conventional"], 3),
           "ms_per_image": round(1000 / best["peftlab"], 3), "peak_memory_mb": peak}
    if "compute_limit" in best:
        row["of_compute_limit"] = round(best["peftlab"] / best["compute_limit"], 3)
    return row


# --- 3: logits in bf16 against float32 ---------------------------------------------------------------------
def logit_relative_error(device: torch.device, scale: Scale, threads: int | None) -> float:
    """||bf16 - fp32|| / ||fp32|| of one batch of logits (eval mode, the same random weights), each precision
    with its own TF32 setting (``configure_torch``)."""
    seed_everything(0)
    model = create_backbone(scale.backbone, num_classes=NUM_CLASSES).to(device).eval()
    images, _ = synthetic_images(64, seed=2, size=scale.image_size)
    batch = torch.from_numpy(images).to(device)
    logits = {}
    for precision in ("bf16", "fp32"):
        configure_torch(device, threads, precision)
        runner = ModelRunner(model, transform_for(model, False, device), device=device, precision=precision)
        with torch.no_grad():
            logits[precision] = runner.logits(batch).float()
    return float((logits["bf16"] - logits["fp32"]).norm() / logits["fp32"].norm())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="everything on the CPU, mini ViT, a few steps")
    parser.add_argument("--device", default="cuda", help="the GPU to check (default: cuda)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    scale = DRY if args.dry else FULL
    gpu = torch.device("cpu") if args.dry else resolve_device(args.device)
    cpu = torch.device("cpu")
    configure_torch(gpu, args.threads, "fp32")  # parts 1 and 3 set what they compare; TF32 off for float32
    result: dict = {"dry": args.dry, "device": str(gpu), "gpu_name": gpu_name(str(gpu)), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "backbone": scale.backbone, "image_size": scale.image_size}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        searches = {(gpu.type, "fp32"): run_searches(gpu, "fp32", scale, workdir / "gpu"),
                    ("cpu", "fp32"): run_searches(cpu, "fp32", scale, workdir / "cpu")}
        result["search"] = compare_searches(searches[(gpu.type, "fp32")], searches[("cpu", "fp32")],
                                            ACCURACY_TOLERANCE)
        rows += [(f"search {method}: {gpu.type} vs cpu selected", f"{m['selected']}, max |d val acc| "
                  f"{m['max_val_accuracy_diff']}") for method, m in result["search"]["methods"].items()]

        configure_torch(gpu, args.threads, "bf16")
        images, labels = synthetic_images(scale.images, seed=0, size=scale.image_size)
        (workdir / "png").mkdir()
        entries = write_pngs(workdir / "png", images, labels)
        clock = Clock(gpu)
        result["throughput"] = {family: family_throughput(family, entries, images, labels, gpu, scale, clock)
                                for family in FAMILIES}
        for family, row in result["throughput"].items():
            rows.append((f"{family} ({scale.backbone}, {scale.image_size} px) img/s",
                         f"{row['images_per_s']}, x{row['vs_conventional']} conventional"
                         + (f", {row['of_compute_limit']} of limit" if "of_compute_limit" in row else "")
                         + (f", peak {row['peak_memory_mb']} MB" if row["peak_memory_mb"] else "")))
        result["targets"] = {"goals": TARGETS, "pass": {
            family: row["vs_conventional"] >= TARGETS["vs_conventional"]
            and row.get("of_compute_limit", 1.0) >= TARGETS["of_compute_limit"]
            for family, row in result["throughput"].items()}}

        bf16 = run_searches(gpu, "bf16", scale, workdir / "gpu-bf16")  # TF32 on, as configure_torch sets for bf16
        error = logit_relative_error(gpu, scale, args.threads)
        result["precision"] = {"bf16_effective": precision_used(gpu, "bf16") == "bf16",
                               "search": compare_searches(bf16, searches[(gpu.type, "fp32")], ACCURACY_TOLERANCE),
                               "logit_relative_error": round(error, 5), "logit_tolerance": LOGIT_TOLERANCE}
        result["precision"]["pass"] = result["precision"]["search"]["pass"] and error <= LOGIT_TOLERANCE
        rows.append(("bf16 vs fp32: logit relative error", f"{error:.5f}"))
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    width = max(len(name) for name, _ in rows)
    print(f"gpu_check{' --dry' if args.dry else ''}: {gpu} ({result['gpu_name']}), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}; throughput rows: best of {scale.repeats}, {scale.images} images x "
          f"{scale.epochs} epochs, {'CPU time' if gpu.type == 'cpu' else 'wall time after synchronize'}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
