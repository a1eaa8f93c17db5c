"""CLI: ``peftlab methods`` (the registered PEFT methods) and ``peftlab params`` (parameter counts of a method on a
backbone, built without weights).

Light at import; torch and timm load inside the handlers.
"""

from __future__ import annotations

import argparse
import functools
import json
from typing import Any

from peftlab.errors import PeftlabError


def register(subparsers: argparse._SubParsersAction) -> None:
    methods = subparsers.add_parser("methods", help="list the PEFT methods, their hyper-parameters and defaults")
    methods.add_argument("--json", action="store_true", help="machine-readable output")
    methods.add_argument("--markdown", action="store_true",
                         help="a markdown table with parameter counts at the defaults on --backbone")
    methods.add_argument("--backbone", default="vit_base_patch16_224",
                         help="backbone for --markdown counts (default: %(default)s)")
    methods.set_defaults(handler=methods_command)

    params = subparsers.add_parser("params", help="parameter counts of a method on a backbone (no weights needed)")
    params.add_argument("--backbone", required=True, help="timm model name, e.g. vit_base_patch16_224")
    params.add_argument("--method", required=True)
    params.add_argument("--set", dest="values", action="append", default=[], metavar="KEY=VALUE",
                        help="a method hyper-parameter (repeatable), e.g. --set rank=8")
    params.add_argument("--num-classes", type=int, default=None, help="head size (default: the model's)")
    params.add_argument("--json", action="store_true", help='print {"total", "trainable", "method", "head"}')
    params.set_defaults(handler=params_command)


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["rank=8", "targets=qkv"]`` → ``{"rank": "8", "targets": "qkv"}``; a pair without ``=`` is an error."""
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PeftlabError(f"--set {pair!r}: expected KEY=VALUE")
        values[key.strip()] = value.strip()
    return values


def describe_methods() -> list[dict[str, Any]]:
    from peftlab.methods import list_methods

    return [{"name": spec.name, "description": spec.description, "hparams": spec.hparams(),
             "mergeable": spec.mergeable, "family": spec.family} for spec in list_methods()]


def methods_command(args: argparse.Namespace) -> int:
    rows = describe_methods()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print(methods_markdown(rows, args.backbone))
    else:
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            defaults = ", ".join(f"{h['name']}={h['default']}" for h in row["hparams"]) or "-"
            merge = "mergeable" if row["mergeable"] else "not mergeable"
            print(f"{row['name']:<{width}}  {row['family']:<16}  {row['description']}  [{defaults}; {merge}]")
    return 0


@functools.lru_cache(maxsize=4)
def _architecture(backbone: str, num_classes: int | None) -> Any:
    from peftlab.backbones import build_architecture

    return build_architecture(backbone, num_classes=num_classes)


def count_method_parameters(backbone: str, method: str, values: dict[str, Any] | None = None,
                            num_classes: int | None = None) -> dict[str, int]:
    """``count_parameters`` of ``method`` attached to ``backbone`` built without weights (on the meta device, a
    copy of one built per backbone, which costs a quarter of building it; on the CPU when the method's attach
    needs real tensors)."""
    import copy

    from peftlab.backbones import create_backbone
    from peftlab.methods import attach, build_config, count_parameters

    config = build_config(method, values or {})
    model = copy.deepcopy(_architecture(backbone, num_classes))
    try:
        attach(model, method, config)
    except (NotImplementedError, RuntimeError):
        model = create_backbone(backbone, num_classes=num_classes)
        attach(model, method, config)
    return count_parameters(model)


def params_command(args: argparse.Namespace) -> int:
    values = parse_assignments(args.values)
    counts = count_method_parameters(args.backbone, args.method, values, args.num_classes)
    if args.json:
        print(json.dumps(counts))
        return 0
    print(f"backbone  {args.backbone}")
    print(f"method    {args.method} {values or '(defaults)'}")
    for key in ("total", "trainable", "method", "head"):
        print(f"{key:<9} {counts[key]:>12,}  ({counts[key] / 1e6:.3f} M)")
    return 0


def methods_markdown(rows: list[dict[str, Any]], backbone: str) -> str:
    """The method table of ``docs/methods.md``: defaults and trainable parameters (head excluded) on ``backbone``."""
    lines = [f"| method | family | description | hyper-parameters (defaults) | mergeable | params on {backbone} "
             "(no head) |", "|---|---|---|---|---|---|"]
    for row in rows:
        counts = count_method_parameters(backbone, row["name"])
        defaults = ", ".join(f"`{h['name']}={h['default']}`" for h in row["hparams"]) or "–"
        lines.append(f"| `{row['name']}` | {row['family']} | {row['description']} | {defaults} | "
                     f"{'yes' if row['mergeable'] else 'no'} | {counts['method']:,} ({counts['method'] / 1e6:.3f} M) |")
    return "\n".join(lines)
