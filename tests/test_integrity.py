"""Nothing written is half-written, wrongly moded or silently corrupt: the writers of ``peftlab.io`` and the PEFT
checkpoint, checked against what the operating system and the safetensors library actually do."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

from peftlab.checkpoint import load_peft, save_peft
from peftlab.cli import main
from peftlab.errors import PeftlabError
from peftlab.io import (
    link_or_copy,
    read_json,
    save_tensors,
    sha256_file,
    verify_sha256,
    write_bytes,
    write_csv_rows,
    write_json,
    write_text,
)
from peftlab.methods import attach


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# What `touch` gives a new file under this process' umask (0644 under the usual 022).
EXPECTED_MODE = 0o666 & ~_umask()
# safetensors' report of a full disk, as its writer raised it on a 64 KiB tmpfs here (safetensors 0.8.0).
SAFETENSORS_DISK_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _figure(path):
    from peftlab.analysis.figures import _pyplot, _save

    fig = _pyplot().figure()
    fig.gca().plot([0, 1], [1, 0])
    _save(fig, path)


def _shard(path):
    from peftlab.data.shards import write_shard

    write_shard(path, np.zeros((2, 3, 4, 4), np.uint8), np.array([0, 1]), task="t", split="test", num_classes=2)


WRITERS = {
    "write_text": lambda path: write_text(path, "x\n"),
    "write_bytes": lambda path: write_bytes(path, b"x"),
    "write_json": lambda path: write_json(path, {"a": 1}),
    "write_csv_rows": lambda path: write_csv_rows(path, [{"a": 1}], ["a"]),
    "save_tensors": lambda path: save_tensors(path, {"t": torch.zeros(3)}),
    "write_shard": _shard,
    "figure": _figure,
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_writer_gives_an_ordinary_file_mode(tmp_path, writer):
    path = tmp_path / "sub" / f"out.{writer}"
    WRITERS[writer](path)
    assert mode(path) == EXPECTED_MODE, f"{writer}: {oct(mode(path))}"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_the_expected_mode_is_what_the_shell_gives_a_new_file(tmp_path):
    subprocess.run(["touch", str(tmp_path / "touched")], check=True)
    assert mode(tmp_path / "touched") == EXPECTED_MODE
    assert _umask() != 0o022 or EXPECTED_MODE == 0o644


def test_a_checkpoint_and_its_sidecar_are_ordinary_files(tmp_path, tiny_vit):
    save_peft(attach(tiny_vit(3), "lora", {"rank": 2}), tmp_path / "run")
    assert {mode(p) for p in (tmp_path / "run").iterdir()} == {EXPECTED_MODE}


def test_a_copy_made_by_link_or_copy_has_the_ordinary_mode(tmp_path, monkeypatch):
    source = tmp_path / "a.json"
    write_json(source, {"a": 1})
    monkeypatch.setattr(os, "link", lambda *args: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    link_or_copy(source, tmp_path / "copy" / "a.json")
    assert (tmp_path / "copy" / "a.json").read_bytes() == source.read_bytes()
    assert mode(tmp_path / "copy" / "a.json") == EXPECTED_MODE


def test_link_or_copy_links_where_it_can_and_replaces_atomically(tmp_path):
    source, target = tmp_path / "kept.json", tmp_path / "out" / "kept.json"
    write_json(source, {"a": 1})
    write_json(target, {"old": True})
    link_or_copy(source, target)
    assert os.path.samefile(source, target)
    mtime = target.stat().st_mtime_ns
    link_or_copy(source, target)  # already the same file: untouched
    assert target.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in target.parent.iterdir()) == ["kept.json"]


# --- a full disk -----------------------------------------------------------------------------------------------
def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as Python's write() raises it: no file name


def test_a_full_disk_while_writing_json_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "best.json"
    write_json(target, {"kept": True})
    monkeypatch.setattr("pathlib.Path.write_text", _full_disk)
    with pytest.raises(PeftlabError, match=rf"^{target}: cannot write it: no space left on device"):
        write_json(target, {"new": True})
    assert read_json(target) == {"kept": True}
    assert [p.name for p in tmp_path.iterdir()] == ["best.json"]


def test_a_full_disk_reported_by_safetensors_names_the_file(tmp_path, monkeypatch):
    import safetensors.torch

    def full(*args, **kwargs):
        raise SafetensorError(SAFETENSORS_DISK_FULL)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    target = tmp_path / "peft.safetensors"
    with pytest.raises(PeftlabError, match=rf"^{target}: cannot write it: no space left on device") as caught:
        save_tensors(target, {"t": torch.zeros(2)})
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_other_safetensors_errors_stay_errors_of_the_code(tmp_path, monkeypatch):
    import safetensors.torch

    def bug(*args, **kwargs):
        raise SafetensorError("Some tensors share memory")

    monkeypatch.setattr(safetensors.torch, "save_file", bug)
    with pytest.raises(SafetensorError):
        save_tensors(tmp_path / "x.safetensors", {"t": torch.zeros(2)})


def test_a_full_disk_anywhere_else_is_still_one_line_from_the_cli(monkeypatch, capsys):
    def handler(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "data/raw/.digits.generate-x/000.png")

    monkeypatch.setattr("peftlab.pipeline.commands.jobs_command", handler)
    assert main(["pipeline", "jobs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("peftlab: error: data/raw/.digits.generate-x/000.png: cannot write it: no space left")


# --- sha256 records ----------------------------------------------------------------------------------------------
def test_verify_sha256_names_the_file_and_the_record(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    verify_sha256(path, sha256_file(path), "manifest.json")
    path.write_bytes(b"abd")
    with pytest.raises(PeftlabError, match=rf"^{path}: content does not match the sha256 recorded in manifest.json"):
        verify_sha256(path, "0" * 64, "manifest.json")


@pytest.fixture
def saved(tmp_path, tiny_vit):
    """Two trained-looking LoRA checkpoints of the same shape (``seed0``, ``seed1``) and their backbone file."""
    weights = tmp_path / "backbone.safetensors"
    save_tensors(weights, tiny_vit(None, seed=1).state_dict())
    for seed in (0, 1):
        model = attach(tiny_vit(4, weights=weights), "lora", {"rank": 2})
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(seed)))
        save_peft(model, tmp_path / f"seed{seed}")
    return tmp_path, weights


def test_the_sidecar_records_the_sha256_of_the_tensors(saved):
    root, _ = saved
    assert read_json(root / "seed0" / "peft.json")["tensors_sha256"] == sha256_file(root / "seed0" / "peft.safetensors")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def _copy_other_seed(path):
    shutil.copyfile(path.parents[1] / "seed1" / "peft.safetensors", path)


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _copy_other_seed], ids=lambda f: f.__name__[1:])
def test_a_damaged_checkpoint_is_refused_naming_the_file(saved, tiny_vit, damage):
    root, weights = saved
    tensors = root / "seed0" / "peft.safetensors"
    damage(tensors)
    with pytest.raises(PeftlabError, match=rf"^{tensors}: content does not match the sha256 recorded in "
                                           rf"{root / 'seed0' / 'peft.json'}") as caught:
        load_peft(tiny_vit(None, weights=weights), root / "seed0")
    assert "\n" not in str(caught.value)


def test_an_unreadable_checkpoint_without_a_hash_mismatch_is_one_line_too(saved, tiny_vit):
    """A sidecar rewritten to match a truncated file (hash agrees): the reader's error names the file."""
    root, weights = saved
    tensors = root / "seed0" / "peft.safetensors"
    _truncate(tensors)
    sidecar = read_json(root / "seed0" / "peft.json")
    write_json(root / "seed0" / "peft.json", dict(sidecar, tensors_sha256=sha256_file(tensors)))
    with pytest.raises(PeftlabError, match=rf"^{tensors}: not a readable safetensors checkpoint"):
        load_peft(tiny_vit(None, weights=weights), root / "seed0")


