"""When to (re)build a graph over the model's embeddings: one rule shared by the trainers that do it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

__all__ = ["EpochSchedule", "due_epoch"]


def due_epoch(state_epoch: float | None, start: float, every: int, last_done: int) -> int | None:
    """The whole epoch at whose start a build is due, or None.

    Parameters:
        state_epoch (`float` or `None`): `TrainerState.epoch` at the start of the epoch (`None` before training).
        start (`float`): first epoch with a build (a warm-up length; 0 to build before training).
        every (`int`): rebuild every this many epochs after ``start``; 0 builds once, at ``start``.
        last_done (`int`): epoch of the last build, -1 if none; builds already made (e.g. before a resume) are
            skipped.
    """
    epoch = math.floor((state_epoch or 0.0) + 1e-6)
    since_start = epoch - math.ceil(start)
    if since_start < 0 or epoch <= last_done:
        return None
    due = since_start == 0 if every == 0 else since_start % every == 0
    return epoch if due else None


class EpochSchedule(TrainerCallback):
    """Calls ``build(epoch)`` at the start of every epoch that `due_epoch` names.

    Parameters:
        build (`Callable[[int], Any]`): the trainer's build step, given the whole epoch.
        last_done (`Callable[[], int]`): returns the epoch of the last build (-1 if none); read at each epoch so
            resumes count.
        start (`float`): see `due_epoch`.
        every (`int`): see `due_epoch`.
    """

    def __init__(self, build: Callable[[int], Any], last_done: Callable[[], int], start: float, every: int) -> None:
        self.build, self.last_done, self.start, self.every = build, last_done, start, every

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch = due_epoch(state.epoch, self.start, self.every, self.last_done())
        if epoch is not None:
            self.build(epoch)
