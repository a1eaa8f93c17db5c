"""CLI: ``peftlab clip-head`` (light at import; torch and open_clip are imported in the handler)."""

from __future__ import annotations

import argparse
from pathlib import Path

from peftlab.zeroshot import IMAGENET_CLASSNAMES, IMAGENET_TEMPLATES

DEFAULT_MODEL = "ViT-B-16-quickgelu"  # = clip_head.DEFAULT_MODEL, spelled here to keep the import light


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "clip-head", help="CLIP's zero-shot head for timm's CLIP image encoder, from a local open_clip file",
        description="Write head.weight = logit_scale * T @ P.T [classes, width] and head.bias = 0 (T: the "
                    "class names' text embeddings over the templates, P: CLIP's image projection) as "
                    "safetensors, with a JSON sidecar; offline (the checkpoint is a local file, the "
                    "tokenizer's vocabulary ships with open_clip). On a CPU the 80 000 ImageNet prompts take "
                    "hours; on a GPU, seconds.")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="open_clip checkpoint of the whole CLIP (e.g. open_clip_pytorch_model.bin of "
                             "timm/vit_base_patch16_clip_224.openai)")
    parser.add_argument("--out", type=Path, required=True,
                        help="head file (.safetensors); its sidecar is the same name with .json")
    parser.add_argument("--classes", type=Path, default=IMAGENET_CLASSNAMES,
                        help="class names, one per line in label order (default: ImageNet's 1000, as CLIP "
                             "names them)")
    parser.add_argument("--templates", type=Path, default=IMAGENET_TEMPLATES,
                        help="prompt templates with {} for the class name (default: CLIP's 80 for ImageNet)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="open_clip model config name or config JSON file (default: %(default)s)")
    parser.add_argument("--logit-scale", type=float, default=None,
                        help="s in head.weight = s * T @ P.T (default: the checkpoint's exp(logit_scale))")
    parser.add_argument("--device", default="auto", help="auto (cuda when there is a GPU), cpu, cuda, cuda:N")
    parser.add_argument("--classes-per-batch", type=int, default=10,
                        help="class names encoded together (each with every template)")
    parser.set_defaults(handler=clip_head_command)


def clip_head_command(args: argparse.Namespace) -> int:
    from peftlab.zeroshot.clip_head import build_clip_head

    sidecar = build_clip_head(args.checkpoint, args.classes, args.templates, args.out, model_name=args.model,
                              logit_scale=args.logit_scale, device=args.device,
                              classes_per_batch=args.classes_per_batch)
    head = sidecar["head"]
    print(f"{args.out}: head.weight {head['weight']}, head.bias {head['bias']} "
          f"(logit scale {sidecar['logit_scale']['value']:.4g}, {sidecar['templates']['count']} templates, "
          f"open_clip {sidecar['open_clip']['model']})")
    return 0
