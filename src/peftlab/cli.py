"""The ``peftlab`` command.

Each concern registers its subcommands from a light ``commands`` module; torch and timm are imported inside the
handlers, so ``peftlab --help`` and argument errors stay fast. A ``PeftlabError`` becomes one line on stderr and
exit code 2; so does a write that the machine refuses (a full disk, a quota, a read-only or forbidden folder)
wherever it was not already reported naming its file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from peftlab import __version__
from peftlab.errors import PeftlabError
from peftlab.io import write_failure

COMMAND_MODULES = (
    "peftlab.methods.commands",
    "peftlab.data.commands",
    "peftlab.training.commands",
    "peftlab.training.probe_command",
    "peftlab.analysis.commands",
    "peftlab.pipeline.commands",
    "peftlab.zeroshot.commands",
    "peftlab.pipeline.verify",
    "peftlab.pipeline.resume",
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
    args, passed = parser.parse_known_args(argv)
    if passed and not getattr(args, "passes_through", False):
        parser.error(f"unrecognized arguments: {' '.join(passed)}")
    args.passed = passed  # a command that wraps another program (peftlab snakemake) gets its arguments as given
    try:
        result = args.handler(args)
    except PeftlabError as exc:
        print(f"peftlab: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        failure = write_failure(exc.filename or "an output file", exc)
        if failure is None:
            raise
        print(f"peftlab: error: {failure}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
