"""Choosing which rows to send for labeling, and spreading the labels of cluster representatives.

Similarities are cosine: rows are L2-normalised before clustering or nearest-representative search.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hf_ssl.graph.knn import BLOCK_ENTRIES, nearest_centroid, normalised_rows, spherical_kmeans
from hf_ssl.utils import as_numpy, as_real_matrix, single_threaded_blas

__all__ = ["select_for_labeling", "propagate_cluster_labels"]

_STRATEGIES = ("kmeans", "uncertainty", "margin", "random")
_CANDIDATES_PER_PICK = 10  # uncertainty strategies: diverse picks among the 10·budget most uncertain rows
_INIT_SAMPLE_PER_CLUSTER = 20  # k-means++ seeding runs on at most max(20·k, 10000) rows
_INIT_SAMPLE_MIN = 10000
_KMEANS_ITERS = 20
_TRAIN_PER_CLUSTER = 256  # k-means trains on at most 256·k rows
_TOP_PER_CENTROID = 16


def _normalised_features(X: Any, name: str = "X") -> np.ndarray:
    """Validated float32 copy of a 2-D feature matrix with unit-norm rows (zero rows stay zero)."""
    return normalised_rows(as_real_matrix(X, name))


def _int_array(a: Any, name: str) -> np.ndarray:
    """A 1-D int64 array, or ValueError naming the argument."""
    a = as_numpy(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        a = a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        raise ValueError(f"{name} must contain integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _kmeans(Xn: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means with k-means++ seeding (scikit-learn's, on a subsample of rows) and
    `hf_ssl.graph.knn.spherical_kmeans`'s Lloyd iterations: (centroids (k, d), assignment (n,))."""
    from sklearn.cluster import kmeans_plusplus

    n = Xn.shape[0]
    rng = np.random.default_rng(seed)
    n_init = min(n, max(_INIT_SAMPLE_PER_CLUSTER * k, _INIT_SAMPLE_MIN))
    sample = Xn if n_init == n else Xn[np.sort(rng.choice(n, size=n_init, replace=False))]
    with single_threaded_blas():
        init, _ = kmeans_plusplus(sample, k, random_state=seed)
    X = torch.from_numpy(Xn)
    with torch.no_grad():
        centroids = spherical_kmeans(X, k, seed, n_iter=_KMEANS_ITERS, train_per_list=_TRAIN_PER_CLUSTER,
                                     init=torch.from_numpy(np.ascontiguousarray(init, dtype=np.float32)))
        assign = nearest_centroid(X, centroids)
    return centroids.numpy(), assign.numpy()


