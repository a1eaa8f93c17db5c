"""``training.frozen_blocks``: the frozen prefix (the linear probe's backbone, partial-k's first blocks) in eval
mode (deterministic, cached) or in train mode (drop-path in the frozen blocks, as PETL_Vision trains), which path
the training rows took, and the records that say so."""

import pytest
import torch
from training_fixtures import TASK, write_config
from training_helpers import make_session, run, settings_for

from peftlab.cli import main
from peftlab.io import read_json
from peftlab.training.cache import FrozenCache
from peftlab.training.forward import ModelRunner, draws_random_numbers, prefix_forward

LINEAR = {"lr": 1e-2, "weight_decay": 1e-4}


def block_outputs(model, runner, rows) -> list[torch.Tensor]:
    """The last block's output in two training forwards of the same rows."""
    seen = []
    handle = model.blocks[-1].register_forward_hook(lambda _m, _a, out: seen.append(out.detach().clone()))
    runner.train()
    with torch.no_grad():
        runner.logits(rows)
        runner.logits(rows)
    handle.remove()
    return seen


def test_linear_probe_with_frozen_blocks_in_train_mode_draws_random_numbers_in_them(shards, backbone_file, tmp_path):
    session = make_session(shards, backbone_file, cache=FrozenCache(tmp_path / "cache"), frozen_blocks="train")
    prepared = session.prepare("linear", LINEAR, seed=0, train_split="train800")
    assert prepared.training_path["cached"] is False and "frozen_blocks" in prepared.training_path["reason"]
    assert prepared.rows is prepared.train.images  # images, not cached features
    assert draws_random_numbers(prepared.model, prepared.point, "train")
    rows = prepared.rows[:8]
    before = torch.random.get_rng_state()
    first, second = block_outputs(prepared.model, prepared.runner, rows)
    assert not torch.equal(before, torch.random.get_rng_state())
    assert not torch.allclose(first, second)  # stochastic depth inside the frozen blocks
    assert all(block.training for block in prepared.model.blocks)


def test_with_frozen_blocks_in_eval_mode_the_features_equal_the_cached_ones(shards, backbone_file, tmp_path):
    session = make_session(shards, backbone_file, cache=FrozenCache(tmp_path / "cache"), frozen_blocks="eval")
    prepared = session.prepare("linear", LINEAR, seed=0, train_split="train800")
    assert prepared.training_path["cached"] is True and "eval mode" in prepared.training_path["reason"]
    model, point = prepared.model, prepared.point
    uncached = ModelRunner(model, prepared.transform, point=point, frozen_blocks="eval")
    first, second = block_outputs(model, uncached, prepared.train.images[:8])
    assert torch.equal(first, second)  # nothing random in the frozen blocks
    assert not draws_random_numbers(model, point, "eval")
    with torch.no_grad():
        features = prefix_forward(model, point, prepared.transform(prepared.train.images))
    assert torch.allclose(features, prepared.rows, atol=1e-6)


def test_train_mode_runs_uncached_but_evaluates_from_the_cache(shards, backbone_file, tmp_path):
    train_mode = make_session(shards, backbone_file, cache=FrozenCache(tmp_path / "cache"), frozen_blocks="train",
                              head_init="random")  # (no prototype head, whose features would be a cache entry)
    outcome = run(train_mode, "partial", {**LINEAR, "blocks": 1})
    assert outcome.training_path["cached"] is False and outcome.ok
    assert train_mode.cache.hits["computed"] == 1  # val200's prefix only: evaluation is in eval mode
    eval_mode = make_session(shards, backbone_file, cache=FrozenCache(tmp_path / "cache"), frozen_blocks="eval",
                             head_init="random")
    reference = run(eval_mode, "partial", {**LINEAR, "blocks": 1})
    assert reference.training_path["cached"] is True
    assert reference.fit.epoch_losses != outcome.fit.epoch_losses  # another training procedure


def test_without_drop_path_train_mode_keeps_the_cache_and_the_result(shards, backbone_file, tmp_path):
    outcomes = {}
    for mode in ("eval", "train"):
        session = make_session(shards, backbone_file, cache=FrozenCache(tmp_path / mode), frozen_blocks=mode,
                               drop_path=0.0)
        outcomes[mode] = run(session, "linear", LINEAR)
    assert outcomes["train"].training_path["cached"] and "no random numbers" in outcomes["train"].training_path["reason"]
    assert outcomes["train"].fit.epoch_losses == outcomes["eval"].fit.epoch_losses


def test_a_cached_runner_refuses_to_train_a_stochastic_prefix(shards, backbone_file):
    session = make_session(shards, backbone_file, frozen_blocks="train")
    prepared = session.prepare("linear", LINEAR, seed=0, train_split="train800")
    runner = ModelRunner(prepared.model, prepared.transform, point=prepared.point, cached=True, frozen_blocks="train")
    with pytest.raises(ValueError, match="random numbers"):
        runner.train()


def test_train_mode_linear_probes_train_alone(shards, backbone_file):
    session = make_session(shards, backbone_file, frozen_blocks="train")
    points = [(hparams, settings_for(session, hparams)) for hparams in (LINEAR, {**LINEAR, "lr": 1e-3})]
    outcomes = [outcome for _, outcome in session.run_grid("linear", points, seed=0, train_split="train800",
                                                             eval_splits=["val200"])]
    assert all("fit_group_size" not in outcome.resources for outcome in outcomes)


@pytest.mark.parametrize("mode, cached", [("eval", True), ("train", False)])
def test_trial_files_and_seed_metrics_record_the_training_path(tmp_path, shards, backbone_file, mode, cached):
    config = write_config(tmp_path / "params.yaml", backbone_file, search={"lr": [1e-2], "weight_decay": [1e-4]},
                          training={"frozen_blocks": mode, "epochs": 1})
    out = tmp_path / "search"
    common = ["--task", TASK, "--method", "linear", "--config", str(config), "--data", str(shards)]
    assert main(["search", *common, "--out", str(out)]) == 0
    trial = read_json(out / "trials" / "lr0.01-wd0.0001.json")
    assert trial["training_path"]["cached"] is cached and trial["training_path"]["reason"]
    assert main(["train", *common, "--hparams", str(out / "best.json"), "--seeds", "0",
                 "--out", str(tmp_path / "final")]) == 0
    metrics = read_json(tmp_path / "final" / "runs" / "seed0" / "metrics.json")
    assert metrics["training_path"]["cached"] is cached and metrics["training_path"]["reason"]
