"""WiSE-FT: accuracy on the target test set and on shifted test sets along θ(α) = (1−α)·θ₀ + α·θ_ft.

θ₀ is the zero-shot model: the pretrained backbone with the head the run started from (``head_init``, the
prototype head of the mini study, or the CLIP text-embedding head given as ``robustness.zero_shot_head``).
Only the trained tensors move: for a PEFT method its tensors go from ``identity_state`` (the values that give
back the pretrained backbone: LoRA B = 0, BitFit's pretrained biases, …) to their fine-tuned values, and the head
from θ₀'s head to the fine-tuned head; the frozen backbone is the same at both ends. For full fine-tuning every
backbone tensor moves from its pretrained value, which is the original WiSE-FT.

A method with no identity point (VPT: prompts always change the function) cannot be interpolated in weight
space. Those are evaluated with the output-space analogue instead, logits(α) = (1−α)·logits₀ + α·logits_ft with
logits₀ from the pretrained backbone and θ₀'s head, and every such row says so (``interpolation = outputs``
and a ``note``), so the report never mixes the two silently. At α = 0 and α = 1 both give the same models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftlab.analysis.wise_results import SHIFT_PREFIX, TARGET_SPLIT
from peftlab.errors import PeftlabError
from peftlab.training.heads import read_head

WISE_FIELDS = ("task", "method", "seed", "alpha", "split", "accuracy", "loss", "n", "interpolation",
               "head_source", "note")
OUTPUT_SPACE_NOTE = ("no weight-space identity for this method: output-space interpolation of the zero-shot "
                     "and fine-tuned logits (not WiSE-FT)")


@dataclass(frozen=True)
class WiseEndpoints:
    """The trained tensors (method and head) at the zero-shot end and at the fine-tuned end."""

    zero: dict[str, torch.Tensor]
    fine: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        if set(self.zero) != set(self.fine):
            raise ValueError(f"endpoint keys differ: {sorted(set(self.zero) ^ set(self.fine))[:4]}")
        for key, tensor in self.zero.items():
            if tensor.shape != self.fine[key].shape:
                raise ValueError(f"{key}: zero-shot {tuple(tensor.shape)} vs fine-tuned {tuple(self.fine[key].shape)}")

    def at(self, alpha: float) -> dict[str, torch.Tensor]:
        return interpolate(self.zero, self.fine, alpha)


def interpolate(zero: Mapping[str, torch.Tensor], fine: Mapping[str, torch.Tensor],
                alpha: float) -> dict[str, torch.Tensor]:
    """(1−α)·zero + α·fine per tensor; α = 0 and α = 1 return exact copies of the ends (no rounding)."""
    if alpha == 0:
        return {key: tensor.clone() for key, tensor in zero.items()}
    if alpha == 1:
        return {key: tensor.clone() for key, tensor in fine.items()}
    return {key: torch.lerp(zero[key], fine[key], float(alpha)) for key in zero}


def load_state_into(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into the model's parameters of the same names (and nothing else)."""
    params = dict(model.named_parameters())
    unknown = [key for key in state if key not in params]
    if unknown:
        raise ValueError(f"not parameters of the model: {unknown[:4]}")
    with torch.no_grad():
        for key, tensor in state.items():
            params[key].copy_(tensor)


def weight_endpoints(model: nn.Module, pretrained: Mapping[str, torch.Tensor],
                     zero_head: Mapping[str, torch.Tensor]) -> WiseEndpoints | None:
    """θ₀ and θ_ft of the trained tensors of a fine-tuned model with a method attached; None without identity."""
    from peftlab.methods import identity_state, trainable_state_dict

    identity = identity_state(model, pretrained)
    if identity is None:
        return None
    fine = {key: tensor.detach().clone() for key, tensor in trainable_state_dict(model).items()}
    zero = {**{key: tensor.detach().clone() for key, tensor in identity.items()}, **zero_head}
    return WiseEndpoints(zero=zero, fine=fine)


