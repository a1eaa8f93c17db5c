"""One config per paper backbone: ``peftlab config check`` accepts each once its files exist, and its
backbone name loads its weights file when that file holds random weights in the released layout (width and
depth shrunk)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import timm
import torch
import yaml
from original_vit_npz import write_original_vit_npz
from tiny_open_clip import TIMM_TINY, make_tiny_clip, register_tiny_clip

from peftlab.backbones import PAPER_BACKBONES, create_backbone
from peftlab.cli import main as peftlab_main
from peftlab.io import save_tensors
from peftlab.training.heads import read_head

PROJECT = Path(__file__).resolve().parents[1]
SMALL = dict(embed_dim=32, depth=2, num_heads=2)


def _write_weights(name: str, path: Path, directory: Path) -> dict:
    """Random weights for ``name`` in its released file's layout at ``path``; returns the timm arguments."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.startswith("vit_base_patch16_clip"):
        register_tiny_clip(directory)
        torch.save(make_tiny_clip().state_dict(), path)  # open_clip_pytorch_model.bin
        return TIMM_TINY
    if path.suffix == ".npz":
        write_original_vit_npz(timm.create_model(name, pretrained=False, **SMALL), path, pre_logits=True)
        return SMALL
    kwargs = {"img_size": 518} if "dinov2" in name else {}
    state = timm.create_model(name, pretrained=False, **SMALL, **kwargs).state_dict()
    released = {"model": state} if name.endswith(".mae") else dict(state, mask_token=torch.zeros(1, 32))
    torch.save(released, path)
    return SMALL


@pytest.mark.parametrize("config_name", ["paper.yaml", "paper-mae.yaml", "paper-dinov2.yaml",
                                         "paper-robustness.yaml"])
def test_config_checks_and_its_backbone_loads(tmp_path, monkeypatch, capsys, config_name):
    config = yaml.safe_load((PROJECT / "config" / config_name).read_text())
    name, weights = config["backbone"]["name"], Path(config["backbone"]["weights"])
    assert name in PAPER_BACKBONES
    shutil.copy(PROJECT / "config" / config_name, tmp_path / config_name)
    monkeypatch.chdir(tmp_path)
    for task in config["study"]["tasks"]:
        (Path(config["data"]["root"]) / task).mkdir(parents=True)
    kwargs = _write_weights(name, weights, tmp_path)
    model = create_backbone(name, weights=weights, num_classes=5, **kwargs)
    head_file = (config.get("robustness") or {}).get("zero_shot_head")
    if head_file:  # the file `peftlab clip-head` writes, of the width of the encoder it is for
        save_tensors(head_file, {"head.weight": torch.randn(1000, model.num_features),
                                 "head.bias": torch.zeros(1000)})
        assert read_head(head_file, 1000, model.num_features)["head.weight"].shape == (1000, 32)
    assert peftlab_main(["config", "check", "--config", config_name]) == 0
    out = capsys.readouterr().out
    assert f"{config_name}: valid" in out
    # what search.published would save: PETL_Vision released selections for 16 methods x 19 tasks (in21k only)
    assert ("published selections (off; search.published: true): 304 search jobs" in out) == \
        (config_name == "paper.yaml"), out
