"""``peftlab clip-head``: CLIP's zero-shot head for timm's CLIP image encoder, from a tiny random open_clip
model saved to a file. The head is held against a hand computation of CLIP's zero-shot recipe (each
template's text embedding normalised, averaged, normalised again; times the image projection and the logit
scale) and, on timm's encoder loaded from the same file, against open_clip's own zero-shot logits."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from tiny_open_clip import TIMM_TINY, TINY_CLIP, make_tiny_clip, register_tiny_clip

from peftlab.backbones import create_backbone
from peftlab.cli import build_parser
from peftlab.cli import main as peftlab_main
from peftlab.io import save_tensors, sha256_file
from peftlab.training.heads import read_head
from peftlab.zeroshot import IMAGENET_CLASSNAMES, IMAGENET_TEMPLATES
from peftlab.zeroshot.clip_head import build_clip_head
from peftlab.zeroshot.prompts import read_class_names, read_templates

CLIP = "vit_base_patch16_clip_quickgelu_224.openai"
CLASSES = ["sunglasses", "goldfish", "sunglasses"]  # a name may occur twice (ImageNet's do): a line, a class
TEMPLATES = ["a photo of a {}.", "itap of a {}.", "a drawing of the {}."]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The tiny CLIP, its config JSON, its checkpoint file and a class-name and a template file."""
    directory = tmp_path_factory.mktemp("clip_head")
    config = register_tiny_clip(directory)
    model = make_tiny_clip()
    checkpoint = directory / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), checkpoint)
    classes = directory / "classes.txt"
    classes.write_text("# three classes\n" + "\n".join(CLASSES) + "\n\n")
    templates = directory / "templates.txt"
    templates.write_text("\n".join(TEMPLATES) + "\n")
    return {"model": model, "config": config, "checkpoint": checkpoint, "classes": classes,
            "templates": templates}


@torch.no_grad()
def hand_text_embeddings(model: torch.nn.Module) -> torch.Tensor:
    """T [classes, 512]: per class, each filled template's text embedding normalised, averaged, normalised."""
    tokenizer = open_clip.get_tokenizer(TINY_CLIP)
    rows = []
    for name in CLASSES:
        prompts = [template.replace("{}", name) for template in TEMPLATES]
        embeddings = model.encode_text(tokenizer(prompts)).double()
        mean = (embeddings / embeddings.norm(dim=1, keepdim=True)).mean(dim=0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)


def run_clip_head(clip, out, *extra) -> int:
    return peftlab_main(["clip-head", "--checkpoint", str(clip["checkpoint"]),
                         "--classes", str(clip["classes"]), "--templates", str(clip["templates"]),
                         "--model", str(clip["config"]), "--out", str(out), "--device", "cpu", *extra])