@dataclass(frozen=True)
class EvalSplit:
    """A split to score: uint8 images, labels and the optional class subset (shift sets such as ImageNet-R)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    class_subset: torch.Tensor | None = None


Predict = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _row(alpha: float, split: EvalSplit, logits: torch.Tensor, interpolation: str) -> dict[str, Any]:
    from peftlab.training.evaluate import score

    try:
        result = score(logits, split.labels, split.class_subset)
    except ValueError as exc:
        raise PeftlabError(f"split '{split.name}': {exc}") from None
    return {"alpha": float(alpha), "split": split.name, "accuracy": result.accuracy, "loss": result.loss,
            "n": result.count, "interpolation": interpolation,
            "note": OUTPUT_SPACE_NOTE if interpolation == "outputs" else ""}


def wise_in_weights(model: nn.Module, endpoints: WiseEndpoints, splits: Sequence[EvalSplit],
                    alphas: Sequence[float], predict: Predict) -> list[dict[str, Any]]:
    """Score every split at every α by loading θ(α) into the model; the fine-tuned state is restored after."""
    rows = []
    try:
        for alpha in alphas:
            load_state_into(model, endpoints.at(alpha))
            rows += [_row(alpha, split, predict(model, split.images), "weights") for split in splits]
    finally:
        load_state_into(model, endpoints.fine)
    return rows


def wise_in_outputs(fine_model: nn.Module, zero_model: nn.Module, splits: Sequence[EvalSplit],
                    alphas: Sequence[float], predict: Predict) -> list[dict[str, Any]]:
    """The output-space fallback: mix the two models' logits (each computed once per split)."""
    rows = []
    ends = {split.name: (predict(zero_model, split.images), predict(fine_model, split.images)) for split in splits}
    for alpha in alphas:
        for split in splits:
            zero_logits, fine_logits = ends[split.name]
            mixed = zero_logits if alpha == 0 else fine_logits if alpha == 1 else torch.lerp(
                zero_logits, fine_logits, float(alpha))
            rows.append(_row(alpha, split, mixed, "outputs"))
    return rows


# --- files --------------------------------------------------------------------------------------------------


def check_alphas(alphas: Sequence[float], source: str = "robustness.alphas") -> list[float]:
    """Sorted α grid; it must contain both ends (0: the zero-shot model, 1: the fine-tuned model)."""
    values = sorted(float(a) for a in alphas)
    if 0.0 not in values or 1.0 not in values:
        raise PeftlabError(f"{source}: {list(alphas)} must include 0 (zero-shot) and 1 (fine-tuned)")
    return values


def eval_splits(shards_dir: Path) -> list[EvalSplit]:
    """``test`` and every ``shift-*`` split of the task's manifest, loaded; no shift split is an error."""
    from peftlab.data.shards import MANIFEST_NAME, load_split, read_manifest

    manifest = read_manifest(shards_dir)
    shifts = sorted(name for name in manifest["splits"] if name.startswith(SHIFT_PREFIX))
    if not shifts:
        raise PeftlabError(f"{shards_dir / MANIFEST_NAME}: task '{manifest['task']}' has no '{SHIFT_PREFIX}*' split; "
                           "robustness.tasks must list tasks with shift test sets")
    splits = []
    for name in (TARGET_SPLIT, *shifts):
        split = load_split(shards_dir, name)
        splits.append(EvalSplit(name, split.images, split.labels, split.class_subset))
    return splits


def _require_verified_run(seed_dir: Path) -> None:
    """A finished final run whose files all still have the sha256 its ``metrics.json`` records: nothing is
    interpolated from a truncated, tampered or swapped checkpoint or head."""
    from peftlab.training.final import verify_run

    if not (seed_dir / "metrics.json").is_file():
        raise PeftlabError(f"{seed_dir / 'metrics.json'}: not found (a finished final run holds it)")
    verify_run(seed_dir)