def test_a_sidecar_without_a_hash_is_refused(saved, tiny_vit):
    root, weights = saved
    sidecar = read_json(root / "seed0" / "peft.json")
    del sidecar["tensors_sha256"]
    write_json(root / "seed0" / "peft.json", sidecar)
    with pytest.raises(PeftlabError, match=r"peft\.json: missing key 'tensors_sha256' \(written by an older"):
        load_peft(tiny_vit(None, weights=weights), root / "seed0")


def test_atomic_path_leaves_nothing_when_the_process_is_killed_mid_write(tmp_path):
    script = (f"import os, time\nfrom peftlab.io import atomic_path\n"
              f"with atomic_path({str(tmp_path / 'x.bin')!r}) as tmp:\n"
              f"    tmp.write_bytes(b'half')\n    os.kill(os.getpid(), 9)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9
    assert not (tmp_path / "x.bin").exists()  # at most a hidden temporary file, never the target
    assert all(p.name.startswith(".x.bin.") for p in tmp_path.iterdir())


def test_a_full_disk_while_generating_the_mini_suite_names_the_image(tmp_path, monkeypatch):
    from peftlab.data.generate import SuiteSizes, generate_suite

    monkeypatch.setattr("pathlib.Path.write_bytes", _full_disk)
    with pytest.raises(PeftlabError, match=r"images/train/000000\.png: cannot write it: no space left on device"):
        generate_suite(tmp_path / "raw", 0, SuiteSizes(test=8, manyshot=8, upstream=8), tasks=["digits"],
                       log=lambda message: None)
