"""The device policy (``training.device``, ``training.precision``) on a CPU-only machine, with the CUDA probes
mocked: a job that asks for CUDA where there is none fails before any output with one line naming why; fp32 on
CUDA enters no autocast; device, precision and GPU name reach every result file's provenance."""

from __future__ import annotations

import contextlib
import os
import stat

import pytest
import torch
from test_bad_input import assert_one_line_error, good_best
from training_fixtures import TASK, write_config
from training_helpers import make_session

import peftlab.training.forward as forward
import peftlab.training.session as session_module
from peftlab.cli import main
from peftlab.errors import PeftlabError
from peftlab.hardware import NvidiaDriver, nvidia_driver
from peftlab.io import read_json
from peftlab.methods import CachePoint
from peftlab.provenance import provenance
from peftlab.training.cache import FrozenCache, compute_prefix
from peftlab.training.inputs import transform_for
from peftlab.training.session import configure_torch, resolve_device

PROC_VERSION = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
                "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
SMI_HEADER = ("+---------------------------------------------------------------------------------------+\n"
              "| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: 12.2     |\n")


@pytest.fixture
def no_cuda(monkeypatch):
    """A CPU-only machine: torch sees no CUDA device and no NVIDIA driver is installed."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(session_module, "nvidia_driver", lambda: None)


@pytest.fixture
def unusable_driver(monkeypatch):
    """A driver too old for the torch wheel: installed, but torch cannot use it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(session_module, "nvidia_driver", lambda: NvidiaDriver("470.82.01", "11.4"))
    monkeypatch.setattr(torch.version, "cuda", "12.8")


def cuda_config(tmp_path, backbone_file, **training):
    return write_config(tmp_path / "params.yaml", backbone_file, training={"device": "cuda", **training},
                        robustness={"tasks": [TASK], "methods": ["linear"], "alphas": [0.0, 1.0]})


def run_job(kind, tmp_path, config, shards):
    common = ["--config", str(config), "--out", str(tmp_path / "out")]
    if kind == "search":
        return main(["search", "--task", TASK, "--method", "linear", "--data", str(shards), *common])
    if kind == "train":
        return main(["train", "--task", TASK, "--method", "linear", "--hparams", str(good_best(tmp_path / "b.json")),
                     "--data", str(shards), *common])
    if kind == "robustness":
        return main(["robustness", "--task", TASK, "--method", "linear", "--runs", str(tmp_path / "runs"),
                     "--data", str(shards), "--config", str(config), "--out", str(tmp_path / "out" / "wise.csv")])
    return main(["pretrain", "--data", str(tmp_path / "no-upstream"), *common])


@pytest.mark.parametrize("kind", ["search", "train", "pretrain", "robustness"])
def test_cuda_config_on_a_cpu_only_machine_fails_before_any_output(tmp_path, backbone_file, shards, capsys,
                                                                   no_cuda, kind):
    config = cuda_config(tmp_path, backbone_file)
    assert run_job(kind, tmp_path, config, shards) == 2
    assert_one_line_error(capsys, str(config), "training.device", "'cuda' asks for CUDA", "no NVIDIA driver")
    assert not (tmp_path / "out").exists()


def test_the_error_names_the_driver_and_the_cuda_version_torch_was_built_for(tmp_path, backbone_file, shards,
                                                                             capsys, unusable_driver):
    config = cuda_config(tmp_path, backbone_file)
    assert run_job("search", tmp_path, config, shards) == 2
    assert_one_line_error(capsys, "training.device", "NVIDIA driver 470.82.01", "supports CUDA up to 11.4",
                          "built for CUDA 12.8")
    assert not (tmp_path / "out").exists()


def test_a_cpu_only_torch_build_is_named(monkeypatch, unusable_driver):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(PeftlabError, match="CPU-only build") as error:
        resolve_device("cuda")
    assert "470.82.01" in str(error.value) and "--device" in str(error.value)


def test_auto_falls_back_to_the_cpu_saying_why_when_a_driver_is_unusable(capsys, unusable_driver):
    assert resolve_device("auto") == torch.device("cpu")
    err = capsys.readouterr().err
    assert err.startswith("peftlab: warning: device auto runs on the CPU") and "470.82.01" in err


def test_auto_on_a_machine_without_driver_is_silent(capsys, no_cuda):
    assert resolve_device(None) == torch.device("cpu")
    assert capsys.readouterr().err == ""


