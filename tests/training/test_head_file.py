"""``training.head_init: file``: a run starts from the head stored in a safetensors file (CLIP's zero-shot head in
the paper's robustness study); a file that does not fit is one error line, before any output."""

import pytest
import torch
from safetensors.torch import load_file
from test_bad_input import assert_one_line_error, good_best
from training_fixtures import BACKBONE, NUM_CLASSES, TASK, write_config
from training_helpers import make_session, settings_for

from peftlab.backbones import create_backbone
from peftlab.cli import main
from peftlab.errors import PeftlabError
from peftlab.io import read_json, save_tensors, write_json
from peftlab.training.heads import read_head
from peftlab.training.records import fingerprint
from peftlab.training.search import trial_material

WIDTH = 64  # vit_mini_patch8_32's embedding


def write_head(path, seed=0, classes=NUM_CLASSES, width=WIDTH, keys=("head.weight", "head.bias")):
    generator = torch.Generator().manual_seed(seed)
    tensors = {"head.weight": torch.randn(classes, width, generator=generator),
               "head.bias": torch.randn(classes, generator=generator)}
    save_tensors(path, {key: tensors[key] for key in keys})
    return path


def head_config(tmp_path, backbone_file, head, **training):
    return write_config(tmp_path / "params.yaml", backbone_file, search={"lr": [1e-3], "weight_decay": [1e-4]},
                        training={"head_init": "file", "head_init_file": str(head), **training})


def test_the_run_starts_from_the_file_head(tmp_path, shards, backbone_file):
    """lr 0: the trained head is the file's, and the test logits are the pretrained features @ W.T + b."""
    head = write_head(tmp_path / "head.safetensors")
    config = head_config(tmp_path, backbone_file, head, lr_min=0.0, warmup_lr_init=0.0)
    best = tmp_path / "best.json"
    write_json(best, {"task": TASK, "method": "linear",
                      "selected": {"trial_id": "x", "hparams": {"lr": 0.0, "weight_decay": 0.0}}})
    out = tmp_path / "final"
    assert main(["train", "--task", TASK, "--method", "linear", "--hparams", str(best), "--seeds", "0",
                 "--config", str(config), "--data", str(shards), "--out", str(out), "--epochs", "1",
                 "--warmup-epochs", "0"]) == 0
    assert read_json(out / "runs" / "seed0" / "metrics.json")["hparams"]["lr"] == 0.0
    expected = load_file(str(head))
    saved = load_file(str(out / "runs" / "seed0" / "head_init.safetensors"))
    assert set(saved) == set(expected)
    assert all(torch.equal(saved[key], expected[key]) for key in expected)

    model = create_backbone(BACKBONE, weights=backbone_file, num_classes=NUM_CLASSES).eval()
    images = load_file(str(shards / TASK / "test.safetensors"))["images"]
    with torch.no_grad():
        features = model.forward_head(model.forward_features(images.float() / 255), pre_logits=True)
    logits = load_file(str(out / "runs" / "seed0" / "logits.safetensors"))["test.logits"]
    assert torch.allclose(logits, features @ expected["head.weight"].T + expected["head.bias"], atol=1e-4)


def test_the_prepared_head_is_the_file_head_for_a_method_that_trains_the_backbone(tmp_path, shards,
                                                                                  backbone_file):
    head = write_head(tmp_path / "head.safetensors", seed=3)
    session = make_session(shards, backbone_file, head_init="file", head_init_file=str(head))
    prepared = session.prepare("lora", {"lr": 1e-3, "weight_decay": 0, "rank": 2}, seed=0, train_split="train800")
    expected = load_file(str(head))
    classifier = prepared.model.get_classifier()
    assert torch.equal(classifier.weight.detach(), expected["head.weight"])
    assert torch.equal(classifier.bias.detach(), expected["head.bias"])
    assert torch.equal(prepared.head_init["head.weight"], expected["head.weight"])


def test_search_fingerprints_follow_the_head_files_content(tmp_path, shards, backbone_file):
    first, second = write_head(tmp_path / "a.safetensors", seed=1), write_head(tmp_path / "b.safetensors", seed=2)
    hparams = {"lr": 1e-3, "weight_decay": 1e-4}

    def trial_fingerprint(**training):
        session = make_session(shards, backbone_file, **training)
        return fingerprint(trial_material(session, task=TASK, method="linear", hparams=hparams,
                                          settings=settings_for(session, hparams), seed=0))

    a = trial_fingerprint(head_init="file", head_init_file=str(first))
    assert trial_fingerprint(head_init="file", head_init_file=str(first)) == a
    assert trial_fingerprint(head_init="file", head_init_file=str(second)) != a
    write_head(first, seed=2)  # same path, another head
    assert trial_fingerprint(head_init="file", head_init_file=str(first)) != a
    assert "head_init_sha256" not in trial_material(  # the other modes' fingerprints are unchanged
        make_session(shards, backbone_file), task=TASK, method="linear", hparams=hparams,
        settings=settings_for(make_session(shards, backbone_file), hparams), seed=0)


