"""Building blocks shared by the PEFT methods: module surgery, bottleneck adapters, low-rank updates and
scale-and-shift layers.

Conventions that the methods rely on:

* Every block starts at (or can be set to) the identity of the wrapped computation, so a freshly attached
  method either computes the pretrained backbone exactly (zero up-projections, ``B = 0``) or a known
  perturbation of it (SSF's random scale/shift).
* ``LinearWithDelta`` keeps the frozen weight under the wrapped ``nn.Linear``'s own names (``weight``,
  ``bias``), so the backbone's state-dict keys survive attachment and a plain timm checkpoint still loads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["gelu", "relu", "quick_gelu", "identity"]
BottleneckInit = Literal["zero_up", "lora", "xavier", "xavier_both"]


def replace_module(root: nn.Module, dotted_name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``dotted_name`` inside ``root`` (e.g. ``"blocks.3.attn.qkv"``); return the old module.

    ``new`` takes the old module's train/eval mode, so attaching to a model in eval mode adds no dropout.
    """
    parent_name, _, child_name = dotted_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    old = getattr(parent, child_name)
    new.train(old.training)
    setattr(parent, child_name, new)
    return old


class QuickGELU(nn.Module):
    """CLIP's GELU approximation ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: Activation) -> nn.Module:
    """The activation module named ``name`` (``gelu``, ``relu``, ``quick_gelu``, ``identity``)."""
    activations = {"gelu": nn.GELU, "relu": nn.ReLU, "quick_gelu": QuickGELU, "identity": nn.Identity}
    try:
        return activations[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(activations)}") from None


class Bottleneck(nn.Module):
    """``scale * up(act(down(x)))``: the adapter bottleneck of Houlsby/Pfeiffer/AdaptFormer-style methods.

    With every init except ``xavier_both`` the up-projection (weight and bias) starts at zero, so the block
    outputs zero and an adapter added to a residual stream is the identity at initialisation. ``init``:
    ``zero_up``: down keeps ``nn.Linear``'s default (kaiming-uniform weight, uniform bias);
    ``lora``: down kaiming-uniform (a=√5) weight, zero bias (PETL_Vision ``lora_kaiming``);
    ``xavier``: down xavier-uniform weight, zero bias (PETL_Vision ``lora_xavier``);
    ``xavier_both``: down *and up* xavier-uniform, biases N(0, 1e-6) (PETL_Vision ``xavier``, Convpass's
    "xavier init = yes"); NOT identity at initialisation.
    ``scale`` is a fixed float (a hyper-parameter, not trained).
    """

    def __init__(self, in_dim: int, hidden_dim: int, scale: float = 1.0, act: Activation = "gelu",
                 init: BottleneckInit = "zero_up", bias: bool = True, out_dim: int | None = None) -> None:
        super().__init__()
        self.scale = float(scale)
        self.down = nn.Linear(in_dim, hidden_dim, bias=bias)
        self.act = make_activation(act)
        self.up = nn.Linear(hidden_dim, out_dim or in_dim, bias=bias)
        self._init(init)

    def _init(self, init: BottleneckInit) -> None:
        if init == "xavier_both":
            for linear in (self.down, self.up):
                nn.init.xavier_uniform_(linear.weight)
                if linear.bias is not None:
                    nn.init.normal_(linear.bias, std=1e-6)
            return
        if init == "lora":
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        elif init == "xavier":
            nn.init.xavier_uniform_(self.down.weight)
        elif init != "zero_up":
            raise ValueError(f"unknown bottleneck init {init!r}; choose zero_up, lora, xavier or xavier_both")
        if init != "zero_up" and self.down.bias is not None:
            nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        if self.up.bias is not None:
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x))) * self.scale


SitePlacement = Literal["after", "beside", "beside_unnormed"]
SITE_SLOTS = {"attn": "1", "mlp": "2"}  # timm's Block: norm1/ls1/drop_path1 around attn, norm2/... around mlp


class AdaptedSite(nn.Module):
    """One residual branch of a timm ViT block (``norm → sub-layer → layer scale → drop-path``) with an adapter,
    computed as PETL_Vision's ``BlockPETL`` computes it, in training as in eval mode:

    - ``after`` (``sequential_after``, Houlsby/Pfeiffer): ``y = dp(ls(base(norm(x)))); dp(ls(y + adapter(y)))``:
      layer scale and drop-path act on the sub-layer's output and again on the adapted sum (two independent
      drop-path masks);
    - ``beside`` (``parallel`` with ``ln: after``, Convpass): ``dp(ls(base(norm(x)))) + dp(ls(adapter(norm(x))))``:
      each branch gets its own drop-path mask;
    - ``beside_unnormed`` (``parallel`` with ``ln: before``, AdaptFormer): as ``beside``, but the adapter reads the
      residual stream ``x`` before the norm.

    The block's own ``norm``/``ls``/``drop_path`` of this branch move in here (``adapt_site`` leaves identities in
    their slots), so the block computes ``x + site(x)``. Extra arguments (timm's ``attn_mask``) go to ``base``.
    """

    def __init__(self, norm: nn.Module, base: nn.Module, layer_scale: nn.Module, drop_path: nn.Module,
                 adapter: nn.Module, placement: SitePlacement) -> None:
        super().__init__()
        if placement not in ("after", "beside", "beside_unnormed"):
            raise ValueError(f"unknown adapter placement {placement!r}")
        self.norm, self.base, self.ls, self.drop_path = norm, base, layer_scale, drop_path
        self.adapter = adapter
        self.placement = placement

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        normed = self.norm(x)
        out = self.drop_path(self.ls(self.base(normed, *args, **kwargs)))
        if self.placement == "after":
            return self.drop_path(self.ls(out + self.adapter(out)))
        branch_input = normed if self.placement == "beside" else x
        return out + self.drop_path(self.ls(self.adapter(branch_input)))


def adapt_site(block: nn.Module, site: Literal["attn", "mlp"], adapter: nn.Module,
               placement: SitePlacement) -> AdaptedSite:
    """Replace ``block.<site>`` by an ``AdaptedSite`` holding the branch's norm, layer scale and drop-path."""
    slot = SITE_SLOTS[site]
    parts = {name: getattr(block, f"{name}{slot}") for name in ("norm", "ls", "drop_path")}
    wrapped = AdaptedSite(parts["norm"], getattr(block, site), parts["ls"], parts["drop_path"], adapter, placement)
    wrapped.train(block.training)
    setattr(block, site, wrapped)
    for name in parts:
        setattr(block, f"{name}{slot}", nn.Identity())
    return wrapped


class LowRankUpdate(nn.Module):
    """LoRA's update ``x ↦ (alpha / rank) · dropout(x) Aᵀ Bᵀ`` with ``A`` [rank, in] kaiming-uniform and ``B``
    [out, rank] zero, so the update starts at zero while ``A`` still carries gradient to ``B``. ``dropout`` acts
    on the update's input only (training mode), so the merged weight ``delta_weight()`` is exact in eval mode."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.scaling = float(alpha if alpha is not None else rank) / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """The dense update ``(alpha / rank) · B A`` [out, in]."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def delta_bias(self) -> None:
        return None


class SlicedDelta(nn.Module):
    """An additive update to some output rows only: ``parts`` maps a name to ``(first_row, delta)``; each delta's
    output fills rows ``first_row : first_row + delta.out_features``, the other rows get zero.

    Used for timm's fused ``qkv`` projection, where LoRA targets q and v (two blocks of its output rows).
    """

    def __init__(self, out_features: int, parts: Mapping[str, tuple[int, nn.Module]]) -> None:
        super().__init__()
        self.out_features = out_features
        self.starts = {name: start for name, (start, _) in parts.items()}
        self.parts = nn.ModuleDict({name: delta for name, (_, delta) in parts.items()})
        spans = sorted((start, start + self.parts[name].out_features) for name, start in self.starts.items())
        for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False):
            if next_start < end:
                raise ValueError("overlapping output slices")
        if spans and spans[-1][1] > out_features:
            raise ValueError("an output slice exceeds out_features")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces, row = [], 0
        for name, start in sorted(self.starts.items(), key=lambda item: item[1]):
            if start > row:
                pieces.append(x.new_zeros(*x.shape[:-1], start - row))
            part = self.parts[name](x)
            pieces.append(part)
            row = start + part.shape[-1]
        if row < self.out_features:
            pieces.append(x.new_zeros(*x.shape[:-1], self.out_features - row))
        return torch.cat(pieces, dim=-1)

    def delta_weight(self) -> torch.Tensor:
        first = next(iter(self.parts.values())).delta_weight()
        weight = first.new_zeros(self.out_features, first.shape[1])
        for name, start in self.starts.items():
            part = self.parts[name].delta_weight()
            weight[start:start + part.shape[0]] = part
        return weight

    def delta_bias(self) -> None:
        return None