def _closest_distinct_rows(Xn: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """For each centroid, the most similar row not already taken by an earlier centroid."""
    n, k = Xn.shape[0], centroids.shape[0]
    m = min(n, _TOP_PER_CENTROID)
    top = np.empty((k, m), dtype=np.int64)
    step = max(1, BLOCK_ENTRIES // n)
    for start in range(0, k, step):
        sims = centroids[start:start + step] @ Xn.T
        part = np.argpartition(-sims, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (len(sims), 1))
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        top[start:start + step] = np.take_along_axis(part, order, axis=1)
    taken = np.zeros(n, dtype=bool)
    picks = np.empty(k, dtype=np.int64)
    for c in range(k):
        free = top[c][~taken[top[c]]]
        if len(free):
            row = int(free[0])
        else:  # all near rows taken: scan everything
            sims = np.where(taken, -np.inf, Xn @ centroids[c])
            row = int(np.argmax(sims))
        picks[c], taken[row] = row, True
    return picks


def _farthest_fill(Xc: np.ndarray, chosen: list[int], n_more: int) -> list[int]:
    """Greedily add ``n_more`` rows of Xc that are least similar to everything chosen (ties: lowest position)."""
    m = Xc.shape[0]
    nearest = np.full(m, -np.inf, dtype=np.float32)
    step = max(1, BLOCK_ENTRIES // m)
    for start in range(0, len(chosen), step):
        nearest = np.maximum(nearest, (Xc @ Xc[chosen[start:start + step]].T).max(axis=1))
    taken = np.zeros(m, dtype=bool)
    taken[chosen] = True
    chosen = list(chosen)
    for _ in range(n_more):
        j = int(np.argmin(np.where(taken, np.inf, nearest)))
        chosen.append(j)
        taken[j] = True
        nearest = np.maximum(nearest, Xc @ Xc[j])
    return chosen


def _uncertainty_scores(probs: Any, n: int, strategy: str) -> np.ndarray:
    """Lower is more uncertain: max probability, or top-1 minus top-2 probability."""
    P = as_numpy(probs)
    if P.ndim != 2 or P.shape[0] != n:
        raise ValueError(f"probs must have shape (n_samples={n}, n_classes), got {P.shape}")
    if not np.issubdtype(P.dtype, np.number) or not np.isfinite(P).all():
        raise ValueError("probs must contain finite numbers")
    P = P.astype(np.float64)
    if strategy == "uncertainty":
        return P.max(axis=1)
    if P.shape[1] < 2:
        raise ValueError(f"probs needs at least 2 classes for strategy='margin', got shape {P.shape}")
    top2 = np.partition(P, P.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def select_for_labeling(X: Any, budget: int, strategy: str = "kmeans", probs: Any = None, random_state: int = 0,
                        diversity: bool = True) -> np.ndarray:
    """Pick ``budget`` distinct rows of X to label.

    - ``"kmeans"``: k-means (k-means++ seeding, cosine on normalised rows) with ``budget`` centroids; the row
      closest to each centroid, distinct across centroids. Returned in centroid order.
    - ``"uncertainty"`` / ``"margin"``: lowest max probability / smallest top-1 − top-2 gap of ``probs``. With
      ``diversity``, the candidates are the ``10·budget`` most uncertain rows; they are clustered into ``budget``
      groups and the most uncertain row of each group is taken (empty groups are filled greedily with the
      candidate least similar to the picks), so near-duplicates are not picked together. Most uncertain first.
    - ``"random"``: uniform without replacement.

    Parameters:
        X (`np.ndarray` or `torch.Tensor`):
            (n, d) features.
        budget (`int`):
            Number of rows to pick, 1 <= budget <= n.
        strategy (`str`, *optional*, defaults to `"kmeans"`):
            `"kmeans"`, `"uncertainty"`, `"margin"` or `"random"`.
        probs (`np.ndarray`, `torch.Tensor` or `None`, *optional*, defaults to `None`):
            (n, C) class probabilities; required by `"uncertainty"` and `"margin"`.
        random_state (`int`, *optional*, defaults to `0`):
            Seed of k-means and of random sampling.
        diversity (`bool`, *optional*, defaults to `True`):
            Apply the diversity guard of the uncertainty strategies.

    Returns:
        `np.ndarray`: (budget,) int64 row indices, all distinct.
    """
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
    needs_features = strategy != "random" and (strategy == "kmeans" or diversity)
    if needs_features:
        Xn = _normalised_features(X)
        n = Xn.shape[0]
    else:
        shape = tuple(as_numpy(X).shape)
        if len(shape) != 2 or shape[0] < 1:
            raise ValueError(f"X must be a non-empty 2-D array, got shape {shape}")
        n = shape[0]
    if not isinstance(budget, (int, np.integer)) or isinstance(budget, bool):
        raise ValueError(f"budget must be an integer, got {budget!r}")
    if not 1 <= budget <= n:
        raise ValueError(f"budget must be in [1, n_samples={n}], got {budget}")
    budget = int(budget)
    if strategy in ("uncertainty", "margin") and probs is None:
        raise ValueError(f"probs is required for strategy={strategy!r}")

    if strategy == "random":
        return np.random.default_rng(random_state).choice(n, size=budget, replace=False).astype(np.int64)
    if strategy == "kmeans":
        if budget == n:
            return np.arange(n, dtype=np.int64)
        centroids, _ = _kmeans(Xn, budget, random_state)
        return _closest_distinct_rows(Xn, centroids)

    scores = _uncertainty_scores(probs, n, strategy)
    order = np.argsort(scores, kind="stable")
    candidates = order[:min(n, _CANDIDATES_PER_PICK * budget)]
    if not diversity or len(candidates) == budget:
        return candidates[:budget].astype(np.int64)
    Xc = Xn[candidates]
    _, assign = _kmeans(Xc, budget, random_state)
    _, first = np.unique(assign, return_index=True)  # candidates are sorted, so the first is the most uncertain
    chosen = sorted(first.tolist())
    if len(chosen) < budget:
        with single_threaded_blas():
            chosen = _farthest_fill(Xc, chosen, budget - len(chosen))
    return candidates[np.asarray(chosen, dtype=np.int64)]


def propagate_cluster_labels(X: Any, selected: Any, labels: Any, fraction: float = 1.0) -> np.ndarray:
    """Give every row the label of its most similar selected representative (cosine).

    With ``fraction < 1``, only the ``ceil(fraction · size)`` members of each representative's group that are most
    similar to it are labeled; the others get -1. Representatives always keep their own label, and a representative
    labeled -1 leaves its whole group at -1.

    Args:
        X: (n, d) features (numpy array or torch tensor).
        selected: (b,) distinct row indices of the representatives (e.g. from ``select_for_labeling``).
        labels: (b,) integer labels of the representatives, -1 for unknown.
        fraction: share of each group to label, in (0, 1].

    Returns:
        (n,) int64 labels, -1 for unassigned rows.
    """
    Xn = _normalised_features(X)
    n = Xn.shape[0]
    selected = _int_array(selected, "selected")
    labels = _int_array(labels, "labels")
    if len(selected) < 1:
        raise ValueError("selected must contain at least one row index")
    if labels.shape != selected.shape:
        raise ValueError(f"labels must have the same length as selected ({len(selected)}), got {len(labels)}")
    if selected.min() < 0 or selected.max() >= n:
        raise ValueError(f"selected must contain row indices in [0, {n})")
    if len(np.unique(selected)) != len(selected):
        raise ValueError("selected must not contain duplicate row indices")
    if (labels < -1).any():
        raise ValueError("labels must be >= -1 (-1 marks an unknown label)")
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")

    reps = Xn[selected]
    group = np.empty(n, dtype=np.int64)
    similarity = np.empty(n, dtype=np.float32)
    step = max(1, BLOCK_ENTRIES // len(selected))
    for start in range(0, n, step):
        sims = Xn[start:start + step] @ reps.T
        group[start:start + step] = sims.argmax(axis=1)
        similarity[start:start + step] = sims.max(axis=1)
    group[selected] = np.arange(len(selected))
    similarity[selected] = np.inf

    out = np.full(n, -1, dtype=np.int64)
    if float(fraction) >= 1.0:
        keep = np.ones(n, dtype=bool)
    else:
        order = np.lexsort((-similarity, group))  # by group, most similar first
        sizes = np.bincount(group, minlength=len(selected))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - np.repeat(starts, sizes)
        quota = np.maximum(np.ceil(float(fraction) * sizes - 1e-9).astype(np.int64), sizes > 0)
        keep = rank < quota[group]
    out[keep] = labels[group[keep]]
    return out
