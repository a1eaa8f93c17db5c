"""CLIP's zero-shot classifier as ``head.weight``/``head.bias`` of timm's CLIP image encoder, built offline.

CLIP classifies an image by ``s · (x P / ‖x P‖) · t_c`` for each class ``c`` (open_clip's zero-shot
evaluation; the paper's code, ``experiment/build_clip_zs_classifier.py``: a projection layer, then a layer
that normalises its input and has weight ``s · T``):

- ``x``: the image's 768-d class token after CLIP's final LayerNorm, what timm's CLIP encoder feeds its head;
- ``P``: CLIP's image projection [768, 512] (``visual.proj``);
- ``t_c``: the class's text embedding: every template filled with the class name, each text embedding
  normalised, averaged over the templates, normalised again (open_clip's ``build_zero_shot_classifier``, which
  this module calls; the paper's code does the same in the same order); ``T`` stacks them [classes, 512];
- ``s``: CLIP's learned logit scale ``exp(logit_scale)`` (100 for OpenAI's weights), which the paper's code
  multiplies into its zero-shot weights.

timm's encoder ends in one ``Linear(768, classes)`` on ``x``, and a linear layer cannot divide by ``‖x P‖``,
so the head file holds the paper's two layers multiplied into one, without the normalisation between them:

    head.weight = s · T Pᵀ  [classes, 768],    head.bias = 0  [classes]

Its logits are CLIP's zero-shot logits times ``‖x P‖``, a positive number per image: the same ranking of the
classes for every image, hence the same zero-shot predictions and accuracy (the α = 0 end of WiSE-FT), with a
softmax sharper by that factor. ``training.head_init: file`` starts fine-tuning from this head and the
WiSE-FT analysis interpolates from it (both read it with ``training.heads.read_head``), so both use exactly
this linear map. ``--logit-scale`` sets ``s`` (the sidecar records its value and where it came from).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftlab.errors import PeftlabError

DEFAULT_MODEL = "ViT-B-16-quickgelu"  # open_clip's config of OpenAI's ViT-B/16 (QuickGELU, as it was trained)
HEAD_FORMULA = "head.weight = logit_scale * T @ P.T, head.bias = 0"
LOGITS = ("||x P|| times CLIP's zero-shot logits (x: the 768-d token timm's CLIP encoder feeds its head, P: "
          "CLIP's image projection): the same predictions, a softmax sharper by ||x P||")
TEXT_EMBEDDINGS = ("open_clip.zero_shot_classifier.build_zero_shot_classifier: each template's text "
                   "embedding normalised, averaged over the templates, normalised again")


@dataclass
class ZeroShotHead:
    weight: torch.Tensor  # [classes, image width]
    bias: torch.Tensor  # [classes]
    text_embeddings: torch.Tensor  # T [classes, embed dim], unit rows
    logit_scale: float

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"head.weight": self.weight, "head.bias": self.bias}


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def resolve_model_name(model: str) -> str:
    """An open_clip model name, or an open_clip model-config JSON file (registered under its file stem)."""
    import open_clip

    if model.endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise PeftlabError(f"{path}: open_clip model config file not found")
        open_clip.add_model_config(path)
        return path.stem
    if model not in open_clip.list_models():
        close = [name for name in open_clip.list_models() if name.startswith(model[:6])]
        raise PeftlabError(f"--model {model}: not an open_clip model config (similar: {close[:8]})")
    return model


def load_open_clip(checkpoint: str | Path, model_name: str) -> nn.Module:
    """The open_clip model ``model_name`` with every tensor from the local file ``checkpoint`` (strict: a file
    of another architecture, or the image encoder alone, is one error naming the file). Never downloads."""
    import open_clip

    path = Path(checkpoint)
    if not path.is_file():
        raise PeftlabError(f"{path}: open_clip checkpoint not found")
    try:  # an absolute path: open_clip reads a bare word such as 'openai' as a tag to download
        model = open_clip.create_model(model_name, pretrained=str(path.resolve()))
    except Exception as exc:
        raise PeftlabError(f"{path}: not a checkpoint of open_clip's {model_name} "
                           f"({_one_line(exc)})") from None
    if not isinstance(getattr(model.visual, "proj", None), torch.Tensor):
        raise PeftlabError(f"--model {model_name}: its image tower has no projection visual.proj "
                           "(not a ViT CLIP)")
    return model.eval()


@torch.no_grad()
def zero_shot_head(model: nn.Module, tokenizer: Callable, class_names: Sequence[str],
                   templates: Sequence[str], *, logit_scale: float | None = None,
                   device: torch.device | str = "cpu", classes_per_batch: int = 10) -> ZeroShotHead:
    """The head of the module docstring from an open_clip ``model`` and its ``tokenizer``
    (``open_clip.get_tokenizer(model name)``); ``logit_scale`` None: the model's own."""
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    model = model.to(device)
    classifier = build_zero_shot_classifier(model, tokenizer, list(class_names), list(templates),
                                            num_classes_per_batch=classes_per_batch, device=device)
    text = classifier.T.double().cpu()  # [classes, embed dim]
    projection = model.visual.proj.detach().double().cpu()  # [image width, embed dim]
    scale = float(model.logit_scale.exp()) if logit_scale is None else float(logit_scale)
    weight = (scale * text @ projection.T).float()
    return ZeroShotHead(weight=weight, bias=torch.zeros(weight.shape[0]), text_embeddings=text.float(),
                        logit_scale=scale)


