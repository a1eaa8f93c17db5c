"""Hyper-parameter search of one (task, method): every grid point trains on ``train800``, is scored on
``val200`` at the last epoch, and the best point is written to ``best.json``.

Selection never sees test data: a search opens only the train and validation shards (it runs with
``test.safetensors`` deleted). Each trial is one JSON file written atomically when the trial ends, into the
job's resume folder (``paths.resume_dir(out)``, beside ``--out`` and outside the outputs an engine declares and
deletes before a re-run) and then linked into ``<out>/trials``. A killed search resumes where it stopped, by hand
or under either engine: trials with a valid file of the same fingerprint (in the resume folder or in
``<out>/trials``) are kept byte for byte, a trial killed mid-way left no file and runs again. Trials that draw no
random numbers (a linear probe) train together (``TrainingSession.run_grid``), with the results they would have
alone; their files are written when the group ends.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from peftlab.errors import PeftlabError
from peftlab.io import link_or_copy, read_json, write_json
from peftlab.paths import resume_dir
from peftlab.training.loop import DIVERGED, OK, FitSettings
from peftlab.training.records import (
    fingerprint,
    finite_or_none,
    method_identity,
    software_identity,
    stamp,
    trial_id,
)
from peftlab.training.session import RunOutcome, TrainingSession

SEARCH_TRAIN_SPLIT = "train800"
SEARCH_VAL_SPLIT = "val200"
SELECTION_RULE = (
    "highest val200 top-1 accuracy at the last epoch among trials with status 'ok' (diverged trials are never "
    "selected); ties are broken by fewer trainable parameters (method + head), then by grid order "
    "(search.lr x search.weight_decay x the method grid, as listed in 'trials'); the test split is never read"
)


def trial_material(session: TrainingSession, *, task: str, method: str, hparams: Mapping[str, Any],
                   settings: FitSettings, seed: int) -> dict[str, Any]:
    """What determines a trial's result (hashed into its fingerprint)."""
    training = session.training
    return {
        "task": task, "method": method, "settings": settings.as_dict(), "seed": seed,
        **method_identity(method, hparams, training),
        "drop_path": training.get("drop_path", 0.0), **session.head_identity(), **session.numerics_identity(),
        "normalize": session.normalize, "backbone": session.backbone.identity(),
        "train": session.split(SEARCH_TRAIN_SPLIT).images_id, "val": session.split(SEARCH_VAL_SPLIT).images_id,
        "software": software_identity(session.device.type),
    }


