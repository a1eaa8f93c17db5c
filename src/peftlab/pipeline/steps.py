"""The pipeline's steps, written once: the single source of both engines' DAGs.

Each ``Step`` says, for one kind of job, which jobs a study has (its wildcard values), what each job reads (files
and config keys), what it writes, the exact ``peftlab`` command, and what it costs (threads, memory, runtime, GPU).
The Snakefile's rules take their inputs, outputs, params, resources and shell command from here
(``workflow/rules/common.smk``), and ``peftlab pipeline dvc-yaml`` turns the same jobs into ``dvc.yaml`` stages
(``dvcgen.py``), so both engines run the same commands on the same files. Paths come from ``peftlab.paths``.

Granularity is one job per (task, method) for search and for the final seeds, never per trial: the number of jobs,
and of DVC stages, grows with tasks × methods. Each job lists only the config keys it reads, so changing one
method's grid re-runs only that method's jobs and what depends on their outputs.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab import paths
from peftlab.paths import path

Wildcards = Mapping[str, str]

# Config keys that change how fast a job runs, not what it computes: listing them would re-run everything when
# a user moves to a machine with more cores or a GPU (the arithmetic is ``training.precision``, which is listed;
# a run's device is in its provenance, and a run in bf16 autocast is fingerprinted as such).
EXECUTION_KEYS = frozenset({"training.threads", "training.device", "backbone.pretrain.threads"})

# Images at least this large mean a ViT-B-sized study (the paper's 224 px); smaller ones the offline mini study.
LARGE_IMAGE_SIZE = 128

# Where each job's log and Snakemake benchmark go (not DVC outputs; ``logs/`` is git- and DVC-ignored).
LOG_ROOT = "logs"
BENCHMARK_ROOT = "logs/benchmarks"


@dataclass(frozen=True)
class Output:
    """One output path pattern (over the step's wildcards); ``kind`` is its ``dvc.yaml`` section."""

    pattern: str
    directory: bool = False
    kind: str = "outs"  # outs (cached data), metrics (JSON numbers), plots (CSV curves and tables)

    def fill(self, wildcards: Wildcards) -> Output:
        return Output(self.pattern.format(**wildcards), self.directory, self.kind)


@dataclass(frozen=True)
class Resources:
    """What one job asks of a scheduler: memory (MB), wall time (minutes) and GPUs."""

    mem_mb: int
    runtime: int
    gpu: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"mem_mb": self.mem_mb, "runtime": self.runtime, "gpu": self.gpu}


class Study:
    """A validated config and the path of its file: the questions the steps ask about a study."""

    def __init__(self, config: Mapping[str, Any], config_path: str | os.PathLike, root: str | os.PathLike = "."):
        self.config = config
        self.root = Path(root)
        self.config_path = normalize_config_path(config_path, self.root)
        self._jobs: dict[str, list[Job]] = {}  # per step; a study's config does not change

    # --- what the study contains ---------------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return list(self.config["study"]["tasks"])

    @property
    def methods(self) -> list[str]:
        return list(self.config["study"]["methods"])

    @property
    def seeds(self) -> list[int]:
        return list(self.config["study"]["seeds"])

    def section(self, name: str) -> Mapping[str, Any]:
        return self.config.get(name) or {}

    @property
    def generates_data(self) -> bool:
        return self.config["data"].get("generate") is not None

    @property
    def pretrains_backbone(self) -> bool:
        return not self.config["backbone"].get("weights")

    @property
    def is_large(self) -> bool:
        return int(self.config["data"]["image_size"]) >= LARGE_IMAGE_SIZE

    @property
    def backbone(self) -> str:
        return str(self.config["backbone"]["name"])

    @property
    def prepared_tasks(self) -> list[str]:
        """Tasks with shards: the study's, plus the upstream set when the pipeline pretrains the backbone."""
        from peftlab.data.tasks import UPSTREAM_TASK

        return self.tasks + ([UPSTREAM_TASK] if self.pretrains_backbone else [])

    # --- where things are ----------------------------------------------------------------------------------
    @property
    def raw_root(self) -> str:
        return str(self.config["data"]["root"])

    def raw_task_dir(self, task: str) -> str:
        """The task's folder in the data root; for the user's data, the folder the data module would pick."""
        if self.generates_data:
            return str(Path(self.raw_root) / task)
        from peftlab.data.tasks import find_task_dir
        from peftlab.errors import PeftlabError

        try:
            found = find_task_dir(self.root / self.raw_root, task)
        except PeftlabError:
            return str(Path(self.raw_root) / task)
        return str(Path(self.raw_root) / found.name)

    @property
    def weights(self) -> str:
        from peftlab.config import backbone_weights_path

        return str(backbone_weights_path(self.config))

    @property
    def head_file(self) -> str | None:
        """The file the training jobs start the head from (``training.head_init_file``), for ``head_init: file``."""
        training = self.config["training"]
        return str(training["head_init_file"]) if training.get("head_init") == "file" else None

    # --- config keys ---------------------------------------------------------------------------------------
    def keys(self, *names: str) -> list[str]:
        """The dotted keys a job reads, as present in this config: a section expands to its present subkeys
        (minus ``EXECUTION_KEYS``); an absent optional key is left out (DVC cannot track a missing key)."""
        found: list[str] = []
        for name in names:
            present, value = self._lookup(name)
            if not present:
                continue
            if isinstance(value, Mapping) and any(key.startswith(f"{name}.") for key in EXECUTION_KEYS):
                found += [f"{name}.{sub}" for sub in value if f"{name}.{sub}" not in EXECUTION_KEYS]
            else:
                found.append(name)
        return found

    def value(self, key: str) -> Any:
        present, value = self._lookup(key)
        if not present:
            raise KeyError(key)
        return value

    def _lookup(self, key: str) -> tuple[bool, Any]:
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False, None
            node = node[part]
        return True, node


