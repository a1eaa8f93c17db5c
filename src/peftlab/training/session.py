"""What the runs of one job share: resident splits, the backbone factory, the frozen-computation cache.

A search job runs every grid point of one (task, method), a final job every seed; all of them use the same
splits (loaded once, moved to the device once, hashed once), the same pretrained backbone and the same cached
prefix outputs. ``TrainingSession.run`` is the single code path from (method, hyper-parameters, seed) to a
trained model and its scores, used by search, final runs and many-shot runs alike; it is ``prepare`` (model,
head, rows), ``fit`` and ``finish`` (scores), and ``run_grid`` uses the same three steps to train a search's
trials that draw no random numbers together (``fit_group``).

Only the splits a run names are ever opened: a search asks for ``train800`` and ``val200`` and never touches
``test``.
"""

from __future__ import annotations

import copy
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftlab.errors import PeftlabError
from peftlab.hardware import NvidiaDriver, nvidia_driver
from peftlab.io import sha256_file
from peftlab.methods import CachePoint, attach, cache_point, count_parameters
from peftlab.provenance import ResourceMeter
from peftlab.training.cache import FrozenCache, compute_prefix, state_sha256, tensor_sha256
from peftlab.training.evaluate import Score, runner_logits, score
from peftlab.training.forward import (
    DEFAULT_PRECISION,
    ModelRunner,
    check_frozen_blocks,
    draws_random_numbers,
    precision_used,
    prefix_draws_random_numbers,
)
from peftlab.training.heads import init_head
from peftlab.training.inputs import InputTransform, transform_for
from peftlab.training.loop import FitResult, FitSettings, fit, fit_group, schedule_shape
from peftlab.training.records import trial_id

FEATURES = CachePoint("features")
MAX_FIT_GROUP = 8  # runs trained together at most: each holds its own copy of the backbone


def resolve_device(name: str | None = None, *, source: str = "--device") -> torch.device:
    """The device of a job: ``auto`` (or None) is CUDA when torch can use it, else the CPU; ``cuda``/``cuda:N``
    is that GPU or a ``PeftlabError`` (raised before the job writes anything) saying why there is none.

    ``auto`` falling back to the CPU on a machine with an NVIDIA driver is said on stderr: a driver that the torch
    wheel cannot use would otherwise turn a GPU job into a days-long CPU job silently. ``source`` names where the
    value came from (``--device``, or the config file and key) in the error."""
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        driver = nvidia_driver()
        if driver is not None:
            print(f"peftlab: warning: device auto runs on the CPU: {cuda_unavailable_reason(driver)}",
                  file=sys.stderr)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise PeftlabError(f"{source}: '{name}' is not a device (auto, cuda, cuda:N or cpu)") from None
    if device.type not in ("cuda", "cpu"):
        raise PeftlabError(f"{source}: '{name}' is not a device (auto, cuda, cuda:N or cpu)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PeftlabError(f"{source}: '{name}' asks for CUDA, but {cuda_unavailable_reason(nvidia_driver())}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise PeftlabError(f"{source}: '{name}': this machine has {count} CUDA device(s)")
    return device


def cuda_unavailable_reason(driver: NvidiaDriver | None) -> str:
    """Why torch has no CUDA device here, in one clause: no driver, or the driver and what torch was built for."""
    if driver is None:
        return ("this machine has no NVIDIA driver (no /proc/driver/nvidia/version, no nvidia-smi); run on a GPU "
                "node or set training.device to auto or cpu")
    built = torch.version.cuda
    wheel = f"torch {torch.__version__} was built for CUDA {built}" if built else \
        f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)"
    return (f"torch cannot use the {driver.describe()}: {wheel}; install a torch build for the driver's CUDA "
            "version or update the driver")


def job_device(training: Mapping[str, Any], *, config_path: str | Path, override: str | None = None
               ) -> torch.device:
    """A job's device: ``--device`` when given, else the config's ``training.device`` (default ``auto``)."""
    if override is not None:
        return resolve_device(override, source="--device")
    return resolve_device(str(training.get("device", "auto")), source=f"{config_path}: key 'training.device'")


def job_precision(training: Mapping[str, Any]) -> str:
    """The config's ``training.precision`` (default ``bf16``: autocast on CUDA, float32 on the CPU)."""
    return str(training.get("precision", DEFAULT_PRECISION))


