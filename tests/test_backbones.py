"""``create_backbone``: the tiny registered ViTs, local weight files (.safetensors, .pth, original-ViT .npz),
the errors for missing files and for pretrained weights that would need a download, and the paper code's four
backbones from the files users have.

Each paper backbone (``PAPER_BACKBONES``) is written with random weights in its released file's layout and key
names and must give the same function as a reference built here: timm's model holding the same tensors, with
the position embedding resampled by hand where the paper code resamples it, or open_clip's own image tower.
Width and depth are shrunk with timm arguments (the conversions do not depend on them); the image geometry is
the real one, and the real ViT-B key layouts are converted on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from original_vit_npz import write_original_vit_npz
from timm.models.vision_transformer import Block
from tiny_open_clip import TIMM_TINY, make_tiny_clip, register_tiny_clip

from peftlab.backbones import (
    PAPER_BACKBONES,
    architecture,
    build_architecture,
    convert_state_dict,
    create_backbone,
    input_normalization,
    weights_sha256,
)
from peftlab.errors import PeftlabError
from peftlab.io import save_tensors, sha256_file
from peftlab.training.inputs import transform_for

NAME = "vit_mini_patch8_32"


def _assert_same_tensors(a: dict, b: dict, skip_head: bool = False) -> None:
    keys = [k for k in a if not (skip_head and k.startswith("head."))]
    assert keys and all(torch.equal(a[k], b[k]) for k in keys)


def test_tiny_models_are_registered():
    for name, tokens in (("vit_mini_patch8_32", 16), ("vit_mini_patch4_32", 64)):
        model = timm.create_model(name, num_classes=3)
        assert model.patch_embed.num_patches == tokens and model.embed_dim == 64 and len(model.blocks) == 6
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    fingerprint = architecture(timm.create_model(NAME))
    assert fingerprint["patch_size"] == [8, 8] and fingerprint["num_heads"] == 4 and fingerprint["global_pool"] == "token"


@pytest.fixture
def source(tiny_vit):
    """A tiny ViT with random weights (and a 7-class head) whose state the files below hold."""
    return tiny_vit(7, seed=3)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_load_exactly(tmp_path, source, suffix):
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".safetensors":
        save_tensors(path, source.state_dict())
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    same_head = create_backbone(NAME, weights=path)
    assert same_head.num_classes == 1000  # the model's default head: the file's 7-class head does not fit
    _assert_same_tensors(source.state_dict(), same_head.state_dict(), skip_head=True)

    reloaded = create_backbone(NAME, weights=path, num_classes=3)
    _assert_same_tensors(source.state_dict(), reloaded.state_dict(), skip_head=True)
    assert reloaded.head.weight.shape == (3, 64)
    assert reloaded.peftlab_backbone["weights_sha256"] == sha256_file(path) == weights_sha256(path)
    assert reloaded.peftlab_backbone["name"] == NAME


def test_head_is_kept_when_it_fits_and_no_num_classes_is_asked(tmp_path, tiny_vit):
    source = tiny_vit(None, seed=4)  # the model's default 1000-class head
    path = tmp_path / "backbone.safetensors"
    save_tensors(path, source.state_dict())
    _assert_same_tensors(source.state_dict(), create_backbone(NAME, weights=path).state_dict())


def test_original_vit_npz_loads_exactly(tmp_path, source):
    path = tmp_path / "ViT-mini.npz"
    write_original_vit_npz(source, path)
    model = create_backbone(NAME, weights=path, num_classes=3)
    _assert_same_tensors(source.state_dict(), model.state_dict(), skip_head=True)
    assert model.head.weight.shape == (3, 64)
    kept = create_backbone(NAME, weights=path, num_classes=7)
    assert not torch.equal(kept.head.weight, source.head.weight)  # num_classes given: a fresh head


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(PeftlabError, match="nowhere.safetensors"):
        create_backbone(NAME, weights=missing)


def test_mismatched_file_is_named(tmp_path):
    path = tmp_path / "other.safetensors"
    save_tensors(path, timm.create_model(NAME, embed_dim=32).state_dict())
    with pytest.raises(PeftlabError, match="other.safetensors"):
        create_backbone(NAME, weights=path)


@pytest.mark.parametrize("name, file", [("vit_base_patch16_224.orig_in21k", "ViT-B_16.npz"),
                                        ("vit_base_patch16_clip_224.openai", "timm/vit_base_patch16_clip_224.openai")])
def test_pretrained_without_a_file_says_what_to_put_where(name, file):
    with pytest.raises(PeftlabError) as error:
        create_backbone(name, pretrained=True)
    assert file in str(error.value) and "--weights" in str(error.value) and "backbone.weights" in str(error.value)


def test_unknown_name():
    with pytest.raises(PeftlabError, match="vit_nonexistent"):
        create_backbone("vit_nonexistent")


def test_meta_architecture_has_shapes_only():
    model = build_architecture("vit_base_patch16_224", num_classes=10)
    assert model.pos_embed.is_meta and model.head.out_features == 10
    assert model.peftlab_backbone["architecture"]["depth"] == 12


# ---- the paper code's backbones ---------------------------------------------------------------------------

IN21K = "vit_base_patch16_224.orig_in21k"
MAE = "vit_base_patch16_224.mae"
DINOV2 = "vit_base_patch14_dinov2.lvd142m"
CLIP = "vit_base_patch16_clip_quickgelu_224.openai"
CLIP_GELU = "vit_base_patch16_clip_224.openai"
SMALL = dict(embed_dim=32, depth=2, num_heads=2)  # timm arguments: the conversions do not depend on them

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
# The paper code's utils/global_var.py MEAN_STD_DICT, by its --pretrained_weights names.
PAPER_MEAN_STD = {"vit_base_patch16_224_in21k": IMAGENET, "vit_base_patch14_dinov2": IMAGENET,
                  "vit_base_mae": IMAGENET, "vit_base_patch16_clip_224": OPENAI_CLIP}


def _perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every tensor moved off timm's init (LayerNorms at 1/0 and layer scales at 1e-5 would hide a mix-up)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    return model.eval()


def _images(size: int = 224, count: int = 2) -> torch.Tensor:
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(5))


def _features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().forward_head(model.forward_features(images), pre_logits=True)


def _assert_same_function(model: torch.nn.Module, reference: torch.nn.Module, size: int = 224) -> None:
    images = _images(size)
    torch.testing.assert_close(_features(model, images), _features(reference, images), rtol=1e-5, atol=1e-5)


def test_every_paper_backbone_normalises_as_the_paper_code():
    paper = {entry.paper_name: name for name, entry in PAPER_BACKBONES.items() if entry.paper_name}
    assert set(paper) == set(PAPER_MEAN_STD)
    for paper_name, name in paper.items():
        transform = transform_for(build_architecture(name, **SMALL), True, "cpu")
        mean, std = PAPER_MEAN_STD[paper_name]
        assert transform.mean == pytest.approx(mean) and transform.std == pytest.approx(std), name
    # ImageNet-21k: timm's pretrained_cfg says Google's 0.5/0.5; the paper code normalises with ImageNet's
    assert timm.create_model(IN21K, pretrained=False, **SMALL).pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert input_normalization(timm.create_model(IN21K, pretrained=False, **SMALL)) == IMAGENET
    assert input_normalization(build_architecture(CLIP_GELU, **SMALL)) == OPENAI_CLIP


def test_other_backbones_keep_timms_normalisation():
    assert input_normalization(build_architecture(NAME)) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_the_table_sets_the_architecture():
    dinov2 = build_architecture(DINOV2, **SMALL)
    assert dinov2.pos_embed.shape == (1, 1 + 16 * 16, 32) and dinov2.patch_embed.patch_size == (14, 14)
    assert type(dinov2.blocks[0].ls1).__name__ == "LayerScale"
    assert type(build_architecture(CLIP, **SMALL).blocks[0].mlp.act).__name__ == "QuickGELU"
    for name in (IN21K, MAE, DINOV2, CLIP):  # the paper code's pooling: class token after the final norm
        model = build_architecture(name, **SMALL)
        assert model.global_pool == "token" and isinstance(model.fc_norm, torch.nn.Identity), name


def test_imagenet21k_from_the_original_npz(tmp_path):
    reference = _perturbed(timm.create_model(IN21K, pretrained=False, num_classes=21843, **SMALL))
    path = tmp_path / "ViT-B_16.npz"
    write_original_vit_npz(reference, path, pre_logits=True)
    model = create_backbone(IN21K, weights=path, num_classes=10, **SMALL)
    _assert_same_function(model, reference)
    assert model.head.out_features == 10
    assert model.peftlab_backbone["weights_sha256"] == sha256_file(path)


def test_an_npz_of_another_resolution_or_depth_is_not_loaded(tmp_path):
    at_384 = tmp_path / "ViT-B_16.npz"  # the ImageNet-1k fine-tuned 384-px file has the same name
    write_original_vit_npz(timm.create_model(IN21K, pretrained=False, img_size=384, **SMALL), at_384)
    with pytest.raises(PeftlabError, match=r"ViT-B_16.npz: position embedding for 24x24"):
        create_backbone(IN21K, weights=at_384, num_classes=10, **SMALL)
    deeper = tmp_path / "deeper.npz"
    write_original_vit_npz(timm.create_model(IN21K, pretrained=False, **dict(SMALL, depth=3)), deeper)
    with pytest.raises(PeftlabError, match=r"deeper.npz: 3 encoder blocks"):
        create_backbone(IN21K, weights=deeper, num_classes=10, **SMALL)
    with pytest.raises(PeftlabError, match=r"ViT-B_16.npz: .*not loaded from an original-ViT .npz"):
        create_backbone(CLIP, weights=at_384, num_classes=10, **SMALL)


def _mae_decoder(dim: int, decoder_dim: int = 16, depth: int = 1) -> dict[str, torch.Tensor]:
    """The decoder keys of facebookresearch/mae's MaskedAutoencoderViT (models_mae.py), 224 px, 16 px patches:
    mask_token, decoder_embed, decoder_pos_embed, decoder_blocks (timm Blocks), decoder_norm, decoder_pred."""
    state = {"mask_token": torch.randn(1, 1, decoder_dim),
             "decoder_embed.weight": torch.randn(decoder_dim, dim),
             "decoder_embed.bias": torch.randn(decoder_dim),
             "decoder_pos_embed": torch.randn(1, 197, decoder_dim),
             "decoder_norm.weight": torch.randn(decoder_dim), "decoder_norm.bias": torch.randn(decoder_dim),
             "decoder_pred.weight": torch.randn(16 * 16 * 3, decoder_dim),
             "decoder_pred.bias": torch.randn(16 * 16 * 3)}
    for index in range(depth):
        for key, value in Block(decoder_dim, num_heads=2, qkv_bias=True).state_dict().items():
            state[f"decoder_blocks.{index}.{key}"] = value
    return state


@pytest.mark.parametrize("with_decoder", [False, True], ids=["released-encoder", "pretraining-checkpoint"])
def test_mae_from_its_checkpoint(tmp_path, with_decoder):
    reference = _perturbed(timm.create_model(MAE, pretrained=False, **SMALL))  # MAE's encoder: timm's names
    state = dict(reference.state_dict(), **(_mae_decoder(SMALL["embed_dim"]) if with_decoder else {}))
    path = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save({"model": state}, path)
    _assert_same_function(create_backbone(MAE, weights=path, num_classes=10, **SMALL), reference)


def _hand_resampled_position_embedding(pos_embed: torch.Tensor, old: int, new: int) -> torch.Tensor:
    """The class token's embedding, then the old×old grid resized to new×new (bicubic, antialiased): what
    timm's checkpoint_filter_fn does when the paper code loads DINOv2 at 224 px."""
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, old, old, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", antialias=True, align_corners=False)
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, new * new, dim)], dim=1)