def normalize_config_path(config_path: str | os.PathLike, root: str | os.PathLike = ".") -> str:
    """The config path as both engines write it into commands: relative to the project root when inside it,
    so ``params.yaml``, ``./params.yaml`` and an absolute path give the same command (no spurious re-runs)."""
    absolute = Path(os.path.abspath(config_path))
    root = Path(os.path.abspath(root))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return str(absolute)


@dataclass(frozen=True)
class Job:
    """One concrete job: a row of the step table with its wildcards filled in."""

    step: str
    wildcards: Mapping[str, str]
    id: str
    argv: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[Output, ...]
    keys: tuple[str, ...]
    threads: int
    resources: Resources

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def output_paths(self) -> list[str]:
        return [output.pattern for output in self.outputs]


@dataclass(frozen=True)
class Step:
    """A kind of job; see the module docstring. Every callable receives the ``Study`` (and the job's wildcards)."""

    name: str
    rules_file: str  # workflow/rules/<rules_file>.smk holds its rule
    wildcards: tuple[str, ...]
    instances: Callable[[Study], list[dict[str, str]]]
    outputs: Callable[[Study], tuple[Output, ...]]
    inputs: Callable[[Study, Wildcards], list[str]]
    keys: Callable[[Study, Wildcards], list[str]]
    argv: Callable[[Study, Wildcards], list[str]]
    resources: Callable[[Study], Resources]
    trains: bool = False  # uses ``training.threads`` threads and gets a benchmark file
    threads_keys: tuple[str, ...] = ("training.threads",)  # the first one set gives a training job's threads

    def threads(self, study: Study) -> int:
        if not self.trains:
            return 1
        found = (study._lookup(key) for key in self.threads_keys)
        return int(next((value for present, value in found if present and value), 1))

    def job_id(self, wildcards: Wildcards) -> str:
        return job_id(self.name, [wildcards[name] for name in self.wildcards])

    def log(self) -> str:
        return _per_job_file(LOG_ROOT, self.name, self.wildcards, ".log")

    def benchmark(self) -> str:
        return _per_job_file(BENCHMARK_ROOT, self.name, self.wildcards, ".tsv")

    def job(self, study: Study, wildcards: Wildcards) -> Job:
        wildcards = {name: str(wildcards[name]) for name in self.wildcards}
        return Job(
            step=self.name,
            wildcards=wildcards,
            id=self.job_id(wildcards),
            argv=tuple(str(arg) for arg in self.argv(study, wildcards)),
            inputs=tuple(_unique(self.inputs(study, wildcards))),
            outputs=tuple(output.fill(wildcards) for output in self.outputs(study)),
            keys=tuple(_unique(self.keys(study, wildcards))),
            threads=self.threads(study),
            resources=self.resources(study),
        )

    def jobs(self, study: Study) -> list[Job]:
        if self.name not in study._jobs:
            study._jobs[self.name] = [self.job(study, wildcards) for wildcards in self.instances(study)]
        return study._jobs[self.name]


