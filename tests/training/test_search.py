"""Search: selection on validation only, divergence, tie rule, trial files."""

import json
import shutil

from training_fixtures import TASK, write_config, write_task
from training_helpers import make_session

from peftlab.cli import main
from peftlab.io import read_json
from peftlab.training.loop import FitSettings
from peftlab.training.records import trial_id
from peftlab.training.search import select_best


def search(config, shards, out, method="linear"):
    return main(["search", "--task", TASK, "--method", method, "--config", str(config), "--data", str(shards),
                 "--out", str(out)])


def test_selection_uses_validation_only_and_runs_without_the_test_shard(tmp_path, backbone_file):
    """Planted case: test labels are shifted, so the val-best point is the test-worst one."""
    shards = tmp_path / "shards"
    write_task(shards / TASK, {"train800": 64, "val200": 32, "test": 32}, label_shift={"test": 1})
    lrs = [1e-5, 1e-1]
    session = make_session(shards, backbone_file)
    test_accuracy = {}
    for lr in lrs:
        hparams = {"lr": lr, "weight_decay": 1e-4}
        outcome = session.run("linear", hparams, seed=0, train_split="train800", eval_splits=["test"],
                              settings=FitSettings.from_config(session.training, hparams))
        test_accuracy[trial_id(hparams)] = outcome.scores["test"].accuracy
    (shards / TASK / "test.safetensors").unlink()

    config = write_config(tmp_path / "params.yaml", backbone_file, search={"lr": lrs, "weight_decay": [1e-4]})
    assert search(config, shards, tmp_path / "out") == 0
    best = read_json(tmp_path / "out" / "best.json")
    val_accuracy = {t["trial_id"]: t["val_accuracy"] for t in best["trials"]}
    assert best["selected"]["trial_id"] == max(val_accuracy, key=val_accuracy.get)
    assert max(test_accuracy, key=test_accuracy.get) != best["selected"]["trial_id"]  # the planted disagreement
    assert "test split is never read" in best["rule"]


def test_a_diverging_trial_is_recorded_and_never_selected(tmp_path, shards, backbone_file):
    config = write_config(tmp_path / "params.yaml", backbone_file, search={"lr": [1e-3, 1e36], "weight_decay": [0.0]})
    assert search(config, shards, tmp_path / "out") == 0
    diverged = read_json(tmp_path / "out" / "trials" / "lr1e+36-wd0.0.json")
    assert diverged["status"] == "diverged" and diverged["val_accuracy"] is None
    assert read_json(tmp_path / "out" / "best.json")["selected"]["trial_id"] == "lr0.001-wd0.0"


def test_trial_files_follow_the_documented_format(tmp_path, shards, backbone_file):
    config = write_config(tmp_path / "params.yaml", backbone_file, search={"lr": [1e-3], "weight_decay": [1e-4]},
                          grids={"partial": {"blocks": [1, 2]}})
    assert search(config, shards, tmp_path / "out", method="partial") == 0
    names = sorted(p.name for p in (tmp_path / "out" / "trials").iterdir())
    assert names == ["lr0.001-wd0.0001-blocks1.json", "lr0.001-wd0.0001-blocks2.json"]
    trial = json.loads((tmp_path / "out" / "trials" / names[0]).read_text())
    for key in ("task", "method", "trial_id", "hparams", "status", "val_accuracy", "val_loss", "train_loss",
                "trainable_params", "time_s", "peak_memory_mb", "seed", "epochs", "provenance"):
        assert key in trial, key
    assert set(trial["trainable_params"]) == {"total", "method", "head"}
    best = read_json(tmp_path / "out" / "best.json")
    assert {"task", "method", "selected", "val_accuracy", "rule", "trials", "provenance"} <= set(best)


def trial(tid, accuracy, params, status="ok"):
    return {"trial_id": tid, "task": "t", "method": "m", "status": status, "val_accuracy": accuracy,
            "trainable_params": {"total": params}}


def test_ties_break_on_fewer_trainable_parameters_then_grid_order():
    assert select_best([trial("a", 0.5, 10), trial("b", 0.5, 5), trial("c", 0.5, 5)])["trial_id"] == "b"
    assert select_best([trial("a", 0.4, 1), trial("b", 0.6, 100)])["trial_id"] == "b"
    assert select_best([trial("a", None, 1, "diverged"), trial("b", 0.1, 100)])["trial_id"] == "b"


def test_a_search_whose_every_trial_diverged_is_an_error(tmp_path, shards, backbone_file, capsys):
    config = write_config(tmp_path / "params.yaml", backbone_file, search={"lr": [1e36], "weight_decay": [0.0]})
    assert search(config, shards, tmp_path / "out") == 2
    assert "every trial diverged" in capsys.readouterr().err
    assert not (tmp_path / "out" / "best.json").exists()
    shutil.rmtree(tmp_path / "out")
