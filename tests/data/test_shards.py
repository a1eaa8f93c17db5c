"""Shard loading: the documented format, clear errors naming the missing file; the probe reads the same lists."""

from __future__ import annotations

import numpy as np
import pytest

from peftlab.cli import main
from peftlab.data.probe import linear_probe
from peftlab.data.shards import load_split, read_manifest, write_shard
from peftlab.errors import PeftlabError


def test_written_shard_loads_back(tmp_path):
    images = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    write_shard(tmp_path / "shift-r.safetensors", images, np.array([3, 1]), task="t", split="shift-r",
                num_classes=5, class_subset=(1, 3))
    split = load_split(tmp_path, "shift-r")
    np.testing.assert_array_equal(split.images.numpy(), images)
    assert split.labels.tolist() == [3, 1] and split.num_classes == 5 and split.class_subset.tolist() == [1, 3]
    assert len(split) == 2


def test_missing_shard_names_the_file_and_the_splits_present(tmp_path):
    write_shard(tmp_path / "test.safetensors", np.zeros((1, 3, 2, 2), np.uint8), np.array([0]), task="t",
                split="test", num_classes=2)
    with pytest.raises(PeftlabError, match=r"val200\.safetensors: shard for split 'val200' not found "
                                           r"\(splits present: \['test'\]\)"):
        load_split(tmp_path, "val200")


def test_missing_manifest_says_to_prepare(tmp_path):
    with pytest.raises(PeftlabError, match=r"manifest\.json: shard manifest \(run 'peftlab data prepare'\) not found"):
        read_manifest(tmp_path)


def test_linear_probe_scores_every_evaluated_split(toy_root, capsys):
    scores = linear_probe(toy_root, "kitti", size=8)
    assert set(scores) == {"test"} and 0.0 <= scores["test"] <= 1.0
    assert main(["data", "probe", "--root", str(toy_root), "--tasks", "kitti", "--size", "8"]) == 0
    assert capsys.readouterr().out.startswith("kitti: test ")


WRITE_SHARD = """
import sys
import numpy as np
from peftlab.data.shards import write_shard
write_shard(__import__("pathlib").Path(sys.argv[1]), np.arange(48, dtype=np.uint8).reshape(1, 3, 4, 4),
            np.array([2]), task="digits", split="shift-style", num_classes=10, class_subset=(1, 2))
"""


def test_the_same_shard_written_by_separate_processes_has_the_same_bytes(tmp_path):
    # safetensors orders metadata by a per-process hash seed: without a canonical header the bytes (and the
    # DVC hash) of re-prepared data changed on every run.
    import subprocess
    import sys

    paths = [tmp_path / f"run{index}.safetensors" for index in range(4)]
    for path in paths:
        subprocess.run([sys.executable, "-c", WRITE_SHARD, str(path)], check=True)
    contents = {path.read_bytes() for path in paths}
    assert len(contents) == 1
    split = load_split(tmp_path, "run0")
    assert split.labels.tolist() == [2] and split.num_classes == 10 and split.class_subset.tolist() == [1, 2]
