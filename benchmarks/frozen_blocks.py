"""What ``training.frozen_blocks: train`` costs the default study's linear and partial jobs.

With the frozen prefix in train mode and a positive drop-path, the linear probe's and partial-k's training rows
can no longer come from the frozen-computation cache (``docs/training.md``, "Frozen prefix"). This runs, for one
task of the study in ``--config`` (random images of the study's split sizes, its backbone with random weights,
its ``training`` settings, grids and seeds), the jobs that lose the cache — the linear and partial searches and
final runs, and the many-shot linear runs of one task — once with ``frozen_blocks: eval`` and once with
``train``, each job a fresh session sharing an on-disk cache as the pipeline's jobs do, and prints the process
CPU time of each job (one thread).

    PYTHONPATH=src .venv/bin/python benchmarks/frozen_blocks.py [--config params.yaml]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from peftlab.backbones import create_backbone
from peftlab.config import load_config, search_points
from peftlab.io import save_tensors
from peftlab.training.cache import FrozenCache
from peftlab.training.loop import FitSettings
from peftlab.training.session import BackboneSource, TrainingSession, configure_torch

NUM_CLASSES = 10
SPLIT_SIZES = {"train800": 800, "val200": 200, "train800val200": 1000}


def random_split(count: int, image_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (count, 3, image_size, image_size), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, NUM_CLASSES, (count,), generator=generator)


def measure(config: dict, mode: str, weights: Path, splits: dict, cache_dir: Path) -> dict[str, float]:
    training = dict(config["training"], frozen_blocks=mode)

    def session() -> TrainingSession:
        fresh = TrainingSession(task_dir=cache_dir, backbone=BackboneSource(config["backbone"]["name"], weights),
                                training=training, normalize=False, device=torch.device("cpu"),
                                cache=FrozenCache(cache_dir / mode), show_progress=False)
        for name, (images, labels) in splits.items():
            fresh.add_split(name, images, labels, NUM_CLASSES)
        return fresh

    times = {}
    for method in ("linear", "partial"):
        points = search_points(config, method)
        start = time.process_time()
        list(session().run_grid(method, [(p, FitSettings.from_config(training, p)) for p in points], seed=0,
                                train_split="train800", eval_splits=["val200"]))
        times[f"{method} search"] = time.process_time() - start
        start = time.process_time()
        final = session()
        for seed in config["study"]["seeds"]:
            final.run(method, points[0], seed=seed, train_split="train800val200", eval_splits=["test"],
                      settings=FitSettings.from_config(training, points[0]))
        times[f"{method} final"] = time.process_time() - start
    manyshot = config.get("manyshot") or {}
    if "linear" in manyshot.get("methods", []):
        point = search_points(config, "linear")[0]
        settings = FitSettings.from_config(training, point, epochs=manyshot.get("epochs"),
                                           warmup_epochs=manyshot.get("warmup_epochs"))
        for size in manyshot["sizes"]:
            start = time.process_time()
            runs = session()
            for seed in config["study"]["seeds"]:
                runs.run("linear", point, seed=seed, train_split=f"manyshot-{size}", eval_splits=["test"],
                         settings=settings)
            times[f"linear manyshot {size}"] = time.process_time() - start
    return {key: round(value, 2) for key, value in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="params.yaml")
    args = parser.parse_args()
    config = load_config(args.config, check_data=False)
    configure_torch(torch.device("cpu"), 1)
    generator = torch.Generator().manual_seed(0)
    size = int(config["data"]["image_size"])
    test_size = int((config["data"].get("generate") or {}).get("test_size", 2000))
    manyshot = config.get("manyshot") or {}
    splits = {name: random_split(count, size, generator) for name, count in
              {**SPLIT_SIZES, "test": test_size, **{f"manyshot-{n}": n for n in manyshot.get("sizes", [])}}.items()}
    with tempfile.TemporaryDirectory() as directory:
        weights = Path(directory) / "backbone.safetensors"
        torch.manual_seed(0)
        save_tensors(weights, create_backbone(config["backbone"]["name"], num_classes=NUM_CLASSES).state_dict())
        results = {mode: measure(config, mode, weights, splits, Path(directory)) for mode in ("eval", "train")}
    for mode, times in results.items():
        print(f"frozen_blocks {mode}: {times}")
    tasks = len(config["study"]["tasks"])
    manyshot_tasks = len(manyshot.get("tasks", []))
    totals = {mode: round(sum(v * (manyshot_tasks if "manyshot" in k else tasks) for k, v in times.items()), 1)
              for mode, times in results.items()}
    print(json.dumps({"study_cpu_s": totals, "tasks": tasks, "manyshot_tasks": manyshot_tasks}))


if __name__ == "__main__":
    main()
