"""Fixtures for the data layer: a small generated suite, and a hand-made VTAB-1k-style folder of JPEGs."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_fixtures import SEED, SMALL, make_toy_task

from peftlab.data.generate import generate_suite


@pytest.fixture(scope="session")
def suite_root(tmp_path_factory) -> Path:
    """The whole mini-suite (8 tasks + upstream) at small sizes, generated once per session."""
    root = tmp_path_factory.mktemp("suite") / "raw"
    generate_suite(root, SEED, SMALL, log=lambda message: None)
    return root


@pytest.fixture
def toy_root(tmp_path) -> Path:
    """``raw/kitti/``: a hand-made task in the real layout (JPEGs of several sizes and modes)."""
    root = tmp_path / "raw"
    make_toy_task(root)
    return root
