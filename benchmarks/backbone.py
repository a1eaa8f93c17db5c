"""Benchmark of the mini study's backbone: is it a faithful miniature of an ImageNet-pretrained ViT?

Runs what ``make study`` runs for the backbone, with the study config's settings, in one process:

1. ``peftlab data generate`` (the mini-suite and the upstream set, ``data.generate``) and ``peftlab data prepare``
   into ``--work`` (skipped per task when already up to date there);
2. ``peftlab pretrain`` with ``backbone.pretrain`` (threads: ``backbone.pretrain.threads``, as the pipeline's
   pretraining job), timed in wall and CPU seconds;
3. the backbone probe (``peftlab.training.probe``, the pipeline's ``probe`` step): per mini-suite task, a logistic
   regression on frozen class-token features, train800val200 → test, for (a) the pretrained backbone, (b) the same
   architecture at random init, (c) raw pixels.

Ends with one JSON line: ``upstream_val_accuracy`` (%: the mean over the upstream factor heads, as the card's
``val_accuracy``; ``upstream_val_exact_match`` is all heads right), ``upstream_val_accuracy_by_head``,
``probe`` ({task: {pretrained, random_init, raw_pixels}} in %), ``probe_mean``, ``probe_gain_vs_random_init``
(mean (a) − (b), points), ``pretrained_minus_raw_pixels`` (points), ``pretrain_wall_s``, ``pretrain_cpu_s``,
``pretrain_threads`` and the load average before and after pretraining (the machine is shared: wall time counts
other processes' load, so read it with the load; CPU time does not, but it counts both threads).

    .venv/bin/python benchmarks/backbone.py [--config params.yaml] [--work benchmarks/out/backbone] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from peftlab.config import load_config
from peftlab.data.generate import SuiteSizes, generate_suite
from peftlab.data.prepare import prepare
from peftlab.data.tasks import UPSTREAM_TASK
from peftlab.training.pretrain import pretrain_threads, run_pretrain
from peftlab.training.probe import COLUMNS, run_probe
from peftlab.training.session import configure_torch, resolve_device


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("params.yaml"))
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/backbone"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    config = load_config(args.config, check_data=False)
    generate = config["data"]["generate"]
    tasks = list(config["study"]["tasks"])
    raw, shards, model_dir = args.work / "raw", args.work / "shards", args.work / "model"
    sizes = SuiteSizes.from_settings(generate)
    quiet = {"log": lambda message: None}
    generate_suite(raw, int(generate["seed"]), sizes, tasks=[*tasks, UPSTREAM_TASK], **quiet)
    prepare(raw, shards, [*tasks, UPSTREAM_TASK], int(config["data"]["image_size"]), **quiet)

    device = resolve_device(args.device)
    threads = pretrain_threads(config)
    configure_torch(device, threads)
    load_before = _load()
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    card = run_pretrain(config, data_dir=shards, out_dir=model_dir, device=device, show_progress=False,
                        source=str(args.config))
    pretrain_wall, pretrain_cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    load_after = _load()

    configure_torch(device, config["training"].get("threads"))
    probe = run_probe(config["backbone"]["name"], model_dir / "backbone.safetensors",
                      {task: shards / task for task in tasks}, normalize=config["data"]["normalize"], device=device,
                      batch_size=int(config["training"].get("eval_batch_size", 256)), out=model_dir / "probe.json")

    print(f"{config['backbone']['name']}: upstream val accuracy {100 * card['val_accuracy']:.1f} % (mean of heads "
          f"{card['val_accuracy_by_head']}), pretraining {pretrain_wall:.0f} s wall, {pretrain_cpu:.0f} s CPU, "
          f"{threads} threads, load {load_before} → {load_after}")
    print(f"{'task':22s}" + "".join(f"{column:>13s}" for column in COLUMNS))
    for task, accuracy in {**probe["tasks"], "mean": probe["mean"]}.items():
        print(f"{task:22s}" + "".join(f"{accuracy[column]:13.1f}" for column in COLUMNS))
    print(json.dumps({
        "upstream_val_accuracy": round(100 * card["val_accuracy"], 2),
        "upstream_val_exact_match": round(100 * card["val_exact_match"], 2),
        "upstream_val_accuracy_by_head": {head: round(100 * value, 2)
                                          for head, value in card["val_accuracy_by_head"].items()},
        "probe": probe["tasks"], "probe_mean": probe["mean"],
        "probe_gain_vs_random_init": probe["gain_vs_random_init"],
        "pretrained_minus_raw_pixels": probe["pretrained_minus_raw_pixels"],
        "pretrain_wall_s": round(pretrain_wall, 1), "pretrain_cpu_s": round(pretrain_cpu, 1),
        "pretrain_threads": threads, "load_average_before": load_before, "load_average_after": load_after,
        "device": str(device), "backbone": config["backbone"]["name"], "config": str(args.config),
    }))


if __name__ == "__main__":
    main()
