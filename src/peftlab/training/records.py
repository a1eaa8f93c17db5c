"""Pieces shared by the result files of searches and final runs: ids, fingerprints, JSON-safe numbers.

A *fingerprint* hashes everything that determines a run's result (method, hyper-parameters, training settings,
backbone weights, the images of the splits it reads, seed). A finished result whose fingerprint matches is
reused on re-run; one from another configuration is recomputed rather than silently kept. The method's
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
from typing import Any

SHORT_KEYS = {"lr": "lr", "weight_decay": "wd"}


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
