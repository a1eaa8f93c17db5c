"""The paper code's names (OSU-MLB/PETL_Vision) mapped to peftlab's: tasks, methods and hyper-parameters.

The released tables use the code base's own spellings (``clevr_dist``, ``ln``, ``rand_h_adapter``,
``lora_bottleneck``); everything that holds them against this project's results or reuses their selections
goes through these maps, so a name is translated in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from peftlab.errors import PeftlabError

# VTAB-1k task folders of the paper code -> peftlab's task table; many-shot ``dataset`` values likewise.
TASKS: dict[str, str] = {
    "cifar": "cifar", "caltech101": "caltech101", "dtd": "dtd", "oxford_flowers102": "oxford_flowers102",
    "oxford_iiit_pet": "oxford_iiit_pet", "svhn": "svhn", "sun397": "sun397",
    "patch_camelyon": "patch_camelyon", "eurosat": "eurosat", "resisc45": "resisc45",
    "diabetic_retinopathy": "diabetic_retinopathy",
    "clevr_count": "clevr_count", "clevr_dist": "clevr_distance", "dmlab": "dmlab", "kitti": "kitti_distance",
    "dsprites_loc": "dsprites_location", "dsprites_ori": "dsprites_orientation",
    "smallnorb_azi": "smallnorb_azimuth", "smallnorb_ele": "smallnorb_elevation",
}
MANYSHOT_DATASETS: dict[str, str] = {"cifar100": "cifar", "resisc": "resisc45", "clevr": "clevr_distance"}
# The VTAB table's extra CIFAR run with augmentation and normalisation: the cifar task under another protocol.
VTAB_VARIANTS: dict[str, tuple[str, str]] = {"cifar_aug_norm": ("cifar", "aug_norm")}

# Many-shot ``train_size`` values -> training images. ``full`` (and the CLEVR folder's ``clevr``) is the whole
# training set the code base trains on: CIFAR-100's 50,000 train images, RESISC45's 25,200 (its
# ``resisc-full_combine.txt``) and CLEVR's 70,000 (tfds ``train``, VTAB's trainval).
MANYSHOT_FULL_SIZES: dict[str, int] = {"cifar": 50_000, "resisc45": 25_200, "clevr_distance": 70_000}
_FULL_SIZE_NAMES = frozenset({"full", "clevr"})
_SIZE = re.compile(r"^(?P<number>\d+)(?P<k>k?)$")

# The CLIP robustness study: 100-shot ImageNet (peftlab task ``imagenet``) and its test sets -> the split names
# of peftlab's shards (``test``, ``shift-<name>`` from ``shift/<name>.txt``, as config/paper-robustness.yaml
# lists them).
ROBUSTNESS_TASK = "imagenet"
TEST_SETS: dict[str, str] = {"fs-imagenet": "test", "imagenet-v2": "shift-imagenet_v2",
                             "imagenet-s": "shift-imagenet_sketch", "imagenet-r": "shift-imagenet_r",
                             "imagenet-a": "shift-imagenet_a"}
# The zero-shot CLIP model (its text-embedding head, nothing trained): α = 0 of every WiSE-FT curve.
ZERO_SHOT = "zero_shot"

# The code base's method names -> peftlab's (the same where absent).
METHODS: dict[str, str] = {"ln": "layernorm", "rand_h_adapter": "adapter_houlsby",
                           "lora_p_adapter": "adapter_lora_init"}

# Selected hyper-parameters: the code base's key -> peftlab's method hyper-parameter (or shared search key).
HPARAMS: dict[str, str] = {
    "lr": "lr", "wd": "weight_decay",
    "lora_bottleneck": "rank", "vpt_num": "num_tokens",
    "adapter_bottleneck": "dim", "adapter_scaler": "scale",
    "convpass_bottleneck": "dim", "convpass_scaler": "scale", "convpass_xavier_init": "xavier_init",
    "repadapter_bottleneck": "dim", "repadapter_scaler": "scale",
    "fact_dim": "dim", "fact_scaler": "scale",
}
# Training settings the code base selected per run (not method hyper-parameters): key -> peftlab config key.
SETTINGS: dict[str, str] = {"drop_path_rate": "training.drop_path"}

# A run name with a size suffix (``lora_8``, ``fact_tk_128``, ``rand_h_adapter_32``): the suffix is the
# method's rank / dimension.
_SIZED = re.compile(r"^(?P<base>.+?)_(?P<size>\d+)$")
SIZE_HPARAM: dict[str, str] = {"lora": "rank", "fact_tk": "dim", "fact_tt": "dim", "adapter_houlsby": "dim",
                               "adapter_lora_init": "dim", "adaptformer": "dim", "vpt_deep": "num_tokens",
                               "vpt_shallow": "num_tokens"}


def peftlab_task(name: str) -> str:
    """The peftlab task of a paper-code VTAB-1k task or many-shot dataset name."""
    if name in TASKS:
        return TASKS[name]
    if name in MANYSHOT_DATASETS:
        return MANYSHOT_DATASETS[name]
    raise PeftlabError(f"reference task '{name}': unknown; known: {', '.join(sorted({*TASKS, *MANYSHOT_DATASETS}))}")


# Methods the released tables name without a size suffix.
_PLAIN = frozenset({"linear", "full", "bitfit", "layernorm", "difffit", "ssf", "convpass", "repadapter",
                    "partial", "vqt", "adapter_pfeiffer", *SIZE_HPARAM})


def peftlab_method(name: str) -> tuple[str, dict[str, int]]:
    """The peftlab method of a paper-code run name and the hyper-parameter its size suffix fixes, if any."""
    base = METHODS.get(name, name)
    if base in _PLAIN:
        return base, {}
    match = _SIZED.match(name)
    if match:
        base = METHODS.get(match["base"], match["base"])
        if base in SIZE_HPARAM:
            return base, {SIZE_HPARAM[base]: int(match["size"])}
    raise PeftlabError(f"reference method '{name}': no peftlab method corresponds to it")


def peftlab_hparams(method: str, selected: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(hparams, settings)`` from a released ``selected`` dict: the method's and the shared search
    hyper-parameters under peftlab's names, and training settings under their config keys."""
    base, fixed = peftlab_method(method)
    hparams: dict[str, Any] = dict(fixed)
    settings: dict[str, Any] = {}
    for key, value in (selected or {}).items():
        if key in HPARAMS:
            hparams[HPARAMS[key]] = value
        elif key in SETTINGS:
            settings[SETTINGS[key]] = value
        else:
            raise PeftlabError(f"reference {method}: selected key '{key}' has no peftlab equivalent")
    return hparams, settings


def manyshot_size(dataset: str, train_size: str) -> int:
    """Training images of a many-shot ``train_size`` (``500``, ``1k``, ``full``) of a dataset."""
    task = peftlab_task(dataset)
    if train_size in _FULL_SIZE_NAMES:
        if task not in MANYSHOT_FULL_SIZES:
            raise PeftlabError(f"reference train_size '{train_size}' of '{dataset}': full size unknown")
        return MANYSHOT_FULL_SIZES[task]
    match = _SIZE.match(train_size)
    if match is None:
        raise PeftlabError(f"reference train_size '{train_size}': expected <number>, <number>k or full")
    return int(match["number"]) * (1000 if match["k"] else 1)


def peftlab_split(test_set: str) -> str:
    """The peftlab split of a CLIP robustness test set (``fs-imagenet`` -> ``test``, ``imagenet-a`` -> ...)."""
    if test_set not in TEST_SETS:
        raise PeftlabError(f"reference test set '{test_set}': unknown; known: {', '.join(TEST_SETS)}")
    return TEST_SETS[test_set]
