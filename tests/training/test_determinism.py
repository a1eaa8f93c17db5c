"""Same seed, same CPU: identical metrics and logits; another seed: another run."""

import torch
from training_helpers import make_session, run

HPARAMS = {"lr": 1e-3, "weight_decay": 1e-4, "rank": 2}


def test_two_runs_with_the_same_seed_are_identical(shards, backbone_file):
    first = run(make_session(shards, backbone_file, head_init="random"), "lora", HPARAMS, seed=3)
    second = run(make_session(shards, backbone_file, head_init="random"), "lora", HPARAMS, seed=3)
    assert first.fit.epoch_losses == second.fit.epoch_losses
    assert first.scores == second.scores
    assert torch.equal(first.logits["val200"], second.logits["val200"])
    assert all(torch.equal(first.head_init[k], second.head_init[k]) for k in first.head_init)


def test_another_seed_gives_another_run(shards, backbone_file):
    first = run(make_session(shards, backbone_file, head_init="random"), "lora", HPARAMS, seed=0)
    other = run(make_session(shards, backbone_file, head_init="random"), "lora", HPARAMS, seed=1)
    assert not torch.equal(first.logits["val200"], other.logits["val200"])


def test_zeros_head_init_starts_from_zero(shards, backbone_file):
    outcome = run(make_session(shards, backbone_file, head_init="zeros"), "linear", {"lr": 1e-3, "weight_decay": 0})
    assert not outcome.head_init["head.weight"].any() and not outcome.head_init["head.bias"].any()
