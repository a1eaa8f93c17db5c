"""CLI: ``peftlab search``, ``peftlab train`` and ``peftlab pretrain``.

Light at import (argparse only); torch, timm and the training modules load inside the handlers. Every input is
checked — config, method, best.json, weights, shards, the head file of ``head_init: file``, the device policy
(``training.device``: a job that asks for CUDA where torch has none) — before the first output file is written,
so a bad input leaves nothing behind but one error line (exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_DATA = "data/shards"


def register(subparsers: argparse._SubParsersAction) -> None:
    search = subparsers.add_parser("search", help="hyper-parameter search of one (task, method): train800 → val200")
    _common(search)
    search.add_argument("--task", required=True)
    search.add_argument("--method", required=True)
    search.set_defaults(handler=search_command)

    train = subparsers.add_parser("train", help="final (or many-shot) runs of the selected point, per seed → test")
    _common(train)
    train.add_argument("--task", required=True)
    train.add_argument("--method", required=True)
    train.add_argument("--hparams", required=True, type=Path, help="best.json of the search")
    train.add_argument("--seeds", type=int, nargs="+", help="default: study.seeds")
    train.add_argument("--train-split", default=None,
                       help="default train800val200; manyshot-<size> for many-shot runs")
    train.add_argument("--epochs", type=int, help="default: training.epochs (manyshot.epochs for manyshot-*)")
    train.add_argument("--warmup-epochs", type=int,
                       help="default: training.warmup_epochs (manyshot.warmup_epochs for manyshot-*)")
    train.set_defaults(handler=train_command)

    pretrain = subparsers.add_parser("pretrain", help="pretrain the mini study's backbone on the upstream shards")
    pretrain.add_argument("--config", type=Path, default=Path("params.yaml"))
    pretrain.add_argument("--out", type=Path, required=True, help="models/<backbone>")
    pretrain.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="shard root (holds upstream/)")
    _device_argument(pretrain)
    pretrain.set_defaults(handler=pretrain_command)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="shard root (holds <task>/)")
    parser.add_argument("--weights", type=Path, help="backbone weights (default: backbone.weights or the "
                        "pretrained models/<backbone>/backbone.safetensors)")
    _device_argument(parser)
    parser.add_argument("--cache-dir", type=Path, help="frozen-computation cache (default: $PEFTLAB_CACHE_DIR or "
                        "data/cache/frozen)")
    parser.add_argument("--no-cache", action="store_true", help="recompute frozen prefixes in every step")


def _device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="override training.device (pipeline jobs never pass it): auto (cuda when "
                        "present), cpu, cuda, cuda:1 ...")


def _load(args: argparse.Namespace) -> dict[str, Any]:
    from peftlab.config import load_config
    from peftlab.methods import get_method

    config = load_config(args.config, check_data=False)
    if hasattr(args, "method"):
        get_method(args.method)
    return config


def _session(args: argparse.Namespace, config: dict[str, Any], normalize: bool):
    """Check the weights and build the job's session (device, precision, threads, cache)."""
    from peftlab.config import backbone_weights_path
    from peftlab.errors import PeftlabError
    from peftlab.training.cache import FrozenCache, default_cache_dir
    from peftlab.training.session import (
        BackboneSource,
        TrainingSession,
        configure_torch,
        job_device,
        job_precision,
    )

    weights = args.weights or backbone_weights_path(config)
    if not Path(weights).is_file():
        source = "--weights" if args.weights else f"{args.config}: key 'backbone.weights'"
        raise PeftlabError(f"{weights}: backbone weights not found ({source}; run 'peftlab pretrain' first)")
    task_dir = args.data / args.task
    if not task_dir.is_dir():
        raise PeftlabError(f"{task_dir}: no shards for task '{args.task}' (run 'peftlab data prepare')")
    device = job_device(config["training"], config_path=args.config, override=args.device)
    precision = job_precision(config["training"])
    configure_torch(device, config["training"].get("threads"), precision)
    cache = FrozenCache(args.cache_dir or default_cache_dir(), enabled=not args.no_cache)
    session = TrainingSession(task_dir=task_dir, backbone=BackboneSource(config["backbone"]["name"], Path(weights)),
                              training=config["training"], normalize=normalize, device=device, cache=cache,
                              precision=precision)
    _check_head_file(args.config, session)
    return session


