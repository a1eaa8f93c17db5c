"""Runs trained together (``fit_group``, ``TrainingSession.run_grid``) end exactly as they would alone."""

import pytest
import torch
from training_fixtures import SMALL_CONFIG
from training_helpers import make_session, run, settings_for

from peftlab.methods import attach, cache_point, list_methods
from peftlab.training.cache import FrozenCache
from peftlab.training.forward import ModelRunner, draws_random_numbers
from peftlab.training.inputs import transform_for
from peftlab.training.loop import FitSettings, fit_group
from peftlab.training.session import BackboneSource

LINEAR_GRID = [{"lr": 1e-3, "weight_decay": 1e-4}, {"lr": 1e-2, "weight_decay": 1e-4}, {"lr": 3e-2, "weight_decay": 1e-2}]


def grid_outcomes(session, method, points):
    pairs = [(hparams, settings_for(session, hparams)) for hparams in points]
    outcomes = dict(session.run_grid(method, pairs, seed=0, train_split="train800", eval_splits=["val200"]))
    return [outcomes[index] for index in range(len(points))]


def assert_same_run(grouped, alone):
    assert grouped.fit.status == alone.fit.status
    assert grouped.fit.epoch_losses == alone.fit.epoch_losses
    assert grouped.fit.steps == alone.fit.steps
    assert set(grouped.logits) == set(alone.logits)
    for split in alone.logits:
        assert torch.equal(grouped.logits[split], alone.logits[split])
    trained = {name: p for name, p in alone.model.named_parameters() if p.requires_grad}
    for name, p in grouped.model.named_parameters():
        if name in trained:
            assert torch.equal(p, trained[name]), name


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "uncached"])
def test_grouped_linear_probes_equal_runs_alone_bitwise(shards, backbone_file, tmp_path, cached):
    grouped = grid_outcomes(make_session(shards, backbone_file, cache=FrozenCache(tmp_path / "grouped", enabled=cached)),
                            "linear", LINEAR_GRID)
    alone_session = make_session(shards, backbone_file, cache=FrozenCache(tmp_path / "alone", enabled=cached))
    for outcome, hparams in zip(grouped, LINEAR_GRID, strict=True):
        assert outcome.resources["fit_group_size"] == len(LINEAR_GRID)
        assert_same_run(outcome, run(alone_session, "linear", hparams))
    assert len({outcome.scores["val200"].loss for outcome in grouped}) == len(LINEAR_GRID)  # they did differ


def test_a_diverging_member_stops_alone_and_the_others_are_unaffected(shards, backbone_file):
    points = [{"lr": 1e-2, "weight_decay": 0.0}, {"lr": 1e36, "weight_decay": 0.0}, {"lr": 1e-3, "weight_decay": 0.0}]
    grouped = grid_outcomes(make_session(shards, backbone_file), "linear", points)
    assert [outcome.fit.status for outcome in grouped] == ["ok", "diverged", "ok"]
    assert grouped[1].fit.epoch_losses[-1] is None and not grouped[1].scores
    alone_session = make_session(shards, backbone_file)
    for index in (0, 2):
        assert_same_run(grouped[index], run(alone_session, "linear", points[index]))


def test_runs_that_draw_random_numbers_train_alone(shards, backbone_file):
    points = [{"lr": 1e-3, "weight_decay": 1e-4, "blocks": 1}, {"lr": 1e-2, "weight_decay": 1e-4, "blocks": 1}]
    session = make_session(shards, backbone_file)  # drop_path 0.1: the trained block draws random numbers
    grouped = grid_outcomes(session, "partial", points)
    alone_session = make_session(shards, backbone_file)
    for outcome, hparams in zip(grouped, points, strict=True):
        assert "fit_group_size" not in outcome.resources
        assert_same_run(outcome, run(alone_session, "partial", hparams))


def test_a_group_is_split_at_max_group(shards, backbone_file):
    session = make_session(shards, backbone_file)
    pairs = [(hparams, settings_for(session, hparams)) for hparams in LINEAR_GRID]
    sizes = [outcome.resources["fit_group_size"] for _, outcome in
             session.run_grid("linear", pairs, seed=0, train_split="train800", eval_splits=[], max_group=2)]
    assert sizes == [2, 2, 1]


def test_members_must_share_everything_but_lr_and_weight_decay(shards, backbone_file):
    session = make_session(shards, backbone_file)
    prepared = session.prepare("linear", LINEAR_GRID[0], seed=0, train_split="train800")
    base = settings_for(session, LINEAR_GRID[0])
    longer = FitSettings(**dict(base.as_dict(), epochs=base.epochs + 1))
    with pytest.raises(ValueError, match="more than lr and weight_decay"):
        fit_group([prepared.runner, prepared.runner], prepared.rows, prepared.train.labels, [base, longer],
                  generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("drop_path, frozen_blocks", [(0.0, "eval"), (0.1, "eval"), (0.0, "train"), (0.1, "train")])
def test_draws_random_numbers_matches_what_a_training_step_draws(backbone_file, drop_path, frozen_blocks):
    """For every registered method at its defaults: the static check agrees with the random stream itself, with
    the frozen prefix in eval or in train mode."""
    source = BackboneSource(SMALL_CONFIG["backbone"]["name"], backbone_file)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    verdicts = {}
    for method in [spec.name for spec in list_methods()]:
        model = attach(source.create(4, drop_path), method, {})
        point = cache_point(model)
        runner = ModelRunner(model, transform_for(model, False, "cpu"), point=point, frozen_blocks=frozen_blocks)
        runner.train()
        before = torch.random.get_rng_state()
        runner.logits(images)
        drew = not torch.equal(before, torch.random.get_rng_state())
        verdicts[method] = drew
        assert draws_random_numbers(model, point, frozen_blocks) == drew, method
    # both outcomes occur; the linear probe's frozen backbone draws only in train mode with drop-path
    assert verdicts["linear"] == (drop_path > 0 and frozen_blocks == "train") and verdicts["lora"]