@pytest.mark.parametrize("layout", ["dinov2", "timm"])
def test_dinov2_at_224_px_from_the_518_px_file(tmp_path, layout):
    released = _perturbed(timm.create_model(DINOV2, pretrained=False, img_size=518, **SMALL))
    state = dict(released.state_dict())
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 32)
    if layout == "dinov2":  # facebookresearch/dinov2's state dict: timm's names plus the iBOT mask token
        path = tmp_path / "dinov2_vitb14_pretrain.pth"
        torch.save(dict(state, mask_token=torch.randn(1, 32)), path)
    else:
        path = tmp_path / "model.safetensors"
        save_tensors(path, state)
    model = create_backbone(DINOV2, weights=path, num_classes=10, **SMALL)
    assert model.patch_embed.grid_size == (16, 16)

    reference = timm.create_model(DINOV2, pretrained=False, img_size=224, **SMALL)
    position = _hand_resampled_position_embedding(state["pos_embed"], 37, 16)
    reference.load_state_dict(dict(state, pos_embed=position))
    torch.testing.assert_close(model.pos_embed.detach(), position, rtol=1e-5, atol=1e-6)
    _assert_same_function(model, reference)


@pytest.fixture(scope="module")
def open_clip_file(tmp_path_factory):
    """A tiny random open_clip CLIP (ViT-B/16 geometry, QuickGELU) saved as open_clip_pytorch_model.bin."""
    directory = tmp_path_factory.mktemp("open_clip")
    register_tiny_clip(directory)
    clip = make_tiny_clip()
    path = directory / "open_clip_pytorch_model.bin"
    torch.save(clip.state_dict(), path)
    return clip, path


