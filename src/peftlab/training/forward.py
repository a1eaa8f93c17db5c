"""How stored inputs become logits: the whole model on images, or its trained suffix on cached prefix outputs.

A method's ``cache_point`` says how much of a timm ViT is frozen: ``features`` (everything before the head, the
linear probe) or the embedding stem and the first ``depth`` blocks (partial-k; ``depth`` 0 for methods that
change every block, where only the patch embedding is saved). How that frozen prefix runs while training is
``training.frozen_blocks``:

- ``eval``: in eval mode, in the cached path (computed once) and in the uncached one (``set_train_mode`` puts it
  in eval mode), so both compute the same function and the cache changes speed, never results. Drop-path and
  dropout act only in the trained part.
- ``train``: in train mode, as PETL_Vision trains (``model.train()`` on the whole model, drop-path 0.1 in every
  block, frozen or not; its linear probe's backbone features are stochastic). A prefix that then draws random
  numbers (``prefix_draws_random_numbers``) cannot be cached for training; evaluation, in eval mode, still can.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from peftlab.methods import CachePoint
from peftlab.training.inputs import InputTransform

# ``training.precision``: bf16 autocast on CUDA, or float32 throughout (the paper code's arithmetic).
PRECISIONS = ("bf16", "fp32")
DEFAULT_PRECISION = "bf16"


def autocast_dtype(device: torch.device | str, precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``: bfloat16 for ``bf16`` on CUDA, else None (float32).

    The CPU always runs float32: bf16 autocast there is 2.4x slower than float32 (docs/training.md)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not one of {PRECISIONS}")
    return torch.bfloat16 if torch.device(device).type == "cuda" and precision == "bf16" else None


def precision_used(device: torch.device | str, precision: str) -> str:
    """What a run on ``device`` computes in (``bf16`` or ``fp32``): recorded in provenance and fingerprints."""
    return "bf16" if autocast_dtype(device, precision) is not None else "fp32"


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (no context at all where it runs float32)."""
    dtype = autocast_dtype(device, precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype=dtype)


def prefix_modules(model: nn.Module, point: CachePoint) -> list[nn.Module]:
    """The modules that make up the frozen prefix of a timm ``VisionTransformer``."""
    if point.kind == "features":
        return [module for name, module in model.named_children() if module is not model.get_classifier()]
    if point.kind == "blocks":
        if not 0 <= point.depth <= len(model.blocks):
            raise ValueError(f"cache point depth {point.depth} outside 0..{len(model.blocks)}")
        stem = [model.patch_embed, model.pos_drop, model.patch_drop, model.norm_pre]
        return stem + list(model.blocks[: point.depth])
    raise ValueError(f"unknown cache point kind {point.kind!r}")


def check_frozen(model: nn.Module, point: CachePoint) -> None:
    """A cache point is only valid when nothing in the prefix trains (including cls/pos tokens)."""
    trained = [name for name, p in model.named_parameters() if p.requires_grad and _in_prefix(model, point, name)]
    if trained:
        raise ValueError(f"cache point {point} covers trained tensors {trained[:3]}")


def _in_prefix(model: nn.Module, point: CachePoint, name: str) -> bool:
    if point.kind == "features":
        return not name.startswith("head.")
    if name.split(".")[0] in {"cls_token", "reg_token", "pos_embed", "patch_embed", "norm_pre"}:
        return True
    parts = name.split(".")
    return parts[0] == "blocks" and int(parts[1]) < point.depth


def prefix_forward(model: nn.Module, point: CachePoint, x: torch.Tensor) -> torch.Tensor:
    """The frozen prefix: pre-logit features, or the token sequence after the first ``depth`` blocks."""
    if point.kind == "features":
        return model.forward_head(model.forward_features(x), pre_logits=True)
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    for block in model.blocks[: point.depth]:
        x = block(x)
    return x


def suffix_forward(model: nn.Module, point: CachePoint, x: torch.Tensor) -> torch.Tensor:
    """The rest of the model, from a prefix output to logits."""
    if point.kind == "features":
        return model.get_classifier()(x)
    for block in model.blocks[point.depth:]:
        x = block(x)
    return model.forward_head(model.norm(x))


FROZEN_BLOCK_MODES = ("eval", "train")


def check_frozen_blocks(mode: str) -> str:
    if mode not in FROZEN_BLOCK_MODES:
        raise ValueError(f"frozen_blocks {mode!r}: choose one of {list(FROZEN_BLOCK_MODES)}")
    return mode


