"""What a study costs before it runs: per step, its jobs, runs, epochs, images and estimated hours.

Counts come from the config (grids × tasks × seeds × epochs) and the split sizes (``split_sizes``). Hours come
from ``COST_TABLE``, the one place that says what a training step costs: the backbone's floating-point
operations per image for each method family (``ViTShape``, ``FAMILY_STEP``), divided by a sustained rate
anchored on one measured throughput. Neither anchor is a measurement of this project's code on a GPU:

- ``gpu``: timm's published training throughput of ViT-B/16 at 224 px (an RTX 3090, AMP), so the figures are
  RTX 3090-class GPU-hours; an A100 or H100 should need fewer. ``benchmarks/gpu_check.py`` measures peftlab's
  own throughput per family on a GPU; its numbers replace this anchor once it has run.
- ``cpu``: this project's ``benchmarks/trainer.py`` on the mini ViT, one CPU thread (docs/training.md).

The SLURM resources of a large study's training steps come from the same estimate (``step_resources``: the
largest job of the step, times a safety factor, with a floor). A mode that skips jobs (a later task's
"published selections", which reuses the paper's selected hyper-parameters instead of searching) reports what it
saves with ``saving(cost, skipped_job_ids)`` passed to ``render_cost``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from peftlab.errors import PeftlabError
from peftlab.pipeline.steps import STEPS, Resources, Study, job_id


# --- the architecture: floating-point operations of a plain ViT ------------------------------------------
@dataclass(frozen=True)
class ViTShape:
    """What a plain timm ``VisionTransformer``'s cost depends on. FLOPs count 2 per multiply-add."""

    patch: int
    dim: int
    depth: int
    mlp_hidden: int
    prefix_tokens: int = 1  # the class token

    def patches(self, image_size: int) -> int:
        return (image_size // self.patch) ** 2

    def tokens(self, image_size: int) -> int:
        return self.patches(image_size) + self.prefix_tokens

    def block_flops(self, tokens: int) -> float:
        """One block: qkv, projection and MLP matmuls, plus attention scores and their weighted sum."""
        return 2.0 * tokens * (4 * self.dim ** 2 + 2 * self.dim * self.mlp_hidden) + 4.0 * tokens ** 2 * self.dim

    def embed_flops(self, image_size: int) -> float:
        return 2.0 * self.patches(image_size) * 3 * self.patch ** 2 * self.dim

    def forward_flops(self, image_size: int, *, extra_tokens: int = 0, blocks: int | None = None) -> float:
        """The patch embedding and the first ``blocks`` blocks (all by default) with ``extra_tokens`` more tokens
        (prompts) in every block; the head is left out (under 0.1% of ViT-B's forward)."""
        depth = self.depth if blocks is None else blocks
        return self.embed_flops(image_size) + depth * self.block_flops(self.tokens(image_size) + extra_tokens)

    @property
    def params(self) -> int:
        return self.depth * (4 * self.dim ** 2 + 2 * self.dim * self.mlp_hidden)


# timm names without the pretrained tag (``vit_base_patch16_224.orig_in21k`` → ``vit_base_patch16_224``).
ARCHITECTURES: dict[str, ViTShape] = {
    "vit_base_patch16_224": ViTShape(patch=16, dim=768, depth=12, mlp_hidden=3072),
    "vit_base_patch16_clip_224": ViTShape(patch=16, dim=768, depth=12, mlp_hidden=3072),
    "vit_base_patch16_clip_quickgelu_224": ViTShape(patch=16, dim=768, depth=12, mlp_hidden=3072),
    "vit_mini_patch8_32": ViTShape(patch=8, dim=64, depth=6, mlp_hidden=256),
    "vit_mini_patch4_32": ViTShape(patch=4, dim=64, depth=6, mlp_hidden=256),
}


@functools.lru_cache(maxsize=16)
def architecture(backbone: str) -> ViTShape:
    """The shape of ``backbone``: from the table, else read from timm on the meta device (no weights, no
    compute); a backbone that is not a plain ViT is an error."""
    known = ARCHITECTURES.get(backbone.split(".")[0])
    if known is not None:
        return known
    import timm
    import torch

    import peftlab.backbones  # noqa: F401  (registers the mini ViTs with timm)

    if not timm.is_model(backbone):
        raise PeftlabError(f"backbone '{backbone}': not a timm model; the cost model cannot size it")
    with torch.device("meta"):
        model = timm.create_model(backbone, pretrained=False)
    try:
        return ViTShape(patch=int(model.patch_embed.patch_size[0]), dim=int(model.embed_dim),
                        depth=len(model.blocks), mlp_hidden=int(model.blocks[0].mlp.fc1.out_features),
                        prefix_tokens=int(model.num_prefix_tokens))
    except AttributeError:
        raise PeftlabError(f"backbone '{backbone}': the cost model knows plain ViTs (patch embedding, blocks with "
                           "an MLP), not this architecture") from None


# --- method families: what one training step costs, in forward passes ----------------------------------------
FULL, LORA_LIKE, ADAPTER, PROMPT, PARTIAL, LINEAR = "full", "lora-like", "adapter", "prompt", "partial", "linear"
FAMILIES = (FULL, LORA_LIKE, ADAPTER, PROMPT, PARTIAL, LINEAR)
METHOD_FAMILY: dict[str, str] = {
    "full": FULL, "linear": LINEAR, "partial": PARTIAL, "vpt_shallow": PROMPT, "vpt_deep": PROMPT,
    **{name: ADAPTER for name in ("adapter_houlsby", "adapter_pfeiffer", "adapter_lora_init", "adaptformer",
                                  "convpass", "repadapter")},
    **{name: LORA_LIKE for name in ("lora", "dora", "fact_tt", "fact_tk", "bitfit", "layernorm", "difffit", "ssf",
                                    "ia3", "vqt")},
}
# A training step in forward passes: forward, gradients of the activations and, for full fine-tuning, of the
# weights. With a frozen backbone, the backward still runs through every block that holds a trained tensor but
# computes no weight gradients of the frozen matmuls. The added modules (rank/bottleneck 1-64) are left out:
# under 2% of a ViT-B block at the paper's grids.
FAMILY_STEP = {FULL: 3.0, LORA_LIKE: 2.0, ADAPTER: 2.0, PROMPT: 2.0, PARTIAL: 3.0, LINEAR: 0.0}


def family_of(method: str) -> str:
    """The cost family of a method; a method outside the table (e.g. another library's) is costed as LoRA-like,
    and ``StudyCost.assumed`` lists it."""
    return METHOD_FAMILY.get(method, LORA_LIKE)


@dataclass(frozen=True)
class RunKind:
    """One method point as the cost model sees it: its family, prompt tokens and trained blocks (partial)."""

    family: str
    extra_tokens: int = 0
    trained_blocks: int = 0

    @classmethod
    def of(cls, method: str, hparams: Mapping[str, Any]) -> RunKind:
        family = family_of(method)
        return cls(family, extra_tokens=int(hparams.get("num_tokens", 10)) if family == PROMPT else 0,
                   trained_blocks=int(hparams.get("blocks", 1)) if family == PARTIAL else 0)

    def step_flops(self, arch: ViTShape, image_size: int) -> float:
        """A training step per image (per epoch). Partial-k trains the last k blocks on cached prefix outputs;
        the linear probe only its head on cached features (counted as free)."""
        if self.family == PARTIAL:
            return FAMILY_STEP[PARTIAL] * self.trained_blocks * arch.block_flops(arch.tokens(image_size))
        return FAMILY_STEP[self.family] * arch.forward_flops(image_size, extra_tokens=self.extra_tokens)

    def eval_flops(self, arch: ViTShape, image_size: int) -> float:
        """A forward pass per evaluated image (the linear probe's features are computed once: ``once_flops``)."""
        if self.family == LINEAR:
            return 0.0
        return arch.forward_flops(image_size, extra_tokens=self.extra_tokens)

    def once_flops(self, arch: ViTShape, image_size: int) -> float:
        """The frozen prefix, computed once per image and job by the frozen-computation cache."""
        if self.family == LINEAR:
            return arch.forward_flops(image_size)
        if self.family == PARTIAL:
            return arch.forward_flops(image_size, blocks=arch.depth - self.trained_blocks)
        return 0.0


# --- the cost table: one sustained rate per device class, anchored on a measured throughput ------------------
@dataclass(frozen=True)
class Anchor:
    """A measured training throughput that fixes the FLOP rate of a device class, and the fixed costs of a job
    (process start, imports, reading and hashing weights and shards) and of a run (copying the backbone,
    attaching the method, building the optimiser)."""

    unit: str
    backbone: str
    image_size: int
    kind: RunKind
    images_per_s: float
    source: str
    measured_on_this_code: bool
    job_overhead_s: float
    run_overhead_s: float

    @property
    def flops_per_s(self) -> float:
        return self.images_per_s * self.kind.step_flops(architecture(self.backbone), self.image_size)


COST_TABLE: dict[str, Anchor] = {
    "gpu": Anchor(
        unit="GPU-h", backbone="vit_base_patch16_224", image_size=224, kind=RunKind(FULL), images_per_s=390.86,
        source="timm's published training throughput of vit_base_patch16_224 (full fine-tuning, AMP, batch 192, "
               "RTX 3090, PyTorch 1.12: 390.86 img/s; huggingface/pytorch-image-models "
               "results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv) x 3 forward passes of 35.1 GFLOP = "
               "41.2 TFLOP/s sustained; hours are RTX 3090-class GPU-hours; overheads assumed: 60 s per job, 2 s "
               "per run",
        measured_on_this_code=False, job_overhead_s=60.0, run_overhead_s=2.0),
    "cpu": Anchor(
        unit="CPU-h", backbone="vit_mini_patch8_32", image_size=32, kind=RunKind(LORA_LIKE), images_per_s=1247.5,
        source="peftlab's trainer on vit_mini_patch8_32 + LoRA r=8, batch 64, one CPU thread: 1247.5 img/s "
               "(benchmarks/trainer.py, docs/training.md, 2026-12-02) x 2 forward passes of 10.9 MFLOP = "
               "27 GFLOP/s per thread, times training.threads; overheads: 0.24 s per run (the benchmark's 1000-image "
               "trial took 1.04 s), 10 s per job assumed",
        measured_on_this_code=True, job_overhead_s=10.0, run_overhead_s=0.24),
}

# SLURM resources of a large study's training jobs (minutes, MB of host memory).
RUNTIME_SAFETY = 2.0  # the anchor runs batch 192 on one model; peftlab's batch 64 and a slower GPU take longer
RUNTIME_FLOOR_MIN = 30
MEMORY_SAFETY = 1.5
MEMORY_FLOOR_MB = 8000
BASE_MEMORY_MB = 3000.0  # assumed: torch, the CUDA runtime and timm in host memory
TRAINING_STEPS = ("pretrain", "search", "train", "manyshot", "robustness")


def device_class(study: Study) -> str:
    """``cpu`` where the study runs on the CPU (``training.device: cpu``, or ``auto`` for the small-image mini
    study, which is sized for one CPU thread and would be latency-bound on a GPU), else ``gpu``."""
    device = study.config["training"].get("device", "auto")
    return "cpu" if device == "cpu" or (device == "auto" and not study.is_large) else "gpu"


# --- split sizes ---------------------------------------------------------------------------------------------
# Few-shot ImageNet as the paper's code ships it (OSU-MLB/PETL_Vision data/annotations, line counts), for a
# robustness study whose lists are not on disk yet: the 16-shot training list (train_meta.list.num_shot_16.seed_0,
# taken as both train800 and train800val200), its validation list (unofficial_val_list_4_shot16seed0), ImageNet
# val as the test set, and the four shift sets.
REFERENCE_SIZES: dict[str, dict[str, int]] = {
    "imagenet": {"train800": 16000, "val200": 2959, "train800val200": 16000, "test": 50000,
                 "shift-imagenet_v2": 10000, "shift-imagenet_sketch": 50889, "shift-imagenet_a": 7500,
                 "shift-imagenet_r": 30000},
}


def split_sizes(study: Study, task: str) -> dict[str, int]:
    """Images per split of ``task``: the generator's settings for the mini-suite, the list files when the task
    folder is on disk, VTAB-1k's table, or ``REFERENCE_SIZES``; many-shot splits have the size in their name."""
    from peftlab.data.tasks import FIXED_SIZES, UPSTREAM_TASK, VTAB_TASKS, canonical_name

    if study.generates_data:
        from peftlab.data.generate.suite import SuiteSizes

        sizes = SuiteSizes.from_settings(study.config["data"]["generate"])
        if task == UPSTREAM_TASK:
            return {"train": sizes.upstream - sizes.upstream_val, "val": sizes.upstream_val}
        return {**FIXED_SIZES, "test": sizes.test, "shift-style": sizes.test}
    on_disk = _listed_sizes(study, task)
    if on_disk:
        return on_disk
    canonical = canonical_name(task)
    if canonical in VTAB_TASKS:
        return dict(VTAB_TASKS[canonical].sizes)
    if task in REFERENCE_SIZES:
        return dict(REFERENCE_SIZES[task])
    raise PeftlabError(f"task '{task}': split sizes unknown (no list files under {study.raw_root}, not in the "
                       "VTAB-1k table); the cost model needs them")


def _listed_sizes(study: Study, task: str) -> dict[str, int]:
    """Line counts of the task's list files (``<split>.txt``, ``shift/<name>.txt``); {} without any."""
    from peftlab.data.lists import CLASSES_SUFFIX, SHIFT_DIR, SHIFT_PREFIX
    from peftlab.data.tasks import STANDARD_SPLITS, UPSTREAM_SPLITS, find_task_dir

    try:
        folder = find_task_dir(study.root / study.raw_root, task)
    except PeftlabError:
        return {}
    sizes = {split: _count_lines(folder / f"{split}.txt") for split in (*STANDARD_SPLITS, *UPSTREAM_SPLITS)
             if (folder / f"{split}.txt").is_file()}
    for path in sorted((folder / SHIFT_DIR).glob("*.txt")):
        if not path.name.endswith(CLASSES_SUFFIX):
            sizes[f"{SHIFT_PREFIX}{path.stem}"] = _count_lines(path)
    return sizes


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def eval_images(sizes: Mapping[str, int]) -> int:
    """What a final run scores: the test set and every shift set."""
    return sizes["test"] + sum(count for name, count in sizes.items() if name.startswith("shift-"))


# --- per-job costs -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobCost:
    """One job: ``runs`` are trials (search), seed runs (train, many-shot, pretrain) or evaluations of one seed at
    one α (robustness); ``epochs`` their total; images pass through the model for training and for scoring."""

    step: str
    id: str
    runs: int
    epochs: int
    train_images: int
    eval_images: int
    flops: float
    memory_mb: float  # host memory before the safety factor

    def seconds(self, anchor: Anchor, rate: float) -> float:
        return self.flops / rate + anchor.job_overhead_s + anchor.run_overhead_s * self.runs


@dataclass(frozen=True)
class Totals:
    jobs: int = 0
    runs: int = 0
    epochs: int = 0
    train_images: int = 0
    eval_images: int = 0
    hours: float = 0.0

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __sub__(self, other: Totals) -> Totals:
        return Totals(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass
class StudyCost:
    """Every training job's cost, and the rate that turns FLOPs into hours."""

    study: Study
    anchor: Anchor
    rate: float  # FLOP/s
    jobs: list[JobCost] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)  # methods costed as LoRA-like by assumption

    def job_totals(self, job: JobCost) -> Totals:
        return Totals(1, job.runs, job.epochs, job.train_images, job.eval_images, self.seconds(job) / 3600)

    def seconds(self, job: JobCost) -> float:
        return job.seconds(self.anchor, self.rate)

    def by_step(self) -> dict[str, Totals]:
        steps: dict[str, Totals] = {}
        for job in self.jobs:
            steps[job.step] = steps.get(job.step, Totals()) + self.job_totals(job)
        return steps

    def total(self) -> Totals:
        return sum((self.job_totals(job) for job in self.jobs), Totals())


class _Costing:
    """Builds the ``JobCost`` of each training job of a study."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self.arch = architecture(study.backbone)
        self.image_size = int(study.config["data"]["image_size"])
        self.training = study.config["training"]
        self._sizes: dict[str, dict[str, int]] = {}

    def sizes(self, task: str) -> dict[str, int]:
        if task not in self._sizes:
            self._sizes[task] = split_sizes(self.study, task)
        return self._sizes[task]

    def image_mb(self, count: int) -> float:
        return count * 3 * self.image_size ** 2 / 2 ** 20

    def base_mb(self) -> float:
        """The process, plus the weights three times over (file, pristine backbone, the run's copy)."""
        return BASE_MEMORY_MB + 3 * self.arch.params * 4 / 2 ** 20

    def once(self, kind: RunKind, images: int) -> float:
        """Prefix outputs, computed once per job; a prototype head adds one feature pass over the train split."""
        return kind.once_flops(self.arch, self.image_size) * images

    def prototypes(self, train: int) -> float:
        return self.arch.forward_flops(self.image_size) * train if self.training.get("head_init") == "prototypes" \
            else 0.0

    def fits_cache(self, kind: RunKind, images: int) -> bool:
        """Whether the frozen-computation cache keeps the prefix outputs of ``images`` (else they are recomputed
        every epoch): features always fit, token sequences of large splits do not."""
        from peftlab.training.cache import DEFAULT_MAX_BYTES

        width = self.arch.dim if kind.family == LINEAR else self.arch.dim * self.arch.tokens(self.image_size)
        return images * width * 4 <= DEFAULT_MAX_BYTES

    def run_flops(self, kind: RunKind, *, train: int, evaluated: int, epochs: int) -> float:
        """One run: ``epochs`` steps over ``train`` images, then ``evaluated`` images scored (the prefix of a
        partial-k run is recomputed every epoch when the cache cannot keep it)."""
        step = kind.step_flops(self.arch, self.image_size)
        if kind.family == PARTIAL and not self.fits_cache(kind, train):
            step += kind.once_flops(self.arch, self.image_size)
        return epochs * train * step + evaluated * kind.eval_flops(self.arch, self.image_size)

    def training_runs(self, step: str, wildcards: Mapping[str, str], points: list[Mapping[str, Any]], *,
                      train: int, evaluated: int, epochs: int, runs_per_point: int, loaded_images: int) -> JobCost:
        """Runs of ``points`` (each ``runs_per_point`` times) on ``train`` images for ``epochs``, each scored on
        ``evaluated`` images; the frozen prefix of the train and scored images is computed once."""
        kinds = [RunKind.of(wildcards["method"], point) for point in points]
        runs = len(points) * runs_per_point
        flops = sum(runs_per_point * self.run_flops(kind, train=train, evaluated=evaluated, epochs=epochs)
                    for kind in kinds)
        flops += max(self.once(kind, train + evaluated) for kind in kinds) + self.prototypes(train)
        return JobCost(step=step, id=job_id(step, [wildcards[name] for name in STEPS[step].wildcards]), runs=runs,
                       epochs=runs * epochs, train_images=runs * epochs * train, eval_images=runs * evaluated,
                       flops=flops, memory_mb=self.base_mb() + self.image_mb(loaded_images))

    def search(self, wildcards: Mapping[str, str]) -> JobCost:
        from peftlab.config import search_points

        sizes = self.sizes(wildcards["task"])
        train, val = sizes["train800"], sizes["val200"]
        return self.training_runs("search", wildcards, search_points(self.study.config, wildcards["method"]),
                                  train=train, evaluated=val, epochs=int(self.training["epochs"]), runs_per_point=1,
                                  loaded_images=train + val)

    def final(self, step: str, wildcards: Mapping[str, str], train_split: str, epochs: int) -> JobCost:
        """Every seed of the selected point; the selection is not known yet, so the grid's costliest point."""
        from peftlab.config import search_points

        sizes = self.sizes(wildcards["task"])
        train = int(wildcards["size"]) if "size" in wildcards else sizes[train_split]
        evaluated = eval_images(sizes)
        points = search_points(self.study.config, wildcards["method"])
        costliest = max(points, key=lambda point: self.run_flops(RunKind.of(wildcards["method"], point), train=train,
                                                                 evaluated=evaluated, epochs=epochs))
        return self.training_runs(step, wildcards, [costliest], train=train, evaluated=evaluated, epochs=epochs,
                                  runs_per_point=len(self.study.seeds), loaded_images=train + evaluated)

    def robustness(self, wildcards: Mapping[str, str]) -> JobCost:
        """Every seed scored at every α (weight-space methods; output-space ones need 2 passes: an upper bound)."""
        sizes = self.sizes(wildcards["task"])
        evaluated = eval_images(sizes)
        evaluations = len(self.study.seeds) * len(self.study.section("robustness")["alphas"])
        flops = evaluations * evaluated * RunKind(FULL).eval_flops(self.arch, self.image_size)
        return JobCost(step="robustness", id=job_id("robustness", [wildcards["task"], wildcards["method"]]),
                       runs=evaluations, epochs=0, train_images=0, eval_images=evaluations * evaluated, flops=flops,
                       memory_mb=self.base_mb() + self.image_mb(evaluated))

    def pretrain(self, wildcards: Mapping[str, str]) -> JobCost:
        from peftlab.data.tasks import UPSTREAM_TASK
        from peftlab.training.pretrain import pretrain_settings

        sizes = self.sizes(UPSTREAM_TASK)
        epochs = int(pretrain_settings(self.study.config)["epochs"])
        full = RunKind(FULL)
        flops = epochs * sizes["train"] * full.step_flops(self.arch, self.image_size) + \
            sizes["val"] * full.eval_flops(self.arch, self.image_size)
        return JobCost(step="pretrain", id=job_id("pretrain", [wildcards["backbone"]]), runs=1, epochs=epochs,
                       train_images=epochs * sizes["train"], eval_images=sizes["val"], flops=flops,
                       memory_mb=self.base_mb() + self.image_mb(sizes["train"] + sizes["val"]))

    def job(self, step: str, wildcards: Mapping[str, str]) -> JobCost:
        if step == "search":
            return self.search(wildcards)
        if step == "train":
            return self.final(step, wildcards, "train800val200", int(self.training["epochs"]))
        if step == "manyshot":
            manyshot = self.study.section("manyshot")
            return self.final(step, wildcards, "", int(manyshot.get("epochs", self.training["epochs"])))
        if step == "robustness":
            return self.robustness(wildcards)
        return self.pretrain(wildcards)


@functools.lru_cache(maxsize=4)
def estimate(study: Study) -> StudyCost:
    """The cost of every training job of ``study`` (cached per study: the SLURM resources ask it per step)."""
    costing = _Costing(study)
    anchor = COST_TABLE[device_class(study)]
    threads = int(study.config["training"].get("threads", 1)) if device_class(study) == "cpu" else 1
    cost = StudyCost(study=study, anchor=anchor, rate=anchor.flops_per_s * threads)
    for step in TRAINING_STEPS:
        cost.jobs += [costing.job(step, wildcards) for wildcards in STEPS[step].instances(study)]
    cost.assumed = sorted({method for method in study.methods if method not in METHOD_FAMILY})
    return cost


@functools.lru_cache(maxsize=32)
def step_resources(study: Study, step: str) -> Resources:
    """SLURM resources of a training step: its costliest job's time and memory, times the safety factors, with
    floors (one value per step: the rules ask Snakemake for a step's resources, not a job's)."""
    cost = estimate(study)
    jobs = [job for job in cost.jobs if job.step == step]
    if not jobs:
        return Resources(mem_mb=MEMORY_FLOOR_MB, runtime=RUNTIME_FLOOR_MIN, gpu=1)
    seconds = max(cost.seconds(job) for job in jobs)
    memory = max(job.memory_mb for job in jobs)
    return Resources(mem_mb=max(MEMORY_FLOOR_MB, 1000 * math.ceil(MEMORY_SAFETY * memory / 1000)),
                     runtime=max(RUNTIME_FLOOR_MIN, math.ceil(RUNTIME_SAFETY * seconds / 60)), gpu=1)


def saving(cost: StudyCost, job_ids: Iterable[str]) -> Totals:
    """What skipping ``job_ids`` saves (e.g. the searches a 'published selections' mode does not run)."""
    skipped = set(job_ids)
    return sum((cost.job_totals(job) for job in cost.jobs if job.id in skipped), Totals())


# --- the printed table ---------------------------------------------------------------------------------------
def family_costs(cost: StudyCost) -> list[tuple[str, float, float]]:
    """``(family, train step ms, forward ms)`` per image for the study's backbone and image size."""
    costing = _Costing(cost.study)
    rows = []
    for family in FAMILIES:
        kind = RunKind(family, extra_tokens=10 if family == PROMPT else 0,
                       trained_blocks=1 if family == PARTIAL else 0)
        train = kind.step_flops(costing.arch, costing.image_size)
        forward = costing.arch.forward_flops(costing.image_size, extra_tokens=kind.extra_tokens)
        rows.append((family, 1000 * train / cost.rate, 1000 * forward / cost.rate))
    return rows


def render_cost(cost: StudyCost, savings: Mapping[str, Totals] | None = None) -> str:
    """The table ``peftlab pipeline cost`` prints; ``savings`` adds one line per job-skipping mode (label → what
    ``saving`` returns for the jobs it skips)."""
    study, unit = cost.study, cost.anchor.unit
    arch = architecture(study.backbone)
    image_size = int(study.config["data"]["image_size"])
    lines = [f"study {study.config['study']['name']}: {study.backbone} at {image_size} px "
             f"({arch.tokens(image_size)} tokens), {len(study.tasks)} tasks x {len(study.methods)} methods, "
             f"seeds {study.seeds}", ""]
    header = f"{'step':<11}{'jobs':>6}{'runs':>9}{'epochs':>11}{'train images':>15}{'eval images':>14}" \
             f"{'est. ' + unit:>12}   SLURM request per job"
    lines += [header, "-" * len(header)]
    for step, totals in cost.by_step().items():
        asked = STEPS[step].resources(study)
        lines.append(_row(step, totals) + f"   {asked.runtime} min, {asked.mem_mb} MB"
                     + ("" if study.is_large else " (mini-study defaults)"))
    lines.append(_row("total", cost.total()))
    for label, totals in (savings or {}).items():
        share = totals.hours / cost.total().hours if cost.total().hours else 0.0
        lines += ["", f"{label}:", _row("  saves", totals),
                  _row("  leaves", cost.total() - totals) + f"   ({share:.0%} of the estimate saved)"]
    lines += [""] + _wrap(
        "runs: trials (search), seed runs (train, manyshot, pretrain), evaluations of one seed at one alpha "
        "(robustness). eval images: forward passes for scoring. Final and many-shot runs are costed at the grid's "
        "costliest point (the selection is not known yet). Data steps (generate, prepare) and analyses "
        "(ensembles, report) run on the CPU and are not counted.")
    lines += ["", f"cost per image, {study.backbone} at {image_size} px, ms of {unit.split('-')[0]}:",
              f"  {'family':<11}{'train step':>12}{'forward':>10}"]
    for family, train, forward in family_costs(cost):
        note = {PROMPT: "  (10 prompt tokens)", PARTIAL: "  (last block; the rest cached)",
                LINEAR: "  (head only; features cached: one forward per image and job)"}.get(family, "")
        lines.append(f"  {family:<11}{train:>12.3f}{forward:>10.3f}{note}")
    if cost.assumed:
        lines.append(f"  costed as lora-like by assumption: {', '.join(cost.assumed)}")
    verdict = ("ESTIMATE from a rate measured on this code" if cost.anchor.measured_on_this_code else
               "ESTIMATE, not measured on a GPU")
    lines += [""] + _wrap(f"{verdict}: FLOPs of the architecture per image and method family (2 per multiply-add; "
                          "a training step is 3 forward passes for full fine-tuning, 2 with a frozen backbone) at the "
                          f"rate of {cost.anchor.source}. benchmarks/gpu_check.py measures peftlab's own throughput "
                          "per family on a GPU.")
    return "\n".join(lines)


def _wrap(text: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=110)


def _row(label: str, totals: Totals) -> str:
    return (f"{label:<11}{totals.jobs:>6}{totals.runs:>9}{totals.epochs:>11}{_millions(totals.train_images):>15}"
            f"{_millions(totals.eval_images):>14}{totals.hours:>12.2f}")


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f} M" if count >= 100_000 else str(count)

