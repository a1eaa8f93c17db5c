"""A search killed mid-trial resumes: finished trials are kept, the killed one re-runs, the result is the same."""

import os
import signal
import subprocess
import sys
import time

from training_fixtures import TASK, write_config

from peftlab.cli import main
from peftlab.io import read_json

GRID = {"lr": [1e-4, 1e-3, 1e-2], "weight_decay": [1e-4]}


def search_args(config, shards, out):
    return ["search", "--task", TASK, "--method", "full", "--config", str(config), "--data", str(shards),
            "--out", str(out)]


def snapshot(trials_dir):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in trials_dir.glob("*.json")}


def test_killed_search_resumes_without_rerunning_finished_trials(tmp_path, shards, backbone_file):
    config = write_config(tmp_path / "params.yaml", backbone_file, search=GRID,
                          training={"epochs": 8, "head_init": "random"})
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "peftlab.cli", *search_args(config, shards, out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    deadline = time.monotonic() + 90
    while not list((out / "trials").glob("*.json")):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "first trial never finished"
        time.sleep(0.05)
    time.sleep(0.3)  # into the second trial
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()

    before = snapshot(out / "trials")
    assert 1 <= len(before) < 3, "the kill should land mid-search"
    for name, (_, content) in before.items():
        assert read_json(out / "trials" / name)["status"] == "ok", content  # complete, valid JSON
    assert not (out / "best.json").exists()

    assert main(search_args(config, shards, out)) == 0
    after = snapshot(out / "trials")
    assert len(after) == 3
    for name, state in before.items():
        assert after[name] == state, f"{name} was re-run"

    reference = tmp_path / "uninterrupted"
    assert main(search_args(config, shards, reference)) == 0
    resumed, uninterrupted = read_json(out / "best.json"), read_json(reference / "best.json")
    assert resumed["selected"] == uninterrupted["selected"]
    assert [t["val_accuracy"] for t in resumed["trials"]] == [t["val_accuracy"] for t in uninterrupted["trials"]]


def test_a_trial_of_another_configuration_is_rerun(tmp_path, shards, backbone_file):
    config = write_config(tmp_path / "params.yaml", backbone_file, search={"lr": [1e-3], "weight_decay": [1e-4]})
    args = ["search", "--task", TASK, "--method", "linear", "--config", str(config), "--data", str(shards),
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    path = tmp_path / "out" / "trials" / "lr0.001-wd0.0001.json"
    first = read_json(path)
    write_config(config, backbone_file, search={"lr": [1e-3], "weight_decay": [1e-4]}, training={"epochs": 3})
    assert main(args) == 0
    second = read_json(path)
    assert second["epochs"] == 3 and second["fingerprint"] != first["fingerprint"]
