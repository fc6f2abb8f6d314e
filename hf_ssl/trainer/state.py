"""hf_ssl's own training state inside Trainer checkpoints, and which checkpoints are complete enough to resume."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import torch
from transformers.trainer import TRAINER_STATE_NAME

from hf_ssl.utils import write_file_atomic

__all__ = ["SSL_STATE_NAME", "checkpoint_folders", "incomplete_reason", "load_ssl_state", "read_ssl_state",
           "save_ssl_state"]

SSL_STATE_NAME = "ssl_state.pt"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def save_ssl_state(folder: str, state: dict[str, Any]) -> str:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``folder/ssl_state.pt`` atomically."""
    return write_file_atomic(os.path.join(folder, SSL_STATE_NAME), lambda handle: torch.save(state, handle))


def load_ssl_state(folder: str) -> dict[str, Any] | None:
    """Read the state written by `save_ssl_state` (``weights_only`` loading), or None if absent."""
    path = os.path.join(folder, SSL_STATE_NAME)
    if not os.path.exists(path):
        return None
    return torch.load(path, weights_only=True, map_location="cpu")


def read_ssl_state(checkpoint: str, trainer_name: str) -> dict[str, Any]:
    """The hf_ssl state of the checkpoint folder ``checkpoint``, or a ValueError saying why there is none.

    Parameters:
        checkpoint (`str`): the ``resume_from_checkpoint`` folder.
        trainer_name (`str`): the resuming trainer's class name, for the message.
    """
    if not os.path.isdir(checkpoint):
        what = "is a file, not a checkpoint folder" if os.path.exists(checkpoint) else "does not exist"
        raise ValueError(f"resume_from_checkpoint={checkpoint!r} {what}. Pass a checkpoint folder of this run "
                         "(output_dir/.../checkpoint-N), or resume_from_checkpoint=True for the latest complete one.")
    state = load_ssl_state(checkpoint)
    if state is None:
        raise ValueError(f"{checkpoint} holds no hf_ssl state ({SSL_STATE_NAME}): it was not written by an hf_ssl "
                         f"trainer (a plain transformers.Trainer checkpoint?). A {trainer_name} resumes only from its "
                         "own checkpoints: pass one of this run, or train without resume_from_checkpoint.")
    return state


def incomplete_reason(checkpoint: str) -> str | None:
    """Why the checkpoint folder ``checkpoint`` cannot be resumed from (its write was interrupted), or None when it is
    complete: hf_ssl writes ``ssl_state.pt`` first and the Trainer writes ``trainer_state.json`` last."""
    if not os.path.exists(os.path.join(checkpoint, SSL_STATE_NAME)):
        return f"{SSL_STATE_NAME} is missing"
    path = os.path.join(checkpoint, TRAINER_STATE_NAME)
    if not os.path.exists(path):
        return f"{TRAINER_STATE_NAME} is missing"
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    except (OSError, ValueError) as error:
        return f"{TRAINER_STATE_NAME} cannot be read ({error})"
    return None


def checkpoint_folders(folder: str) -> list[str]:
    """The ``checkpoint-N`` folders directly under ``folder``, highest N first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m[1]), os.path.join(folder, name)) for name in os.listdir(folder)
             if (m := _CHECKPOINT.fullmatch(name)) and os.path.isdir(os.path.join(folder, name))]
    return [path for _, path in sorted(found, reverse=True)]
