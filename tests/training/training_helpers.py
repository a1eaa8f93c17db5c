"""Building a training session on the toy task without the CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from training_fixtures import BACKBONE, SMALL_CONFIG, TASK

from peftlab.training.cache import FrozenCache
from peftlab.training.loop import FitSettings
from peftlab.training.session import BackboneSource, TrainingSession


def make_session(shards: Path, backbone_file: Path, *, cache: FrozenCache | None = None, task: str = TASK,
                 **training: object) -> TrainingSession:
    settings = dict(copy.deepcopy(SMALL_CONFIG["training"]), **training)
    return TrainingSession(task_dir=shards / task, backbone=BackboneSource(BACKBONE, backbone_file),
                           training=settings, normalize=False, device=torch.device("cpu"),
                           cache=cache if cache is not None else FrozenCache(None), show_progress=False)


def settings_for(session: TrainingSession, hparams: dict) -> FitSettings:
    return FitSettings.from_config(session.training, hparams)


def run(session: TrainingSession, method: str, hparams: dict, *, seed: int = 0, evals=("val200",)):
    return session.run(method, hparams, seed=seed, train_split="train800", eval_splits=list(evals),
                       settings=settings_for(session, hparams))