def build_clip_head(checkpoint: str | Path, classes_file: str | Path, templates_file: str | Path,
                    out: str | Path, *, model_name: str = DEFAULT_MODEL, logit_scale: float | None = None,
                    device: str = "auto", classes_per_batch: int = 10) -> dict[str, Any]:
    """``peftlab clip-head``: write the head ``out`` (safetensors), then its sidecar (``out`` with ``.json``,
    holding the head file's sha256, so a sidecar never describes another head); returns the sidecar."""
    import open_clip

    from peftlab.io import save_tensors, sha256_file, write_json
    from peftlab.provenance import provenance
    from peftlab.training.session import resolve_device
    from peftlab.zeroshot.prompts import read_class_names, read_templates

    out = Path(out)
    if out.suffix != ".safetensors":
        raise PeftlabError(f"--out {out}: the head file is a .safetensors file")
    class_names, templates = read_class_names(classes_file), read_templates(templates_file)
    name = resolve_model_name(model_name)
    torch_device = resolve_device(device)
    model = load_open_clip(checkpoint, name)
    head = zero_shot_head(model, open_clip.get_tokenizer(name), class_names, templates,
                          logit_scale=logit_scale, device=torch_device, classes_per_batch=classes_per_batch)
    save_tensors(out, head.tensors())
    scale_source = "exp(logit_scale) of the checkpoint" if logit_scale is None else "--logit-scale"
    sidecar = {
        "kind": "clip_zero_shot_head",
        "head": {"file": out.name, "sha256": sha256_file(out), "weight": list(head.weight.shape),
                 "bias": list(head.bias.shape), "formula": HEAD_FORMULA, "logits": LOGITS},
        "logit_scale": {"value": head.logit_scale, "source": scale_source},
        "open_clip": {"model": name, "version": open_clip.__version__, "text_embeddings": TEXT_EMBEDDINGS},
        "checkpoint": {"path": str(checkpoint), "sha256": sha256_file(checkpoint)},
        "classes": {"path": str(classes_file), "sha256": sha256_file(classes_file),
                    "count": len(class_names)},
        "templates": {"path": str(templates_file), "sha256": sha256_file(templates_file),
                      "count": len(templates), "templates": templates},
        "provenance": provenance(device=str(torch_device)),
    }
    write_json(out.with_suffix(".json"), sidecar)
    return sidecar
