"""Synthetic point clouds for the graph tests: Gaussian clusters and a few labels per class."""

from __future__ import annotations

import numpy as np


def clusters(n_per: int, n_classes: int, dim: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random centres; returns (X, true labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    truth = np.repeat(np.arange(n_classes), n_per)
    X = centres[truth] + noise * rng.normal(size=(len(truth), dim))
    return X, truth


def label_some(truth: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """y with ``per_class`` labeled rows per class and -1 elsewhere."""
    rng = np.random.default_rng(seed)
    y = np.full(len(truth), -1)
    for c in np.unique(truth):
        rows = rng.choice(np.flatnonzero(truth == c), size=per_class, replace=False)
        y[rows] = c
    return y
