"""An exponential-moving-average (EMA) teacher over a model's trainable parameters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["EMATeacher"]


class EMATeacher:
    """EMA copies of the trainable parameters only (frozen weights, e.g. under LoRA, are shared).

    The teacher runs the student's module with the EMA parameters swapped in through
    `torch.func.functional_call`, so no second model is kept in memory.

    Args:
        model: the (unwrapped) student model.
        decay: EMA decay; the effective decay warms up as min(decay, (1 + t) / (10 + t)).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow parameters towards the student's current ones."""
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach().to(self.shadow[name].dtype), 1 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def __call__(self, model: nn.Module, inputs: dict[str, Any]) -> Any:
        """The teacher's outputs on ``inputs`` (no gradient)."""
        return functional_call(model, self.shadow, args=(), kwargs=inputs, strict=False)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA parameters into ``model`` (e.g. to evaluate the teacher)."""
        params = dict(model.named_parameters())
        saved = {name: params[name].detach().clone() for name in self.shadow}
        with torch.no_grad():
            for name, value in self.shadow.items():
                params[name].copy_(value)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    params[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        """Shadow parameters and update count (for checkpoints)."""
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": {k: v.detach().cpu().clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; the parameter names must match."""
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model's trainable parameters: {sorted(missing)[:5]}")
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
