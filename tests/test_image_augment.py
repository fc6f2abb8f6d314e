"""Unit tests of hf_ssl.augment.image on small random batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hf_ssl.augment.image import RANDAUGMENT_OPS, ImageAugmenter
from hf_ssl.data.images import IMAGENET_MEAN, IMAGENET_STD

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
GRAY = 0.5


def normalised(n: int = 8, height: int = 32, width: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, height, width, generator=generator) - MEAN) / STD


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


@pytest.mark.parametrize("method", ["weak_tensor", "strong_tensor"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_and_dtype_kept(method, dtype):
    x = normalised(4, 24, 40).to(dtype)
    out = getattr(ImageAugmenter(), method)(x)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device


def test_empty_batch():
    x = normalised(0)
    assert ImageAugmenter().strong_tensor(x).shape == x.shape


def test_weak_without_flip_and_crop_is_identity_copy():
    x = normalised()
    out = ImageAugmenter(flip=False, crop_padding=0).weak_tensor(x)
    assert torch.equal(out, x) and out is not x


@pytest.mark.parametrize(("height", "width", "flip"), [(32, 32, True), (24, 40, True), (32, 32, False)])
def test_weak_is_a_flipped_reflect_padded_crop(height, width, flip):
    torch.manual_seed(1)
    x = normalised(8, height, width)
    crop_padding = 0.125
    out = ImageAugmenter(flip=flip, crop_padding=crop_padding).weak_tensor(x)
    pad_h, pad_w = round(crop_padding * height), round(crop_padding * width)
    seen = set()
    for i in range(len(x)):
        matches = []
        for flipped in (False, True) if flip else (False,):
            source = x[i:i + 1].flip(-1) if flipped else x[i:i + 1]
            padded = F.pad(source, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
            for top in range(2 * pad_h + 1):
                for left in range(2 * pad_w + 1):
                    if torch.equal(padded[..., top:top + height, left:left + width], out[i:i + 1]):
                        matches.append((flipped, top, left))
        assert matches, f"image {i} is not a flipped/shifted copy of its input"
        seen.add(matches[0])
    assert len(seen) > 1  # the flips and offsets are drawn per image
    if flip:
        assert {flipped for flipped, _, _ in seen} == {False, True}


def test_weak_preserves_pixel_statistics():
    torch.manual_seed(0)
    x = normalised(8, 32, 32)
    out = ImageAugmenter().weak_tensor(x)
    assert out.min() >= x.min() and out.max() <= x.max()  # only moves pixels around
    # At most 4 of 32 rows and columns are reflected copies, so the per-channel statistics barely move.
    torch.testing.assert_close(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.2, rtol=0)
    torch.testing.assert_close(out.std(dim=(2, 3)), x.std(dim=(2, 3)), atol=0.2, rtol=0)


def test_strong_differs_from_input():
    torch.manual_seed(0)
    x = normalised()
    out = ImageAugmenter().strong_tensor(x)
    assert ((out - x).abs().flatten(1).mean(1) > 0.05).all()


@pytest.mark.parametrize("kwargs", [{}, {"randaugment_n": len(RANDAUGMENT_OPS), "randaugment_m": 30},
                                    {"randaugment_n": 3, "randaugment_m": 0}, {"cutout": 1.0}])
def test_strong_stays_in_the_normalised_unit_range(kwargs):
    torch.manual_seed(0)
    x = normalised(16, 28, 28)
    augmenter = ImageAugmenter(**kwargs)
    out = augmenter.strong_tensor(x)
    images = unnormalise(out)
    assert torch.isfinite(out).all()
    assert images.min() >= -1e-5 and images.max() <= 1 + 1e-5


def test_strong_without_operations_is_identity_up_to_rounding():
    x = normalised()
    augmenter = ImageAugmenter(flip=False, crop_padding=0, randaugment_n=0, cutout=0)
    torch.testing.assert_close(augmenter.strong_tensor(x), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("height", "width", "cutout", "side"), [(32, 32, 0.25, 8), (24, 40, 0.5, 12)])
def test_cutout_is_one_gray_square_per_image(height, width, cutout, side):
    torch.manual_seed(0)
    x = normalised(8, height, width)
    out = ImageAugmenter(flip=False, crop_padding=0, randaugment_n=0, cutout=cutout).strong_tensor(x)
    images, original = unnormalise(out), unnormalise(x)
    gray = (images - GRAY).abs().amax(dim=1) < 1e-5  # (n, H, W): all three channels are gray
    corners = set()
    for i in range(len(x)):
        rows, cols = gray[i].nonzero(as_tuple=True)
        assert len(rows) == side * side
        top, left = int(rows.min()), int(cols.min())
        assert int(rows.max()) - top == side - 1 and int(cols.max()) - left == side - 1
        corners.add((top, left))
        outside = ~gray[i]
        torch.testing.assert_close(images[i][:, outside], original[i][:, outside], atol=1e-5, rtol=0)
    assert len(corners) > 1  # placed at random per image


def test_cutout_zero_leaves_images():
    x = normalised()
    out = ImageAugmenter(flip=False, crop_padding=0, randaugment_n=0, cutout=0).strong_tensor(x)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["weak_tensor", "strong_tensor"])
def test_reproducible_under_manual_seed(method):
    x = normalised()
    augmenter = ImageAugmenter()
    torch.manual_seed(123)
    first = getattr(augmenter, method)(x)
    torch.manual_seed(123)
    second = getattr(augmenter, method)(x)
    third = getattr(augmenter, method)(x)
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_batch_dicts_pass_other_keys_and_do_not_modify_inputs():
    x = normalised()
    labels = torch.arange(8)
    batch = {"pixel_values": x, "labels": labels}
    before = x.clone()
    augmenter = ImageAugmenter()
    for view in (augmenter.weak, augmenter.strong):
        out = view(batch)
        assert out is not batch and set(out) == {"pixel_values", "labels"}
        assert out["labels"] is labels and out["pixel_values"] is not x
        assert batch["pixel_values"] is x and torch.equal(x, before)
    ImageAugmenter(flip=False, crop_padding=0).weak(batch)["pixel_values"].add_(1)
    assert torch.equal(x, before)


@pytest.mark.parametrize(("shape", "expected"), [((3, 32, 32), "3-D"), ((4, 1, 32, 32), "got 1 channels"),
                                                 ((4, 4, 32, 32), "got 4 channels"), ((32, 32), "2-D")])
@pytest.mark.parametrize("view", ["weak", "strong"])
def test_wrong_shape_raises_naming_pixel_values(shape, expected, view):
    with pytest.raises(ValueError, match="pixel_values") as info:
        getattr(ImageAugmenter(), view)({"pixel_values": torch.zeros(shape)})
    assert expected in str(info.value) and "to_pixel_values" in str(info.value)


def test_other_bad_inputs_raise():
    augmenter = ImageAugmenter()
    with pytest.raises(ValueError, match="pixel_values"):
        augmenter.strong({"input_ids": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="floating-point"):
        augmenter.weak({"pixel_values": torch.zeros(2, 3, 8, 8, dtype=torch.uint8)})
    with pytest.raises(TypeError, match="pixel_values"):
        augmenter.weak_tensor([[0.0]])


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"mean": (0.5, 0.5)}, "mean"), ({"mean": 0.5}, "mean"), ({"std": (0.2, 0.2, 0.2, 0.2)}, "std"),
    ({"std": (0.2, 0.0, 0.2)}, "std"), ({"std": (0.2, float("nan"), 0.2)}, "std"),
    ({"crop_padding": -0.1}, "crop_padding"), ({"crop_padding": 0.6}, "crop_padding"),
    ({"cutout": 1.5}, "cutout"), ({"cutout": -0.5}, "cutout"), ({"randaugment_n": -1}, "randaugment_n"),
    ({"randaugment_n": 1.5}, "randaugment_n"), ({"randaugment_n": len(RANDAUGMENT_OPS) + 1}, "randaugment_n"),
    ({"randaugment_m": -1}, "randaugment_m"), ({"randaugment_m": 31}, "randaugment_m"),
])
def test_bad_constructor_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ImageAugmenter(**kwargs)


def test_boundary_arguments_work():
    x = normalised(2, 16, 16)
    for kwargs in ({"crop_padding": 0.5}, {"cutout": 1.0}, {"randaugment_m": 0}, {"randaugment_m": 30},
                   {"randaugment_n": 0}, {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}):
        assert ImageAugmenter(**kwargs).strong_tensor(x).shape == x.shape
