"""AdamW over the trained tensors, as PETL_Vision builds it: one group, weight decay on every trained tensor.

No bias/norm exclusion: for BitFit or LayerNorm tuning the trained tensors *are* biases and norms, and the
weight-decay grid would otherwise do nothing. Fused kernels on CUDA, ``foreach`` on the CPU.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def build_adamw(params: Iterable[torch.nn.Parameter], *, lr: float, weight_decay: float,
                device: torch.device | str) -> torch.optim.AdamW:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    on_cuda = torch.device(device).type == "cuda"
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay,
                             fused=True if on_cuda else None, foreach=None if on_cuda else True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