class RowScatter(nn.Module):
    """An update whose output rows land at ``rows`` of an ``out_features``-wide output (zeros elsewhere): one
    ``LowRankUpdate`` shared by several of ``qkv``'s projections (fused LoRA on q and v, say)."""

    def __init__(self, delta: nn.Module, out_features: int, rows: torch.Tensor) -> None:
        super().__init__()
        if rows.numel() != delta.out_features or rows.max() >= out_features:
            raise ValueError("rows must list one output row per row of the update, inside out_features")
        self.delta = delta
        self.out_features = out_features
        self.register_buffer("rows", rows.long(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = self.delta(x)
        return update.new_zeros(*update.shape[:-1], self.out_features).index_copy(-1, self.rows, update)

    def delta_weight(self) -> torch.Tensor:
        update = self.delta.delta_weight()
        return update.new_zeros(self.out_features, update.shape[1]).index_copy(0, self.rows, update)

    def delta_bias(self) -> None:
        return None


class LinearWithDelta(nn.Module):
    """A frozen ``nn.Linear`` plus an additive update: ``base(x) + delta(x)``.

    The base's ``weight``/``bias`` become this module's own parameters, so the state-dict keys of the wrapped
    linear are unchanged (``...qkv.weight``) and the update lives under ``...qkv.delta.*``.
    """

    def __init__(self, base: nn.Linear, delta: nn.Module) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.delta = delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + self.delta(x)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function; needs ``delta.delta_weight()`` (and optionally
        ``delta.delta_bias()``, None meaning no bias change)."""
        if not hasattr(self.delta, "delta_weight"):
            raise TypeError(f"{type(self.delta).__name__} has no delta_weight(); cannot merge")
        delta_bias = self.delta.delta_bias() if hasattr(self.delta, "delta_bias") else None
        has_bias = self.bias is not None or delta_bias is not None
        linear = nn.Linear(self.in_features, self.out_features, bias=has_bias,
                           device=self.weight.device, dtype=self.weight.dtype)
        linear.weight.copy_(self.weight + self.delta.delta_weight().to(self.weight.dtype))
        if has_bias:
            bias = self.bias.clone() if self.bias is not None else torch.zeros_like(linear.bias)
            if delta_bias is not None:
                bias = bias + delta_bias.to(bias.dtype)
            linear.bias.copy_(bias)
        linear.weight.requires_grad_(self.weight.requires_grad)
        if linear.bias is not None:
            linear.bias.requires_grad_(self.bias.requires_grad if self.bias is not None else False)
        return linear


class ScaleShift(nn.Module):
    """SSF's feature modulation ``x * scale + shift`` over channel ``channel_dim`` (last by default, 1 for NCHW),
    with ``scale ~ N(1, init_std)`` and ``shift ~ N(0, init_std)``; identity at ``scale = 1, shift = 0``."""

    def __init__(self, dim: int, init_std: float = 0.02, channel_dim: int = -1) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.scale = nn.Parameter(torch.empty(dim))
        self.shift = nn.Parameter(torch.empty(dim))
        nn.init.normal_(self.scale, mean=1.0, std=init_std)
        nn.init.normal_(self.shift, mean=0.0, std=init_std)

    def _shape(self, x: torch.Tensor) -> tuple[int, ...]:
        shape = [1] * x.dim()
        shape[self.channel_dim] = -1
        return tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = self._shape(x)
        return x * self.scale.view(shape) + self.shift.view(shape)


@torch.no_grad()
def fold_scale_shift(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor | None = None) -> nn.Module:
    """Fold an output modulation ``y ↦ y * scale + shift`` (per output channel) into ``module`` in place.

    ``module`` is an ``nn.Linear`` (rows of the weight), ``nn.LayerNorm`` (its affine weight/bias) or
    ``nn.Conv2d`` (output channels). A missing bias is created when there is a shift (frozen like the weight),
    so a bias-free module with a shift no longer matches its plain timm keys. Returns ``module``.
    """
    if not isinstance(module, (nn.Linear, nn.LayerNorm, nn.Conv2d)):
        raise TypeError(f"cannot fold a scale/shift into {type(module).__name__}")
    if module.weight is None:
        raise TypeError("cannot fold into a LayerNorm without affine weight")
    scale = scale.detach().to(module.weight)
    weight_shape = (-1,) + (1,) * (module.weight.dim() - 1)
    module.weight.mul_(scale.view(weight_shape))
    if module.bias is None and shift is not None:
        module.bias = nn.Parameter(torch.zeros_like(scale), requires_grad=module.weight.requires_grad)
    if module.bias is not None:
        module.bias.mul_(scale)
        if shift is not None:
            module.bias.add_(shift.detach().to(module.bias))
    return module


def fold_following_scale_shift(module: nn.Module, modulation: ScaleShift) -> nn.Module:
    """``fold_scale_shift`` for a ``ScaleShift`` that runs right after ``module``."""
    return fold_scale_shift(module, modulation.scale, modulation.shift)


@torch.no_grad()
def fold_input_scale(linear: nn.Linear, scale: torch.Tensor) -> nn.Linear:
    """Fold ``x ↦ linear(x * scale)`` (per input feature) into ``linear``'s weight columns, in place."""
    linear.weight.mul_(scale.detach().to(linear.weight).view(1, -1))
    return linear


class PartialScale(nn.Module):
    """A learned per-channel scale on channels ``start : start + length`` of ``total`` (the others pass
    unchanged); starts at one. (IA)³ uses it on the key and value rows of timm's fused ``qkv`` output."""

    def __init__(self, total: int, start: int = 0, length: int | None = None) -> None:
        super().__init__()
        length = total - start if length is None else length
        if start < 0 or start + length > total:
            raise ValueError(f"channels {start}:{start + length} outside 0:{total}")
        self.total, self.start = total, start
        self.scale = nn.Parameter(torch.ones(length))

    def full(self) -> torch.Tensor:
        """The scale over all ``total`` channels (ones outside the learned range)."""
        before = self.scale.new_ones(self.start)
        after = self.scale.new_ones(self.total - self.start - self.scale.numel())
        return torch.cat([before, self.scale, after])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.full()


class Modulated(nn.Module):
    """``modulation(base(...))``: an element-wise modulation (``ScaleShift``, ``PartialScale``) after a module.

    ``merged()`` folds it into ``base`` (a Linear, LayerNorm or Conv2d, see ``fold_scale_shift``) and returns
    ``base``. The base's parameters move under ``base.`` in the state dict while attached.
    """

    def __init__(self, base: nn.Module, modulation: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.modulation = modulation

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.modulation(self.base(*args, **kwargs))

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The modulation as a per-channel ``(scale, shift)`` pair."""
        if isinstance(self.modulation, ScaleShift):
            return self.modulation.scale, self.modulation.shift
        if isinstance(self.modulation, PartialScale):
            return self.modulation.full(), None
        raise TypeError(f"cannot express {type(self.modulation).__name__} as a scale and shift")

    def merged(self) -> nn.Module:
        scale, shift = self.scale_and_shift()
        return fold_scale_shift(self.base, scale, shift)


class InputScaled(nn.Module):
    """``base(x * scale)`` with a learned per-input-feature ``scale`` (ones at start); foldable into an
    ``nn.Linear`` base's weight columns (``merged()``). (IA)³ scales the MLP's hidden activation this way."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.scale = nn.Parameter(torch.ones(base.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x * self.scale)

    def merged(self) -> nn.Linear:
        return fold_input_scale(self.base, self.scale)


def merge_wrappers(model: nn.Module, wrapper_types: tuple[type, ...]) -> None:
    """Replace every module of ``wrapper_types`` in ``model`` by its ``merged()`` form (innermost first)."""
    names = [name for name, module in model.named_modules() if isinstance(module, wrapper_types)]
    for name in sorted(names, key=lambda n: n.count("."), reverse=True):
        replace_module(model, name, model.get_submodule(name).merged())


# ---- glue shared by the method modules -------------------------------------------------------------------


def frozen_prefix_cache_point(model: nn.Module, config: object = None):
    """``CachePoint("blocks", n)`` where ``n`` is the index of the first block holding a trained tensor (``depth``
    when only the final norm trains), read from ``requires_grad`` after attachment; ``CachePoint("features")``
    when only the head trains; None when something before the blocks trains (patch embedding, positional
    embedding, class token, pre-norm). Everything in ``blocks[:n]`` and before is then frozen."""
    from peftlab.methods.base import HEAD_PREFIX, CachePoint

    depth = len(model.blocks)
    first, after_blocks_train = depth, False
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad or name.startswith(HEAD_PREFIX):
            continue
        parts = name.split(".")
        if parts[0] == "blocks":
            first = min(first, int(parts[1]))
        elif parts[0] in ("norm", "fc_norm", "attn_pool"):
            after_blocks_train = True
        else:
            return None
    if first == depth and not after_blocks_train:
        return CachePoint("features")
    return CachePoint("blocks", first)


def identity_from(trained: Mapping[str, torch.Tensor], pretrained: Mapping[str, torch.Tensor],
                  added: Mapping[str, Callable[[str, torch.Tensor], torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Identity values for ``trained``: a tensor whose name ends with a key of ``added`` (e.g. ``".lora_B"``)
    gets ``added[suffix](name, value)``; any other tensor must exist in ``pretrained`` and goes back to it."""
    identity = {}
    for name, value in trained.items():
        rule = next((fn for suffix, fn in added.items() if name.endswith(suffix)), None)
        if rule is not None:
            identity[name] = rule(name, value).detach().clone()
        elif name in pretrained:
            identity[name] = pretrained[name].detach().clone().to(value)
        else:
            raise KeyError(f"{name} is neither pretrained nor covered by an identity rule")
    return identity


def zeros_like_value(name: str, value: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(value)


def ones_like_value(name: str, value: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(value)


def keep_value(name: str, value: torch.Tensor) -> torch.Tensor:
    return value
