"""What the machine offers a job: the NVIDIA driver (and the newest CUDA it supports) and the GPU's name.

When torch cannot use CUDA on a machine that has an NVIDIA driver, the fix is on the machine (a driver older
than the CUDA version of the torch wheel, or a CPU-only wheel), so the device policy's error names both sides.
The driver is probed without torch: ``/proc/driver/nvidia/version`` (the kernel module's version), then
``nvidia-smi``, whose header also gives the newest CUDA version the driver supports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

NVIDIA_PROC_VERSION = Path("/proc/driver/nvidia/version")
NVIDIA_SMI = "nvidia-smi"
SMI_TIMEOUT_S = 20

_PROC_VERSION = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+([0-9][0-9.]*)")
_SMI_DRIVER = re.compile(r"Driver Version:\s*([0-9][0-9.]*)")
_SMI_CUDA = re.compile(r"CUDA Version:\s*([0-9][0-9.]*)")


@dataclass(frozen=True)
class NvidiaDriver:
    """An installed NVIDIA driver: its version and, when ``nvidia-smi`` says, the newest CUDA it supports."""

    version: str | None
    cuda: str | None

    def describe(self) -> str:
        version = self.version or "of unknown version"
        supports = f" (supports CUDA up to {self.cuda})" if self.cuda else ""
        return f"NVIDIA driver {version}{supports}"


def nvidia_driver(proc_version: Path = NVIDIA_PROC_VERSION, smi: str = NVIDIA_SMI) -> NvidiaDriver | None:
    """The installed NVIDIA driver, or None when neither the kernel module's file nor ``nvidia-smi`` exists."""
    version = None
    present = proc_version.is_file()
    if present:
        try:
            match = _PROC_VERSION.search(proc_version.read_text(errors="replace"))
        except OSError:
            match = None
        version = match.group(1) if match else None
    cuda = None
    smi_path = shutil.which(smi)
    if smi_path is not None:
        present = True
        header = _run(smi_path)
        if header:
            driver = _SMI_DRIVER.search(header)
            version = version or (driver.group(1) if driver else None)
            found = _SMI_CUDA.search(header)
            cuda = found.group(1) if found else None
    return NvidiaDriver(version, cuda) if present else None


def _run(executable: str) -> str:
    """``nvidia-smi``'s output, or "" when it fails (a broken driver install still counts as present)."""
    try:
        return subprocess.run([executable], capture_output=True, text=True, timeout=SMI_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def gpu_name(device: str | None) -> str | None:
    """The name of the CUDA device ``device`` (``cuda``, ``cuda:1``), or None for any other device."""
    if not device or not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device))
