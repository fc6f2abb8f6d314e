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

Sparse rows (scipy sparse) are searched exactly, by blocked sparse products (`exact_knn`); `exact_knn` also finds
the neighbours of new rows among the searched ones.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from hf_ssl.utils import import_faiss

__all__ = ["KINDS", "blocked_ivf_knn", "default_nlist", "exact_knn", "knn_search", "nearest_centroid",
           "normalised_rows", "similarity_block", "spherical_kmeans"]

KINDS = ("exact", "ivf", "hnsw")
BLOCK_ENTRIES = 1 << 24  # entries of a similarity block in chunked loops (64 MB of float32)
_TRAIN_PER_LIST = 16  # k-means training rows per list
_TRAIN_ITERS = 6  # k-means iterations
_MIN_ROWS_PER_LIST = 39  # on small inputs, lists hold at least this many rows on average
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 64
_HNSW_EF_SEARCH = 64


def _normalised_sparse_rows(X: sp.spmatrix | sp.sparray, dtype: type) -> sp.csr_matrix:
    """A CSR copy of sparse X with unit-norm rows (zero rows stay zero); see `normalised_rows`."""
    Xc = sp.csr_matrix(X, dtype=np.float64, copy=True)
    Xc.sum_duplicates()
    if not np.isfinite(Xc.data).all():
        raise ValueError("X contains NaN or infinite values")
    rows = np.repeat(np.arange(Xc.shape[0]), np.diff(Xc.indptr))
    scale = np.asarray(abs(Xc).max(axis=1).toarray()).ravel()
    Xc.data /= np.maximum(scale, np.finfo(np.float64).tiny)[rows]
    norms = np.sqrt(np.bincount(rows, weights=Xc.data ** 2, minlength=Xc.shape[0]))
    Xc.data /= np.maximum(norms, 1e-12)[rows]
    Xc.eliminate_zeros()
    return Xc.astype(dtype)


def normalised_rows(X: Any, dtype: type = np.float32) -> np.ndarray | sp.csr_matrix:
    """A C-contiguous copy of X with unit-norm rows (zero rows stay zero); raises on non-finite values.

    Each row is divided by its largest absolute value and then by its norm, both in float64 whatever ``dtype`` is,
    so rows of large finite values (such as 1e39 in float64) are normalised rather than overflowing.

    Parameters:
        X (`np.ndarray` or scipy sparse matrix):
            (n, d) rows; a sparse X gives a CSR matrix.
        dtype (`type`, *optional*, defaults to `np.float32`):
            dtype of the copy.
    """
    if sp.issparse(X):
        return _normalised_sparse_rows(X, dtype)
    X = np.asarray(X)
    Xn = np.empty(X.shape, dtype=dtype)
    step = max(1, BLOCK_ENTRIES // (2 * max(1, X.shape[1])))
    for start in range(0, X.shape[0], step):
        block = np.array(X[start:start + step], dtype=np.float64)
        if not np.isfinite(block).all():
            raise ValueError("X contains NaN or infinite values")
        scale = np.abs(block).max(axis=1, initial=0.0)
        block /= np.maximum(scale, np.finfo(np.float64).tiny)[:, None]
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        block /= np.maximum(norms, 1e-12)[:, None]
        Xn[start:start + step] = block
    return Xn


def _drop_self(sims: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From k+1 neighbours per row, drop the row itself (or the last neighbour if the row is absent)."""
    n = idx.shape[0]
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return sims[keep].reshape(n, k), idx[keep].reshape(n, k)


def similarity_block(A: Any, B: Any) -> np.ndarray:
    """Dense float32 inner products A @ Bᵀ of two row blocks, each a numpy array or a scipy sparse matrix."""
    if sp.issparse(A) and sp.issparse(B):
        out = (A @ B.T).toarray()
    elif sp.issparse(A):
        out = np.asarray(A @ np.asarray(B).T)
    elif sp.issparse(B):
        out = np.asarray(B @ np.asarray(A).T).T
    else:
        with torch.no_grad():
            return (torch.from_numpy(np.ascontiguousarray(A, dtype=np.float32))
                    @ torch.from_numpy(np.ascontiguousarray(B, dtype=np.float32)).T).numpy()
    return np.ascontiguousarray(out, dtype=np.float32)


def exact_knn(Q: Any, X: Any, k: int, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact k most similar rows of X (largest inner product) for every row of Q, by blocked products and top-k.

    Parameters:
        Q (`np.ndarray` or scipy sparse matrix):
            (m, d) query rows.
        X (`np.ndarray` or scipy sparse matrix):
            (n, d) rows searched, n >= k (n > k with ``exclude_self``).
        k (`int`):
            Neighbours per query.
        exclude_self (`bool`, *optional*, defaults to `False`):
            Q is X: leave each row out of its own neighbours.

    Returns:
        (sims, idx): (m, k) float32 similarities and int64 indices into X, best first.
    """
    m, n = Q.shape[0], X.shape[0]
    Q = Q.tocsr() if sp.issparse(Q) else Q
    X = X.tocsr() if sp.issparse(X) else X
    sims = np.empty((m, k), dtype=np.float32)
    idx = np.empty((m, k), dtype=np.int64)
    step = max(1, BLOCK_ENTRIES // max(1, n))
    for start in range(0, m, step):
        stop = min(m, start + step)
        block = torch.from_numpy(similarity_block(Q[start:stop], X))
        if exclude_self:
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


def knn_search(Xn: np.ndarray | sp.csr_matrix, k: int, kind: str, nprobe: int = 8,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, str, dict[str, float]]:
    """k nearest neighbours of every row of Xn among the other rows, by cosine similarity.

    Args:
        Xn: (n, d) float32 unit-norm rows (see `normalised_rows`), dense or, for ``kind="exact"``, scipy sparse.
        k: neighbours per row (< n).
        kind: ``exact``, ``ivf`` or ``hnsw`` (see the module docstring).
        nprobe: lists probed per list by ``ivf``.
        seed: seed of the ``ivf`` k-means.

    Returns:
        (sims, idx, backend, timings): (n, k) arrays (idx -1 where fewer than k candidates existed), the backend
        used (``faiss-flat``, ``torch-exact``, ``sparse-exact``, ``ivf-blocked`` or ``faiss-hnsw``) and seconds for
        ``index_build`` and ``knn`` (build included).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if sp.issparse(Xn) and kind != "exact":
        raise ValueError(f"kind={kind!r} needs dense rows, got a scipy sparse matrix: use kind='exact' (blocked sparse "
                         f"products) or densify the rows")
    start = time.perf_counter()
    if sp.issparse(Xn):
        sims, idx = exact_knn(Xn, Xn, k, exclude_self=True)
        backend, build = "sparse-exact", 0.0
    elif kind == "ivf":
        sims, idx, info = blocked_ivf_knn(Xn, k, nprobe=nprobe, seed=seed)
        backend, build = "ivf-blocked", info["index_build"]
    else:
        faiss = import_faiss()
        if faiss is None:
            if kind == "hnsw":
                warnings.warn(f"faiss is not installed: index='hnsw' falls back to exact torch search, which is "
                              f"O(n^2) for n={Xn.shape[0]}; use index='ivf' for an approximate search without faiss",
                              stacklevel=3)
            sims, idx = exact_knn(Xn, Xn, k, exclude_self=True)
            backend, build = "torch-exact", 0.0
        else:
            sims, idx, build = _faiss_knn(faiss, Xn, k, kind)
            backend = "faiss-flat" if kind == "exact" else "faiss-hnsw"
    return sims, idx, backend, {"index_build": build, "knn": time.perf_counter() - start}