def _recorded_test_accuracy(seed_dir: Path) -> float | None:
    from peftlab.io import read_json

    metrics_path = seed_dir / "metrics.json"
    if not metrics_path.is_file():
        return None
    value = (read_json(metrics_path, what="run metrics").get("accuracy") or {}).get(TARGET_SPLIT)
    return float(value) if value is not None else None


def _consistency_note(rows: Sequence[dict[str, Any]], recorded: float | None) -> str:
    """Where α = 1 does not reproduce the run's own test accuracy (beyond one image), say so on every row."""
    end = next(r for r in rows if r["alpha"] == 1.0 and r["split"] == TARGET_SPLIT)
    if recorded is None or abs(end["accuracy"] - recorded) <= 1.0 / max(end["n"], 1) + 1e-9:
        return ""
    return (f"α=1 test accuracy {end['accuracy']:.4f} differs from the run's metrics.json ({recorded:.4f}): "
            "the checkpoint does not reproduce its run")


def run_robustness(task: str, method: str, config: Mapping[str, Any], runs_dir: str | Path, out_csv: str | Path,
                   *, shards_dir: str | Path | None = None, seeds: Sequence[int] | None = None,
                   device: str | None = None, backbone_weights: str | Path | None = None) -> list[dict[str, Any]]:
    """WiSE-FT rows for every seed of one (task, method) final run, written to ``out_csv``."""
    from peftlab.backbones import create_backbone
    from peftlab.checkpoint import load_peft, read_sidecar
    from peftlab.config import backbone_weights_path
    from peftlab.io import write_csv_rows
    from peftlab.paths import SHARD_DIR, path, run_dir
    from peftlab.training.evaluate import predict_logits
    from peftlab.training.session import job_precision

    section = config.get("robustness")
    if not section:
        raise PeftlabError("config has no 'robustness' section (tasks, methods, alphas)")
    alphas = check_alphas(section["alphas"])
    splits = eval_splits(Path(shards_dir) if shards_dir else path(SHARD_DIR, task=task))
    weights = Path(backbone_weights) if backbone_weights else backbone_weights_path(config)
    normalize = config["data"]["normalize"]
    batch_size = int(config["training"].get("eval_batch_size", 512))
    precision = job_precision(config["training"])

    def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return predict_logits(model, images, batch_size=batch_size, device=device, normalize=normalize,
                              precision=precision)

    rows: list[dict[str, Any]] = []
    for seed in (seeds if seeds is not None else config["study"]["seeds"]):
        seed_dir = run_dir(Path(runs_dir), seed)
        _require_verified_run(seed_dir)
        sidecar = read_sidecar(seed_dir)
        if sidecar["method"] != method:
            raise PeftlabError(f"{seed_dir / 'peft.json'}: checkpoint of '{sidecar['method']}', expected '{method}'")
        num_classes = int(sidecar["num_classes"])
        model = create_backbone(config["backbone"]["name"], weights, num_classes=num_classes)
        pretrained = {key: value.detach().clone() for key, value in model.state_dict().items()}
        load_peft(model, seed_dir)
        model.eval()
        feature_dim = model.get_classifier().in_features
        head_file = section.get("zero_shot_head")
        head_source = "zero_shot_head" if head_file else "head_init"
        zero_head = read_head(head_file or seed_dir / "head_init.safetensors", num_classes, feature_dim)
        endpoints = weight_endpoints(model, pretrained, zero_head)
        if endpoints is not None:
            seed_rows = wise_in_weights(model, endpoints, splits, alphas, predict)
        else:
            zero_model = create_backbone(config["backbone"]["name"], weights, num_classes=num_classes).eval()
            load_state_into(zero_model, zero_head)
            seed_rows = wise_in_outputs(model, zero_model, splits, alphas, predict)
        note = _consistency_note(seed_rows, _recorded_test_accuracy(seed_dir))
        for row in seed_rows:
            row.update(task=task, method=method, seed=seed, head_source=head_source,
                       note="; ".join(part for part in (row["note"], note) if part))
        rows += seed_rows
    write_csv_rows(out_csv, rows, WISE_FIELDS)
    return rows
