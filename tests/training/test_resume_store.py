"""Finished trials and seeds survive an engine's clean-up, are kept only while intact and from the same code, and
a full disk is one line: the resume folder beside ``--out`` (``peftlab.paths.resume_dir``)."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
from safetensors import SafetensorError
from training_fixtures import TASK

from peftlab.cli import main
from peftlab.io import FILE_MODE, read_json, write_json
from peftlab.paths import RUN_FILES, resume_dir
from peftlab.training import records

SEARCH = {"lr": [1e-3, 1e-2], "weight_decay": [1e-4]}
LINEAR_TRIALS = ["lr0.001-wd0.0001", "lr0.01-wd0.0001"]


def search(config, shards, out, method="linear"):
    return main(["search", "--task", TASK, "--method", method, "--config", str(config), "--data", str(shards),
                 "--out", str(out)])


def train(config, shards, out, best, seeds, method="linear"):
    return main(["train", "--task", TASK, "--method", method, "--hparams", str(best), "--seeds", *map(str, seeds),
                 "--config", str(config), "--data", str(shards), "--out", str(out), "--epochs", "1",
                 "--warmup-epochs", "0"])


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def write_best(path, method="linear"):
    write_json(path, {"task": TASK, "method": method, "selected": {"trial_id": "x", "hparams": {
        "lr": 1e-3, "weight_decay": 1e-4}}, "val_accuracy": 0.5, "rule": "test", "trials": [], "provenance": {}})
    return path


def test_trials_survive_the_deletion_of_the_search_outputs(tmp_path, shards, config_file, capsys):
    out = tmp_path / "search" / TASK / "linear"
    assert search(config_file, shards, out) == 0
    kept = resume_dir(out)
    assert sorted(p.stem for p in kept.iterdir()) == LINEAR_TRIALS
    published = contents(out / "trials")
    assert published == contents(kept)
    assert {os.stat(p).st_mode & 0o777 for p in (out / "trials").iterdir()} == {FILE_MODE}
    best = read_json(out / "best.json")

    shutil.rmtree(out)  # what Snakemake (directory output) and DVC (outs) do before re-running the job
    capsys.readouterr()
    assert search(config_file, shards, out) == 0
    assert capsys.readouterr().err.count("kept (finished earlier)") == 2
    assert contents(out / "trials") == published
    assert read_json(out / "best.json")["selected"] == best["selected"]


def test_trials_published_in_the_output_are_kept_when_the_resume_folder_is_gone(tmp_path, shards, config_file,
                                                                                capsys):
    out = tmp_path / "out"
    assert search(config_file, shards, out) == 0
    published = contents(out / "trials")
    shutil.rmtree(resume_dir(out))
    capsys.readouterr()
    assert search(config_file, shards, out) == 0
    assert capsys.readouterr().err.count("kept (finished earlier)") == 2
    assert contents(resume_dir(out)) == published == contents(out / "trials")


def test_trials_of_other_code_are_recomputed(tmp_path, shards, config_file, capsys, monkeypatch):
    out = tmp_path / "out"
    assert search(config_file, shards, out) == 0
    first = read_json(resume_dir(out) / f"{LINEAR_TRIALS[0]}.json")
    monkeypatch.setattr(records, "code_sha256", lambda: "0" * 64)  # what a changed peftlab would hash to
    capsys.readouterr()
    assert search(config_file, shards, out) == 0
    assert "kept" not in capsys.readouterr().err
    second = read_json(resume_dir(out) / f"{LINEAR_TRIALS[0]}.json")
    assert second["fingerprint"] != first["fingerprint"]
    assert second["val_accuracy"] == first["val_accuracy"]  # the same computation, redone


@pytest.fixture
def finished_seed0(tmp_path, shards, config_file):
    """A final job that finished seed 0 only, as a kill between seeds leaves it; and its (config, best)."""
    best = write_best(tmp_path / "best.json")
    out = tmp_path / "final"
    assert train(config_file, shards, out, best, [0]) == 0
    return out, best


def test_a_final_job_killed_between_seeds_keeps_the_finished_seed(tmp_path, shards, config_file, finished_seed0,
                                                                   capsys):
    out, best = finished_seed0
    seed0 = contents(out / "runs" / "seed0")
    shutil.rmtree(out)  # the engine's clean-up before the job runs again
    capsys.readouterr()
    assert train(config_file, shards, out, best, [0, 1]) == 0
    err = capsys.readouterr().err
    assert "seed 0 (train800val200): ok" in err and "kept (finished earlier)" in err.split("seed 1")[0]
    assert contents(out / "runs" / "seed0") == seed0

    reference = tmp_path / "uninterrupted"
    assert train(config_file, shards, reference, best, [0, 1]) == 0
    for seed in (0, 1):
        for name in ("peft.safetensors", "head_init.safetensors", "logits.safetensors"):
            ours, theirs = (root / "runs" / f"seed{seed}" / name for root in (out, reference))
            assert ours.read_bytes() == theirs.read_bytes(), (seed, name)
    assert read_json(out / "metrics.json")["accuracy"] == read_json(reference / "metrics.json")["accuracy"]


def test_every_run_file_is_recorded_in_the_seeds_metrics(finished_seed0):
    out, _ = finished_seed0
    from peftlab.io import sha256_file

    recorded = read_json(out / "runs" / "seed0" / "metrics.json")["files_sha256"]
    assert recorded == {name: sha256_file(out / "runs" / "seed0" / name) for name in RUN_FILES
                        if name != "metrics.json"}
    assert {os.stat(p).st_mode & 0o777 for p in (out / "runs" / "seed0").iterdir()} == {FILE_MODE}


def test_a_replaced_checkpoint_in_the_output_is_restored_from_the_resume_folder(shards, config_file,
                                                                                finished_seed0, capsys):
    out, best = finished_seed0
    good = (out / "runs" / "seed0" / "peft.safetensors").read_bytes()
    (out / "runs" / "seed0" / "peft.safetensors").unlink()
    (out / "runs" / "seed0" / "peft.safetensors").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    capsys.readouterr()
    assert train(config_file, shards, out, best, [0]) == 0
    assert "kept (finished earlier)" in capsys.readouterr().err
    assert (out / "runs" / "seed0" / "peft.safetensors").read_bytes() == good


@pytest.mark.parametrize("damage", ["truncate", "delete_checkpoint", "tamper_logits"])
def test_a_seed_whose_files_fail_verification_is_recomputed_not_kept(shards, config_file, finished_seed0, capsys,
                                                                      damage):
    out, best = finished_seed0
    seed_dir = out / "runs" / "seed0"
    good = contents(seed_dir)
    if damage == "truncate":  # in place: the resume folder's hard link sees it too
        with open(seed_dir / "peft.safetensors", "r+b") as handle:
            handle.truncate(100)
        bad_file = "peft.safetensors"
    elif damage == "delete_checkpoint":
        for folder in (seed_dir, resume_dir(out) / "seed0"):
            (folder / "peft.safetensors").unlink()
        bad_file = "peft.safetensors"
    else:
        with open(seed_dir / "logits.safetensors", "r+b") as handle:
            handle.seek(-4, os.SEEK_END)
            handle.write(b"\0\0\0\0")
        bad_file = "logits.safetensors"
    capsys.readouterr()
    assert train(config_file, shards, out, best, [0]) == 0
    err = capsys.readouterr().err
    assert f"seed 0: not kept, recomputed: {resume_dir(out) / 'seed0' / bad_file}" in err
    assert "kept (finished earlier)" not in err
    after = contents(seed_dir)
    for name in ("peft.safetensors", "head_init.safetensors", "logits.safetensors"):  # deterministic re-run
        assert after[name] == good[name], name


def test_a_full_disk_during_a_search_is_one_line_naming_the_trial_file(tmp_path, shards, config_file, capsys,
                                                                       monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("pathlib.Path.write_text", full)
    out = tmp_path / "out"
    assert search(config_file, shards, out) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"peftlab: error: {resume_dir(out) / LINEAR_TRIALS[0]}.json: cannot write it: "
                              "no space left on device")
    assert not any(line.startswith("Traceback") for line in err)


def test_a_full_disk_during_a_final_run_is_one_line_naming_the_checkpoint(tmp_path, shards, config_file, capsys,
                                                                          monkeypatch):
    import safetensors.torch

    save_file = safetensors.torch.save_file

    def full(tensors, filename, *args, **kwargs):  # the disk fills up when the checkpoint is written
        if ".peft.safetensors." not in str(filename):
            return save_file(tensors, filename, *args, **kwargs)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    out = tmp_path / "final"
    assert train(config_file, shards, out, write_best(tmp_path / "best.json"), [0]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"peftlab: error: {resume_dir(out) / 'seed0' / 'peft.safetensors'}: cannot write it: no space "
                       "left on device (nothing was replaced; free space or fix the permissions and re-run the same "
                       "command, finished work is kept)")
    assert not (out / "runs" / "seed0").exists()