def job_id(step: str, values: Sequence[str]) -> str:
    """``search-digits-lora``: the DVC stage name and the name tests use for a Snakemake job. DVC allows only
    ``-`` and ``_`` as punctuation in stage names, so other characters of a value (``.``) become ``_``."""
    return "-".join([step, *(re.sub(r"[^A-Za-z0-9_]", "_", str(value)) for value in values)])


def _per_job_file(root: str, step: str, wildcards: Sequence[str], suffix: str) -> str:
    if not wildcards:
        return f"{root}/{step}{suffix}"
    return f"{root}/{step}/" + "/".join(f"{{{name}}}" for name in wildcards) + suffix


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _sized(small: Resources, large: Resources) -> Callable[[Study], Resources]:
    """Defaults for the mini study (small images, tiny ViT) and for a ViT-B study at 224 px; a profile's
    ``set-resources`` overrides them per rule."""
    return lambda study: large if study.is_large else small


def _estimated(step: str, small: Resources) -> Callable[[Study], Resources]:
    """A training step's resources: the mini study's defaults (a tiny ViT at 32 px: minutes per job), or for a
    large study the cost model's estimate of the step's costliest job, with a safety factor and a floor
    (``peftlab.pipeline.cost.step_resources``); a profile's ``set-resources`` overrides them per rule."""
    def resources(study: Study) -> Resources:
        if not study.is_large:
            return small
        from peftlab.pipeline.cost import step_resources

        return step_resources(study, step)

    return resources


# --- the paths the steps share -------------------------------------------------------------------------------
def _shards(task: str) -> str:
    return str(path(paths.SHARD_DIR, task=task))


def _best(task: str, method: str) -> str:
    return str(path(paths.BEST, task=task, method=method))


def _final_outputs(task: str, method: str) -> list[str]:
    return [str(path(paths.FINAL_RUNS, task=task, method=method)), str(path(paths.FINAL_METRICS, task=task,
                                                                            method=method))]


def _training_keys(study: Study) -> list[str]:
    """What every training job reads besides its own keys: the schedule, the backbone, the input scaling."""
    return study.keys("training", "backbone.name", "data.normalize")


# --- generate: the offline mini-suite, one job per task (each task has its own random streams) -------------
def _generate_instances(study: Study) -> list[dict[str, str]]:
    return [{"task": task} for task in study.prepared_tasks] if study.generates_data else []


def _generate_settings(study: Study, task: str) -> list[str]:
    """The generator settings that shape this task's files: the test size for a downstream task, the many-shot
    size for the tasks with many-shot lists, the upstream size for the upstream set (and the seed for all)."""
    from peftlab.data.tasks import UPSTREAM_TASK

    if task == UPSTREAM_TASK:
        return ["seed", "upstream_size"]
    return ["seed", "test_size", *(["manyshot_size"] if _has_manyshot_lists(task) else [])]


def _has_manyshot_lists(task: str) -> bool:
    from peftlab.data.generate.suite import MANYSHOT_TASKS

    return task in MANYSHOT_TASKS


def _manyshot_subsets(study: Study) -> list[int]:
    """The many-shot sizes below the largest list: the generator writes a nested list for each."""
    largest = study.config["data"]["generate"].get("manyshot_size")
    sizes = study.section("manyshot").get("sizes", [])
    return sorted(size for size in sizes if largest is None or size < largest)


def _generate_keys(study: Study, wildcards: Wildcards) -> list[str]:
    task = wildcards["task"]
    keys = [f"data.generate.{name}" for name in _generate_settings(study, task)]
    return study.keys(*keys, *(["manyshot.sizes"] if _has_manyshot_lists(task) else []))


def _generate_argv(study: Study, wildcards: Wildcards) -> list[str]:
    task, settings = wildcards["task"], study.config["data"]["generate"]
    argv = ["peftlab", "data", "generate", "--out", study.raw_root, "--tasks", task]
    for name in _generate_settings(study, task):
        if name in settings:
            argv += [f"--{name.replace('_', '-')}", settings[name]]
    if _has_manyshot_lists(task) and _manyshot_subsets(study):
        argv += ["--manyshot-subset", *_manyshot_subsets(study)]
    return argv