def _is_stochastic(module: nn.Module) -> bool:
    """Dropout, drop-path or patch dropout with a positive rate, or a module that says so with a true
    ``peftlab_draws_random_numbers`` attribute (set by methods whose layers draw in other ways, e.g. peft's LoHa
    and LoKr layers): draws random numbers in train mode."""
    from timm.layers import DropPath, PatchDropout

    if getattr(module, "peftlab_draws_random_numbers", False):
        return True
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return module.p > 0
    if isinstance(module, DropPath):
        return module.drop_prob > 0
    return isinstance(module, PatchDropout) and module.prob > 0


def prefix_draws_random_numbers(model: nn.Module, point: CachePoint) -> bool:
    """Whether the frozen prefix draws random numbers when it runs in train mode (drop-path in frozen blocks)."""
    return any(_is_stochastic(sub) for module in prefix_modules(model, point) for sub in module.modules())


def draws_random_numbers(model: nn.Module, point: CachePoint | None, frozen_blocks: str = "eval") -> bool:
    """Whether a training step of ``model`` draws random numbers: dropout, drop-path or patch dropout in the
    trained part, or in the frozen prefix when it trains in train mode (``frozen_blocks``). Runs that draw none
    can be trained together (``fit_group``)."""
    skipped = prefix_modules(model, point) if point is not None and check_frozen_blocks(frozen_blocks) == "eval" else []
    frozen = {id(sub) for module in skipped for sub in module.modules()}
    return any(_is_stochastic(module) for module in model.modules() if id(module) not in frozen)


def set_train_mode(model: nn.Module, point: CachePoint | None, frozen_blocks: str = "eval") -> None:
    """Train mode for the model; the frozen prefix back in eval mode unless ``frozen_blocks`` is ``train``."""
    model.train()
    if point is not None and check_frozen_blocks(frozen_blocks) == "eval":
        for module in prefix_modules(model, point):
            module.eval()


class ModelRunner:
    """Turns a batch of stored rows into logits.

    ``cached`` false: rows are uint8 images, converted on the device and run through the whole model.
    ``cached`` true: rows are outputs of the frozen prefix (from ``FrozenCache``); only the suffix runs.
    ``frozen_blocks``: the prefix's mode in training (module docstring); a cached runner cannot train with a
    prefix that would draw random numbers. ``precision`` ``bf16``: bf16 autocast on CUDA; ``fp32`` (and always on
    the CPU): float32, no autocast. ``compile`` wraps the forward in ``torch.compile``.
    """

    def __init__(self, model: nn.Module, transform: InputTransform, *, point: CachePoint | None = None,
                 cached: bool = False, device: torch.device | str = "cpu", compile: bool = False,
                 frozen_blocks: str = "eval", precision: str = DEFAULT_PRECISION) -> None:
        if cached and point is None:
            raise ValueError("a cached runner needs a cache point")
        if point is not None:
            check_frozen(model, point)
        self.model = model
        self.transform = transform
        self.point = point
        self.cached = cached
        self.frozen_blocks = check_frozen_blocks(frozen_blocks)
        self.device = torch.device(device)
        self.precision = precision
        self._autocast = autocast_dtype(self.device, precision)
        forward: Callable[[torch.Tensor], torch.Tensor]
        if cached:
            forward = self._suffix
        else:
            forward = model
        self._forward = torch.compile(forward) if compile else forward
        self._trained = [p for p in model.parameters() if p.requires_grad]

    def _suffix(self, x: torch.Tensor) -> torch.Tensor:
        return suffix_forward(self.model, self.point, x)

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        x = rows if self.cached else self.transform(rows)
        if self._autocast is None:  # no context at all: even a disabled autocast costs ~0.1 ms a step
            return self._forward(x)
        with torch.autocast(self.device.type, dtype=self._autocast):
            return self._forward(x)

    def train(self) -> None:
        if self.cached and self.frozen_blocks == "train" and prefix_draws_random_numbers(self.model, self.point):
            raise ValueError("cached prefix outputs cannot stand for a frozen prefix that draws random numbers in "
                             "train mode; train uncached")
        set_train_mode(self.model, self.point, self.frozen_blocks)

    def eval(self) -> None:
        self.model.eval()

    def parameters(self) -> list[nn.Parameter]:
        """The trained tensors (fixed once the method is attached)."""
        return self._trained
