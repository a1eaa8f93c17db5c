"""The study configuration: one YAML file read by Snakemake, DVC and the CLI, checked before anything runs.

Two layers of checks: the JSON schema (``schemas/config.schema.yaml``, shared with Snakemake's ``validate``)
for keys and types, then semantic checks that need the code (method names and their hyper-parameters, the data
root of a study that brings its own data). Each failure is one line naming the file and the key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from peftlab.errors import PeftlabError

SCHEMA_RESOURCE = "schemas/config.schema.yaml"


def load_schema() -> dict:
    text = resources.files("peftlab").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PeftlabError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise PeftlabError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PeftlabError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def _numbers(value: Any, key: str = "") -> Iterator[tuple[str, float]]:
    """Every float in a config with its dotted key (list items by index)."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            yield from _numbers(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{key}.{index}")
    elif isinstance(value, float):
        yield key, value


def validate_schema(config: Mapping[str, Any], source: str) -> None:
    """Check keys and types against the JSON schema; the first error names its key path. NaN and infinite values
    are refused first: the schema's bounds let NaN through, and ``.inf`` would run."""
    import jsonschema

    for key, number in _numbers(config):
        if not math.isfinite(number):
            raise PeftlabError(f"{source}: key '{key}': {number} is not a finite number")
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        error = errors[0]
        key = ".".join(str(part) for part in error.absolute_path) or "<top level>"
        raise PeftlabError(f"{source}: key '{key}': {error.message}{_float_hint(error.instance)}")


def _float_hint(instance: Any) -> str:
    """YAML 1.1 reads ``1e-2`` (no dot in the mantissa) as a string; say how to write it."""
    if not isinstance(instance, str):
        return ""
    mantissa, _, exponent = instance.lower().partition("e")
    try:
        float(instance)
    except ValueError:
        return ""
    if exponent and "." not in mantissa:
        return f" (YAML reads {instance} as a string: write {mantissa}.0e{exponent})"
    return f" (write {instance} unquoted)"


def _duplicates(values: list) -> list:
    seen, repeated = [], []
    for value in values:
        (repeated if value in seen and value not in repeated else seen).append(value)
    return repeated


def validate_semantics(config: Mapping[str, Any], source: str, check_data: bool = True) -> None:
    """Checks the schema cannot express (or not in one line naming the key): known methods, valid grids, the
    head file of ``head_init: file``, a data root that exists."""
    from peftlab.methods import build_config, get_method

    lists = {"study.tasks": config["study"]["tasks"], "study.methods": config["study"]["methods"],
             "study.seeds": config["study"].get("seeds", []), "search.lr": config["search"]["lr"],
             "search.weight_decay": config["search"]["weight_decay"]}
    for method, grid in (config.get("grids") or {}).items():
        lists.update({f"grids.{method}.{key}": values for key, values in (grid or {}).items()})
    for key, values in lists.items():
        repeated = _duplicates(list(values))
        if repeated:
            raise PeftlabError(f"{source}: key '{key}': {repeated} listed more than once")
    if config["data"].get("generate") is not None:  # the generated mini-suite has a fixed set of tasks
        from peftlab.data.tasks import MINI_TASKS

        unknown = [task for task in config["study"]["tasks"] if task not in MINI_TASKS]
        if unknown:
            raise PeftlabError(f"{source}: key 'study.tasks': {unknown} not in the generated mini-suite "
                               f"({', '.join(MINI_TASKS)})")
    method_lists = {"study.methods": config["study"]["methods"]}
    for section in ("manyshot", "robustness"):
        if config.get(section):
            method_lists[f"{section}.methods"] = config[section]["methods"]
    for key, methods in method_lists.items():
        for method in methods:
            try:
                get_method(method)
            except PeftlabError as exc:
                raise PeftlabError(f"{source}: key '{key}': {exc}") from None
    for method, grid in (config.get("grids") or {}).items():
        try:
            get_method(method)
            for point in expand_grid(grid):
                build_config(method, point)
        except PeftlabError as exc:
            raise PeftlabError(f"{source}: key 'grids.{method}': {exc}") from None
    training = config["training"]
    if training.get("head_init") == "file" and not training.get("head_init_file"):
        raise PeftlabError(f"{source}: key 'training.head_init_file': required when training.head_init is 'file' "
                           "(a safetensors file with head.weight [C, D] and head.bias [C])")
    if training.get("head_init_file") and training.get("head_init") != "file":
        raise PeftlabError(f"{source}: key 'training.head_init_file': given, but training.head_init is "
                           f"{training.get('head_init', 'random')!r}, not 'file' (the file would be ignored)")
    for section in ("manyshot", "robustness"):
        if config.get(section):
            unknown = sorted(set(config[section]["tasks"]) - set(config["study"]["tasks"]))
            if unknown:
                raise PeftlabError(
                    f"{source}: key '{section}.tasks': {unknown} are not in study.tasks {config['study']['tasks']}"
                )
    if check_data and config["data"].get("generate") is None:
        root = Path(config["data"]["root"])
        if not root.is_dir():
            raise PeftlabError(
                f"{source}: key 'data.root': data root {root} does not exist (put the VTAB-1k tasks there, "
                "see README 'Running the paper study')"
            )


def load_config(path: str | Path, check_data: bool = True) -> dict:
    """Read and fully validate a study config; raises ``PeftlabError`` naming the file and key."""
    config = read_yaml(path)
    validate_schema(config, str(path))
    validate_semantics(config, str(path), check_data=check_data)
    return config


def expand_grid(grid: Mapping[str, list] | None) -> Iterator[dict[str, Any]]:
    """Cartesian product of a ``{key: [values]}`` grid, in key order then value order."""
    grid = grid or {}
    keys = list(grid)
    for values in itertools.product(*(grid[key] for key in keys)):
        yield dict(zip(keys, values, strict=True))


def search_points(config: Mapping[str, Any], method: str) -> list[dict[str, Any]]:
    """The search grid of one method: lr × weight_decay × the method's own grid, in a fixed order."""
    shared = {"lr": config["search"]["lr"], "weight_decay": config["search"]["weight_decay"]}
    method_grid = (config.get("grids") or {}).get(method, {})
    return [dict(base, **point) for base in expand_grid(shared) for point in expand_grid(method_grid)]


def backbone_weights_path(config: Mapping[str, Any]) -> Path:
    """The backbone's weights file: ``backbone.weights`` when given, else the one the pipeline pretrains."""
    from peftlab.paths import BACKBONE_WEIGHTS, path

    weights = config["backbone"].get("weights")
    return Path(weights) if weights else path(BACKBONE_WEIGHTS, backbone=config["backbone"]["name"])
