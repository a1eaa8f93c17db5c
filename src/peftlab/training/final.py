"""Final runs: the selected hyper-parameters retrained per seed on the full training split, scored once on test
and on every shift set of the task.

Per seed, ``runs/seed<k>/`` holds the PEFT checkpoint (``peft.safetensors`` + ``peft.json``), the head the run
started from (``head_init.safetensors``, θ₀'s head for WiSE-FT), the logits of every evaluated split and
``metrics.json``, written last, which records the sha256 of the four other files (``files_sha256``). A seed is
written into the job's resume folder (``paths.resume_dir(out)``, outside the outputs an engine deletes before a
re-run) and then linked into ``runs/``. A seed is finished, and kept on re-run, only when its ``metrics.json``
has the same fingerprint *and* every file still has its recorded content: a truncated or replaced checkpoint is
recomputed, never kept. The job's ``metrics.json`` summarises the seeds (mean, sample std, per seed). Many-shot
runs are the same with ``train_split = manyshot-<size>``.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.io import (
    link_or_copy,
    read_json,
    require_keys,
    save_tensors,
    sha256_file,
    verify_sha256,
    write_json,
)
from peftlab.paths import RUN_FILES, resume_dir, run_dir
from peftlab.training.loop import FitSettings
from peftlab.training.records import fingerprint, finite_or_none, method_identity, software_identity, stamp
from peftlab.training.session import RunOutcome, TrainingSession

FINAL_TRAIN_SPLIT = "train800val200"
TEST_SPLIT = "test"
SHIFT_PREFIX = "shift-"


def read_selected_hparams(path: str | Path, method: str) -> dict[str, Any]:
    """The selected point of a search's ``best.json``; any problem is one error naming the file and key."""
    best = read_json(path, what="search result (best.json)")
    if not isinstance(best, dict):
        raise PeftlabError(f"{path}: best.json must be a JSON object")
    require_keys(best, ("method", "selected"), str(path))
    if best["method"] != method:
        raise PeftlabError(f"{path}: key 'method' is '{best['method']}' but --method is '{method}'")
    selected = best["selected"]
    if not isinstance(selected, dict) or not isinstance(selected.get("hparams"), dict):
        raise PeftlabError(f"{path}: key 'selected.hparams' must be an object of hyper-parameters")
    hparams = selected["hparams"]
    for key in ("lr", "weight_decay"):
        value = hparams.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise PeftlabError(f"{path}: key 'selected.hparams.{key}' must be a non-negative number, got {value!r}")
    return dict(hparams)


def eval_splits_of(manifest: Mapping[str, Any]) -> list[str]:
    """``test`` and every ``shift-*`` split the task's manifest lists."""
    shifts = sorted(name for name in manifest["splits"] if name.startswith(SHIFT_PREFIX))
    return [TEST_SPLIT, *shifts]


def seed_metrics(outcome: RunOutcome, *, task: str, method: str, seed: int, hparams: Mapping[str, Any],
                 train_split: str, settings: FitSettings, identity: str, device: str,
                 precision: str) -> dict[str, Any]:
    return {
        "task": task, "method": method, "seed": seed, "hparams": dict(hparams), "train_split": train_split,
        "status": outcome.fit.status,
        "accuracy": {name: finite_or_none(s.accuracy) for name, s in outcome.scores.items()},
        "loss": {name: finite_or_none(s.loss) for name, s in outcome.scores.items()},
        "count": {name: s.count for name, s in outcome.scores.items()},
        "train_loss": finite_or_none(outcome.fit.train_loss),
        "epoch_train_loss": [finite_or_none(loss) for loss in outcome.fit.epoch_losses],
        "trainable_params": outcome.trainable_params, "model_params": outcome.model_params,
        "time_s": outcome.resources["time_s"], "peak_memory_mb": outcome.resources["peak_memory_mb"],
        "training_path": outcome.training_path,
        "epochs": settings.epochs, "settings": settings.as_dict(), "fingerprint": identity,
        "provenance": stamp(device, precision),
    }


def write_run(directory: Path, outcome: RunOutcome, metrics: dict[str, Any]) -> None:
    """The seed's files; ``metrics.json`` last, with the sha256 of the others, so its presence means the
    directory was complete and its hashes say whether it still is."""
    from peftlab.checkpoint import checkpoint_paths, save_peft

    save_peft(outcome.model, directory, extra_meta={
        "task": metrics["task"], "seed": metrics["seed"], "hparams": metrics["hparams"],
        "train_split": metrics["train_split"]})
    tensors = {}
    for name, logits in outcome.logits.items():
        tensors[f"{name}.logits"] = logits.float()
        tensors[f"{name}.labels"] = outcome.labels[name]
    written = {
        "head_init.safetensors": save_tensors(directory / "head_init.safetensors", outcome.head_init),
        "logits.safetensors": save_tensors(directory / "logits.safetensors", tensors),
    }
    for path in checkpoint_paths(directory):
        written[path.name] = sha256_file(path)
    metrics["files_sha256"] = {name: written[name] for name in RUN_FILES if name != "metrics.json"}
    write_json(directory / "metrics.json", metrics)


