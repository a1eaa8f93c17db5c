"""`peftlab data generate`: the mini-suite in the VTAB-1k layout, deterministic, disjoint, written atomically."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import SEED, SMALL, tree_digest
from PIL import Image

from peftlab.cli import main
from peftlab.data.generate import generate_suite, suite, upstream
from peftlab.data.generate.upstream_textures import UPSTREAM_TEXTURES
from peftlab.data.lists import read_splits
from peftlab.data.prepare import prepare
from peftlab.data.shards import load_split, read_manifest
from peftlab.data.tasks import MINI_TASKS, UPSTREAM_TASK, resolve_task
from peftlab.errors import PeftlabError

QUIET = {"log": lambda message: None}


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _digests(task_dir: Path, lists: list[Path]) -> set[str]:
    return {hashlib.sha256((task_dir / line.rsplit(maxsplit=1)[0]).read_bytes()).hexdigest()
            for listing in lists for line in _lines(listing)}


@pytest.mark.parametrize("task", list(MINI_TASKS))
def test_task_has_the_vtab_layout_and_sizes(suite_root, task):
    task_dir = suite_root / task
    train, val = _lines(task_dir / "train800.txt"), _lines(task_dir / "val200.txt")
    assert (len(train), len(val)) == (800, 200)
    assert _lines(task_dir / "train800val200.txt") == train + val
    test, shifted = _lines(task_dir / "test.txt"), _lines(task_dir / "shift" / "style.txt")
    assert len(test) == len(shifted) == SMALL.test
    assert [line.split()[-1] for line in test] == [line.split()[-1] for line in shifted]
    if task in suite.MANYSHOT_TASKS:
        small, large = _lines(task_dir / "manyshot" / "train60.txt"), _lines(task_dir / "manyshot" / "train120.txt")
        assert len(large) == SMALL.manyshot and small == large[:60]
    else:
        assert not (task_dir / "manyshot").exists()


@pytest.mark.parametrize("task", list(MINI_TASKS))
def test_group_classes_and_label_range(suite_root, task):
    spec = resolve_task(task, suite_root / task)
    assert (spec.group, spec.num_classes) == (MINI_TASKS[task].group, MINI_TASKS[task].num_classes)
    splits = {split.name: split for split in read_splits(suite_root / task, spec)}
    assert set(splits["train800val200"].labels) == set(range(spec.num_classes))
    assert all(0 <= label < spec.num_classes for split in splits.values() for label in split.labels)


def test_images_are_32px_rgb_png(suite_root):
    for task in (*MINI_TASKS, UPSTREAM_TASK):
        for listing in (suite_root / task).glob("*.txt"):
            relpath = _lines(listing)[0].rsplit(maxsplit=1)[0]
            with Image.open(suite_root / task / relpath) as image:
                assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32))


def test_upstream_set_has_train_and_val_with_many_classes(suite_root):
    train, val = _lines(suite_root / "upstream" / "train.txt"), _lines(suite_root / "upstream" / "val.txt")
    assert len(train) + len(val) == SMALL.upstream and len(val) == SMALL.upstream_val
    codes = np.array([int(line.split()[-1]) for line in train + val])
    assert codes.min() >= 0 and codes.max() < upstream.NUM_CLASSES
    factors = upstream.decode(codes)
    assert upstream.encode(factors).tolist() == codes.tolist()
    for name, values in upstream.FACTORS:  # 128 codes: every value of every factor occurs
        assert set(factors[name].tolist()) == set(range(values)), name


def test_upstream_scenes_show_their_count_and_main_object_position():
    """On a plain background the ink's connected regions are the objects: as many as the label says, the largest
    one (the main object) in the labelled 3 × 3 cell (its centre of mass within 2 px of it: a lone object is drawn
    up to 7 px per shape unit, and the flag's mass lies a quarter unit off its anchor)."""
    from scipy import ndimage

    from peftlab.data.generate.canvas import luminance

    rng = np.random.default_rng(0)
    factors = {name: rng.integers(0, values, 150) for name, values in upstream.FACTORS}
    factors["texture"][:] = 0
    images = upstream.render_upstream(rng, upstream.encode(factors), held_out=False)
    low, high = upstream.POSITION_RANGE
    cell = (high - low) / upstream.POSITION_CELLS
    for index, image in enumerate(luminance(np.clip(images, 0, 1))):
        ink = np.abs(image - np.median(image)) > 0.15
        regions, found = ndimage.label(ink, structure=np.ones((3, 3)))
        assert found == factors["count"][index] + 1, index
        largest = 1 + int(np.argmax(ndimage.sum(ink, regions, range(1, found + 1))))
        centre = np.array(ndimage.center_of_mass(ink, regions, largest)) + 0.5
        row, column = divmod(int(factors["position"][index]), upstream.POSITION_CELLS)
        expected = low + np.array([row, column]) * cell
        assert np.all(centre > expected - 2) and np.all(centre < expected + cell + 2), index


def test_upstream_draws_on_no_downstream_label_set():
    from peftlab.data.generate.patterns import PATTERNS
    from peftlab.data.generate.shapes import UPSTREAM_SHAPES, arrow

    assert not set(UPSTREAM_TEXTURES) & set(PATTERNS)  # the textures task's classes
    assert arrow not in UPSTREAM_SHAPES  # dsprites_orientation's arrow


def test_training_and_upstream_images_are_disjoint_from_every_downstream_image(suite_root):
    upstream = _digests(suite_root / "upstream", list((suite_root / "upstream").glob("*.txt")))
    for task in MINI_TASKS:
        task_dir = suite_root / task
        evaluated = _digests(task_dir, [task_dir / "test.txt", task_dir / "shift" / "style.txt"])
        trained = _digests(task_dir, [task_dir / "train800val200.txt", *(task_dir / "manyshot").glob("*.txt")])
        assert len(trained) >= 1000 and len(evaluated) == 2 * SMALL.test
        assert not evaluated & trained and not (evaluated | trained) & upstream


def test_same_seed_gives_byte_identical_files(suite_root, tmp_path):
    generate_suite(tmp_path, SEED, SMALL, tasks=["textures", "upstream"], **QUIET)
    for task in ("textures", "upstream"):
        assert tree_digest(tmp_path / task) == tree_digest(suite_root / task)


def test_other_seed_or_test_size_changes_only_what_it_should(suite_root, tmp_path):
    generate_suite(tmp_path / "seed", SEED + 1, SMALL, tasks=["dsprites_orientation"], **QUIET)
    generate_suite(tmp_path / "size", SEED, dataclasses.replace(SMALL, test=20), tasks=["dsprites_orientation"],
                   **QUIET)
    original = tree_digest(suite_root / "dsprites_orientation")
    reseeded = tree_digest(tmp_path / "seed" / "dsprites_orientation")
    resized = tree_digest(tmp_path / "size" / "dsprites_orientation")
    assert original["images/train/000000.png"] != reseeded["images/train/000000.png"]
    train = {name: digest for name, digest in original.items() if name.startswith("images/train/")}
    assert all(resized[name] == digest for name, digest in train.items())  # separate streams per image set


def test_a_failed_run_leaves_no_half_task_and_keeps_finished_ones(suite_root, tmp_path, monkeypatch):
    shutil.copytree(suite_root / "dsprites_location", tmp_path / "dsprites_location")
    before = tree_digest(tmp_path)
    original = suite.RECIPES["dsprites_orientation"]

    def render_then_die(rng, labels, held_out):
        if held_out:
            raise KeyboardInterrupt  # as if the job were killed while writing the test set
        return original.render(rng, labels, held_out)

    monkeypatch.setitem(suite.RECIPES, "dsprites_orientation", dataclasses.replace(original, render=render_then_die))
    with pytest.raises(KeyboardInterrupt):
        generate_suite(tmp_path, SEED, SMALL, tasks=["dsprites_location", "dsprites_orientation"], **QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsprites_location"]
    assert tree_digest(tmp_path) == before


def test_matching_card_is_up_to_date(suite_root):
    messages = []
    assert generate_suite(suite_root, SEED, SMALL, tasks=["digits"], log=messages.append) == {"digits": "up to date"}
    assert "up to date" in messages[0]


def test_generate_never_overwrites_a_folder_it_did_not_write(toy_root):
    (toy_root / "clevr_count").mkdir()
    (toy_root / "clevr_count" / "test.txt").write_text("real/image.jpg 3\n")
    with pytest.raises(PeftlabError, match=r"clevr_count: exists and is not a generated mini-suite folder"):
        generate_suite(toy_root, SEED, SMALL, tasks=["clevr_count"], force=True, **QUIET)
    assert (toy_root / "clevr_count" / "test.txt").read_text() == "real/image.jpg 3\n"


def test_prepare_reads_the_generated_suite_without_overrides(suite_root, tmp_path):
    prepare(suite_root, tmp_path, ["textures", "upstream"], 32, **QUIET)
    manifest = read_manifest(tmp_path / "textures")
    assert (manifest["group"], manifest["suite"], manifest["num_classes"]) == ("Natural", "mini", 8)
    assert set(manifest["splits"]) == {"train800", "val200", "train800val200", "test", "shift-style",
                                       "manyshot-60", "manyshot-120"}
    assert set(read_manifest(tmp_path / "upstream")["splits"]) == {"train", "val"}
    train = load_split(tmp_path / "textures", "train800")
    with Image.open(suite_root / "textures" / "images" / "train" / "000000.png") as image:
        np.testing.assert_array_equal(train.images[0].numpy().transpose(1, 2, 0), np.asarray(image))


@pytest.mark.parametrize("argv, message", [
    (["--test-size", "0"], "--test-size 0: must be a positive integer"),
    (["--tasks", "cifar"], "not mini-suite tasks"),
    (["--manyshot-size", "100", "--manyshot-subset", "200"], "--manyshot-subset"),
])
def test_cli_generate_rejects_bad_arguments_in_one_line(tmp_path, capsys, argv, message):
    assert main(["data", "generate", "--out", str(tmp_path / "raw"), "--seed", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("peftlab: error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "raw").exists()


def test_suite_sizes_from_a_configs_generate_settings():
    """``data.generate``'s size keys become the generator's sizes; a key left out keeps the CLI's default."""
    sizes = suite.SuiteSizes.from_settings({"seed": 0, "test_size": 20, "upstream_size": 30})
    assert sizes == suite.SuiteSizes(test=20, upstream=30)
    assert sizes.manyshot == suite.DEFAULT_MANYSHOT_SIZE
    assert suite.SuiteSizes.from_settings({"seed": 0, "manyshot_size": 500}).manyshot == 500
