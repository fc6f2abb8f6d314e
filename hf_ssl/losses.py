"""Loss functions on logits, as pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "weighted_cross_entropy"]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against probability targets, optionally weighted per row.

    Args:
        logits: (n, C) logits.
        targets: (n, C) target distributions (rows sum to 1).
        weights: optional (n,) non-negative row weights.

    Returns:
        Scalar: sum_i w_i · H(targets_i, softmax(logits_i)) / n.
    """
    per_row = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    if weights is not None:
        per_row = per_row * weights
    return per_row.mean()


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against hard labels, optionally weighted per row (mean over rows).

    Args:
        logits: (n, C) logits.
        labels: (n,) class ids.
        weights: optional (n,) row weights.
    """
    per_row = F.cross_entropy(logits.float(), labels, reduction="none")
    if weights is not None:
        per_row = per_row * weights
    return per_row.mean()
