"""Fixtures of the training tests: a random tiny backbone file, the toy task's shards, a small config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_fixtures import BACKBONE, TASK, write_config, write_task

from peftlab.io import save_tensors


@pytest.fixture(scope="session")
def backbone_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised mini ViT saved as a timm state dict (random features suffice to learn the toy)."""
    from peftlab.backbones import create_backbone

    torch.manual_seed(0)
    model = create_backbone(BACKBONE, num_classes=10)
    path = tmp_path_factory.mktemp("backbone") / "backbone.safetensors"
    save_tensors(path, model.state_dict())
    return path


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shard root with the toy task: search splits, final splits, a shift set over a class subset."""
    root = tmp_path_factory.mktemp("shards")
    write_task(root / TASK, {"train800": 64, "val200": 32, "train800val200": 96, "test": 48, "shift-sub": 24},
               shift_subset=(1, 3))
    return root


@pytest.fixture
def config_file(tmp_path: Path, backbone_file: Path) -> Path:
    return write_config(tmp_path / "params.yaml", backbone_file)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("PEFTLAB_CACHE_DIR", str(tmp_path / "cache"))
