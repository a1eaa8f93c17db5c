"""The artifact layout, written once.

Patterns use ``{wildcard}`` names that the Snakefile uses as rule wildcards, the ``dvc.yaml`` writer fills in,
and the CLI formats with ``path()``. A path spelled in two places drifts, so nothing else spells one.
"""

from __future__ import annotations

from pathlib import Path

RAW_ROOT = "data/raw"
RAW_TASK = "data/raw/{task}"
SHARD_DIR = "data/shards/{task}"
SHARD = "data/shards/{task}/{split}.safetensors"
MANIFEST = "data/shards/{task}/manifest.json"

BACKBONE_DIR = "models/{backbone}"
BACKBONE_WEIGHTS = "models/{backbone}/backbone.safetensors"
BACKBONE_CARD = "models/{backbone}/card.json"
BACKBONE_PROBE = "models/{backbone}/probe.json"

SEARCH_DIR = "results/search/{task}/{method}"
TRIALS_DIR = "results/search/{task}/{method}/trials"
TRIAL = "results/search/{task}/{method}/trials/{trial_id}.json"
BEST = "results/search/{task}/{method}/best.json"

FINAL_DIR = "results/final/{task}/{method}"
FINAL_RUNS = "results/final/{task}/{method}/runs"
FINAL_METRICS = "results/final/{task}/{method}/metrics.json"

MANYSHOT_DIR = "results/manyshot/{task}/{size}/{method}"
MANYSHOT_RUNS = "results/manyshot/{task}/{size}/{method}/runs"
MANYSHOT_METRICS = "results/manyshot/{task}/{size}/{method}/metrics.json"

# Inside a final or many-shot directory (``runs_dir`` is FINAL_RUNS or MANYSHOT_RUNS).
RUN_DIR = "{runs_dir}/seed{seed}"
RUN_FILES = ("peft.safetensors", "peft.json", "head_init.safetensors", "logits.safetensors", "metrics.json")

ROBUSTNESS_CSV = "results/robustness/{task}/{method}/wise.csv"
ENSEMBLES_DIR = "results/ensembles/{task}"
ENSEMBLE_FILES = ("agreement.csv", "ensembles.csv", "summary.json")

REPORT_DIR = "reports"
REPORT_INDEX_MD = "reports/index.md"
REPORT_INDEX_HTML = "reports/index.html"
REPORT_FIGURES = "reports/figures"
REPORT_TABLES = "reports/tables"


def path(pattern: str, root: str | Path | None = None, **wildcards: object) -> Path:
    """Fill a layout pattern; relative to ``root`` when given (the project root otherwise)."""
    filled = Path(pattern.format(**wildcards))
    return Path(root) / filled if root is not None else filled


def run_dir(runs_dir: str | Path, seed: int) -> Path:
    return Path(RUN_DIR.format(runs_dir=runs_dir, seed=seed))
