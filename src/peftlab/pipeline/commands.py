"""CLI: ``peftlab config check`` and ``peftlab pipeline {jobs,dvc-yaml,commit,cost}``.

Light at import; nothing here loads torch. ``config check`` runs every check both engines run before a job
starts; ``pipeline dvc-yaml`` writes (or, with ``--check``, verifies) ``dvc.yaml`` from the step table;
``pipeline cost`` estimates what a study costs before it runs (``peftlab.pipeline.cost``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_CONFIG = Path("params.yaml")


def register(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="check a study config")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    check = config_commands.add_parser("check", help="validate a config as both engines do before any job starts")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    check.set_defaults(handler=check_command)

    pipeline = subparsers.add_parser("pipeline", help="the step table shared by Snakemake and DVC")
    commands = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")
    jobs = commands.add_parser("jobs", help="list the jobs of a study (id, command, inputs, outputs, keys)")
    jobs.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    jobs.add_argument("--json", action="store_true", help="one JSON object per line")
    jobs.set_defaults(handler=jobs_command)

    dvc_yaml = commands.add_parser("dvc-yaml", help="write dvc.yaml for a study from the step table")
    dvc_yaml.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    dvc_yaml.add_argument("--out", type=Path, default=Path("dvc.yaml"))
    dvc_yaml.add_argument("--check", action="store_true", help="only verify that --out is up to date (exit 1 if not)")
    dvc_yaml.set_defaults(handler=dvc_yaml_command)

    commit = commands.add_parser("commit", help="record existing outputs in dvc.lock (dvc commit --force)")
    commit.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    commit.add_argument("jobs", nargs="*", help="job ids to commit (default: every stage)")
    commit.set_defaults(handler=commit_command)

    cost = commands.add_parser("cost", help="what a study costs: runs, epochs, images and estimated GPU-hours "
                               "per step")
    cost.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    cost.set_defaults(handler=cost_command)


def check_command(args: argparse.Namespace) -> int:
    from collections import Counter

    from peftlab.pipeline.checks import load_study
    from peftlab.pipeline.cost import estimate
    from peftlab.pipeline.steps import all_jobs

    study = load_study(args.config)
    counts = Counter(job.step for job in all_jobs(study))
    summary = ", ".join(f"{step} {count}" for step, count in counts.items())
    print(f"{args.config}: valid; {sum(counts.values())} jobs ({summary})")
    cost = estimate(study)
    for label, saved in published_savings(study.config, cost).items():
        print(f"{label}: {saved.jobs} search jobs, {saved.runs:,} trials skipped, "
              f"{100 * saved.hours / cost.total().hours:.0f}% of the estimated {cost.anchor.unit} "
              "(peftlab pipeline cost)")
    return 0


def jobs_command(args: argparse.Namespace) -> int:
    from peftlab.pipeline.checks import load_study
    from peftlab.pipeline.steps import all_jobs

    for job in all_jobs(load_study(args.config)):
        if args.json:
            print(json.dumps({"id": job.id, "step": job.step, "wildcards": dict(job.wildcards), "cmd": job.command,
                              "inputs": list(job.inputs), "outputs": job.output_paths, "keys": list(job.keys)}))
        else:
            print(f"{job.id}\t{job.command}")
    return 0


def dvc_yaml_command(args: argparse.Namespace) -> int:
    from peftlab.io import write_text
    from peftlab.pipeline.checks import load_study
    from peftlab.pipeline.dvcgen import render_dvc_yaml, stale_reason
    from peftlab.pipeline.steps import all_jobs

    study = load_study(args.config)
    if args.check:
        reason = stale_reason(study, args.out)
        if reason:
            print(f"{reason}; regenerate with `peftlab pipeline dvc-yaml --config {study.config_path}`")
            return 1
        print(f"{args.out}: up to date with {study.config_path}")
        return 0
    text = render_dvc_yaml(study)
    write_text(args.out, text)
    print(f"{args.out}: {len(all_jobs(study))} stages from {study.config_path}")
    return 0


def commit_command(args: argparse.Namespace) -> int:
    from peftlab.pipeline.checks import load_study
    from peftlab.pipeline.dvcgen import commit_outputs

    print(commit_outputs(load_study(args.config), args.jobs or None))
    return 0


def cost_command(args: argparse.Namespace) -> int:
    """Needs only the config (validated): a study is priced before its data and weights are downloaded."""
    from peftlab.config import load_config
    from peftlab.pipeline.cost import estimate, render_cost
    from peftlab.pipeline.steps import Study

    config = load_config(args.config, check_data=False)
    cost = estimate(Study(config, args.config))
    print(render_cost(cost, published_savings(config, cost)))
    return 0


def published_savings(config: dict, cost) -> dict:
    """``{label: Totals}`` of the searches a released selection replaces (``search.published``); empty when the
    config's study has no released selection."""
    from peftlab.pipeline.cost import saving
    from peftlab.pipeline.steps import job_id
    from peftlab.reference.selections import published_enabled, published_pairs

    released, _ = published_pairs(config)
    if not released:
        return {}
    state = "on" if published_enabled(config) else "off; search.published: true"
    return {f"published selections ({state})": saving(cost, [job_id("search", pair) for pair in released])}
