"""On-disk cache of `encode`'s arrays: a key from the model, its weights, the processing class, the settings and
the dataset's fingerprint, and an atomic write."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["cache_key", "processing_fingerprint", "save_atomic", "weights_fingerprint"]

_WEIGHT_SAMPLE = 1024  # elements hashed per parameter tensor for the weight fingerprint
_SUM_CHUNK = 1 << 20  # elements per chunk when summing a tensor for the weight fingerprint


def weights_fingerprint(model: torch.nn.Module) -> str:
    """Hash of every parameter's and buffer's name, shape and dtype, a strided sample of its values and the exact
    float64 sum of all its values (numpy sums in fixed chunks, so the result does not depend on thread counts)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // _WEIGHT_SAMPLE)
            total = sum(float(flat[i:i + _SUM_CHUNK].to("cpu", torch.float64).numpy().sum())
                        for i in range(0, flat.numel(), _SUM_CHUNK))
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:{total.hex()}".encode())
            digest.update(flat[::step][:_WEIGHT_SAMPLE].to("cpu", torch.float64).numpy().tobytes())
    return digest.hexdigest()


def processing_fingerprint(processing_class: Any) -> str | None:
    """Hash of a tokenizer's full definition (fast tokenizers) or vocabulary, or of an image processor's settings."""
    if processing_class is None:
        return None
    tokenizer = getattr(processing_class, "tokenizer", processing_class)  # a processor's tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        definition = json.loads(backend.to_str())
        for transient in ("truncation", "padding"):  # set by each call, not part of the tokenizer's identity
            definition.pop(transient, None)
        text = json.dumps(definition, sort_keys=True)
    elif hasattr(tokenizer, "get_vocab"):
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    elif hasattr(processing_class, "to_json_string"):
        text = processing_class.to_json_string()
    else:
        text = repr(processing_class)
    extra = f"{type(processing_class).__qualname__}:{getattr(tokenizer, 'pad_token_id', None)}"
    return hashlib.sha256((extra + text).encode()).hexdigest()


def cache_key(model: Any, dataset: Any, settings: dict[str, Any], processing_class: Any) -> str:
    """Key of the cached array: model class, config, weights, settings, processing class and dataset fingerprint."""
    config = getattr(model, "config", None)
    parts = {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": config.to_json_string(use_diff=False) if hasattr(config, "to_json_string") else repr(config),
        "weights": weights_fingerprint(model),
        "processing": processing_fingerprint(processing_class),
        "settings": settings,
        "dataset": getattr(dataset, "_fingerprint", None),
        "rows": len(dataset),
    }
    if parts["dataset"] is None:
        raise ValueError("cache_dir needs a datasets.Dataset with a fingerprint")
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def save_atomic(path: Path, array: np.ndarray) -> None:
    """Write array to a temporary .npy in the same folder, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions of a new file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
