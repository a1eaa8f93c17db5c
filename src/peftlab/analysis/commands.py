"""CLI: ``peftlab ensembles``, ``peftlab robustness`` and ``peftlab report``.

Light at import (argparse only). ``ensembles`` never imports torch (numpy and safetensors suffice); ``report``
reads each method's family from the method registry (which imports torch) and ``robustness`` loads torch, timm
and the models, both inside their handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_DATA = "data/shards"


def register(subparsers: argparse._SubParsersAction) -> None:
    ensembles = subparsers.add_parser(
        "ensembles", help="agreement, error overlap and ensembles of all methods' test logits of one task")
    ensembles.add_argument("--task", required=True)
    ensembles.add_argument("--config", type=Path, default=Path("params.yaml"))
    ensembles.add_argument("--results", type=Path, default=Path("results"), help="the results folder")
    ensembles.add_argument("--out", type=Path, required=True, help="results/ensembles/<task>")
    ensembles.add_argument("--seed", type=int, help="seed whose logits are compared (default: first of study.seeds)")
    ensembles.set_defaults(handler=ensembles_command)

    robustness = subparsers.add_parser(
        "robustness", help="WiSE-FT: target and shift accuracy from the zero-shot to the fine-tuned model")
    robustness.add_argument("--task", required=True)
    robustness.add_argument("--method", required=True)
    robustness.add_argument("--config", type=Path, default=Path("params.yaml"))
    robustness.add_argument("--runs", type=Path, required=True, help="results/final/<task>/<method>/runs")
    robustness.add_argument("--out", type=Path, required=True, help="results/robustness/<task>/<method>/wise.csv")
    robustness.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help="shard root (holds <task>/)")
    robustness.add_argument("--weights", type=Path, help="backbone weights (default: backbone.weights or the "
                            "pretrained models/<backbone>/backbone.safetensors)")
    robustness.add_argument("--seeds", type=int, nargs="+", help="default: study.seeds")
    robustness.add_argument("--device", help="override training.device: auto (cuda when present), cpu, cuda, "
                            "cuda:1 ...")
    robustness.set_defaults(handler=robustness_command)

    report = subparsers.add_parser("report", help="the study report: index.md/.html, figures, tables, metrics.json")
    report.add_argument("--config", type=Path, default=Path("params.yaml"))
    report.add_argument("--results", type=Path, default=Path("results"), help="the results folder")
    report.add_argument("--out", type=Path, default=Path("reports"))
    report.add_argument("--probe", type=Path, help="the backbone's linear-probe file, for the lessons' precondition "
                        "(default: models/<backbone>/probe.json)")
    report.set_defaults(handler=report_command)


def _config(path: Path) -> dict[str, Any]:
    from peftlab.config import load_config

    return load_config(path, check_data=False)


def _check_task(config: dict[str, Any], task: str, source: Path, section: str = "study") -> None:
    from peftlab.errors import PeftlabError

    tasks = (config.get(section) or {}).get("tasks", [])
    if task not in tasks:
        raise PeftlabError(f"--task {task}: not in {source} key '{section}.tasks' {tasks}")


def ensembles_command(args: argparse.Namespace) -> int:
    from peftlab.analysis.ensembles import run_ensembles

    config = _config(args.config)
    _check_task(config, args.task, args.config)
    summary = run_ensembles(args.task, config, args.results, args.out, seed=args.seed)
    top = summary.get("top_k_by_val")
    gain = f"top-{top['k']} gain {100 * top['logits']['gain_over_best_single_by_val']:+.2f} pts" if top else "no top-k"
    print(f"{args.task}: {len(summary['methods'])} methods, mean agreement {summary['pairs']['mean_agreement']:.3f}, "
          f"{gain}, {len(summary['warnings'])} warnings → {args.out}")
    return 0


def robustness_command(args: argparse.Namespace) -> int:
    from peftlab.analysis.robustness import run_robustness
    from peftlab.errors import PeftlabError
    from peftlab.methods import get_method
    from peftlab.training.session import configure_torch, job_device, job_precision

    config = _config(args.config)
    get_method(args.method)
    _check_task(config, args.task, args.config, section="robustness")
    if args.method not in config["robustness"]["methods"]:
        raise PeftlabError(f"--method {args.method}: not in {args.config} key 'robustness.methods' "
                           f"{config['robustness']['methods']}")
    device = job_device(config["training"], config_path=args.config, override=args.device)
    configure_torch(device, config["training"].get("threads"), job_precision(config["training"]))
    rows = run_robustness(args.task, args.method, config, args.runs, args.out, shards_dir=args.data / args.task,
                          seeds=args.seeds, device=str(device), backbone_weights=args.weights)
    ends = {r["split"]: r["accuracy"] for r in rows if r["alpha"] == 1.0 and r["seed"] == rows[0]["seed"]}
    print(f"{args.task}/{args.method}: {len(rows)} rows ({rows[0]['interpolation']} interpolation); "
          f"α=1: {', '.join(f'{k} {v:.3f}' for k, v in ends.items())} → {args.out}")
    return 0


def report_command(args: argparse.Namespace) -> int:
    from peftlab.analysis.report import build_report

    config = _config(args.config)
    metrics = build_report(config, args.results, args.out, config_path=str(args.config), probe_path=args.probe)
    verdicts = ", ".join(f"{k}: {v}" for k, v in metrics["lesson_verdicts"].items())
    print(f"report → {args.out / 'index.html'} ({metrics['warnings']} warnings; {verdicts})")
    return 0
