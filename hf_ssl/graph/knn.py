"""Cosine k-nearest-neighbour search of every row among the other rows, for label propagation's graph, and the
spherical k-means and row normalisation it is built on.

Three kinds of search, each returning (n, k) similarities and indices with the row itself excluded:

- ``exact``: faiss ``IndexFlatIP`` when faiss is importable, else blocked torch matrix products and top-k;
- ``ivf``: list-level probing of a k-means partition, in plain torch (no faiss needed). The rows are split into
  ``nlist`` lists by a spherical k-means; every list is then searched against the rows of its ``nprobe`` nearest
  lists (by centroid similarity, the list itself first) with one matrix product and a top-k, so the whole search
  runs at BLAS speed: about n·d·(nlist + nprobe·n/nlist) multiply-adds, least when nlist ≈ sqrt(nprobe·n).
  Probing per list rather than per row makes the probed lists a little less tailored to each row, so recall is
  below that of a per-row probe with the same ``nprobe``;
- ``hnsw``: faiss ``IndexHNSWFlat`` (falls back to exact torch search, with a warning, without faiss).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch

from hf_ssl.utils import import_faiss

__all__ = ["KINDS", "blocked_ivf_knn", "default_nlist", "knn_search", "nearest_centroid", "normalised_rows",
           "spherical_kmeans"]

KINDS = ("exact", "ivf", "hnsw")
BLOCK_ENTRIES = 1 << 24  # entries of a similarity block in chunked loops (64 MB of float32)
_TRAIN_PER_LIST = 16  # k-means training rows per list
_TRAIN_ITERS = 6  # k-means iterations
_MIN_ROWS_PER_LIST = 39  # on small inputs, lists hold at least this many rows on average
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 64
_HNSW_EF_SEARCH = 64


def normalised_rows(X: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """A C-contiguous copy of X with unit-norm rows (zero rows stay zero); raises on non-finite values.

    Norms are computed in float64 whatever ``dtype`` is.

    Parameters:
        X (`np.ndarray`):
            (n, d) rows.
        dtype (`type`, *optional*, defaults to `np.float32`):
            dtype of the copy.
    """
    Xn = np.array(X, dtype=dtype, order="C")
    step = max(1, BLOCK_ENTRIES // max(1, Xn.shape[1]))
    for start in range(0, Xn.shape[0], step):
        block = Xn[start:start + step]
        if not np.isfinite(block).all():
            raise ValueError("X contains NaN or infinite values")
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        block /= np.maximum(norms, 1e-12).astype(dtype)[:, None]
    return Xn


def _drop_self(sims: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From k+1 neighbours per row, drop the row itself (or the last neighbour if the row is absent)."""
    n = idx.shape[0]
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return sims[keep].reshape(n, k), idx[keep].reshape(n, k)