def search_command(args: argparse.Namespace) -> int:
    from peftlab.config import search_points
    from peftlab.reference.selections import published_enabled, published_point
    from peftlab.training.forward import precision_used
    from peftlab.training.search import SEARCH_TRAIN_SPLIT, SEARCH_VAL_SPLIT, run_search, write_published
    from peftlab.training.session import job_device, job_precision

    config = _load(args)
    if published_enabled(config):
        published = published_point(config, args.task, args.method)
        if published is not None:
            point, released = published
            _validate_points(args.config, args.method, [point])
            device = job_device(config["training"], config_path=args.config, override=args.device)
            best = write_published(args.out, task=args.task, method=args.method, point=point, released=released,
                                   device=str(device),
                                   precision=precision_used(device, job_precision(config["training"])))
            print(f"{args.task}/{args.method}: published selection {best['selected']['trial_id']} "
                  f"({released.released_method}) → {args.out / 'best.json'}")
            return 0
    points = search_points(config, args.method)
    _validate_points(args.config, args.method, points)
    session = _session(args, config, config["data"]["normalize"])
    for split in (SEARCH_TRAIN_SPLIT, SEARCH_VAL_SPLIT):
        session.split(split)  # a missing shard fails here, before any output
    best = run_search(session, task=args.task, method=args.method, points=points, training=config["training"],
                      seed=int(config["search"].get("seed", 0)), out_dir=args.out)
    print(f"{args.task}/{args.method}: selected {best['selected']['trial_id']} "
          f"(val accuracy {best['val_accuracy']:.4f}) → {args.out / 'best.json'}")
    return 0


def train_command(args: argparse.Namespace) -> int:
    from peftlab.data.shards import read_manifest, shard_path
    from peftlab.errors import PeftlabError
    from peftlab.training.final import FINAL_TRAIN_SPLIT, eval_splits_of, read_selected_hparams, run_final
    from peftlab.training.loop import FitSettings

    config = _load(args)
    hparams = read_selected_hparams(args.hparams, args.method)
    _validate_points(args.hparams, args.method, [hparams])
    train_split = args.train_split or FINAL_TRAIN_SPLIT
    manyshot = (config.get("manyshot") or {}) if train_split.startswith("manyshot-") else {}
    epochs = args.epochs if args.epochs is not None else manyshot.get("epochs")
    warmup = args.warmup_epochs if args.warmup_epochs is not None else manyshot.get("warmup_epochs")
    for flag, value in (("--epochs", epochs), ("--warmup-epochs", warmup)):
        if value is not None and value < (1 if flag == "--epochs" else 0):
            raise PeftlabError(f"{flag} {value}: must be {'>= 1' if flag == '--epochs' else '>= 0'}")
    settings = FitSettings.from_config(config["training"], hparams, epochs=epochs, warmup_epochs=warmup)
    session = _session(args, config, manyshot.get("normalize", config["data"]["normalize"]))
    eval_splits = eval_splits_of(read_manifest(session.task_dir))
    for split in (train_split, *eval_splits):
        if not shard_path(session.task_dir, split).is_file():
            raise PeftlabError(f"{shard_path(session.task_dir, split)}: shard for split '{split}' not found")
    session.split(train_split)
    seeds = args.seeds if args.seeds else config["study"]["seeds"]
    summary = run_final(session, task=args.task, method=args.method, hparams=hparams, seeds=seeds,
                        train_split=train_split, eval_splits=eval_splits, settings=settings, out_dir=args.out)
    test = summary["accuracy"].get("test", {})
    print(f"{args.task}/{args.method}: test accuracy {test.get('mean')} ± {test.get('std')} over seeds "
          f"{summary['seeds']} → {args.out / 'metrics.json'}")
    return 0


def pretrain_command(args: argparse.Namespace) -> int:
    from peftlab.config import load_config
    from peftlab.training.pretrain import pretrain_threads, run_pretrain
    from peftlab.training.session import configure_torch, job_device, job_precision

    config = load_config(args.config, check_data=False)
    device = job_device(config["training"], config_path=args.config, override=args.device)
    configure_torch(device, pretrain_threads(config), job_precision(config["training"]))
    card = run_pretrain(config, data_dir=args.data, out_dir=args.out, device=device, source=str(args.config))
    print(f"pretrained {card['backbone']}: val accuracy {card['val_accuracy']} → {args.out / 'backbone.safetensors'}")
    return 0


def _check_head_file(source: Path, session) -> None:
    """``head_init: file``: the head file must exist, be readable and have one row per class of the task (checked
    before the shards load). Its input width is checked against the head of the attached method when the first
    run starts (VQT widens it), also before any output is written."""
    from peftlab.data.shards import read_manifest
    from peftlab.errors import PeftlabError
    from peftlab.training.heads import read_head

    head_file = session.head_file
    if head_file is None:
        return
    num_classes = int(read_manifest(session.task_dir)["num_classes"])
    try:
        read_head(head_file, num_classes)
    except PeftlabError as exc:
        raise PeftlabError(f"{source}: key 'training.head_init_file': {exc}") from None


def _validate_points(source: Path, method: str, points: list[dict[str, Any]]) -> None:
    """Every point must be a valid config of the method; the error names the source file."""
    from peftlab.errors import PeftlabError
    from peftlab.methods import build_config

    for point in points:
        try:
            build_config(method, point)
        except PeftlabError as exc:
            raise PeftlabError(f"{source}: {exc}") from None
