"""Pure functions that turn a model's class probabilities into pseudo-labels."""

from __future__ import annotations

import numpy as np
import torch

from hf_ssl.methods.losses import sharpen

__all__ = ["select_pseudo_labels", "soft_targets", "selection_stats"]


def select_pseudo_labels(probs: np.ndarray, threshold: float, k_per_class: int | None = None,
                         class_fraction: float | None = None) -> np.ndarray:
    """Rows to pseudo-label: confidence >= ``threshold``; then, per predicted class, only the most
    confident ``class_fraction`` of the rows predicted as that class and at most ``k_per_class`` of them
    (class-balanced, so a majority class cannot swallow the pool and a hard class still gets some).

    Args:
        probs: (n, C) class probabilities.
        threshold: minimum confidence in (0, 1].
        k_per_class: cap per predicted class (None: no cap).
        class_fraction: keep the top fraction in (0, 1] of each predicted class, ranked by confidence
            (None: no per-class ranking).

    Returns:
        Sorted row indices.
    """
    confidence = probs.max(axis=1)
    predicted = probs.argmax(axis=1)
    passing = np.flatnonzero(confidence >= threshold)
    if k_per_class is None and class_fraction is None:
        return passing
    keep = []
    for cls in np.unique(predicted[passing]):
        rows = passing[predicted[passing] == cls]
        order = np.argsort(-confidence[rows], kind="stable")
        limit = len(rows)
        if class_fraction is not None:
            limit = int(np.ceil(class_fraction * np.sum(predicted == cls)))
        if k_per_class is not None:
            limit = min(limit, k_per_class)
        keep.append(rows[order[:limit]])
    return np.sort(np.concatenate(keep)) if keep else passing[:0]


def soft_targets(probs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Teacher targets for distillation: ``p ** (1/T)`` renormalised (T < 1 sharpens, T > 1 softens); `sharpen` on
    numpy arrays (float32 stays float32, other inputs become float64).

    Args:
        probs: (n, C) probabilities.
        temperature: T > 0.
    """
    probs = np.asarray(probs)
    dtype = np.float32 if probs.dtype == np.float32 else np.float64
    return sharpen(torch.from_numpy(np.array(probs, dtype=dtype)), temperature).numpy()


def selection_stats(probs: np.ndarray, rows: np.ndarray, num_labels: int,
                    truth: np.ndarray | None = None) -> dict[str, float | list[int]]:
    """Statistics of a pseudo-label selection: count, per-class counts, mean confidence and, with a
    hidden truth, accuracy of the selected pseudo-labels and of all predictions.

    Args:
        probs: (n, C) probabilities over the whole pool.
        rows: selected row indices.
        num_labels: number of classes.
        truth: optional (n,) true labels for monitoring.
    """
    predicted = probs.argmax(axis=1)
    stats: dict[str, float | list[int]] = {
        "selected": int(len(rows)),
        "per_class": np.bincount(predicted[rows], minlength=num_labels).tolist(),
        "mean_confidence": float(probs.max(axis=1)[rows].mean()) if len(rows) else 0.0,
        "pool_mean_confidence": float(probs.max(axis=1).mean()),
    }
    if truth is not None:
        stats["pseudo_label_accuracy"] = float((predicted[rows] == truth[rows]).mean()) if len(rows) else 0.0
        stats["pool_accuracy"] = float((predicted == truth).mean())
    return stats
