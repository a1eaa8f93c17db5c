"""How stored inputs become logits: the whole model on images, or its trained suffix on cached prefix outputs.

A method's ``cache_point`` says how much of a timm ViT is frozen: ``features`` (everything before the head, the
linear probe) or the embedding stem and the first ``depth`` blocks (partial-k; ``depth`` 0 for methods that
change every block, where only the patch embedding is saved). That frozen prefix always runs in **eval mode**, in the
cached path (computed once) and in the uncached one (``set_train_mode`` puts it in eval mode), so both paths
compute the same function and the cache changes speed, never results. Drop-path and dropout therefore act only
in the trained part; for the linear probe the backbone's features are deterministic, as in the paper's code
(which runs the frozen backbone under ``torch.no_grad`` and only the head trains).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from peftlab.methods import CachePoint
from peftlab.training.inputs import InputTransform


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


def draws_random_numbers(model: nn.Module, point: CachePoint | None) -> bool:
    """Whether a training step of ``model`` draws random numbers: dropout, drop-path or patch dropout outside the
    frozen prefix (which always runs in eval mode), or a module that says so with a true
    ``peftlab_draws_random_numbers`` attribute (set by methods whose layers draw in other ways, e.g. peft's LoHa
    and LoKr layers). Runs that draw none can be trained together (``fit_group``)."""
    from timm.layers import DropPath, PatchDropout

    frozen = {id(sub) for module in (prefix_modules(model, point) if point is not None else [])
              for sub in module.modules()}
    for module in model.modules():
        if id(module) in frozen:
            continue
        if getattr(module, "peftlab_draws_random_numbers", False):
            return True
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return True
        if isinstance(module, DropPath) and module.drop_prob > 0:
            return True
        if isinstance(module, PatchDropout) and module.prob > 0:
            return True
    return False


def set_train_mode(model: nn.Module, point: CachePoint | None) -> None:
    """Train mode for the trained part, eval mode for the frozen prefix (see the module docstring)."""
    model.train()
    if point is not None:
        for module in prefix_modules(model, point):
            module.eval()


class ModelRunner:
    """Turns a batch of stored rows into logits.

    ``cached`` false: rows are uint8 images, converted on the device and run through the whole model.
    ``cached`` true: rows are outputs of the frozen prefix (from ``FrozenCache``); only the suffix runs.
    bf16 autocast on CUDA, float32 on the CPU; ``compile`` wraps the forward in ``torch.compile``.
    """

    def __init__(self, model: nn.Module, transform: InputTransform, *, point: CachePoint | None = None,
                 cached: bool = False, device: torch.device | str = "cpu", compile: bool = False) -> None:
        if cached and point is None:
            raise ValueError("a cached runner needs a cache point")
        if point is not None:
            check_frozen(model, point)
        self.model = model
        self.transform = transform
        self.point = point
        self.cached = cached
        self.device = torch.device(device)
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
        if self.device.type != "cuda":  # no autocast context on the CPU: it costs ~0.1 ms a step
            return self._forward(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self._forward(x)

    def train(self) -> None:
        set_train_mode(self.model, self.point)

    def eval(self) -> None:
        self.model.eval()

    def parameters(self) -> list[nn.Parameter]:
        """The trained tensors (fixed once the method is attached)."""
        return self._trained