def test_the_cli_device_overrides_the_config(tmp_path, backbone_file, shards, no_cuda):
    config = cuda_config(tmp_path, backbone_file)
    assert main(["search", "--task", TASK, "--method", "linear", "--config", str(config), "--data", str(shards),
                 "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    trial = read_json(next((tmp_path / "out" / "trials").glob("*.json")))
    assert trial["provenance"]["device"] == "cpu"


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda:x"])
def test_a_device_that_is_not_cpu_or_cuda_is_refused(name):
    with pytest.raises(PeftlabError, match="is not a device"):
        resolve_device(name)


def test_driver_probe_reads_the_kernel_module_and_nvidia_smi(tmp_path, monkeypatch):
    proc = tmp_path / "version"
    proc.write_text(PROC_VERSION)
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(f"#!/bin/sh\ncat <<'EOF'\n{SMI_HEADER}EOF\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
    assert nvidia_driver(proc_version=proc) == NvidiaDriver("535.104.05", "12.2")
    assert nvidia_driver(proc_version=tmp_path / "absent") == NvidiaDriver("535.104.05", "12.2")
    assert nvidia_driver(proc_version=proc, smi="no-such-nvidia-smi") == NvidiaDriver("535.104.05", None)
    assert nvidia_driver(proc_version=tmp_path / "absent", smi="no-such-nvidia-smi") is None


class AutocastRecorder:
    """Stands in for ``torch.autocast``: records every context entered."""

    def __init__(self):
        self.entered = []

    def __call__(self, device_type, dtype=None, **kwargs):
        self.entered.append((device_type, dtype))
        return contextlib.nullcontext()


@pytest.fixture
def autocast_calls(monkeypatch):
    recorder = AutocastRecorder()
    monkeypatch.setattr(torch, "autocast", recorder)
    return recorder.entered


@pytest.mark.parametrize(("precision", "expected"), [("fp32", []), ("bf16", [("cuda", torch.bfloat16)])])
def test_fp32_on_cuda_enters_no_autocast(tiny_vit, autocast_calls, precision, expected):
    """The runner thinks it is on CUDA (the tensors stay on the CPU): bf16 enters autocast, fp32 never does."""
    model = tiny_vit(num_classes=3)
    runner = forward.ModelRunner(model, transform_for(model, False, "cpu"), device="cuda", precision=precision)
    runner.logits(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert autocast_calls == expected


@pytest.mark.parametrize(("device", "precision", "dtype"), [
    ("cuda", "bf16", torch.bfloat16), ("cuda:1", "bf16", torch.bfloat16), ("cuda", "fp32", None),
    ("cpu", "bf16", None), ("cpu", "fp32", None)])
def test_autocast_policy(device, precision, dtype, autocast_calls):
    assert forward.autocast_dtype(device, precision) == dtype
    assert forward.precision_used(device, precision) == ("bf16" if dtype else "fp32")
    with forward.autocast(device, precision):
        pass
    assert autocast_calls == ([("cuda", torch.bfloat16)] if dtype else [])


def test_the_frozen_cache_keeps_bf16_and_fp32_prefixes_apart():
    cache, point = FrozenCache(None), CachePoint("features")
    transform = transform_for(torch.nn.Identity(), False, "cpu")
    key = {"backbone_id": "b", "point": point, "images_id": "i", "transform": transform}
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert cache.key(device=cuda, precision="bf16", **key) != cache.key(device=cuda, precision="fp32", **key)
    assert cache.key(device=cpu, precision="bf16", **key) == cache.key(device=cpu, precision="fp32", **key)


def test_compute_prefix_runs_in_the_asked_precision(tiny_vit, autocast_calls):
    model = tiny_vit(num_classes=3)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    compute_prefix(model, CachePoint("features"), images, transform=transform_for(model, False, "cpu"),
                   batch_size=2, precision="fp32")
    assert autocast_calls == []  # CPU images: float32 whatever the precision


def test_tf32_follows_the_precision_on_cuda():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        configure_torch(torch.device("cuda"), precision="fp32")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        configure_torch(torch.device("cuda"), precision="bf16")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_session_passes_its_precision_to_runners_and_fingerprints(shards, backbone_file):
    session = make_session(shards, backbone_file)
    session.precision = "fp32"
    prepared = session.prepare("lora", {"lr": 1e-3, "weight_decay": 1e-4, "rank": 2}, seed=0, train_split="train800")
    assert prepared.runner.precision == "fp32"
    assert session.effective_precision == "fp32" and session.numerics_identity() == {}
    session.device = torch.device("cuda")  # only the policy is read below; nothing runs
    assert session.numerics_identity() == {}
    session.precision = "bf16"
    assert session.effective_precision == "bf16" and session.numerics_identity() == {"autocast": "bf16"}


def test_result_files_record_device_precision_and_gpu_name(tmp_path, backbone_file, shards):
    config = write_config(tmp_path / "params.yaml", backbone_file, training={"device": "cpu", "precision": "bf16"})
    assert main(["search", "--task", TASK, "--method", "linear", "--config", str(config), "--data", str(shards),
                 "--out", str(tmp_path / "out")]) == 0
    for path in [tmp_path / "out" / "best.json", *(tmp_path / "out" / "trials").glob("*.json")]:
        stamp = read_json(path)["provenance"]
        assert (stamp["device"], stamp["precision"], stamp["gpu_name"]) == ("cpu", "fp32", None), path


def test_provenance_names_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"NVIDIA H200 ({device})")
    stamp = provenance("cuda:0", "bf16")
    assert stamp["gpu_name"] == "NVIDIA H200 (cuda:0)" and stamp["precision"] == "bf16"
    assert provenance()["gpu_name"] is None and provenance()["precision"] is None
