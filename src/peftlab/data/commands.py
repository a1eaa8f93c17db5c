"""CLI: ``peftlab data generate | prepare | probe``.

Light at import: numpy, Pillow, torch and scikit-learn load inside the handlers.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="the data layer: generate the mini-suite, prepare shards")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    generate = commands.add_parser(
        "generate", help="write the offline mini-suite in the VTAB-1k layout (32×32 PNG, deterministic)")
    generate.add_argument("--out", required=True, help="data root to write <task>/ folders into")
    generate.add_argument("--seed", type=int, required=True, help="same seed, byte-identical files")
    generate.add_argument("--test-size", type=int, default=2000, help="test (and shift) images per task "
                          "(default: %(default)s)")
    generate.add_argument("--manyshot-size", type=int, default=6000,
                          help="largest many-shot list for textures and clevr_distance (default: %(default)s)")
    generate.add_argument("--manyshot-subset", type=int, nargs="+", action="extend", default=None,
                          metavar="SIZE", help="smaller nested many-shot lists (default: 2000, when below "
                          "--manyshot-size)")
    generate.add_argument("--upstream-size", type=int, default=24000,
                          help="images in the upstream pretraining set, train + val (default: %(default)s)")
    generate.add_argument("--tasks", nargs="+", default=None, help="only these tasks (default: all + upstream)")
    generate.add_argument("--force", action="store_true", help="rewrite tasks whose card already matches")
    generate.set_defaults(handler=generate_command)

    prepare = commands.add_parser("prepare", help="check list files and images, write uint8 shards + manifest")
    prepare.add_argument("--root", required=True, help="data root holding <task>/ in the VTAB-1k layout")
    prepare.add_argument("--out", required=True, help="shard root: writes <out>/<task>/<split>.safetensors")
    prepare.add_argument("--tasks", nargs="+", default=None, help="task names (default: every task folder)")
    prepare.add_argument("--size", type=int, default=None,
                         help="resize to SIZE×SIZE, bicubic (default: the images' own size)")
    prepare.add_argument("--allow-size-mismatch", nargs="+", action="extend", default=[], metavar="TASK",
                         help="tasks whose split sizes may differ from the task table")
    prepare.add_argument("--allow-duplicate-content", nargs="+", action="extend", default=[], metavar="TASK",
                         help="tasks whose test images may equal training images byte for byte (datasets "
                         "that hold identical images); recorded in the manifest")
    prepare.add_argument("--workers", type=int, default=1, help="decoding processes (default: %(default)s)")
    prepare.add_argument("--force", action="store_true", help="rebuild even when the fingerprint is unchanged")
    prepare.set_defaults(handler=prepare_command)

    probe = commands.add_parser("probe", help="raw-pixel linear probe (logistic regression) per task")
    probe.add_argument("--root", required=True, help="data root in the VTAB-1k layout")
    probe.add_argument("--tasks", nargs="+", required=True)
    probe.add_argument("--size", type=int, default=32, help="pixels per side (default: %(default)s)")
    probe.add_argument("--json", action="store_true", help="print {task: {split: accuracy}}")
    probe.set_defaults(handler=probe_command)


def generate_command(args: argparse.Namespace) -> int:
    from peftlab.data.generate import SuiteSizes, generate_suite

    subsets = tuple(args.manyshot_subset) if args.manyshot_subset else None
    sizes = SuiteSizes(test=args.test_size, manyshot=args.manyshot_size, manyshot_subsets=subsets,
                       upstream=args.upstream_size)
    generate_suite(args.out, args.seed, sizes, tasks=args.tasks, force=args.force)
    return 0


def prepare_command(args: argparse.Namespace) -> int:
    from peftlab.data.prepare import prepare
    from peftlab.errors import PeftlabError

    if args.workers < 1:
        raise PeftlabError(f"--workers {args.workers}: must be at least 1")
    prepare(args.root, args.out, args.tasks, args.size, allow_size_mismatch=args.allow_size_mismatch,
            allow_duplicate_content=args.allow_duplicate_content, workers=args.workers, force=args.force)
    return 0


def probe_command(args: argparse.Namespace) -> int:
    from peftlab.data.probe import linear_probe

    scores = {task: linear_probe(args.root, task, size=args.size) for task in args.tasks}
    if args.json:
        print(json.dumps(scores, indent=2, sort_keys=True))
    else:
        for task, by_split in scores.items():
            print(f"{task}: " + ", ".join(f"{split} {accuracy:.3f}" for split, accuracy in by_split.items()))
    return 0
