"""Small helpers every layer may use: numpy conversion and checks, BLAS threads, optional faiss, atomic text
writes."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import torch

__all__ = ["as_numpy", "as_real_matrix", "import_faiss", "single_threaded_blas", "write_text_atomic"]


def import_faiss() -> Any:
    """The faiss module, or None when it cannot be imported."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread (threadpoolctl, when installed): small vector operations in iterative solvers and
    k-means gain nothing from threads, and on a busy machine waking BLAS threads costs more than the work."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def as_numpy(a: Any) -> np.ndarray:
    """A numpy view of a numpy array, array-like or torch tensor."""
    if hasattr(a, "detach"):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:  # numpy has no bfloat16
            a = a.float()
        a = a.numpy()
    return np.asarray(a)


def as_real_matrix(a: Any, name: str) -> np.ndarray:
    """``a`` as a numpy (n, d) array of finite real numbers with n, d >= 1, or a ValueError naming ``name``.

    Parameters:
        a (`np.ndarray`, `torch.Tensor` or array-like):
            The matrix to check.
        name (`str`):
            The argument's name, for the error message.
    """
    a = as_numpy(a)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D (n, d) array with n >= 1 and d >= 1, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def write_text_atomic(folder: str, name: str, text: str) -> str:
    """Write ``text`` to ``folder/name`` through a temporary file and a rename; return the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)
    return path
