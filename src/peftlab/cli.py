"""The ``peftlab`` command.

Each concern registers its subcommands from a light ``commands`` module; torch and timm are imported inside the
handlers, so ``peftlab --help`` and argument errors stay fast. A ``PeftlabError`` becomes one line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from peftlab import __version__
from peftlab.errors import PeftlabError

COMMAND_MODULES = (
    "peftlab.methods.commands",
    "peftlab.data.commands",
    "peftlab.training.commands",
    "peftlab.training.probe_command",
    "peftlab.analysis.commands",
    "peftlab.pipeline.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="peftlab", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"peftlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except PeftlabError as exc:
        print(f"peftlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
