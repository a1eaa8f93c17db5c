"""What ran, where and with what: stamped into every result file so a number explains itself."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from peftlab.hardware import gpu_name

TRACKED_PACKAGES = ("peftlab", "torch", "torchvision", "timm", "numpy", "safetensors", "pandas")


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The commit of the working tree (with ``-dirty`` when it has changes), or None outside git."""
    try:
        cwd = Path.cwd()
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


@functools.lru_cache(maxsize=8)
def _versions(names: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    """Package metadata lookups cost ~40 ms: read once per process."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return tuple(versions.items())


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    return dict(_versions(tuple(names)))


def provenance(device: str | None = None, precision: str | None = None) -> dict:
    """A dict describing the software and machine that produced a result.

    ``device`` is where it ran (``cpu``, ``cuda``, ``cuda:1``), ``precision`` the arithmetic it ran in (``bf16``:
    bf16 autocast on CUDA; ``fp32``), ``gpu_name`` the CUDA device's name (None off the GPU). Files made without
    a model (reports, ensembles of stored logits) leave device and precision None.
    """
    return {
        "git_revision": git_revision(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "precision": precision,
        "gpu_name": gpu_name(device),
        "created_unix": round(time.time(), 3),
    }


def peak_memory_mb(device: str = "cpu") -> float:
    """Peak memory of this process: CUDA allocator peak on a GPU, max resident set size on the CPU."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss_kb / 1024


@dataclass
class ResourceMeter:
    """Wall time since construction and the process' peak memory at ``read()``."""

    device: str = "cpu"
    start: float = field(default_factory=time.perf_counter)

    def read(self) -> dict[str, float]:
        return {
            "time_s": round(time.perf_counter() - self.start, 4),
            "peak_memory_mb": round(peak_memory_mb(self.device), 2),
        }
