"""An exponential-moving-average (EMA) teacher over a model's trainable parameters and float buffers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["EMATeacher", "float_buffers"]


def float_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's floating-point buffers by name (batch-norm running statistics, ...); integer buffers such as
    ``num_batches_tracked`` or ``position_ids`` are left out.

    Parameters:
        model (`nn.Module`): the model.
    """
    return {name: b for name, b in model.named_buffers() if b.is_floating_point()}


@contextmanager
def running_stats_normalization(model: nn.Module) -> Iterator[None]:
    """Put every normalisation layer that tracks running statistics (batch norm, instance norm with
    ``track_running_stats``) in eval mode for the block, so it normalises with its running statistics and updates
    none of them; every other module (dropout, ...) keeps its mode.

    Parameters:
        model (`nn.Module`): the model.
    """
    switched = [m for m in model.modules() if m.training and getattr(m, "track_running_stats", False)]
    for module in switched:
        module.training = False
    try:
        yield
    finally:
        for module in switched:
            module.training = True


class EMATeacher:
    """EMA copies of the trainable parameters and of the floating-point buffers (frozen weights, e.g. under LoRA,
    and integer buffers are shared with the student).

    The teacher runs the student's module with the EMA tensors swapped in through `torch.func.functional_call`, so
    no second model is kept in memory. Buffers are averaged like the parameters (as timm's ``ModelEmaV2`` and EMAN,
    Cai et al. 2021, do), and the teacher's normalisation layers always normalise with these EMA running statistics
    (eval mode for those layers only, dropout keeps the model's mode): the teacher is the same function in training
    and in evaluation, and a teacher call never changes the student's buffers.

    Args:
        model: the (unwrapped) student model.
        decay: EMA decay; the effective decay warms up as min(decay, (1 + t) / (10 + t)).

    Attributes:
        shadow (`dict[str, torch.Tensor]`): the EMA parameters, by parameter name.
        shadow_buffers (`dict[str, torch.Tensor]`): the EMA floating-point buffers, by buffer name.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }
        self.shadow_buffers: dict[str, torch.Tensor] = {
            name: b.detach().clone() for name, b in float_buffers(model).items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module, buffers: dict[str, torch.Tensor] | None = None) -> None:
        """Move the shadow parameters and buffers towards the student's current ones.

        Parameters:
            model (`nn.Module`): the student.
            buffers (`dict[str, torch.Tensor]` or `None`, *optional*, defaults to `None`): the float buffers to
                average in instead of the model's own (e.g. their mean over processes, whose batch-norm statistics
                differ); `None`: ``float_buffers(model)``.
        """
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach().to(self.shadow[name].dtype), 1 - decay)
        for name, b in (float_buffers(model) if buffers is None else buffers).items():
            if name in self.shadow_buffers:
                self.shadow_buffers[name].lerp_(b.detach().to(self.shadow_buffers[name].dtype), 1 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def __call__(self, model: nn.Module, inputs: dict[str, Any]) -> Any:
        """The teacher's outputs on ``inputs`` (no gradient; the student's parameters and buffers are untouched)."""
        with running_stats_normalization(model):
            return functional_call(model, (self.shadow, self.shadow_buffers), args=(), kwargs=inputs, strict=False)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA parameters and buffers into ``model`` (e.g. to evaluate the teacher)."""
        tensors = dict(model.named_parameters()) | float_buffers(model)
        shadow = self.shadow | self.shadow_buffers
        saved = {name: tensors[name].detach().clone() for name in shadow}
        with torch.no_grad():
            for name, value in shadow.items():
                tensors[name].copy_(value)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    tensors[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """Shadow parameters and buffers and the update count (for checkpoints)."""
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": {k: v.detach().cpu().clone() for k, v in self.shadow.items()},
                "shadow_buffers": {k: v.detach().cpu().clone() for k, v in self.shadow_buffers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; the parameter and float-buffer names must match (a state without
        ``shadow_buffers`` only fits a model without float buffers)."""
        buffers = state.get("shadow_buffers", {})
        for kind, ours, theirs in (("trainable parameters", self.shadow, state["shadow"]),
                                   ("floating-point buffers", self.shadow_buffers, buffers)):
            mismatch = set(ours) ^ set(theirs)
            if mismatch:
                raise ValueError(f"EMA state does not match the model's {kind}: {sorted(mismatch)[:5]}; resume "
                                 "with the model (and adapter) the checkpoint was trained with.")
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
        for name, value in buffers.items():
            self.shadow_buffers[name].copy_(value)
