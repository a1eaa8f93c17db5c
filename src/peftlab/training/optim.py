"""AdamW over the trained tensors, as PETL_Vision builds it: one group per run, weight decay on every trained tensor.

No bias/norm exclusion: for BitFit or LayerNorm tuning the trained tensors *are* biases and norms, and the
weight-decay grid would otherwise do nothing.

The fused kernel is used on CUDA *and* on the CPU (torch has a fused CPU AdamW): on this study's CPU it takes
0.43 ms per step for LoRA's 50 tensors against 1.36 ms with ``foreach`` and 2.5 ms with the per-tensor loop,
which matters when a step's compute is small (a cached linear probe or partial-1). ``foreach`` remains the
fallback where fused is unsupported (e.g. an unusual dtype or device).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

FUSED_DEVICE_TYPES = ("cuda", "cpu")


def build_adamw(params: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float,
                device: torch.device | str) -> torch.optim.AdamW:
    return build_adamw_groups([(params, weight_decay, lr)], device=device)


def build_adamw_groups(groups: Sequence[tuple[Iterable[torch.nn.Parameter], float, float]], *,
                       device: torch.device | str) -> torch.optim.AdamW:
    """One AdamW over ``(params, weight_decay, lr)`` groups: runs trained together (``fit_group``) each get a
    group, and the fused kernel updates each group exactly as an optimiser of that group alone would."""
    param_groups = []
    for params, weight_decay, lr in groups:
        trained = [p for p in params if p.requires_grad]
        if not trained:
            raise ValueError("nothing to train: no parameter requires grad")
        param_groups.append({"params": trained, "weight_decay": weight_decay, "lr": lr})
    dtypes_fusable = all(p.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
                         for group in param_groups for p in group["params"])
    if torch.device(device).type in FUSED_DEVICE_TYPES and dtypes_fusable:
        return torch.optim.AdamW(param_groups, fused=True)
    return torch.optim.AdamW(param_groups, foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
