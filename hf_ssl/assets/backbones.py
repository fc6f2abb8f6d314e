"""The packaged offline image backbones by name, as the recipes and benchmarks offer them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hf_ssl.assets.dinov2 import dinov2_path
from hf_ssl.assets.efficientnet_lite import efficientnet_lite2_path

IMAGE_BACKBONES: dict[str, Callable[[], Path]] = {
    "dinov2-s": dinov2_path,
    "efficientnet-lite2": efficientnet_lite2_path,
}
"""Name -> function returning the converted model folder (`from_pretrained` loads it offline after
``import hf_ssl``): DINOv2 ViT-S/14 and the ImageNet-1k EfficientNet-Lite2."""


def image_backbone_path(name: str) -> Path:
    """Folder of the packaged image backbone ``name`` (a key of `IMAGE_BACKBONES`), converted on first use.

    Raises:
        ValueError: for an unknown name, listing the choices.
    """
    if name not in IMAGE_BACKBONES:
        raise ValueError(f"unknown image backbone {name!r}; choose one of {', '.join(IMAGE_BACKBONES)}")
    return IMAGE_BACKBONES[name]()