def test_a_search_resumed_with_another_head_file_reruns_its_trials(tmp_path, shards, backbone_file):
    head = write_head(tmp_path / "head.safetensors", seed=1)
    config = head_config(tmp_path, backbone_file, head, epochs=1, warmup_epochs=0)
    args = ["search", "--task", TASK, "--method", "linear", "--config", str(config), "--data", str(shards),
            "--out", str(tmp_path / "out")]
    trial = tmp_path / "out" / "trials" / "lr0.001-wd0.0001.json"
    assert main(args) == 0
    first, written = read_json(trial), trial.stat().st_mtime_ns
    assert main(args) == 0
    assert trial.stat().st_mtime_ns == written  # same head: kept
    write_head(head, seed=2)
    assert main(args) == 0
    assert read_json(trial)["fingerprint"] != first["fingerprint"]


def _bad_head(tmp_path, kind):
    path = tmp_path / "heads" / "head.safetensors"
    path.parent.mkdir()
    if kind == "classes":
        write_head(path, classes=NUM_CLASSES + 1)
    elif kind == "width":
        write_head(path, width=WIDTH // 2)
    elif kind == "key":
        write_head(path, keys=("head.weight",))
    elif kind == "garbage":
        path.write_bytes(b"not a safetensors file")
    return path


BAD_HEADS = {
    "missing": "head file not found",
    "classes": f"head.weight [{NUM_CLASSES + 1}, {WIDTH}] / head.bias [{NUM_CLASSES + 1}] do not fit the model "
               f"(expected [{NUM_CLASSES}, {WIDTH}] / [{NUM_CLASSES}])",
    "width": f"head.weight [{NUM_CLASSES}, {WIDTH // 2}] / head.bias [{NUM_CLASSES}] do not fit the model "
             f"(expected [{NUM_CLASSES}, {WIDTH}] / [{NUM_CLASSES}])",
    "key": "missing ['head.bias']",
    "garbage": "not a readable safetensors file",
}


@pytest.mark.parametrize("command", ["search", "train"])
@pytest.mark.parametrize("kind", sorted(BAD_HEADS))
def test_a_bad_head_file_is_one_error_line_and_writes_nothing(tmp_path, shards, backbone_file, capsys, command,
                                                              kind):
    head = _bad_head(tmp_path, kind)
    config = head_config(tmp_path, backbone_file, head)
    args = ["--task", TASK, "--method", "linear", "--config", str(config), "--data", str(shards),
            "--out", str(tmp_path / "out")]
    if command == "train":
        args += ["--hparams", str(good_best(tmp_path / "best.json"))]
    assert main([command, *args]) == 2
    # Checked before the shards load, naming the config key; the width once the method is attached.
    source = str(head) if kind == "width" else f"{config}: key 'training.head_init_file': {head}: "
    assert_one_line_error(capsys, source, BAD_HEADS[kind])
    assert not (tmp_path / "out").exists()


def test_a_backbone_width_head_cannot_start_vqts_wider_head(tmp_path, shards, backbone_file, capsys):
    head = write_head(tmp_path / "head.safetensors")
    config = head_config(tmp_path, backbone_file, head)
    assert main(["search", "--task", TASK, "--method", "vqt", "--config", str(config), "--data", str(shards),
                 "--out", str(tmp_path / "out")]) == 2
    assert_one_line_error(capsys, str(head), f"head.weight [{NUM_CLASSES}, {WIDTH}]", f"not the backbone's {WIDTH}",
                          "VQT")
    assert not (tmp_path / "out").exists()


def test_read_head_checks_only_the_dimensions_it_is_given(tmp_path):
    path = write_head(tmp_path / "head.safetensors", classes=3, width=5)
    assert read_head(path)["head.weight"].shape == (3, 5)
    assert read_head(path, 3)["head.bias"].shape == (3,)
    with pytest.raises(PeftlabError, match=r"expected \[3, 6\] / \[3\]"):
        read_head(path, None, 6)
    save_tensors(path, {"head.weight": torch.zeros(3), "head.bias": torch.zeros(3)})
    with pytest.raises(PeftlabError, match=r"head.weight \[3\] / head.bias \[3\] do not fit the model"):
        read_head(path)