def configure_torch(device: torch.device, threads: int | None = None, precision: str = DEFAULT_PRECISION) -> None:
    """Thread count for the CPU. On CUDA, TF32 matmuls and convolutions with ``bf16`` (the float32 parts of a
    bf16-autocast step); none with ``fp32``, which is then float32 throughout, as the paper's code trains.
    Autocast itself is ``ModelRunner``'s."""
    if threads:
        torch.set_num_threads(int(threads))
    if device.type == "cuda":
        tf32 = precision_used(device, precision) == "bf16"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def worth_caching(point: CachePoint | None) -> bool:
    """Features and at least one frozen block: yes. ``blocks`` depth 0 (every block trains) would save only the
    patch embedding while holding the whole token sequence in memory and on disk, so those runs stay uncached."""
    return point is not None and (point.kind == "features" or point.depth > 0)


def describe_prefix(point: CachePoint) -> str:
    """The frozen prefix in words, for ``training_path`` reasons."""
    if point.kind == "features":
        return "everything before the head"
    return f"the embedding and the first {point.depth} block{'s' if point.depth != 1 else ''}"


@dataclass
class BackboneSource:
    """A fresh pretrained backbone per run: ``create_backbone(name, weights)`` (or a factory, in tests and
    benchmarks) is built once per job, outside the runs' random streams; each run gets a deep copy with a new
    head drawn by timm's own initialisation from the run's seed. Copying skips timm's random init of every
    weight, the weights file's read and hash, per trial (86 M parameters for ViT-B)."""

    name: str
    weights: Path | None = None
    factory: Callable[[int, float], nn.Module] | None = None
    _identity: str | None = field(default=None, repr=False)
    _pristine: dict[tuple, nn.Module] = field(default_factory=dict, repr=False)

    def _build(self, num_classes: int, drop_path_rate: float) -> nn.Module:
        if self.factory is not None:
            return self.factory(num_classes, drop_path_rate)
        from peftlab.backbones import create_backbone

        return create_backbone(self.name, weights=self.weights, num_classes=num_classes,
                               drop_path_rate=drop_path_rate)

    def create(self, num_classes: int, drop_path_rate: float, device: torch.device | str = "cpu") -> nn.Module:
        from timm.models.vision_transformer import init_weights_vit_timm

        key = (num_classes, float(drop_path_rate), str(device))
        if key not in self._pristine:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                self._pristine[key] = self._build(num_classes, drop_path_rate).to(device)
        model = copy.deepcopy(self._pristine[key])
        init_weights_vit_timm(model.get_classifier())
        return model

    def identity(self) -> str:
        """SHA-256 of the weights file, or of the built model's weights (factory without file)."""
        if self._identity is None:
            if self.weights is not None and Path(self.weights).is_file():
                self._identity = sha256_file(self.weights)
            else:
                with torch.random.fork_rng(devices=[]):  # leave the runs' random streams untouched
                    self._identity = state_sha256(self.create(2, 0.0))
        return self._identity


