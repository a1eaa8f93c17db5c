"""List files: `path label` lines with the label last, shift sets with class subsets, many-shot lists."""

from __future__ import annotations

import pytest

from peftlab.data.lists import read_class_subset, read_list, read_splits
from peftlab.data.tasks import resolve_task
from peftlab.errors import PeftlabError


def test_label_is_the_last_field_so_paths_may_hold_spaces(tmp_path):
    listing = tmp_path / "test.txt"
    listing.write_text("images/a b/c d.jpg 3\n\n  images/e.jpg\t1\r\n", encoding="utf-8")
    entries = read_list(listing, tmp_path)
    assert [(e.relpath, e.label, e.line) for e in entries] == [("images/a b/c d.jpg", 3, 1), ("images/e.jpg", 1, 3)]
    assert entries[0].path == tmp_path / "images/a b/c d.jpg"


@pytest.mark.parametrize("text, message", [
    ("a.jpg x\n", r"line 1: label 'x' is not an integer"),
    ("a.jpg 1\nb.jpg -2\n", r"line 2: label -2 is negative"),
    ("a.jpg 1\nlonely\n", r"line 2: expected 'relative/path label'"),
    ("\n\n", r"empty split"),
])
def test_malformed_lists_name_file_and_line(tmp_path, text, message):
    listing = tmp_path / "val200.txt"
    listing.write_text(text, encoding="utf-8")
    with pytest.raises(PeftlabError, match=rf"val200\.txt.*{message}"):
        read_list(listing, tmp_path)


def test_class_subset_file_holds_unique_integers(tmp_path):
    subset = tmp_path / "r.classes.txt"
    subset.write_text("1 5\n9\n")
    assert read_class_subset(subset) == (1, 5, 9)
    subset.write_text("1 1\n")
    with pytest.raises(PeftlabError, match="listed twice"):
        read_class_subset(subset)


def test_splits_are_discovered_with_shift_and_manyshot_names(toy_root):
    task_dir = toy_root / "kitti"
    (task_dir / "shift").mkdir()
    (task_dir / "shift" / "blur.txt").write_text((task_dir / "test.txt").read_text())
    (task_dir / "shift" / "blur.classes.txt").write_text("0 1 2 3\n")
    (task_dir / "manyshot").mkdir()
    (task_dir / "manyshot" / "train12.txt").write_text((task_dir / "train800.txt").read_text())
    splits = {s.name: s for s in read_splits(task_dir, resolve_task("kitti", task_dir))}
    assert list(splits) == ["train800", "val200", "train800val200", "test", "shift-blur", "manyshot-12"]
    assert splits["shift-blur"].class_subset == (0, 1, 2, 3)
    assert splits["manyshot-12"].is_training and not splits["shift-blur"].is_training


def test_a_misnamed_manyshot_list_is_an_error(toy_root):
    task_dir = toy_root / "kitti"
    (task_dir / "manyshot").mkdir()
    (task_dir / "manyshot" / "big.txt").write_text("x 1\n")
    with pytest.raises(PeftlabError, match=r"manyshot/big\.txt: many-shot lists are named train<size>\.txt"):
        read_splits(task_dir, resolve_task("kitti", task_dir))
