"""Checks a study must pass before either engine starts a job.

``peftlab.config.load_config`` checks keys, types, method names, grids and the data root. The pipeline adds what
only the DAG cares about: the methods of the many-shot and robustness analyses must have a search (they reuse
its selected point), local files named by the config must exist, generated data must land inside the project
(DVC tracks it), and job names must be unique. Each failure is one ``PeftlabError`` naming the file and key.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from peftlab.errors import PeftlabError
from peftlab.pipeline.steps import Study, all_jobs


def load_study(config_path: str | os.PathLike, root: str | os.PathLike = ".") -> Study:
    """Read, validate and check a study config; the ``Study`` both engines build their DAG from."""
    from peftlab.config import load_config

    config = load_config(config_path)
    study = Study(config, config_path, root)
    check_study(study, str(config_path))
    return study


def check_study(study: Study, source: str) -> None:
    methods = set(study.methods)
    for section in ("manyshot", "robustness"):
        extra = [m for m in study.section(section).get("methods", []) if m not in methods]
        if extra:
            raise PeftlabError(f"{source}: key '{section}.methods': {extra} are not in study.methods "
                               f"{study.methods} (their runs reuse the study's search)")
    if study.generates_data:
        _check_generated_manyshot(study, source)
    if study.generates_data and Path(study.raw_root).is_absolute():
        raise PeftlabError(f"{source}: key 'data.root': generated data must live inside the project "
                           f"(a relative path such as data/raw), got {study.raw_root}")
    files = {"backbone.weights": study.config["backbone"].get("weights"),
             "robustness.zero_shot_head": study.section("robustness").get("zero_shot_head"),
             "training.head_init_file": study.head_file}
    for key, value in files.items():
        if value and not (study.root / value).is_file():
            raise PeftlabError(f"{source}: key '{key}': file {value} does not exist")
    duplicates = [name for name, count in Counter(job.id for job in all_jobs(study)).items() if count > 1]
    if duplicates:
        raise PeftlabError(f"{source}: task or method names collide as job names {duplicates} "
                           "(names differing only in '.' versus '_')")


def _check_generated_manyshot(study: Study, source: str) -> None:
    """The mini-suite has many-shot lists for two tasks, up to ``data.generate.manyshot_size`` images."""
    from peftlab.data.generate.suite import DEFAULT_MANYSHOT_SIZE, MANYSHOT_TASKS

    section = study.section("manyshot")
    other = [task for task in section.get("tasks", []) if task not in MANYSHOT_TASKS]
    if other:
        raise PeftlabError(f"{source}: key 'manyshot.tasks': the generated mini-suite has many-shot lists only for "
                           f"{list(MANYSHOT_TASKS)}, not {other}")
    largest = study.config["data"]["generate"].get("manyshot_size", DEFAULT_MANYSHOT_SIZE)
    too_large = [size for size in section.get("sizes", []) if size > largest]
    if too_large:
        raise PeftlabError(f"{source}: key 'manyshot.sizes': {too_large} exceed data.generate.manyshot_size "
                           f"{largest}")
