"""The callbacks `ConsistencyTrainer` adds: the EMA teacher's update, the per-epoch records, slow-momentum warnings."""

from __future__ import annotations

from typing import Any

import torch
from accelerate.logging import get_logger
from transformers import TrainerCallback

from hf_ssl.methods.ema import float_buffers
from hf_ssl.trainer.consistency_config import ConsistencyConfig

logger = get_logger(__name__)

__all__ = ["EMAUpdate", "EpochRecord", "WarnSlowMomenta", "mean_over_processes", "slow_momentum_warnings"]


class EMAUpdate(TrainerCallback):
    """Moves the trainer's EMA teacher (``trainer.ema``) after every optimizer step. Under several processes the
    student's float buffers (batch-norm statistics, updated by each process's own rows) are averaged over the
    processes first, so the teacher is the same on every rank."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        buffers = mean_over_processes(self.trainer.accelerator, float_buffers(model)) if args.world_size > 1 else None
        self.trainer.ema.update(model, buffers)


def mean_over_processes(accelerator: Any, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` averaged over the processes, in one all-reduce (float32).

    Parameters:
        accelerator (`accelerate.Accelerator`): the trainer's accelerator.
        tensors (`dict[str, torch.Tensor]`): floating-point tensors, the same names and shapes on every process.
    """
    if not tensors:
        return {}
    flat = torch.cat([t.detach().float().flatten() for t in tensors.values()])
    flat = accelerator.reduce(flat, reduction="mean")
    sizes = [t.numel() for t in tensors.values()]
    return {name: chunk.view_as(t) for (name, t), chunk in zip(tensors.items(), flat.split(sizes), strict=True)}


class EpochRecord(TrainerCallback):
    """Closes the trainer's per-epoch unlabeled statistics (``trainer.close_epoch_record``) at each epoch end, and at
    the start of a run resumed from a checkpoint written at the last step of an epoch (before that epoch's end)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.epoch and float(state.epoch).is_integer():
            self.trainer.close_epoch_record(state.epoch)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.close_epoch_record(state.epoch or 0.0)


def slow_momentum_warnings(config: ConsistencyConfig, max_steps: int) -> list[str]:
    """Warnings for the running estimates whose momentum leaves them mostly at their starting value after the run.

    Parameters:
        config (`ConsistencyConfig`): the trainer's config; only the estimates it uses are checked.
        max_steps (`int`): optimizer steps of the run.
    """
    used = []
    if config.use_ema_teacher or config.eval_with_ema:
        used.append(("ema_decay", config.ema_decay, "the EMA teacher's targets (use_ema_teacher) and evaluation "
                     "(eval_with_ema) barely see the training"))
    if config.threshold_strategy in ("freematch", "softmatch"):
        used.append(("threshold_momentum", config.threshold_momentum, f"{config.threshold_strategy}'s confidence "
                     "estimates stay near 1/num_classes, so almost every unlabeled row passes"))
    if config.distribution_alignment:
        used.append(("alignment_momentum", config.alignment_momentum,
                     "distribution alignment barely sees the model's predictions"))
    warnings = []
    for name, momentum, effect in used:
        kept = momentum ** max_steps
        if kept > 0.5:
            warnings.append(f"{name}={momentum} over {max_steps} steps leaves {kept:.0%} of its estimate at the "
                            f"starting value: {effect}. For a run this short set e.g. "
                            f"{name}={max(0.0, 1 - 10 / max_steps):.3f}.")
    return warnings


class WarnSlowMomenta(TrainerCallback):
    """Warns at the start of training about `slow_momentum_warnings`."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for message in slow_momentum_warnings(args, state.max_steps):
            logger.warning(message, main_process_only=True)
