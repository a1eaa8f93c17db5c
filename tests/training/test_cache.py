"""Frozen-computation cache: the cached path trains and predicts the same as the uncached one."""

import pytest
import torch
from training_helpers import make_session, run

from peftlab.training.cache import FrozenCache

POINTS = [("linear", {"lr": 1e-2, "weight_decay": 1e-4}), ("partial", {"lr": 1e-3, "weight_decay": 1e-4, "blocks": 2})]


@pytest.mark.parametrize(("method", "hparams"), POINTS, ids=[m for m, _ in POINTS])
def test_cached_and_uncached_runs_give_the_same_logits(shards, backbone_file, tmp_path, method, hparams):
    cached = make_session(shards, backbone_file, cache=FrozenCache(tmp_path / "cache"))
    uncached = make_session(shards, backbone_file, cache=FrozenCache(None, enabled=False))
    with_cache, without = run(cached, method, hparams), run(uncached, method, hparams)
    assert cached.cache.hits["computed"] >= 2  # train and val prefixes were computed once...
    assert uncached.cache.hits == {"memory": 0, "disk": 0, "computed": 0}  # ...and never by the uncached path
    assert torch.allclose(with_cache.logits["val200"], without.logits["val200"], atol=1e-4)
    assert with_cache.fit.epoch_losses == pytest.approx(without.fit.epoch_losses, abs=1e-5)


def test_a_second_job_loads_the_prefix_from_disk(shards, backbone_file, tmp_path):
    hparams = {"lr": 1e-2, "weight_decay": 1e-4}
    first = make_session(shards, backbone_file, cache=FrozenCache(tmp_path / "cache"))
    first_logits = run(first, "linear", hparams).logits["val200"]
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    second = make_session(shards, backbone_file, cache=FrozenCache(tmp_path / "cache"))
    second_logits = run(second, "linear", hparams).logits["val200"]
    assert second.cache.hits["computed"] == 0 and second.cache.hits["disk"] == 2
    assert torch.equal(first_logits, second_logits)


def test_trials_of_one_process_share_the_prefix_in_memory(shards, backbone_file):
    session = make_session(shards, backbone_file, cache=FrozenCache(None))
    for lr in (1e-3, 1e-2):
        run(session, "linear", {"lr": lr, "weight_decay": 1e-4})
    assert session.cache.hits["computed"] == 2  # train800 and val200, once each
    assert session.cache.hits["memory"] >= 4


def test_an_oversized_entry_falls_back_to_the_uncached_path(shards, backbone_file):
    small = make_session(shards, backbone_file, cache=FrozenCache(None, max_bytes=16))
    reference = make_session(shards, backbone_file, cache=FrozenCache(None))
    hparams = {"lr": 1e-3, "weight_decay": 1e-4, "blocks": 1}
    assert torch.allclose(run(small, "partial", hparams).logits["val200"],
                          run(reference, "partial", hparams).logits["val200"], atol=1e-4)
    assert small.cache.hits["memory"] == 0