def verify_run(directory: str | Path) -> dict[str, Any]:
    """A finished seed directory's ``metrics.json``, once every other file is checked against the sha256 it
    records; otherwise an error naming the first missing, truncated or changed file."""
    directory = Path(directory)
    metrics_path = directory / "metrics.json"
    metrics = read_json(metrics_path, what="run metrics")
    recorded = metrics.get("files_sha256") if isinstance(metrics, dict) else None
    if not isinstance(recorded, dict) or set(recorded) != set(RUN_FILES) - {"metrics.json"}:
        raise PeftlabError(f"{metrics_path}: key 'files_sha256' missing or incomplete (written by an older peftlab: "
                           "re-run the training job)")
    for name in RUN_FILES:
        if name != "metrics.json":
            verify_sha256(directory / name, recorded[name], metrics_path)
    return metrics


def finished_run(directory: Path, identity: str) -> tuple[dict[str, Any] | None, str | None]:
    """``(metrics, None)`` for a finished, intact seed of this fingerprint; ``(None, why not)`` for a seed
    directory that cannot be kept (``why`` is None when there is simply nothing there)."""
    if not (directory / "metrics.json").is_file():
        return None, None
    try:
        metrics = verify_run(directory)
    except PeftlabError as exc:
        return None, str(exc)
    if metrics.get("fingerprint") != identity:
        return None, f"{directory}: finished with another configuration or other code"
    return metrics, None


def keep_run(source: Path, other: Path) -> None:
    """Link a finished seed's files to the other place (resume folder or output), ``metrics.json`` last."""
    for name in RUN_FILES:
        link_or_copy(source / name, other / name)


def summarize(runs: Sequence[Mapping[str, Any]], *, task: str, method: str, hparams: Mapping[str, Any],
              train_split: str, device: str, precision: str) -> dict[str, Any]:
    accuracy = {}
    for split in runs[0]["accuracy"]:
        values = [run["accuracy"].get(split) for run in runs]
        finite = [v for v in values if v is not None]
        accuracy[split] = {
            "mean": finite_or_none(statistics.fmean(finite)) if finite else None,
            "std": finite_or_none(statistics.stdev(finite)) if len(finite) > 1 else 0.0 if finite else None,
            "per_seed": values,
        }
    return {
        "task": task, "method": method, "seeds": [run["seed"] for run in runs], "hparams": dict(hparams),
        "train_split": train_split, "accuracy": accuracy,
        "status": {str(run["seed"]): run["status"] for run in runs},
        "trainable_params": runs[0]["trainable_params"],
        "time_s": {"total": round(sum(run["time_s"] for run in runs), 4),
                   "per_seed": [run["time_s"] for run in runs]},
        "std": "sample standard deviation over seeds (0 for one seed)",
        "provenance": stamp(device, precision),
    }


def run_final(session: TrainingSession, *, task: str, method: str, hparams: Mapping[str, Any],
              seeds: Sequence[int], train_split: str, eval_splits: Sequence[str], settings: FitSettings,
              out_dir: str | Path) -> dict[str, Any]:
    """Train every seed (or reuse a finished one), then write the summary ``metrics.json``."""
    out_dir = Path(out_dir)
    material = {
        "task": task, "method": method, "settings": settings.as_dict(),
        **method_identity(method, hparams, session.training),
        "drop_path": session.training.get("drop_path", 0.0), **session.head_identity(), **session.numerics_identity(),
        "normalize": session.normalize, "backbone": session.backbone.identity(), "train_split": train_split,
        "train": session.split(train_split).images_id, "eval_splits": list(eval_splits),
        "software": software_identity(session.device.type),
    }
    runs = []
    for seed in seeds:
        identity = fingerprint(dict(material, seed=seed))
        kept, published = run_dir(resume_dir(out_dir), seed), run_dir(out_dir / "runs", seed)
        metrics, done = None, "ran"
        for source, other in ((kept, published), (published, kept)):
            metrics, rejected = finished_run(source, identity)
            if metrics is not None:
                keep_run(source, other)
                done = "kept (finished earlier)"
                break
            if rejected:
                print(f"{task}/{method} seed {seed}: not kept, recomputed: {rejected}", file=sys.stderr)
        if metrics is None:
            outcome = session.run(method, hparams, seed=seed, train_split=train_split, eval_splits=eval_splits,
                                  settings=settings, label=f"{task}/{method} seed {seed}", evaluate_diverged=True)
            metrics = seed_metrics(outcome, task=task, method=method, seed=seed, hparams=hparams,
                                   train_split=train_split, settings=settings, identity=identity,
                                   device=str(session.device), precision=session.effective_precision)
            write_run(kept, outcome, metrics)
            keep_run(kept, published)
        print(f"{task}/{method} seed {seed} ({train_split}): {metrics['status']}, accuracy {metrics['accuracy']}, "
              f"{metrics['time_s']:.1f} s, {done}", file=sys.stderr)
        runs.append(metrics)
    summary = summarize(runs, task=task, method=method, hparams=hparams, train_split=train_split,
                        device=str(session.device), precision=session.effective_precision)
    write_json(out_dir / "metrics.json", summary)
    return summary