@dataclass
class ResidentSplit:
    """A split on the device, with the hash that identifies its images in the cache."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    class_subset: torch.Tensor | None
    images_id: str

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class RunOutcome:
    model: nn.Module
    fit: FitResult
    scores: dict[str, Score]
    logits: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    head_init: dict[str, torch.Tensor]
    trainable_params: dict[str, int]
    model_params: int
    resources: dict[str, float]
    training_path: dict[str, Any]  # {"cached": bool, "reason": str}: which path the training rows took

    @property
    def ok(self) -> bool:
        return self.fit.status == "ok"


@dataclass
class PreparedRun:
    """A run between ``TrainingSession.prepare`` and ``finish``: its model, its training runner and rows."""

    model: nn.Module
    transform: InputTransform
    point: CachePoint | None
    train: ResidentSplit
    head_init: dict[str, torch.Tensor]
    counts: dict[str, int]
    meter: ResourceMeter
    runners: dict[bool, ModelRunner] = field(default_factory=dict)  # by "cached"
    runner: ModelRunner | None = None
    rows: torch.Tensor | None = None
    training_path: dict[str, Any] = field(default_factory=dict)
    prepare_s: float = 0.0


class TrainingSession:
    """Shared state of one job; see the module docstring."""

    def __init__(self, *, task_dir: str | Path, backbone: BackboneSource, training: Mapping[str, Any],
                 normalize: bool | tuple, device: torch.device, cache: FrozenCache,
                 show_progress: bool = True, precision: str = DEFAULT_PRECISION) -> None:
        self.task_dir = Path(task_dir)
        self.backbone = backbone
        self.training = dict(training)
        self.normalize = normalize
        self.device = device
        self.precision = precision
        self.cache = cache
        self.show_progress = show_progress
        self._splits: dict[str, ResidentSplit] = {}
        self._head_sha256: str | None = None

    @property
    def head_mode(self) -> str:
        return str(self.training.get("head_init", "random"))

    @property
    def head_file(self) -> Path | None:
        """The head file of ``head_init: file`` (``training.head_init_file``), else None."""
        if self.head_mode != "file":
            return None
        value = self.training.get("head_init_file")
        if not value:
            raise PeftlabError("key 'training.head_init_file': required when training.head_init is 'file'")
        return Path(value)

    def head_identity(self) -> dict[str, str]:
        """How the head starts, for fingerprints: the mode, and for ``file`` the file's SHA-256 (a trial trained
        from another head is never kept)."""
        identity = {"head_init": self.head_mode}
        head_file = self.head_file
        if head_file is not None:
            if self._head_sha256 is None:
                if not head_file.is_file():
                    raise PeftlabError(f"{head_file}: head file not found (training.head_init_file)")
                self._head_sha256 = sha256_file(head_file)
            identity["head_init_sha256"] = self._head_sha256
        return identity

    @property
    def frozen_blocks(self) -> str:
        """``training.frozen_blocks``: the frozen prefix's mode while training (``eval`` when absent)."""
        return check_frozen_blocks(str(self.training.get("frozen_blocks", "eval")))

    @property
    def effective_precision(self) -> str:
        """What the runs compute in (``bf16`` only with bf16 autocast on CUDA): written into provenance."""
        return precision_used(self.device, self.precision)

    def numerics_identity(self) -> dict[str, str]:
        """For fingerprints: ``{"autocast": "bf16"}`` when runs use bf16 autocast, else nothing, so a run in bf16
        is never kept for a float32 configuration (or the reverse), and float32 fingerprints stay as before."""
        return {"autocast": "bf16"} if self.effective_precision == "bf16" else {}

    @property
    def eval_batch_size(self) -> int:
        return int(self.training.get("eval_batch_size", 512))

    def split(self, name: str) -> ResidentSplit:
        """Load a split once (from ``<task_dir>/<name>.safetensors``) and keep it on the device."""
        if name not in self._splits:
            from peftlab.data.shards import load_split

            loaded = load_split(self.task_dir, name)
            self._splits[name] = ResidentSplit(
                name=name, images=loaded.images.to(self.device), labels=loaded.labels.long().to(self.device),
                num_classes=loaded.num_classes, class_subset=loaded.class_subset,
                images_id=tensor_sha256(loaded.images))
        return self._splits[name]

    def add_split(self, name: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  class_subset: torch.Tensor | None = None) -> ResidentSplit:
        """Register in-memory data as a split (benchmarks and tests)."""
        self._splits[name] = ResidentSplit(name=name, images=images.to(self.device),
                                           labels=labels.long().to(self.device), num_classes=num_classes,
                                           class_subset=class_subset, images_id=tensor_sha256(images))
        return self._splits[name]

    def prefix_rows(self, model: nn.Module, point: CachePoint, split: ResidentSplit,
                    transform: InputTransform) -> torch.Tensor | None:
        """Cached prefix outputs of a split, or None (cache off or entry too large): then run uncached."""
        if not self.cache.enabled:
            return None
        return self.cache.prefix_outputs(model, point, split.images, images_id=split.images_id,
                                         backbone_id=self.backbone.identity(), transform=transform,
                                         batch_size=self.eval_batch_size, precision=self.precision)

    def pretrained_features(self, model: nn.Module, split: ResidentSplit,
                            transform: InputTransform) -> torch.Tensor:
        """Pre-logit features of the pretrained backbone (call before attaching a method): shared cache entry."""
        rows = self.prefix_rows(model, FEATURES, split, transform)
        if rows is None:
            rows = compute_prefix(model, FEATURES, split.images, transform=transform, batch_size=self.eval_batch_size,
                                  precision=self.precision)
        return rows

    def prepare(self, method: str, hparams: Mapping[str, Any], *, seed: int, train_split: str) -> PreparedRun:
        """A run up to its first training step: a fresh pretrained backbone with ``method`` attached and its head
        initialised from ``seed``, and the rows it trains on (cached prefix outputs when the method has any)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        meter = ResourceMeter(device=str(self.device))
        train = self.split(train_split)
        seed_everything(seed)
        model = self.backbone.create(train.num_classes, float(self.training.get("drop_path", 0.0)), self.device)
        transform = transform_for(model, self.normalize, self.device)
        head_mode = self.head_mode
        features = self.pretrained_features(model, train, transform) if head_mode == "prototypes" else None
        attach(model, method, dict(hparams))

        def prototype_inputs() -> tuple[torch.Tensor, torch.Tensor]:
            if features is not None and features.shape[1] == model.get_classifier().in_features:
                return features, train.labels
            # The method gave the head another input (VQT): class means of what that head sees at the start.
            return compute_prefix(model, FEATURES, train.images, transform=transform,
                                  batch_size=self.eval_batch_size, precision=self.precision), train.labels

        head_init = init_head(model, head_mode, prototype_inputs, head_file=self.head_file)
        prepared = PreparedRun(model=model, transform=transform, point=cache_point(model), train=train,
                               head_init=head_init, counts=count_parameters(model), meter=meter)
        prepared.runner, prepared.rows, prepared.training_path = self._runner_for(prepared, train, training=True)
        prepared.prepare_s = meter.read()["time_s"]
        return prepared

    def _runner_for(self, prepared: PreparedRun, split: ResidentSplit, *, training: bool = False
                    ) -> tuple[ModelRunner, torch.Tensor, dict[str, Any]]:
        """The runner and rows of ``split`` — the suffix on cached prefix outputs, or the whole model on images —
        and why (``{"cached", "reason"}``). Cached rows stand for the frozen prefix in eval mode, so a training
        split is uncached when the prefix would draw random numbers in train mode (``frozen_blocks: train``)."""
        point, model = prepared.point, prepared.model
        rows, reason = None, None
        if point is None:
            reason = "the method trains tensors before the first block: there is no frozen prefix"
        elif not worth_caching(point):
            reason = "every block holds trained tensors: no frozen block worth caching"
        elif training and self.frozen_blocks == "train" and prefix_draws_random_numbers(model, point):
            reason = (f"training.frozen_blocks is 'train' and the frozen prefix ({describe_prefix(point)}) draws "
                      f"random numbers (drop-path {self.training.get('drop_path', 0.0)}): its outputs change every "
                      "step, so they are computed in every step")
        elif not self.cache.enabled:
            reason = "the frozen-computation cache is off (--no-cache)"
        else:
            rows = self.prefix_rows(model, point, split, prepared.transform)
            if rows is None:
                reason = f"the prefix outputs of '{split.name}' exceed the cache's size limit"
        cached = rows is not None
        if cached:
            reason = (f"the frozen prefix ({describe_prefix(point)}) runs once, in eval mode; the rest trains on its "
                      "outputs")
            if training and self.frozen_blocks == "train":
                reason += " (training.frozen_blocks is 'train', but the prefix draws no random numbers: same result)"
        if cached not in prepared.runners:
            prepared.runners[cached] = ModelRunner(model, prepared.transform, point=point, cached=cached,
                                                   device=self.device, precision=self.precision,
                                                   compile=bool(self.training.get("compile", False)),
                                                   frozen_blocks=self.frozen_blocks)
        return prepared.runners[cached], (rows if cached else split.images), {"cached": cached, "reason": reason}

    def finish(self, prepared: PreparedRun, result: FitResult, eval_splits: Sequence[str], *,
               evaluate_diverged: bool = False) -> RunOutcome:
        """Score a trained run on ``eval_splits`` (a diverged run only with ``evaluate_diverged``)."""
        scores: dict[str, Score] = {}
        logits: dict[str, torch.Tensor] = {}
        labels: dict[str, torch.Tensor] = {}
        if result.status == "ok" or evaluate_diverged:
            for name in eval_splits:
                split = self.split(name)
                eval_runner, eval_rows, _ = self._runner_for(prepared, split)
                logits[name] = runner_logits(eval_runner, eval_rows, batch_size=self.eval_batch_size)
                labels[name] = split.labels.cpu()
                scores[name] = score(logits[name], labels[name], split.class_subset)
        counts = prepared.counts
        return RunOutcome(model=prepared.model, fit=result, scores=scores, logits=logits, labels=labels,
                          head_init=prepared.head_init,
                          trainable_params={"total": counts["trainable"], "method": counts["method"],
                                            "head": counts["head"]},
                          model_params=counts["total"], resources=prepared.meter.read(),
                          training_path=prepared.training_path)

    def run(self, method: str, hparams: Mapping[str, Any], *, seed: int, train_split: str,
            eval_splits: Sequence[str], settings: FitSettings, label: str | None = None,
            evaluate_diverged: bool = False) -> RunOutcome:
        """Train ``method`` with ``hparams`` from the pretrained backbone and score it on ``eval_splits``
        (a diverged run is scored only with ``evaluate_diverged``: final runs keep every seed's files)."""
        prepared = self.prepare(method, hparams, seed=seed, train_split=train_split)
        return self._train_alone(prepared, settings, seed=seed, eval_splits=eval_splits, label=label,
                                 evaluate_diverged=evaluate_diverged)

    def _train_alone(self, prepared: PreparedRun, settings: FitSettings, *, seed: int, eval_splits: Sequence[str],
                     label: str | None, evaluate_diverged: bool = False) -> RunOutcome:
        result = fit(prepared.runner, prepared.rows, prepared.train.labels, settings,
                     generator=torch.Generator().manual_seed(seed), progress=label if self.show_progress else None)
        return self.finish(prepared, result, eval_splits, evaluate_diverged=evaluate_diverged)

    def run_grid(self, method: str, points: Sequence[tuple[Mapping[str, Any], FitSettings]], *, seed: int,
                 train_split: str, eval_splits: Sequence[str],
                 max_group: int = MAX_FIT_GROUP) -> Iterator[tuple[int, RunOutcome]]:
        """``run`` for every ``(hparams, settings)`` point of a search, yielding ``(index, outcome)`` as runs end.

        Runs that draw no random numbers while training (a linear probe: only the head trains) and train on the
        same rows go through ``fit_group`` together, up to ``max_group`` at a time, with the same results as
        alone; the others train alone, in grid order. Each grouped outcome reports the group's time divided by
        its size and the group's peak memory (``fit_group_size`` in ``resources``).
        """
        group: list[tuple[int, PreparedRun, FitSettings]] = []

        def flush() -> Iterator[tuple[int, RunOutcome]]:
            if not group:
                return
            meter = ResourceMeter(device=str(self.device))
            first = group[0][1]
            results = fit_group([prepared.runner for _, prepared, _ in group], first.rows, first.train.labels,
                                [settings for _, _, settings in group], generator=torch.Generator().manual_seed(seed),
                                progress=f"{len(group)} trials" if self.show_progress else None)
            outcomes = [(index, self.finish(prepared, result, eval_splits))
                        for (index, prepared, _), result in zip(group, results, strict=True)]
            shared = meter.read()
            time_s = (sum(prepared.prepare_s for _, prepared, _ in group) + shared["time_s"]) / len(group)
            for index, outcome in outcomes:
                outcome.resources = {"time_s": round(time_s, 4), "peak_memory_mb": shared["peak_memory_mb"],
                                     "fit_group_size": len(group)}
                yield index, outcome
            group.clear()

        for index, (hparams, settings) in enumerate(points):
            prepared = self.prepare(method, hparams, seed=seed, train_split=train_split)
            if draws_random_numbers(prepared.model, prepared.point, self.frozen_blocks):
                yield index, self._train_alone(prepared, settings, seed=seed, eval_splits=eval_splits,
                                               label=trial_id(hparams))
                continue
            if group and (len(group) == max_group or group[0][1].rows is not prepared.rows
                          or schedule_shape(group[0][2]) != schedule_shape(settings)):
                yield from flush()
            group.append((index, prepared, settings))
        yield from flush()
