"""Per-batch input conversion, predict_logits and the pretraining augmentation."""

import pytest
import timm
import torch

from peftlab.training.augment import RandomCropFlip
from peftlab.training.evaluate import predict_logits, score
from peftlab.training.inputs import InputTransform, to_model_input


def uint8_images(count: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_to_model_input_scales_to_unit_range_without_mean_std():
    images = uint8_images()
    assert torch.allclose(to_model_input(images), images.float() / 255)


def test_to_model_input_normalises_with_mean_std():
    images = uint8_images()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(to_model_input(images, mean, std), expected, atol=1e-5)


def test_transform_rejects_float_input():
    with pytest.raises(TypeError):
        InputTransform()(torch.zeros(1, 3, 2, 2))


def tiny_vit(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                             num_classes=num_classes)


def test_predict_logits_equals_the_model_on_converted_images():
    model, images = tiny_vit(), uint8_images(10)
    logits = predict_logits(model, images, batch_size=4, device="cpu", normalize=False)
    model.eval()
    with torch.no_grad():
        expected = model(images.float() / 255)
    assert logits.dtype == torch.float32 and logits.shape == (10, 3)
    assert torch.allclose(logits, expected, atol=1e-5)


def test_score_on_a_class_subset_uses_only_its_logits():
    logits = torch.tensor([[9.0, 1.0, 0.0, 2.0], [9.0, 0.0, 3.0, 1.0]])
    labels = torch.tensor([3, 2])
    full, subset = score(logits, labels), score(logits, labels, torch.tensor([2, 3]))
    assert full.accuracy == 0.0
    assert subset.accuracy == 1.0


def test_crop_flip_is_identity_without_padding_or_flip_and_seeded_otherwise():
    images = uint8_images(5)
    assert torch.equal(RandomCropFlip(0, torch.Generator().manual_seed(0), flip=False)(images), images)
    first = RandomCropFlip(4, torch.Generator().manual_seed(1))(images)
    again = RandomCropFlip(4, torch.Generator().manual_seed(1))(images)
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert torch.equal(first, again)
    assert not torch.equal(first, images)


def test_crop_flip_can_mirror_an_image():
    images = uint8_images(64)
    out = RandomCropFlip(0, torch.Generator().manual_seed(0))(images)
    mirrored = [torch.equal(out[i], images[i].flip(-1)) for i in range(64)]
    unchanged = [torch.equal(out[i], images[i]) for i in range(64)]
    assert any(mirrored) and any(unchanged) and all(m or u for m, u in zip(mirrored, unchanged, strict=True))
