"""CLIP's zero-shot classifier as the head of timm's CLIP image encoder (``peftlab clip-head``).

``clip_head`` builds the head from a local open_clip checkpoint (torch imported there); ``prompts`` reads the
class-name and prompt-template files. ImageNet's 1000 class names and CLIP's 80 ImageNet templates ship in
``data/`` with their source stated (``data/README.md``); this module stays light (paths only) so the CLI can
name them as defaults without importing torch.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
IMAGENET_CLASSNAMES = DATA_DIR / "imagenet_classnames.txt"
IMAGENET_TEMPLATES = DATA_DIR / "imagenet_templates.txt"