def test_head_is_the_hand_computed_zero_shot_classifier_times_the_projection(clip, tmp_path):
    out = tmp_path / "zeroshot_head.safetensors"
    assert run_clip_head(clip, out) == 0
    model = clip["model"]
    scale = model.logit_scale.detach().exp().double()
    expected = scale * hand_text_embeddings(model) @ model.visual.proj.detach().double().T
    head = read_head(out, num_classes=3, in_features=32)  # the reader training and WiSE-FT use
    torch.testing.assert_close(head["head.weight"].double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(head["head.bias"], torch.zeros(3))

    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["checkpoint"]["sha256"] == sha256_file(clip["checkpoint"])
    assert sidecar["head"]["sha256"] == sha256_file(out) and sidecar["head"]["weight"] == [3, 32]
    assert sidecar["templates"]["templates"] == TEMPLATES and sidecar["classes"]["count"] == 3
    assert sidecar["open_clip"]["model"] == TINY_CLIP
    assert sidecar["logit_scale"] == {"value": pytest.approx(float(scale)),
                                      "source": "exp(logit_scale) of the checkpoint"}
    assert sidecar["provenance"]["device"] == "cpu"


def test_logit_scale_can_be_set(clip, tmp_path):
    default, unscaled = tmp_path / "default.safetensors", tmp_path / "unscaled.safetensors"
    assert run_clip_head(clip, default) == 0 and run_clip_head(clip, unscaled, "--logit-scale", "1") == 0
    scale = float(clip["model"].logit_scale.detach().exp())
    torch.testing.assert_close(read_head(unscaled)["head.weight"] * scale, read_head(default)["head.weight"])
    assert json.loads(unscaled.with_suffix(".json").read_text())["logit_scale"]["source"] == "--logit-scale"


def test_timms_encoder_with_the_head_predicts_what_clip_predicts_zero_shot(clip, tmp_path):
    out = tmp_path / "head.safetensors"
    build_clip_head(clip["checkpoint"], clip["classes"], clip["templates"], out,
                    model_name=str(clip["config"]), device="cpu")
    encoder = create_backbone(CLIP, weights=clip["checkpoint"], num_classes=3, **TIMM_TINY).eval()
    encoder.head.load_state_dict({key.removeprefix("head."): value for key, value in read_head(out).items()})
    images = torch.randn(6, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    model = clip["model"]
    with torch.no_grad():
        logits = encoder(images).double()
        image = model.encode_image(images).double()  # x P, before CLIP normalises it
    text = hand_text_embeddings(model)
    zero_shot = model.logit_scale.exp().double() * (image / image.norm(dim=1, keepdim=True)) @ text.T
    # the head is CLIP's zero-shot classifier on the unnormalised embedding: logits = ||x P|| · CLIP's logits
    torch.testing.assert_close(logits, zero_shot * image.norm(dim=1, keepdim=True), rtol=1e-4, atol=1e-4)
    assert torch.equal(logits.argmax(dim=1), zero_shot.argmax(dim=1))


def _one_error_line(capsys) -> str:
    error = capsys.readouterr().err.strip()
    assert error.startswith("peftlab: error: ") and "\n" not in error
    return error


def test_a_missing_checkpoint_is_one_line(clip, tmp_path, capsys):
    missing = dict(clip, checkpoint=tmp_path / "nowhere.bin")
    assert run_clip_head(missing, tmp_path / "head.safetensors") == 2
    assert "nowhere.bin: open_clip checkpoint not found" in _one_error_line(capsys)
    assert not (tmp_path / "head.safetensors").exists()


@pytest.mark.parametrize("kind", ["other-architecture", "image-encoder-only"])
def test_a_mismatched_checkpoint_is_one_line(clip, tmp_path, capsys, kind):
    wrong = tmp_path / f"{kind}.bin"
    if kind == "other-architecture":  # another CLIP: a wider text tower
        register_tiny_clip(tmp_path, name="peftlab-tiny-clip-wide",
                           text_cfg={"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 2,
                                     "layers": 1})
        torch.save(make_tiny_clip("peftlab-tiny-clip-wide").state_dict(), wrong)
    else:  # timm's image encoder file: no text tower to embed the class names with
        save_tensors(wrong, create_backbone(CLIP, weights=clip["checkpoint"], **TIMM_TINY).state_dict())
    assert run_clip_head(dict(clip, checkpoint=wrong), tmp_path / "head.safetensors") == 2
    assert f"{wrong}: not a checkpoint of open_clip's {TINY_CLIP}" in _one_error_line(capsys)


def test_a_template_without_the_class_slot_is_named(clip, tmp_path, capsys):
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of a {}.\na photo of a class.\n")
    assert run_clip_head(dict(clip, templates=templates), tmp_path / "head.safetensors") == 2
    assert f"{templates}:2: a template holds '{{}}' exactly once" in _one_error_line(capsys)


def test_shipped_imagenet_files_are_clips_names_and_templates_and_the_defaults():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES as NAMES
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES as FILL

    assert read_class_names(IMAGENET_CLASSNAMES) == list(NAMES) and len(NAMES) == 1000
    templates = read_templates(IMAGENET_TEMPLATES)
    assert len(templates) == 80 and [t.format("x") for t in templates] == [fill("x") for fill in FILL]
    args = build_parser().parse_args(["clip-head", "--checkpoint", "c.bin", "--out", "h.safetensors"])
    assert (args.classes, args.templates, args.model) == (IMAGENET_CLASSNAMES, IMAGENET_TEMPLATES,
                                                          "ViT-B-16-quickgelu")


def test_the_tokenizer_is_offline():
    """OpenAI ViT-B/16's tokenizer is open_clip's SimpleTokenizer on the BPE vocabulary inside the package."""
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    tokenizer = open_clip.get_tokenizer("ViT-B-16-quickgelu")
    assert isinstance(tokenizer, SimpleTokenizer)
    assert default_bpe().startswith(str(open_clip.__path__[0]))
    assert tokenizer(["a photo of a goldfish."]).shape == (1, 77)
