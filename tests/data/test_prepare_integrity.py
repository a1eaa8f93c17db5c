"""Prepared data depends on content only and is checked where it is read: identical inputs give byte-identical
shards and manifest whatever the files' modification times; a corrupted shard is rebuilt by prepare and refused
by every loader, naming the file; a full disk is one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from safetensors import SafetensorError

from peftlab.cli import main
from peftlab.data.prepare import prepare
from peftlab.data.shards import load_split
from peftlab.errors import PeftlabError
from peftlab.io import FILE_MODE

SIZE = 16
SAFETENSORS_DISK_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


def prepare_toy(root: Path, out: Path, **options) -> list:
    messages: list[str] = []
    prepare(root, out, ["kitti"], size=SIZE, allow_size_mismatch=["kitti"], log=messages.append, **options)
    return messages


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _age_every_file(root: Path, seconds: int = 3600) -> None:
    """New modification times, same content: what `dvc pull`, `cp` or `git checkout` do to raw images."""
    for path in root.rglob("*"):
        if path.is_file():
            stat_result = path.stat()
            os.utime(path, ns=(stat_result.st_atime_ns, stat_result.st_mtime_ns + seconds * 10**9))


def test_new_modification_times_leave_the_task_up_to_date_and_untouched(toy_root, tmp_path):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "kitti").iterdir()}
    _age_every_file(toy_root)
    assert prepare_toy(toy_root, out) == [f"kitti: up to date ({out / 'kitti'}), nothing to do"]
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "kitti").iterdir()} == before


def test_re_preparing_identical_inputs_gives_identical_bytes_manifest_included(toy_root, tmp_path):
    prepare_toy(toy_root, tmp_path / "first")
    _age_every_file(toy_root)
    prepare_toy(toy_root, tmp_path / "second", force=True)
    first, second = files(tmp_path / "first" / "kitti"), files(tmp_path / "second" / "kitti")
    assert set(first) >= {"manifest.json", "test.safetensors"}
    assert first == second


def test_an_image_changed_in_place_keeping_size_and_mtime_is_noticed(toy_root, tmp_path):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    image = sorted((toy_root / "kitti" / "images" / "test set").iterdir())[0]
    before = image.stat()
    data = bytearray(image.read_bytes())
    table = data.index(b"\xff\xdb") + 5  # first entry of the first quantisation table (DQT marker, length, id)
    data[table] += 1  # other decoded pixels, a valid JPEG of the same size
    image.write_bytes(bytes(data))
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert image.stat().st_size == before.st_size
    assert "up to date" not in " ".join(prepare_toy(toy_root, out))


def test_a_same_size_corrupted_shard_is_rebuilt(toy_root, tmp_path):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    shard = out / "kitti" / "test.safetensors"
    good = shard.read_bytes()
    corrupt = bytearray(good)
    corrupt[-10] ^= 0xFF
    shard.write_bytes(bytes(corrupt))
    messages = prepare_toy(toy_root, out)
    assert messages and "up to date" not in messages[0], messages
    assert shard.read_bytes() == good


def test_a_corrupted_or_truncated_shard_is_refused_on_load_naming_it(toy_root, tmp_path):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    shard = out / "kitti" / "train800.safetensors"
    data = shard.read_bytes()
    for damaged in (data[: len(data) // 2], data[:-1] + bytes([data[-1] ^ 1])):
        shard.write_bytes(damaged)
        with pytest.raises(PeftlabError, match=rf"^{shard}: content does not match the sha256 recorded in "
                                               rf"{out / 'kitti' / 'manifest.json'}"):
            load_split(out / "kitti", "train800")


def test_a_shard_from_another_split_is_refused(toy_root, tmp_path):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    (out / "kitti" / "val200.safetensors").write_bytes((out / "kitti" / "train800.safetensors").read_bytes())
    with pytest.raises(PeftlabError, match=r"val200\.safetensors: content does not match"):
        load_split(out / "kitti", "val200")


def test_prepared_files_and_folders_have_ordinary_modes(toy_root, tmp_path):
    out = tmp_path / "shards"
    prepare_toy(toy_root, out)
    for path in (out / "kitti").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE, path
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "kitti").stat().st_mode) == 0o777 & ~umask


def test_a_full_disk_while_preparing_is_one_line_naming_the_shard_and_leaves_no_output(toy_root, tmp_path,
                                                                                       monkeypatch, capsys):
    import safetensors.numpy

    def full(*args, **kwargs):
        raise SafetensorError(SAFETENSORS_DISK_FULL)

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    out = tmp_path / "shards"
    code = main(["data", "prepare", "--root", str(toy_root), "--out", str(out), "--tasks", "kitti",
                 "--size", str(SIZE), "--allow-size-mismatch", "kitti"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"peftlab: error: {out}/.kitti.prepare-") and ".safetensors: cannot write it: no space " \
        "left on device" in err
    assert not out.exists()
