"""One trainer for every registered method: each trains, scores and saves through the same code path."""

import math

import pytest
import torch
from training_helpers import make_session

from peftlab.methods import list_methods, trainable_state_dict
from peftlab.training.loop import FitSettings


@pytest.fixture(scope="module")
def session(shards, backbone_file):
    return make_session(shards, backbone_file, epochs=1, warmup_epochs=0)


@pytest.mark.parametrize("method", [spec.name for spec in list_methods()])
def test_every_method_trains_and_scores(session, method):
    hparams = {"lr": 1e-3, "weight_decay": 1e-4}
    outcome = session.run(method, hparams, seed=0, train_split="train800", eval_splits=["val200"],
                          settings=FitSettings.from_config(session.training, hparams))
    assert outcome.ok and math.isfinite(outcome.scores["val200"].loss)
    assert outcome.trainable_params["head"] > 0
    trained_head = trainable_state_dict(outcome.model)["head.weight"].cpu()
    assert trained_head.shape == outcome.head_init["head.weight"].shape  # head_init is the head that trained
    assert not torch.equal(trained_head, outcome.head_init["head.weight"])
    assert outcome.logits["val200"].shape == (32, 4)
