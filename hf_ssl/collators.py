"""Data collators that carry hf_ssl's own columns beside a base collator's output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["SSL_COLUMNS", "SSLDataCollator"]

# Columns hf_ssl adds to rows; they are stripped before the base collator and the model never sees them.
SSL_COLUMNS = ("ssl_index", "ssl_target", "ssl_weight")


class SSLDataCollator:
    """Wrap a collator: pop hf_ssl columns from each row, collate the rest, add the popped ones as tensors.

    Args:
        base: the collator for model inputs (e.g. `DataCollatorWithPadding`).
        truth_column: hidden true-label column (monitoring only); collated as a long tensor if present.
    """

    def __init__(self, base: Callable[[list[dict[str, Any]]], dict[str, Any]], truth_column: str = "ssl_truth"):
        self.base = base
        self.truth_column = truth_column

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        extra_names = [c for c in (*SSL_COLUMNS, self.truth_column) if c in features[0]]
        extras = {name: [f[name] for f in features] for name in extra_names}
        batch = self.base([{k: v for k, v in f.items() if k not in extras} for f in features])
        for name, values in extras.items():
            dtype = torch.long if name in ("ssl_index", self.truth_column) else torch.float32
            batch[name] = torch.as_tensor(values, dtype=dtype)
        return batch
