"""Bad input to `peftlab train` / `search`: one error line naming the file and key, exit 2, nothing written."""

import pytest
import yaml
from training_fixtures import TASK

from peftlab.cli import main
from peftlab.io import write_json


def train(tmp_path, config, shards, best, method="linear"):
    return main(["train", "--task", TASK, "--method", method, "--hparams", str(best), "--seeds", "0",
                 "--config", str(config), "--data", str(shards), "--out", str(tmp_path / "out")])


def assert_one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("peftlab: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def good_best(path, method="linear"):
    write_json(path, {"task": TASK, "method": method,
                      "selected": {"trial_id": "x", "hparams": {"lr": 1e-3, "weight_decay": 1e-4}}})
    return path


def test_missing_best_json(tmp_path, shards, config_file, capsys):
    assert train(tmp_path, config_file, shards, tmp_path / "nope" / "best.json") == 2
    assert_one_line_error(capsys, "best.json", "not found")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "fragment"), [
    ("{not json", "malformed"),
    ('{"method": "linear"}', "'selected'"),
    ('{"method": "linear", "selected": {"hparams": {"lr": "fast", "weight_decay": 0}}}', "selected.hparams.lr"),
    ('{"method": "lora", "selected": {"hparams": {"lr": 0.1, "weight_decay": 0}}}', "'method'"),
])
def test_malformed_best_json(tmp_path, shards, config_file, capsys, content, fragment):
    best = tmp_path / "best.json"
    best.write_text(content)
    assert train(tmp_path, config_file, shards, best) == 2
    assert_one_line_error(capsys, str(best), fragment)
    assert not (tmp_path / "out").exists()


def test_unknown_hyper_parameter_in_best_json(tmp_path, shards, config_file, capsys):
    best = tmp_path / "best.json"
    write_json(best, {"method": "linear", "selected": {"hparams": {"lr": 0.1, "weight_decay": 0, "rank": 4}}})
    assert train(tmp_path, config_file, shards, best) == 2
    assert_one_line_error(capsys, str(best), "rank")
    assert not (tmp_path / "out").exists()


def test_unknown_method(tmp_path, shards, config_file, capsys):
    assert train(tmp_path, config_file, shards, good_best(tmp_path / "best.json"), method="nosuch") == 2
    assert_one_line_error(capsys, "nosuch", "known methods")
    assert not (tmp_path / "out").exists()


def test_config_key_of_wrong_type(tmp_path, shards, config_file, capsys):
    config = yaml.safe_load(config_file.read_text())
    config["training"]["epochs"] = "ten"
    config_file.write_text(yaml.safe_dump(config))
    assert train(tmp_path, config_file, shards, good_best(tmp_path / "best.json")) == 2
    assert_one_line_error(capsys, str(config_file), "training.epochs")
    assert not (tmp_path / "out").exists()


def test_missing_weights_and_missing_task(tmp_path, shards, config_file, capsys):
    best = good_best(tmp_path / "best.json")
    assert main(["train", "--task", TASK, "--method", "linear", "--hparams", str(best), "--config", str(config_file),
                 "--data", str(shards), "--out", str(tmp_path / "out"), "--weights", str(tmp_path / "w.pt")]) == 2
    assert_one_line_error(capsys, "w.pt", "not found")
    assert main(["search", "--task", "nosuch", "--method", "linear", "--config", str(config_file),
                 "--data", str(shards), "--out", str(tmp_path / "out")]) == 2
    assert_one_line_error(capsys, "nosuch")
    assert not (tmp_path / "out").exists()
