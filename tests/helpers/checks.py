"""Assertions shared by several test files."""

from __future__ import annotations

import json
import math
from typing import Any

import torch


def params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every named parameter."""
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def assert_frozen_base_unchanged(trained: dict[str, torch.Tensor], base_before: dict[str, torch.Tensor]) -> None:
    """Every frozen weight of the PEFT-wrapped model equals the same weight of the model before training."""
    checked = 0
    for name, value in trained.items():
        if not value.requires_grad and "lora_" not in name and "modules_to_save" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            if key in base_before:
                assert torch.equal(value, base_before[key]), f"frozen {name} changed"
                checked += 1
    assert checked > 0, "no frozen base weight was matched to the model before training"


def assert_same_state(a: Any, b: Any, atol: float = 1e-6, ignore: tuple[str, ...] = (), where: str = "state") -> None:
    """Two hf_ssl state dicts (nested dicts, lists, tensors, numbers, JSON strings) agree: tensors and floats to
    ``atol``, everything else exactly; values under a key in ``ignore`` (at any depth) are not compared."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            if key not in ignore:
                assert_same_state(a[key], b[key], atol, ignore, f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, atol, ignore, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a} != {b}"
        assert torch.allclose(a.double(), b.double(), atol=atol, equal_nan=True), f"{where}: {a} != {b}"
    elif isinstance(a, float) or isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= atol, f"{where}: {a} != {b}"
    elif isinstance(a, str) and a[:1] in "[{":
        assert_same_state(json.loads(a), json.loads(b), atol, ignore, where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