def test_clip_image_encoder_from_open_clips_file_is_open_clips_image_tower(open_clip_file, tmp_path):
    clip, path = open_clip_file
    images = _images()
    with torch.no_grad():
        expected = clip.encode_image(images)  # the projected (512-d) image embedding, before normalisation
    model = create_backbone(CLIP, weights=path, **TIMM_TINY).eval()  # keeps its 512-d head: visual.proj
    with torch.no_grad():
        torch.testing.assert_close(model(images), expected, rtol=1e-5, atol=1e-5)

    timm_layout = tmp_path / "model.safetensors"  # timm's file of the same weights
    save_tensors(timm_layout, model.state_dict())
    with torch.no_grad():
        again = create_backbone(CLIP, weights=timm_layout, **TIMM_TINY).eval()(images)
    torch.testing.assert_close(again, expected, rtol=1e-5, atol=1e-5)

    with pytest.warns(UserWarning, match="QuickGELU"):
        gelu = create_backbone(CLIP_GELU, weights=path, **TIMM_TINY).eval()
    with torch.no_grad():
        assert not torch.allclose(gelu(images), expected, atol=1e-4)  # GELU is not what CLIP computes


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore:'torch.load' received a zip file")
def test_openais_torchscript_archive_is_named_with_its_conversion(tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(PeftlabError, match=r"ViT-B-16.pt: a TorchScript archive.*state_dict"):
        create_backbone(CLIP, weights=path, **TIMM_TINY)


def test_a_file_of_another_backbone_is_named(tmp_path):
    mae = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save({"model": timm.create_model(MAE, pretrained=False, **SMALL).state_dict()}, mae)
    with pytest.raises(PeftlabError, match=r"mae_pretrain_vit_base.pth: position embedding for 14x14 .* "
                                           r"expects 37x37"):
        create_backbone(DINOV2, weights=mae, num_classes=10, **SMALL)
    with pytest.raises(PeftlabError, match=r"mae_pretrain_vit_base.pth: weights do not match .*missing "
                                           r"\['blocks.2.norm1.weight'.* vit_base_patch16_224.mae reads "):
        create_backbone(MAE, weights=mae, num_classes=10, **dict(SMALL, depth=3))


def _real_layout(name: str) -> tuple[str, dict[str, torch.Tensor]]:
    """The released file's name and its real ViT-B tensors as meta tensors (shapes only)."""
    with torch.device("meta"):
        if name == CLIP:
            import open_clip
            from open_clip.factory import get_model_config

            clip = open_clip.CLIP(**get_model_config("ViT-B-16-quickgelu"))
            return "open_clip_pytorch_model.bin", clip.state_dict()
        if name == DINOV2:
            state = timm.create_model(DINOV2, pretrained=False, img_size=518).state_dict()
            return "dinov2_vitb14_pretrain.pth", dict(state, mask_token=torch.empty(1, 768))
        state = timm.create_model(MAE, pretrained=False).state_dict()
        decoder = {key: torch.empty(value.shape) for key, value in _mae_decoder(768, 512, depth=8).items()}
        return "mae_pretrain_vit_base.pth", dict(state, **decoder)


@pytest.mark.parametrize("name", [CLIP, DINOV2, MAE])
def test_the_real_vit_b_layouts_convert_to_the_paper_architecture(name):
    file_name, state = _real_layout(name)
    model = build_architecture(name)
    converted = convert_state_dict(model, state, Path(file_name), entry=PAPER_BACKBONES[name])
    own = model.state_dict()
    assert set(converted) == set(own)
    assert all(converted[key].shape == own[key].shape for key in own)
    if name == CLIP:  # CLIP's image projection becomes timm's 512-d head
        assert converted["head.weight"].shape == (512, 768)
    if name == DINOV2:
        assert converted["pos_embed"].shape == (1, 257, 768)
