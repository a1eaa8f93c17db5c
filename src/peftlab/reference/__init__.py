"""Released results of the paper's code base (OSU-MLB/PETL_Vision, commit 245d262), shipped as package data.

The CSV files in ``data/`` and their columns are described in ``data/README.md``; they are facts from a public
source, held against this project's results, never used to select anything.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