def _torch_exact_knn(Xn: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN by blocked matrix products and torch.topk (self excluded)."""
    n = Xn.shape[0]
    Xt = torch.from_numpy(Xn)
    sims = np.empty((n, k), dtype=np.float32)
    idx = np.empty((n, k), dtype=np.int64)
    step = max(1, BLOCK_ENTRIES // n)
    with torch.no_grad():
        for start in range(0, n, step):
            stop = min(n, start + step)
            block = Xt[start:stop] @ Xt.T
            block[torch.arange(stop - start), torch.arange(start, stop)] = -math.inf
            values, indices = torch.topk(block, k, dim=1)
            sims[start:stop], idx[start:stop] = values.numpy(), indices.numpy()
    return sims, idx


def _faiss_knn(faiss: Any, Xn: np.ndarray, k: int, kind: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Cosine kNN with a faiss inner-product index, ``exact`` (flat) or ``hnsw``; returns (sims, idx, build s)."""
    start = time.perf_counter()
    d = Xn.shape[1]
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = max(_HNSW_EF_SEARCH, 2 * (k + 1))
    index.add(Xn)
    build = time.perf_counter() - start
    sims, idx = index.search(Xn, k + 1)
    return (*_drop_self(sims, idx, k), build)


def default_nlist(n: int, nprobe: int) -> int:
    """Number of lists that minimises the search cost, sqrt(nprobe·n), with lists of 39+ rows on average.

    Args:
        n: number of rows.
        nprobe: lists probed per list.
    """
    return max(1, min(int(round(math.sqrt(nprobe * n))), n // _MIN_ROWS_PER_LIST))


def nearest_centroid(X: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the most similar centroid (largest inner product) of every row, by blocked matrix products."""
    out = torch.empty(X.shape[0], dtype=torch.int64)
    step = max(1, BLOCK_ENTRIES // max(1, centroids.shape[0]))
    for start in range(0, X.shape[0], step):
        out[start:start + step] = (X[start:start + step] @ centroids.T).argmax(dim=1)
    return out


def spherical_kmeans(X: torch.Tensor, nlist: int, seed: int, n_iter: int = _TRAIN_ITERS,
                     train_per_list: int = _TRAIN_PER_LIST, init: torch.Tensor | None = None) -> torch.Tensor:
    """Unit-norm centroids of a spherical k-means (Lloyd) trained on a random subsample of ``train_per_list·nlist``
    rows (all rows when there are fewer); a centroid that loses all its rows stays where it is.

    Parameters:
        X (`torch.Tensor`):
            (n, d) unit-norm rows.
        nlist (`int`):
            Number of centroids (<= n).
        seed (`int`):
            Seed of the subsample and of the initial centroids.
        n_iter (`int`, *optional*, defaults to `6`):
            Lloyd iterations.
        train_per_list (`int`, *optional*, defaults to `16`):
            Training rows per centroid.
        init (`torch.Tensor` or `None`, *optional*, defaults to `None`):
            (nlist, d) initial centroids; `None` starts from ``nlist`` distinct training rows drawn at random.
    """
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    sample = X[torch.from_numpy(np.sort(rng.choice(n, size=min(n, train_per_list * nlist), replace=False)))]
    if init is None:
        centroids = sample[torch.from_numpy(rng.choice(sample.shape[0], size=nlist, replace=False))].clone()
    else:
        centroids = init.to(sample.dtype)
    for _ in range(n_iter):
        assign = nearest_centroid(sample, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, sample)
        empty = torch.bincount(assign, minlength=nlist) == 0
        sums[empty] = centroids[empty]  # an empty list keeps its centroid
        centroids = torch.nn.functional.normalize(sums, dim=1)
    return centroids


def blocked_ivf_knn(Xn: np.ndarray, k: int, nprobe: int = 8, nlist: int | None = None,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Approximate cosine kNN of every row among the other rows (self excluded), by list-level probing.

    Args:
        Xn: (n, d) float32 rows with unit norm.
        k: neighbours per row.
        nprobe: lists searched per list (the list itself included); more is slower and closer to exact.
        nlist: number of k-means lists (default: `default_nlist`).
        seed: seed of the k-means.

    Returns:
        (sims, idx, info): (n, k) similarities and neighbour indices, best first; rows whose probed lists hold
        fewer than k other rows are padded with similarity -inf and index -1. ``info`` holds ``nlist``,
        ``nprobe``, ``candidates_per_row`` and ``index_build`` (seconds of k-means and list assignment).
    """
    n = Xn.shape[0]
    X = torch.from_numpy(np.ascontiguousarray(Xn, dtype=np.float32))
    nlist = default_nlist(n, nprobe) if nlist is None else max(1, min(int(nlist), n))
    nprobe = max(1, min(int(nprobe), nlist))
    start = time.perf_counter()
    with torch.no_grad():
        centroids = spherical_kmeans(X, nlist, seed)
        assign = nearest_centroid(X, centroids)
        build = time.perf_counter() - start
        centroid_sims = centroids @ centroids.T
        centroid_sims.fill_diagonal_(math.inf)  # each list probes itself first
        probes = centroid_sims.topk(nprobe, dim=1).indices.tolist()
        order = torch.argsort(assign, stable=True)
        offsets = [0, *torch.cumsum(torch.bincount(assign, minlength=nlist), 0).tolist()]
        X_sorted = X[order]
        sims = np.full((n, k), -np.inf, dtype=np.float32)
        idx = np.full((n, k), -1, dtype=np.int64)
        candidates = 0
        for lst in range(nlist):
            lo, hi = offsets[lst], offsets[lst + 1]
            if hi == lo:
                continue
            ranges = [(offsets[p], offsets[p + 1]) for p in probes[lst]]
            cand = torch.cat([X_sorted[a:b] for a, b in ranges])
            cand_ids = torch.cat([order[a:b] for a, b in ranges])
            take = min(k, cand.shape[0] - 1)
            candidates += (hi - lo) * cand.shape[0]
            if take < 1:
                continue
            step = max(1, BLOCK_ENTRIES // cand.shape[0])
            for q0 in range(lo, hi, step):
                q1 = min(hi, q0 + step)
                block = X_sorted[q0:q1] @ cand.T
                rows = torch.arange(q1 - q0)
                block[rows, rows + (q0 - lo)] = -math.inf  # the row itself (its own list comes first)
                values, pos = block.topk(take, dim=1)
                targets = order[q0:q1].numpy()
                sims[targets, :take] = values.numpy()
                idx[targets, :take] = cand_ids[pos].numpy()
    info = {"nlist": float(nlist), "nprobe": float(nprobe), "candidates_per_row": candidates / max(1, n),
            "index_build": build}
    return sims, idx, info


def knn_search(Xn: np.ndarray, k: int, kind: str, nprobe: int = 8,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, str, dict[str, float]]:
    """k nearest neighbours of every row of Xn among the other rows, by cosine similarity.

    Args:
        Xn: (n, d) float32 unit-norm rows (see `normalised_rows`).
        k: neighbours per row (< n).
        kind: ``exact``, ``ivf`` or ``hnsw`` (see the module docstring).
        nprobe: lists probed per list by ``ivf``.
        seed: seed of the ``ivf`` k-means.

    Returns:
        (sims, idx, backend, timings): (n, k) arrays (idx -1 where fewer than k candidates existed), the backend
        used (``faiss-flat``, ``torch-exact``, ``ivf-blocked`` or ``faiss-hnsw``) and seconds for ``index_build``
        and ``knn`` (build included).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    start = time.perf_counter()
    if kind == "ivf":
        sims, idx, info = blocked_ivf_knn(Xn, k, nprobe=nprobe, seed=seed)
        backend, build = "ivf-blocked", info["index_build"]
    else:
        faiss = import_faiss()
        if faiss is None:
            if kind == "hnsw":
                warnings.warn(f"faiss is not installed: index='hnsw' falls back to exact torch search, which is "
                              f"O(n^2) for n={Xn.shape[0]}; use index='ivf' for an approximate search without faiss",
                              stacklevel=3)
            sims, idx = _torch_exact_knn(Xn, k)
            backend, build = "torch-exact", 0.0
        else:
            sims, idx, build = _faiss_knn(faiss, Xn, k, kind)
            backend = "faiss-flat" if kind == "exact" else "faiss-hnsw"
    return sims, idx, backend, {"index_build": build, "knn": time.perf_counter() - start}