# --- prepare: lists + images → uint8 shards ------------------------------------------------------------------
def _prepare_argv(study: Study, wildcards: Wildcards) -> list[str]:
    task = wildcards["task"]
    argv = ["peftlab", "data", "prepare", "--root", study.raw_root, "--out", str(Path(paths.SHARD_DIR).parent),
            "--tasks", task, "--size", study.config["data"]["image_size"]]
    if task in study.config["data"].get("allow_size_mismatch", []):
        argv += ["--allow-size-mismatch", task]
    return argv


# --- pretrain: the mini study's backbone ---------------------------------------------------------------------
def _pretrain_argv(study: Study, wildcards: Wildcards) -> list[str]:
    return ["peftlab", "pretrain", "--config", study.config_path,
            "--out", str(path(paths.BACKBONE_DIR, backbone=wildcards["backbone"]))]


def _pretrain_inputs(study: Study, wildcards: Wildcards) -> list[str]:
    from peftlab.data.tasks import UPSTREAM_TASK

    return [_shards(UPSTREAM_TASK)]


# --- probe: what the backbone's frozen features know about the study's tasks ---------------------------------
def _probe_inputs(study: Study, wildcards: Wildcards) -> list[str]:
    return [study.weights, *(_shards(task) for task in study.tasks)]


def _probe_argv(study: Study, wildcards: Wildcards) -> list[str]:
    return ["peftlab", "probe", "--config", study.config_path,
            "--out", str(path(paths.BACKBONE_PROBE, backbone=wildcards["backbone"]))]


# --- search and final runs -----------------------------------------------------------------------------------
def _study_pairs(study: Study) -> list[dict[str, str]]:
    return [{"task": task, "method": method} for task in study.tasks for method in study.methods]


def _search_keys(study: Study, wildcards: Wildcards) -> list[str]:
    return study.keys("search", f"grids.{wildcards['method']}") + _training_keys(study)


def _search_argv(study: Study, wildcards: Wildcards) -> list[str]:
    return ["peftlab", "search", "--task", wildcards["task"], "--method", wildcards["method"],
            "--config", study.config_path, "--out", str(path(paths.SEARCH_DIR, **wildcards))]


def _trained_inputs(study: Study, wildcards: Wildcards) -> list[str]:
    """What every training job reads: the task's shards, the backbone weights and, with ``head_init: file``, the
    head file (a dependency, so both engines re-run when its content changes, not only its path)."""
    return [_shards(wildcards["task"]), study.weights, *([study.head_file] if study.head_file else [])]


def _train_inputs(study: Study, wildcards: Wildcards) -> list[str]:
    return [*_trained_inputs(study, wildcards), _best(wildcards["task"], wildcards["method"])]


def _train_keys(study: Study, wildcards: Wildcards) -> list[str]:
    return study.keys("study.seeds") + _training_keys(study)


def _train_argv(study: Study, wildcards: Wildcards) -> list[str]:
    return ["peftlab", "train", "--task", wildcards["task"], "--method", wildcards["method"],
            "--hparams", _best(wildcards["task"], wildcards["method"]), "--seeds", *study.seeds,
            "--config", study.config_path, "--out", str(path(paths.FINAL_DIR, **wildcards))]


# --- many-shot runs ------------------------------------------------------------------------------------------
def _manyshot_instances(study: Study) -> list[dict[str, str]]:
    section = study.section("manyshot")
    return [{"task": task, "size": str(size), "method": method}
            for task in section.get("tasks", []) for size in section.get("sizes", [])
            for method in section.get("methods", [])]


def _manyshot_keys(study: Study, wildcards: Wildcards) -> list[str]:
    return study.keys("study.seeds", "manyshot.epochs", "manyshot.warmup_epochs", "manyshot.normalize") + \
        _training_keys(study)


def _manyshot_argv(study: Study, wildcards: Wildcards) -> list[str]:
    task, method = wildcards["task"], wildcards["method"]
    return ["peftlab", "train", "--task", task, "--method", method, "--hparams", _best(task, method),
            "--seeds", *study.seeds, "--train-split", f"manyshot-{wildcards['size']}",
            "--config", study.config_path, "--out", str(path(paths.MANYSHOT_DIR, **wildcards))]


# --- analyses ------------------------------------------------------------------------------------------------
def _robustness_instances(study: Study) -> list[dict[str, str]]:
    section = study.section("robustness")
    return [{"task": task, "method": method} for task in section.get("tasks", [])
            for method in section.get("methods", [])]


