"""`peftlab data prepare`: a hand-made JPEG folder in the real layout → shards; every bad input is one error
naming the file (and line) and leaves the output folder exactly as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import TOY_CLASSES, TOY_SIZES, make_toy_task, tree_digest
from PIL import Image

from peftlab.cli import main
from peftlab.data.decode import decode_images
from peftlab.data.prepare import prepare
from peftlab.data.shards import load_split, read_manifest
from peftlab.errors import PeftlabError
from peftlab.io import sha256_file

SIZE = 16


def prepare_toy(root: Path, out: Path, tasks=("kitti",), **options):
    settings = {"size": SIZE, "allow_size_mismatch": list(tasks), "log": lambda message: None, **options}
    return prepare(root, out, list(tasks), **settings)


def test_jpeg_folder_prepares_into_shards_and_manifest(toy_root, tmp_path):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    manifest = read_manifest(out / "kitti")
    assert (manifest["task"], manifest["group"], manifest["num_classes"], manifest["image_size"]) == (
        "kitti", "Structured", TOY_CLASSES, SIZE)
    assert set(manifest["splits"]) == {"train800", "val200", "train800val200", "test"}
    for name, record in manifest["splits"].items():
        assert record["sha256"] == sha256_file(out / "kitti" / f"{name}.safetensors")
        assert record["source_sha256"] == sha256_file(toy_root / "kitti" / f"{name}.txt")
        assert sum(record["label_counts"]) == record["count"]
    test = load_split(out / "kitti", "test")
    assert test.images.shape == (TOY_SIZES["test"], 3, SIZE, SIZE) and str(test.images.dtype) == "torch.uint8"
    assert str(test.labels.dtype) == "torch.int64" and test.num_classes == TOY_CLASSES and test.class_subset is None


@pytest.mark.parametrize("split", ["train800val200", "test"])
def test_shard_pixels_equal_the_pil_decoded_resized_source(toy_root, tmp_path, split):
    prepare_toy(toy_root, tmp_path / "shards")
    loaded = load_split(tmp_path / "shards" / "kitti", split)
    lines = (toy_root / "kitti" / f"{split}.txt").read_text().splitlines()
    for index, line in enumerate(lines):
        relpath, label = line.rsplit(maxsplit=1)
        with Image.open(toy_root / "kitti" / relpath) as image:
            expected = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(loaded.images[index].numpy().transpose(1, 2, 0), expected)
        assert int(loaded.labels[index]) == int(label)


def test_rerun_with_unchanged_inputs_is_a_noop_and_says_so(toy_root, tmp_path):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    before = {p: p.stat().st_mtime_ns for p in (out / "kitti").iterdir()}
    messages = []
    outcome = prepare_toy(toy_root, out, log=messages.append)
    assert outcome[0].up_to_date and "up to date" in messages[0]
    assert {p: p.stat().st_mtime_ns for p in (out / "kitti").iterdir()} == before


def test_a_changed_image_is_prepared_again(toy_root, tmp_path):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    first = load_split(out / "kitti", "test").images.clone()
    Image.new("RGB", (24, 24), (255, 0, 0)).save(toy_root / "kitti" / "images" / "test set" / "000.jpg")
    assert not prepare_toy(toy_root, out)[0].up_to_date
    assert not np.array_equal(load_split(out / "kitti", "test").images.numpy(), first.numpy())


def test_shift_set_with_class_subset_keeps_the_subset(toy_root, tmp_path):
    shift = toy_root / "kitti" / "shift"
    shift.mkdir()
    test_lines = (toy_root / "kitti" / "test.txt").read_text().splitlines()
    (shift / "sketch.txt").write_text("\n".join(line for line in test_lines if int(line.split()[-1]) < 2))
    (shift / "sketch.classes.txt").write_text("0 1\n")
    prepare_toy(toy_root, tmp_path / "shards")
    loaded = load_split(tmp_path / "shards" / "kitti", "shift-sketch")
    assert loaded.class_subset.tolist() == [0, 1] and loaded.num_classes == TOY_CLASSES
    assert read_manifest(tmp_path / "shards" / "kitti")["splits"]["shift-sketch"]["class_subset"] == [0, 1]


def test_users_own_task_is_group_other_with_classes_from_labels(tmp_path):
    make_toy_task(tmp_path / "raw", name="my_task", num_classes=3)
    prepare_toy(tmp_path / "raw", tmp_path / "shards", tasks=("my_task",))
    manifest = read_manifest(tmp_path / "shards" / "my_task")
    assert (manifest["group"], manifest["num_classes"]) == ("Other", 3)


def test_without_size_a_non_square_first_image_asks_for_one(toy_root, tmp_path):
    with pytest.raises(PeftlabError, match=r"train800\.txt line 1: image is 40x30, not square: pass --size"):
        prepare_toy(toy_root, tmp_path / "shards", size=None)


def _test_dir(task_dir: Path) -> Path:
    return task_dir / "images" / "test set"


def _rewrite_first_label(task_dir: Path, label: str) -> None:
    lines = (task_dir / "test.txt").read_text().splitlines()
    lines[0] = f"{lines[0].rsplit(maxsplit=1)[0]} {label}"
    (task_dir / "test.txt").write_text("\n".join(lines) + "\n")


def _append_test_line(task_dir: Path, line: str) -> None:
    with (task_dir / "test.txt").open("a") as handle:
        handle.write(line + "\n")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _duplicate_train_image(task_dir: Path) -> None:
    shutil.copy(task_dir / "images" / "train800" / "001.jpg", _test_dir(task_dir) / "copy.jpg")
    _append_test_line(task_dir, "images/test set/copy.jpg 1")


def _shift_label_outside_subset(task_dir: Path) -> None:
    (task_dir / "shift").mkdir()
    (task_dir / "shift" / "s.txt").write_text("images/test set/003.jpg 3\n")
    (task_dir / "shift" / "s.classes.txt").write_text("0 1\n")


BAD_INPUTS = {
    "missing split file": (lambda d: (d / "val200.txt").unlink(), r"kitti/val200\.txt: split list not found"),
    "missing image": (lambda d: _append_test_line(d, "images/gone.jpg 1"),
                      r"test\.txt line 9: image 'images/gone\.jpg' not found"),
    "corrupt image": (lambda d: (_test_dir(d) / "002.jpg").write_bytes(b"not a jpeg at all" * 20),
                      r"test\.txt line 3: .*002\.jpg: corrupt or truncated image"),
    "truncated image": (lambda d: _truncate(_test_dir(d) / "004.jpg"),
                        r"test\.txt line 5: .*004\.jpg: corrupt or truncated image"),
    "label out of range": (lambda d: _rewrite_first_label(d, "4"), r"test\.txt line 1: label 4 out of range \[0, 4\)"),
    "label not an integer": (lambda d: _rewrite_first_label(d, "cat"), r"test\.txt line 1: label 'cat' is not an integer"),
    "empty split": (lambda d: (d / "test.txt").write_text("\n"), r"test\.txt: empty split"),
    "leakage by path": (lambda d: _append_test_line(d, "images/train800/000.jpg 0"),
                        r"test\.txt line 9: image 'images/train800/000\.jpg' is also in training split 'train800'"),
    "leakage by content": (_duplicate_train_image,
                           r"test\.txt line 9: image 'images/test set/copy\.jpg' has the same bytes as "
                           r"'images/train800/001\.jpg'.*leakage"),
    "label outside class subset": (_shift_label_outside_subset, r"shift/s\.txt line 1: label 3 is not in the class subset"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_and_leaves_the_output_as_it_was(toy_root, tmp_path, case):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    before = tree_digest(out), sorted(p.name for p in out.iterdir())
    mutate, message = BAD_INPUTS[case]
    mutate(toy_root / "kitti")
    with pytest.raises(PeftlabError, match=message) as error:
        prepare_toy(toy_root, out, force=True)
    assert "\n" not in str(error.value)
    assert (tree_digest(out), sorted(p.name for p in out.iterdir())) == before


def test_wrong_split_size_is_an_error_unless_allowed(toy_root, tmp_path):
    with pytest.raises(PeftlabError, match=r"train800\.txt: 12 images, task 'kitti' expects 800 .*--allow-size-mismatch"):
        prepare(toy_root, tmp_path / "shards", ["kitti"], SIZE, log=lambda message: None)
    assert not (tmp_path / "shards").exists()


def test_content_duplicates_can_be_allowed_and_are_recorded(toy_root, tmp_path):
    _duplicate_train_image(toy_root / "kitti")
    prepare_toy(toy_root, tmp_path / "shards", allow_duplicate_content=["kitti"])
    assert read_manifest(tmp_path / "shards" / "kitti")["duplicate_content"] == 1


def test_one_bad_task_writes_no_task(toy_root, tmp_path):
    make_toy_task(toy_root, name="good_task")
    (toy_root / "kitti" / "test.txt").write_text("\n")
    with pytest.raises(PeftlabError, match="empty split"):
        prepare_toy(toy_root, tmp_path / "shards", tasks=("good_task", "kitti"))
    assert not (tmp_path / "shards").exists()


def test_decoding_in_worker_processes_gives_the_same_pixels(toy_root):
    paths = sorted((toy_root / "kitti" / "images").rglob("*.jpg")) * 12  # above the pool's threshold
    serial = [pixels for _, pixels in decode_images(paths, SIZE, workers=1)]
    parallel = [pixels for _, pixels in decode_images(paths, SIZE, workers=2)]
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_cli_bad_input_exits_2_with_one_line(toy_root, tmp_path, capsys):
    code = main(["data", "prepare", "--root", str(toy_root), "--out", str(tmp_path / "shards"), "--tasks", "kitti",
                 "--size", str(SIZE)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("peftlab: error: ") and err.count("\n") == 1 and "train800.txt" in err


def test_cli_prepares_with_allowed_mismatch(toy_root, tmp_path, capsys):
    args = ["data", "prepare", "--root", str(toy_root), "--out", str(tmp_path / "shards"), "--tasks", "kitti",
            "--size", str(SIZE), "--allow-size-mismatch", "kitti"]
    assert main(args) == 0
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out
