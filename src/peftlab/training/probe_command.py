"""CLI: ``peftlab probe``: the backbone probe (``peftlab.training.probe``) of a study's backbone on its tasks.

Light at import (argparse only). Every input (config, weights, each task's two shards) is checked before any
feature is computed, so a bad input costs one error line (exit 2) and leaves no file behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_DATA = "data/shards"


def register(subparsers: argparse._SubParsersAction) -> None:
    probe = subparsers.add_parser(
        "probe", help="linear probe of the backbone's frozen features vs random init vs raw pixels, per task")
    probe.add_argument("--config", type=Path, default=Path("params.yaml"))
    probe.add_argument("--out", type=Path, required=True, help="the JSON file to write: models/<backbone>/probe.json")
    probe.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="shard root (holds <task>/)")
    probe.add_argument("--weights", type=Path, help="backbone weights (default: backbone.weights or the pretrained "
                       "models/<backbone>/backbone.safetensors)")
    probe.add_argument("--tasks", nargs="+", help="default: study.tasks")
    probe.add_argument("--max-test-images", type=int, default=None,
                       help="test images per task at most, a seeded subset beyond (default: 2000)")
    probe.add_argument("--device", default=None, help="override training.device: auto, cpu, cuda, cuda:1 ...")
    probe.set_defaults(handler=probe_command)


def probe_command(args: argparse.Namespace) -> int:
    from peftlab.config import backbone_weights_path, load_config
    from peftlab.data.shards import shard_path
    from peftlab.errors import PeftlabError
    from peftlab.training.probe import MAX_TEST_IMAGES, TEST_SPLIT, TRAIN_SPLIT, run_probe
    from peftlab.training.session import configure_torch, job_device, job_precision

    config = load_config(args.config, check_data=False)
    weights = args.weights or backbone_weights_path(config)
    if not Path(weights).is_file():
        source = "--weights" if args.weights else f"{args.config}: key 'backbone.weights'"
        raise PeftlabError(f"{weights}: backbone weights not found ({source}; run 'peftlab pretrain' first)")
    max_test = MAX_TEST_IMAGES if args.max_test_images is None else args.max_test_images
    if max_test < 1:
        raise PeftlabError(f"--max-test-images {max_test}: must be at least 1")
    tasks = args.tasks or list(config["study"]["tasks"])
    for task in tasks:
        for split in (TRAIN_SPLIT, TEST_SPLIT):
            if not shard_path(args.data / task, split).is_file():
                raise PeftlabError(f"{shard_path(args.data / task, split)}: shard for split '{split}' of task "
                                   f"'{task}' not found (run 'peftlab data prepare')")
    device = job_device(config["training"], config_path=args.config, override=args.device)
    configure_torch(device, config["training"].get("threads"), job_precision(config["training"]))
    result = run_probe(config["backbone"]["name"], weights, {task: args.data / task for task in tasks},
                       normalize=config["data"]["normalize"], device=device,
                       batch_size=int(config["training"].get("eval_batch_size", 256)), out=args.out,
                       max_test=max_test)
    mean = result["mean"]
    print(f"probe {result['backbone']}: pretrained {mean['pretrained']:.1f} %, random init {mean['random_init']:.1f} %, "
          f"raw pixels {mean['raw_pixels']:.1f} % (mean of {len(tasks)} tasks; gain "
          f"{result['gain_vs_random_init']:+.1f} points) → {args.out}")
    return 0
