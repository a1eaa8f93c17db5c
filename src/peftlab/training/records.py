"""Pieces shared by the result files of searches and final runs: ids, fingerprints, JSON-safe numbers.

A *fingerprint* hashes everything that determines a run's result (method, hyper-parameters, training settings,
backbone weights, the images of the splits it reads, seed, and the software: peftlab's own code, the versions
of the numeric libraries, the device type). A finished result whose fingerprint matches is reused on re-run; one
from another configuration or other code is recomputed rather than silently kept, so a resumed job never mixes
results of two code versions, and forcing a job after a code change (``snakemake --forcerun``, ``dvc repro
--force``) recomputes it although its finished trials and seeds are kept for resuming. The method's
hyper-parameters enter at their resolved values, defaults included (``method_identity``), so a run made under
another default (LoRA's ``form``, say) is not mistaken for one of the current method.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SHORT_KEYS = {"lr": "lr", "weight_decay": "wd"}
# Libraries whose version can change a trained number (kernels, initialisation, file format).
NUMERIC_PACKAGES = ("torch", "timm", "numpy", "safetensors")


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return re.sub(r"[^A-Za-z0-9.+_]", "_", str(value))


def trial_id(hparams: Mapping[str, Any]) -> str:
    """A readable id, stable for the same hyper-parameters: ``lr0.001-wd0.0001-rank8``."""
    return "-".join(f"{SHORT_KEYS.get(key, key)}{format_value(value)}" for key, value in hparams.items())


def method_identity(method: str, hparams: Mapping[str, Any], training: Mapping[str, Any]) -> dict[str, Any]:
    """What a run computes beyond its settings: every method hyper-parameter at its resolved value (with the
    shared ``lr``/``weight_decay``), and the frozen prefix's mode in training (``training.frozen_blocks``)."""
    import dataclasses

    from peftlab.methods import build_config

    resolved = dataclasses.asdict(build_config(method, hparams))
    shared = {key: hparams[key] for key in ("lr", "weight_decay") if key in hparams}
    return {"hparams": {**shared, **resolved}, "frozen_blocks": training.get("frozen_blocks", "eval")}


def fingerprint(material: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_sha256() -> str:
    """SHA-256 over the files of the installed peftlab package (sources and package data, not bytecode):
    identifies the code that computed a result, whether or not it sits in a git checkout (about 10 ms)."""
    import peftlab

    root = Path(peftlab.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(root).as_posix()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n"
                      .encode())
    return digest.hexdigest()


def software_identity(device_type: str) -> dict[str, Any]:
    """The software part of a fingerprint: peftlab's code, the numeric libraries' versions, the device type."""
    from peftlab.provenance import package_versions

    return {"code_sha256": code_sha256(), "packages": package_versions(NUMERIC_PACKAGES), "device_type": device_type}


def finite_or_none(value: float | None, digits: int = 6) -> float | None:
    """JSON has no NaN: a non-finite number is written as null."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


@functools.lru_cache(maxsize=8)
def _process_provenance(device: str, precision: str | None) -> dict[str, Any]:
    from peftlab.provenance import provenance

    return provenance(device, precision)


def stamp(device: str, precision: str | None = None) -> dict[str, Any]:
    """``peftlab.provenance.provenance(device, precision)`` with a fresh timestamp; versions, git revision and GPU
    name are read once per process (reading package metadata costs ~40 ms a call, per trial file otherwise)."""
    return dict(_process_provenance(device, precision), created_unix=round(time.time(), 3))
