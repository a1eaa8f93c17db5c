import subprocess
import sys


def test_cli_start_up_does_not_import_torch():
    """~300 jobs each start the CLI: parsing arguments must not pay for torch and timm."""
    code = "import sys, peftlab.cli as c; c.build_parser(); print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_every_concern_registers_its_commands():
    from peftlab.cli import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    assert {"methods", "params", "data", "pretrain", "search", "train", "robustness", "ensembles", "report",
            "pipeline", "config"} <= commands
