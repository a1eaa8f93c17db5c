"""AdamW over the trained tensors, as PETL_Vision builds it: one group, weight decay on every trained tensor.

No bias/norm exclusion: for BitFit or LayerNorm tuning the trained tensors *are* biases and norms, and the
weight-decay grid would otherwise do nothing.

The fused kernel is used on CUDA *and* on the CPU (torch has a fused CPU AdamW): on this study's CPU it takes
0.43 ms per step for LoRA's 50 tensors against 1.36 ms with ``foreach`` and 2.5 ms with the per-tensor loop,
which matters when a step's compute is small (a cached linear probe or partial-1). ``foreach`` remains the
fallback where fused is unsupported (e.g. an unusual dtype or device).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

FUSED_DEVICE_TYPES = ("cuda", "cpu")


def build_adamw(params: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float,
                device: torch.device | str) -> torch.optim.AdamW:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    fusable = torch.device(device).type in FUSED_DEVICE_TYPES and all(
        p.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64) for p in params)
    if fusable:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
