"""How the classification head starts (``training.head_init``).

- ``random``: timm's initialisation of a new head (drawn from the run's seed).
- ``zeros``: weight and bias 0 (every class equally likely at the start).
- ``prototypes``: the class means of the frozen pretrained backbone's pre-logit features on the training split,
  L2-normalised and scaled like a cosine classifier, bias 0. This is the mini study's analogue of CLIP's
  zero-shot text head: a head that already classifies before fine-tuning, the θ₀ WiSE-FT interpolates from.
- ``file``: ``head.weight`` [C, D] and ``head.bias`` [C] of a safetensors file (``training.head_init_file``), the
  format of ``robustness.zero_shot_head``: for the CLIP study, CLIP's zero-shot head itself (class-name text
  embeddings × the image projection), so fine-tuning starts where the paper starts and WiSE-FT's θ₀ is that
  head. ``read_head`` is the one reader of such files (the WiSE-FT analysis uses it too); a file that does not
  fit the model's head — class count, or input width (VQT's head is wider than the backbone) — is an error,
  never broadcast. The file's sha256 is part of every run's fingerprint.

Cosine scaling: ``W_c = s · μ_c / ‖μ_c‖ / r`` where ``r`` is the mean feature norm, so a logit is about
``s · cos(μ_c, f)``; ``s = PROTOTYPE_LOGIT_SCALE`` plays the part of CLIP's learned logit scale (100 there, on
unit-norm text and image embeddings; smaller here, where class means of a small backbone's features are close
to each other and a large scale would saturate the softmax). The head the run starts from is saved as
``head_init.safetensors``.

The head is set after the method is attached, so it is the head that trains (VQT replaces the head by a wider
one). The prototypes come from the *pretrained* backbone's features (one shared cache entry per split); where
the method changed the head's input width (VQT), from the attached model's own features at the start instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from peftlab.errors import PeftlabError

HEAD_INIT_CHOICES = ("random", "zeros", "prototypes", "file")
HEAD_KEYS = ("head.weight", "head.bias")
PROTOTYPE_LOGIT_SCALE = 10.0


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     logit_scale: float = PROTOTYPE_LOGIT_SCALE) -> torch.Tensor:
    """``[num_classes, D]`` head weight from class-mean features (zero rows for classes absent from the data)."""
    features = features.float()
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64, device=features.device)
    sums.index_add_(0, labels.to(features.device), features.double())
    means = sums.float()
    directions = means / means.norm(dim=1, keepdim=True).clamp_min(1e-12)
    mean_norm = features.norm(dim=1).mean().clamp_min(1e-12)
    return directions * (logit_scale / mean_norm)


def read_head(path: str | Path, num_classes: int | None = None, in_features: int | None = None, *,
              note: str = "") -> dict[str, torch.Tensor]:
    """``head.weight`` [C, D] and ``head.bias`` [C] (float32) from a safetensors file, shape-checked against
    ``num_classes`` and ``in_features`` where given. Any problem is one ``PeftlabError`` naming the file;
    ``note`` is appended to a shape error (why the expected shape is what it is)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise PeftlabError(f"{path}: head file not found")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise PeftlabError(f"{path}: not a readable safetensors file ({exc})") from None
    missing = [key for key in HEAD_KEYS if key not in tensors]
    if missing:
        raise PeftlabError(f"{path}: missing {missing} (a head file holds head.weight [C, D] and head.bias [C])")
    weight, bias = tensors["head.weight"], tensors["head.bias"]
    rows = num_classes if num_classes is not None else (weight.shape[0] if weight.dim() == 2 else "C")
    cols = in_features if in_features is not None else (weight.shape[1] if weight.dim() == 2 else "D")
    if tuple(weight.shape) != (rows, cols) or tuple(bias.shape) != (rows,):
        raise PeftlabError(
            f"{path}: head.weight {list(weight.shape)} / head.bias {list(bias.shape)} do not fit the model "
            f"(expected [{rows}, {cols}] / [{rows}]){note}"
        )
    return {"head.weight": weight.float(), "head.bias": bias.float()}


@torch.no_grad()
def init_head(model: nn.Module, mode: str, prototype_inputs: Callable[[], tuple[torch.Tensor, torch.Tensor]],
              head_file: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Set the head per ``mode`` and return its starting tensors (``head.weight``, ``head.bias``, on the CPU).

    ``prototype_inputs`` returns (pre-logit features, labels) of the training split; only called for
    ``prototypes``, so other modes never compute features. ``head_file`` is the head of ``file``.
    """
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"expected a linear head, got {type(head).__name__}")
    if mode == "file":
        if head_file is None:
            raise ValueError("head_init 'file' needs head_file")
        width = getattr(model, "num_features", head.in_features)
        note = (f"; the method's head reads {head.in_features} features, not the backbone's {width} (VQT widens "
                "it), so a head of the backbone's width cannot start it" if width != head.in_features else "")
        tensors = read_head(head_file, head.out_features, head.in_features, note=note)
        head.weight.copy_(tensors["head.weight"])
        head.bias.copy_(tensors["head.bias"])
    elif mode == "zeros":
        head.weight.zero_()
        head.bias.zero_()
    elif mode == "prototypes":
        features, labels = prototype_inputs()
        head.weight.copy_(class_prototypes(features, labels, head.out_features).to(head.weight))
        head.bias.zero_()
    elif mode != "random":
        raise ValueError(f"unknown head_init {mode!r}; choose one of {list(HEAD_INIT_CHOICES)}")
    return {"head.weight": head.weight.detach().cpu().clone(), "head.bias": head.bias.detach().cpu().clone()}