def _robustness_inputs(study: Study, wildcards: Wildcards) -> list[str]:
    head = study.section("robustness").get("zero_shot_head")
    return [*_trained_inputs(study, wildcards), *_final_outputs(wildcards["task"], wildcards["method"]),
            *([head] if head else [])]


def _robustness_keys(study: Study, wildcards: Wildcards) -> list[str]:
    return study.keys("robustness.alphas", "robustness.zero_shot_head", "study.seeds") + _training_keys(study)


def _robustness_argv(study: Study, wildcards: Wildcards) -> list[str]:
    return ["peftlab", "robustness", "--task", wildcards["task"], "--method", wildcards["method"],
            "--config", study.config_path, "--runs", str(path(paths.FINAL_RUNS, **wildcards)),
            "--out", str(path(paths.ROBUSTNESS_CSV, **wildcards))]


def _ensembles_inputs(study: Study, wildcards: Wildcards) -> list[str]:
    task = wildcards["task"]
    return [item for method in study.methods for item in (*_final_outputs(task, method), _best(task, method))]


def _ensembles_argv(study: Study, wildcards: Wildcards) -> list[str]:
    return ["peftlab", "ensembles", "--task", wildcards["task"], "--config", study.config_path,
            "--results", _results_root(), "--out", str(path(paths.ENSEMBLES_DIR, **wildcards))]


def _results_root() -> str:
    return str(Path(paths.FINAL_DIR).parents[2])


def _report_inputs(study: Study, wildcards: Wildcards) -> list[str]:
    """The files the report reads: every selection, summary metrics, per-seed run (test logits for the lessons'
    bootstrap intervals, per-seed metrics for the costs), WiSE-FT table, ensemble analysis and, once the probe
    step exists, the backbone's probe file (the lessons' precondition); not the trials."""
    summaries = [_best(wc["task"], wc["method"]) for wc in _study_pairs(study)]
    for name in ("train", "manyshot", "robustness", "ensembles", *(n for n in ("probe",) if n in STEPS)):
        summaries += [output.pattern for job in STEPS[name].jobs(study) for output in job.outputs]
    return summaries


def _report_argv(study: Study, wildcards: Wildcards) -> list[str]:
    return ["peftlab", "report", "--config", study.config_path, "--results", _results_root(),
            "--out", paths.REPORT_DIR]


def _report_keys(study: Study, wildcards: Wildcards) -> list[str]:
    return study.keys("study", "manyshot", "robustness", "ensembles", "reference", "backbone.name", "backbone.weights",
                      "data.image_size")


# --- the table -----------------------------------------------------------------------------------------------
def _no_inputs(study: Study, wildcards: Wildcards) -> list[str]:
    return []


def _once(study: Study) -> list[dict[str, str]]:
    return [{}]


_SMALL = Resources(mem_mb=2000, runtime=30)
_TRAINING_SMALL = Resources(mem_mb=4000, runtime=120, gpu=1)

