"""Data collators that carry hf_ssl's own columns beside a base collator's output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["SSL_COLUMNS", "SSLDataCollator", "ConsistencyCollator", "make_views", "concat_inputs"]

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
            # Rows of a torch-formatted dataset hold tensors (e.g. ssl_target vectors): stack them row by row.
            batch[name] = torch.stack([torch.as_tensor(v, dtype=dtype) for v in values])
        return batch


def concat_inputs(batches: Sequence[dict[str, torch.Tensor]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Concatenate model-input batches row-wise, right-padding (n, L) tensors to the widest batch.

    Args:
        batches: batches with the same keys (e.g. labeled and strong-view unlabeled inputs).
        pad_token_id: padding for ``input_ids``; other 2-D inputs (attention masks, token types) pad with 0.
            A batch without ``token_type_ids`` (e.g. precomputed strong views) gets zeros; other keys must be
            in every batch to be kept.
    """
    merged = {}
    for key in batches[0]:
        if key == "token_type_ids" and "input_ids" in batches[0]:
            tensors = [b.get(key, torch.zeros_like(b["input_ids"])) for b in batches]
        elif all(key in b for b in batches):
            tensors = [b[key] for b in batches]
        else:
            continue
        if tensors[0].dim() == 2:
            width = max(t.shape[1] for t in tensors)
            value = pad_token_id if key == "input_ids" else 0
            tensors = [F.pad(t, (0, width - t.shape[1]), value=value) for t in tensors]
        merged[key] = torch.cat(tensors, dim=0)
    return merged


def make_views(batch: dict[str, Any], augmenter: Any, num_weak: int = 1, strong_prefix: str = "strong_",
               extra_names: Sequence[str] = ()) -> dict[str, Any]:
    """Weak and strong views of a collated unlabeled batch.

    Args:
        batch: model inputs, hf_ssl columns, and optionally precomputed strong inputs (``strong_input_ids``...).
        augmenter: object with ``weak(inputs)`` and ``strong(inputs)`` (`TextAugmenter`, `ImageAugmenter`).
        num_weak: number of independent weak views.
        strong_prefix: prefix of precomputed strong-view inputs; when present they are the strong view.
        extra_names: non-input keys (row index, truth) passed through unchanged.

    Returns:
        ``{"weak": [inputs, ...], "strong": inputs, **extras}``.
    """
    extras = {k: v for k, v in batch.items() if k in extra_names}
    precomputed = {k[len(strong_prefix):]: v for k, v in batch.items() if strong_prefix and k.startswith(strong_prefix)}
    inputs = {k: v for k, v in batch.items() if k not in extras and not (strong_prefix and k.startswith(strong_prefix))}
    weak = [augmenter.weak(inputs) for _ in range(num_weak)]
    strong = precomputed if precomputed else augmenter.strong(inputs)
    return {"weak": weak, "strong": strong, **extras}


class ConsistencyCollator:
    """Collate unlabeled rows into a weak and a strong view (plus hf_ssl columns) in one batch.

    Precomputed strong inputs (columns ``<strong_prefix><name>``, e.g. tokenized back-translations) are
    collated with the same base collator and used as the strong view. Without an ``augmenter`` the raw
    batch is returned and the trainer makes the views in the training step (``augment_in="step"``).

    Args:
        base: collator for model inputs (e.g. `DataCollatorWithPadding`).
        augmenter: `TextAugmenter` / `ImageAugmenter`, or None to defer augmentation to the step.
        num_weak_views: weak views per row (MixMatch uses several).
        strong_prefix: prefix of precomputed strong-view columns.
        truth_column: hidden true-label column (monitoring only).
    """

    def __init__(self, base: Callable[[list[dict[str, Any]]], dict[str, Any]], augmenter: Any = None,
                 num_weak_views: int = 1, strong_prefix: str = "strong_", truth_column: str = "ssl_truth") -> None:
        self.base = base if isinstance(base, SSLDataCollator) else SSLDataCollator(base, truth_column)
        self.augmenter, self.num_weak_views = augmenter, num_weak_views
        self.strong_prefix, self.truth_column = strong_prefix, truth_column

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        prefix = self.strong_prefix
        strong_names = [k for k in features[0] if prefix and k.startswith(prefix)]
        batch = self.base([{k: v for k, v in f.items() if k not in strong_names} for f in features])
        if strong_names:
            strong = self.base.base([{k[len(prefix):]: f[k] for k in strong_names} for f in features])
            batch.update({f"{prefix}{k}": v for k, v in strong.items()})
        if self.augmenter is None:
            return batch
        return make_views(batch, self.augmenter, self.num_weak_views, prefix, (*SSL_COLUMNS, self.truth_column))
