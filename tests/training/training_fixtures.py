"""Support for the training tests: a tiny learnable task in the shard format (written from the documented
format, not the data package's writer) and a small study config. (Imported by name: ``conftest`` is not a
unique module name in this repository.)"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import yaml

from peftlab.io import save_tensors, write_json

BACKBONE = "vit_mini_patch8_32"
NUM_CLASSES = 4
TASK = "toy"

SMALL_CONFIG = {
    "study": {"name": "test", "seeds": [0], "tasks": [TASK], "methods": ["linear", "partial", "full"]},
    "data": {"root": None, "generate": None, "image_size": 32, "normalize": False},  # root: the config's folder
    "backbone": {"name": BACKBONE, "weights": None,
                 "pretrain": {"epochs": 1, "warmup_epochs": 0, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.05,
                              "label_smoothing": 0.1, "seed": 0}},
    "training": {"epochs": 2, "warmup_epochs": 1, "batch_size": 32, "eval_batch_size": 64, "lr_min": 1e-5,
                 "warmup_lr_init": 1e-6, "drop_path": 0.1, "label_smoothing": 0.0, "head_init": "prototypes",
                 "compile": False, "threads": 1},
    "search": {"lr": [1e-3, 1e-2], "weight_decay": [1e-4], "seed": 0},
    "grids": {"partial": {"blocks": [1]}},
}


def class_images(rng: np.random.Generator, labels: np.ndarray, prototypes: np.ndarray, noise: float = 40.0
                 ) -> np.ndarray:
    """Images = a class's smooth pattern + noise: learnable by a tiny ViT in a few steps."""
    base = prototypes[labels]
    return np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


def write_task(task_dir: Path, sizes: dict[str, int], *, seed: int = 0, num_classes: int = NUM_CLASSES,
               shift_subset: tuple[int, ...] | None = None, label_shift: dict[str, int] | None = None) -> Path:
    """Shards + manifest of a synthetic task; ``label_shift[split] = k`` relabels that split ``(y + k) % C``
    (a planted split whose best hyper-parameters differ from the others')."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(30, 225, size=(num_classes, 3, 4, 4))
    prototypes = coarse.repeat(8, axis=2).repeat(8, axis=3)
    splits = {}
    for index, (split, count) in enumerate(sizes.items()):
        split_rng = np.random.default_rng(seed * 100 + index + 1)
        classes = np.array(shift_subset) if split.startswith("shift-") and shift_subset else np.arange(num_classes)
        labels = classes[np.arange(count) % len(classes)]
        split_rng.shuffle(labels)
        images = class_images(split_rng, labels, prototypes)
        if label_shift and split in label_shift:
            labels = (labels + label_shift[split]) % num_classes
        subset = shift_subset if split.startswith("shift-") else None
        tensors = {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels.astype(np.int64))}
        if subset is not None:
            tensors["class_subset"] = torch.tensor(subset, dtype=torch.int64)
        save_tensors(task_dir / f"{split}.safetensors", tensors,
                     {"task": task_dir.name, "split": split, "num_classes": str(num_classes)})
        splits[split] = {"count": count, "label_counts": np.bincount(labels, minlength=num_classes).tolist(),
                         "sha256": "", "source_list": "", "source_sha256": ""}
    write_json(task_dir / "manifest.json", {"task": task_dir.name, "group": "toy", "num_classes": num_classes,
                                            "image_size": 32, "splits": splits})
    return task_dir

def write_config(path: Path, backbone_file: Path, **overrides: dict) -> Path:
    config = copy.deepcopy(SMALL_CONFIG)
    config["backbone"]["weights"] = str(backbone_file)
    config["data"]["root"] = str(path.parent)  # "toy" is the user's own task: no mini-suite generates it
    for section, values in overrides.items():
        config[section] = dict(config.get(section) or {}, **values)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