STEP_LIST: tuple[Step, ...] = (
    Step(
        name="generate", rules_file="data", wildcards=("task",),
        instances=_generate_instances,
        outputs=lambda study: (Output(str(Path(study.raw_root) / "{task}"), directory=True),),
        inputs=_no_inputs,
        keys=_generate_keys, argv=_generate_argv,
        resources=_sized(_SMALL, _SMALL),
    ),
    Step(
        name="prepare", rules_file="data", wildcards=("task",),
        instances=lambda study: [{"task": task} for task in study.prepared_tasks],
        outputs=lambda study: (Output(paths.SHARD_DIR, directory=True),),
        inputs=lambda study, wc: [study.raw_task_dir(wc["task"])],
        keys=lambda study, wc: study.keys("data.image_size", "data.allow_size_mismatch"), argv=_prepare_argv,
        resources=_sized(Resources(mem_mb=4000, runtime=60), Resources(mem_mb=32000, runtime=240)),
    ),
    Step(
        name="pretrain", rules_file="backbone", wildcards=("backbone",),
        instances=lambda study: [{"backbone": study.backbone}] if study.pretrains_backbone else [],
        outputs=lambda study: (Output(paths.BACKBONE_WEIGHTS), Output(paths.BACKBONE_CARD, kind="metrics")),
        inputs=_pretrain_inputs,
        keys=lambda study, wc: study.keys("backbone.pretrain") + _training_keys(study), argv=_pretrain_argv,
        resources=_estimated("pretrain", Resources(mem_mb=4000, runtime=240, gpu=1)),
        trains=True, threads_keys=("backbone.pretrain.threads", "training.threads"),  # runs alone: may use all cores
    ),
    Step(
        name="probe", rules_file="backbone", wildcards=("backbone",),
        instances=lambda study: [{"backbone": study.backbone}],
        outputs=lambda study: (Output(paths.BACKBONE_PROBE, kind="metrics"),),
        inputs=_probe_inputs,
        keys=lambda study, wc: study.keys("study.tasks", "backbone.name", "data.normalize"), argv=_probe_argv,
        resources=_sized(Resources(mem_mb=2000, runtime=15), Resources(mem_mb=16000, runtime=60, gpu=1)),
        trains=True,
    ),
    Step(
        name="search", rules_file="search", wildcards=("task", "method"),
        instances=_study_pairs,
        outputs=lambda study: (Output(paths.TRIALS_DIR, directory=True), Output(paths.BEST)),
        inputs=_trained_inputs, keys=_search_keys, argv=_search_argv,
        resources=_estimated("search", _TRAINING_SMALL),
        trains=True,
    ),
    Step(
        name="train", rules_file="train", wildcards=("task", "method"),
        instances=_study_pairs,
        outputs=lambda study: (Output(paths.FINAL_RUNS, directory=True),
                               Output(paths.FINAL_METRICS, kind="metrics")),
        inputs=_train_inputs, keys=_train_keys, argv=_train_argv,
        resources=_estimated("train", _TRAINING_SMALL),
        trains=True,
    ),
    Step(
        name="manyshot", rules_file="train", wildcards=("task", "size", "method"),
        instances=_manyshot_instances,
        outputs=lambda study: (Output(paths.MANYSHOT_RUNS, directory=True),
                               Output(paths.MANYSHOT_METRICS, kind="metrics")),
        inputs=_train_inputs, keys=_manyshot_keys, argv=_manyshot_argv,
        resources=_estimated("manyshot", _TRAINING_SMALL),
        trains=True,
    ),
    Step(
        name="robustness", rules_file="analyses", wildcards=("task", "method"),
        instances=_robustness_instances,
        outputs=lambda study: (Output(paths.ROBUSTNESS_CSV, kind="plots"),),
        inputs=_robustness_inputs, keys=_robustness_keys, argv=_robustness_argv,
        resources=_estimated("robustness", Resources(mem_mb=4000, runtime=60, gpu=1)),
        trains=True,
    ),
    Step(
        name="ensembles", rules_file="analyses", wildcards=("task",),
        instances=lambda study: [{"task": task} for task in study.tasks],
        outputs=lambda study: (Output(f"{paths.ENSEMBLES_DIR}/agreement.csv", kind="plots"),
                               Output(f"{paths.ENSEMBLES_DIR}/ensembles.csv", kind="plots"),
                               Output(f"{paths.ENSEMBLES_DIR}/summary.json", kind="metrics")),
        inputs=_ensembles_inputs,
        keys=lambda study, wc: study.keys("ensembles", "study.methods", "study.seeds"), argv=_ensembles_argv,
        resources=_sized(_SMALL, Resources(mem_mb=16000, runtime=60)),
    ),
    Step(
        name="report", rules_file="report", wildcards=(),
        instances=_once,
        outputs=lambda study: (Output(paths.REPORT_INDEX_MD), Output(paths.REPORT_INDEX_HTML),
                               Output(f"{paths.REPORT_DIR}/metrics.json", kind="metrics"),
                               Output(paths.REPORT_FIGURES, directory=True),
                               Output(paths.REPORT_TABLES, directory=True)),
        inputs=_report_inputs, keys=_report_keys, argv=_report_argv,
        resources=_sized(_SMALL, Resources(mem_mb=8000, runtime=60)),
    ),
)

STEPS: dict[str, Step] = {step.name: step for step in STEP_LIST}


def all_jobs(study: Study) -> list[Job]:
    """Every job of the study, steps in table order (a topological order of the DAG)."""
    return [job for step in STEP_LIST for job in step.jobs(study)]


def final_targets(study: Study) -> list[str]:
    """The files a full run must leave behind (Snakemake's ``rule all``)."""
    return [output for job in all_jobs(study) for output in job.output_paths]
