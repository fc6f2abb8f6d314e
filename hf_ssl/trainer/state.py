"""Saving and loading hf_ssl's own training state inside Trainer checkpoints."""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["SSL_STATE_NAME", "save_ssl_state", "load_ssl_state"]

SSL_STATE_NAME = "ssl_state.pt"


def save_ssl_state(folder: str, state: dict[str, Any]) -> str:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``folder/ssl_state.pt`` atomically."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, SSL_STATE_NAME)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_ssl_state(folder: str) -> dict[str, Any] | None:
    """Read the state written by `save_ssl_state` (``weights_only`` loading), or None if absent."""
    path = os.path.join(folder, SSL_STATE_NAME)
    if not os.path.exists(path):
        return None
    return torch.load(path, weights_only=True, map_location="cpu")