def read_finished(path: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """A finished trial's record, or None when absent, unreadable or from another configuration."""
    if not path.is_file():
        return None
    try:
        record = read_json(path, what="trial record")
    except PeftlabError:
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != expected_fingerprint:
        return None
    return record if record.get("status") in (OK, DIVERGED) else None


@dataclass
class PlannedTrial:
    """One grid point of a search: its file in the resume folder (``kept``) and in the job's output
    (``published``) and, once finished, the record."""

    trial_id: str
    hparams: Mapping[str, Any]
    settings: FitSettings
    fingerprint: str
    kept: Path
    published: Path
    record: dict[str, Any] | None = None

    def find_finished(self) -> None:
        """The record of a finished trial of this fingerprint, from the resume folder or the output; the one
        found is linked to the other place, so it survives an engine's clean-up and shows in the output."""
        for source, other in ((self.kept, self.published), (self.published, self.kept)):
            record = read_finished(source, self.fingerprint)
            if record is not None:
                link_or_copy(source, other)
                self.record = record
                return

    def finish(self, record: dict[str, Any]) -> None:
        write_json(self.kept, record)
        link_or_copy(self.kept, self.published)
        self.record = record


def trial_record(outcome: RunOutcome, trial: PlannedTrial, *, task: str, method: str, seed: int,
                 device: str, precision: str) -> dict[str, Any]:
    val = outcome.scores.get(SEARCH_VAL_SPLIT)
    return {
        "task": task, "method": method, "trial_id": trial.trial_id, "hparams": dict(trial.hparams),
        "status": outcome.fit.status,
        "val_accuracy": finite_or_none(val.accuracy) if val else None,
        "val_loss": finite_or_none(val.loss) if val else None,
        "train_loss": finite_or_none(outcome.fit.train_loss),
        "epoch_train_loss": [finite_or_none(loss) for loss in outcome.fit.epoch_losses],
        "trainable_params": outcome.trainable_params, "model_params": outcome.model_params,
        "time_s": outcome.resources["time_s"], "peak_memory_mb": outcome.resources["peak_memory_mb"],
        "fit_group_size": outcome.resources.get("fit_group_size", 1), "training_path": outcome.training_path,
        "seed": seed, "epochs": trial.settings.epochs, "epochs_run": outcome.fit.epochs_run,
        "settings": trial.settings.as_dict(), "train_split": SEARCH_TRAIN_SPLIT, "eval_split": SEARCH_VAL_SPLIT,
        "fingerprint": trial.fingerprint, "provenance": stamp(device, precision),
    }


def log_trial(task: str, method: str, trial: PlannedTrial, done: str) -> None:
    record = trial.record
    tqdm.write(f"{task}/{method} {trial.trial_id}: {record['status']}, val accuracy {record['val_accuracy']}, "
               f"{record['time_s']:.1f} s, {done}", file=sys.stderr)


def select_best(trials: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The trial chosen by ``SELECTION_RULE`` (``trials`` in grid order)."""
    candidates = [(index, t) for index, t in enumerate(trials) if t["status"] == OK and t["val_accuracy"] is not None]
    if not candidates:
        raise PeftlabError(f"{trials[0]['task']}/{trials[0]['method']}: every trial diverged; no point to select "
                           "(lower search.lr)")
    _, best = min(candidates, key=lambda c: (-c[1]["val_accuracy"], c[1]["trainable_params"]["total"], c[0]))
    return best


PUBLISHED_RULE = (
    "published selection: the hyper-parameters the paper's code selected for this task and method (its grid "
    "search on train800/val200), read from the released results; no trial was trained here"
)


def write_published(out_dir: str | Path, *, task: str, method: str, point: Mapping[str, Any], released: Any,
                    device: str, precision: str) -> dict[str, Any]:
    """``best.json`` for a released selection (``search.published``): the point, where it comes from, no
    trials (the declared ``trials`` folder is left empty) and no validation accuracy."""
    from peftlab.reference.tables import SOURCES

    out_dir = Path(out_dir)
    (out_dir / "trials").mkdir(parents=True, exist_ok=True)
    summary = {
        "task": task, "method": method,
        "selected": {"trial_id": trial_id(point), "hparams": dict(point)},
        "val_accuracy": None, "rule": PUBLISHED_RULE, "trials": [],
        "published": {"source": SOURCES["vtab1k"].cite(), "released_method": released.released_method,
                      "released_test_accuracy_pct": released.accuracy_pct},
        "provenance": stamp(device, precision),
    }
    write_json(out_dir / "best.json", summary)
    return summary


def run_search(session: TrainingSession, *, task: str, method: str, points: Sequence[Mapping[str, Any]],
               training: Mapping[str, Any], seed: int, out_dir: str | Path) -> dict[str, Any]:
    """Run (or resume) every grid point, then write ``best.json``; returns its content."""
    out_dir = Path(out_dir)
    ids = [trial_id(point) for point in points]
    if len(set(ids)) != len(ids):
        raise PeftlabError(f"search grid of {method} has duplicate points: {ids}")
    planned = []
    for tid, point in zip(ids, points, strict=True):
        settings = FitSettings.from_config(training, point)
        identity = fingerprint(trial_material(session, task=task, method=method, hparams=point,
                                              settings=settings, seed=seed))
        trial = PlannedTrial(tid, point, settings, identity, kept=resume_dir(out_dir) / f"{tid}.json",
                             published=out_dir / "trials" / f"{tid}.json")
        trial.find_finished()
        planned.append(trial)
    bar = tqdm(total=len(planned), desc=f"search {task}/{method}", unit="trial",
               disable=None if session.show_progress else True)
    for trial in planned:
        if trial.record is not None:
            log_trial(task, method, trial, "kept (finished earlier)")
            bar.update()
    pending = [trial for trial in planned if trial.record is None]
    for index, outcome in session.run_grid(method, [(trial.hparams, trial.settings) for trial in pending], seed=seed,
                                           train_split=SEARCH_TRAIN_SPLIT, eval_splits=[SEARCH_VAL_SPLIT]):
        trial = pending[index]
        trial.finish(trial_record(outcome, trial, task=task, method=method, seed=seed, device=str(session.device),
                                  precision=session.effective_precision))
        log_trial(task, method, trial, "ran")
        bar.update()
    bar.close()
    trials = [trial.record for trial in planned]
    best = select_best(trials)
    summary = {
        "task": task, "method": method,
        "selected": {"trial_id": best["trial_id"], "hparams": best["hparams"]},
        "val_accuracy": best["val_accuracy"], "rule": SELECTION_RULE, "seed": seed,
        "trials": [{key: t[key] for key in ("trial_id", "hparams", "status", "val_accuracy", "val_loss",
                                            "trainable_params")} for t in trials],
        "provenance": stamp(str(session.device), session.effective_precision),
    }
    write_json(out_dir / "best.json", summary)
    return summary
