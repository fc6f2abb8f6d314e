"""When to (re)build a graph over the model's embeddings: one rule shared by the trainers that do it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

__all__ = ["EpochSchedule", "due_epoch", "epochs_started"]


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


def epochs_started(args: Any, n_rows: int) -> int:
    """How many epochs `Trainer.train` starts (the last one possibly partial) over a labeled pool of ``n_rows``.

    Parameters:
        args (`TrainingArguments`): ``max_steps`` (when > 0) or ``num_train_epochs``, batch size, processes,
            gradient accumulation and ``dataloader_drop_last``.
        n_rows (`int`): rows of the labeled pool.
    """
    if args.max_steps <= 0:
        return math.ceil(args.num_train_epochs)
    per_batch = args.train_batch_size * args.world_size
    batches = n_rows // per_batch if args.dataloader_drop_last else math.ceil(n_rows / per_batch)
    steps_per_epoch = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
    return math.ceil(args.max_steps / steps_per_epoch)


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
