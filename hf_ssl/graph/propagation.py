"""Label spreading (Zhou et al., 2004) over a sparse k-nearest-neighbour graph of embeddings.

The graph is never dense: neighbours come from `hf_ssl.graph.knn` (exact, a blocked IVF search in torch, or faiss
HNSW), and everything downstream lives in ``scipy.sparse`` with O(n·k) memory.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, cg

from hf_ssl.graph.knn import KINDS, knn_search, normalised_rows
from hf_ssl.utils import as_numpy, single_threaded_blas

__all__ = ["LabelPropagator"]

_SOLVERS = ("cg", "iterative")
_INDEXES = ("auto", *KINDS)
_METRICS = ("cosine",)


def _knn_graph(sims: np.ndarray, idx: np.ndarray, power: float) -> sp.csr_matrix:
    """Symmetrised affinity W + Wᵀ with weights max(cos, 0)**power (missing neighbours, idx -1, are dropped)."""
    n, k = idx.shape
    valid = idx >= 0
    weights = np.maximum(sims.astype(np.float64), 0.0) ** power
    weights[~valid] = 0.0
    index_dtype = np.int32 if n < 2**31 - 1 else np.int64
    rows = np.repeat(np.arange(n, dtype=index_dtype), k)
    cols = np.where(valid, idx, 0).astype(index_dtype).ravel()
    W = sp.csr_matrix((weights.ravel(), (rows, cols)), shape=(n, n))
    W = (W + W.T).tocsr()
    W.eliminate_zeros()
    return W


def _normalise_graph(W: sp.csr_matrix) -> sp.csr_matrix:
    """S = D^-1/2 W D^-1/2; isolated rows (degree 0) stay zero."""
    degree = np.asarray(W.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
    S = W.copy()
    row_of_entry = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    S.data *= inv_sqrt[row_of_entry] * inv_sqrt[S.indices]
    return S


def _spread(S: sp.csr_matrix, Y: np.ndarray, alpha: float, solver: str, max_iter: int,
            tol: float) -> tuple[np.ndarray, int, bool]:
    """F* = (1 − α)(I − αS)⁻¹Y by per-class conjugate gradient or by the fixed-point iteration.

    Returns (F, iterations, converged); for CG, iterations is the maximum over classes.
    """
    n, n_classes = Y.shape
    if solver == "cg":
        operator = LinearOperator((n, n), matvec=lambda v: v - alpha * (S @ v), dtype=np.float64)
        F = np.empty((n, n_classes))
        counter = [0]

        def count(_: np.ndarray) -> None:
            counter[0] += 1

        n_iter, converged = 0, True
        for c in range(n_classes):
            counter[0] = 0
            F[:, c], info = cg(operator, Y[:, c], rtol=tol, atol=0.0, maxiter=max_iter, callback=count)
            n_iter, converged = max(n_iter, counter[0]), converged and info == 0
        F *= 1.0 - alpha
        return F, n_iter, converged
    base = (1.0 - alpha) * Y
    F = Y.copy()
    for it in range(1, max_iter + 1):
        new = alpha * (S @ F) + base
        delta = np.linalg.norm(new - F)
        F = new
        if delta <= tol * np.linalg.norm(F):
            return F, it, True
    return F, max_iter, False


class LabelPropagator:
    """Transductive label spreading over a sparse cosine kNN graph (scikit-learn-like ``fit``).

    Solves (I − αS)F = Y with S = D^-1/2 W D^-1/2 and W the symmetrised kNN graph with weights max(cos, 0)**power.
    Only transduction is offered: there is no ``predict`` for new points.

    Parameters:
        n_neighbors (`int`, *optional*, defaults to `10`):
            Neighbours per row (k), in [1, n_samples).
        alpha (`float`, *optional*, defaults to `0.99`):
            Spreading factor in (0, 1); larger spreads further from the labeled rows.
        power (`float`, *optional*, defaults to `3`):
            Exponent (> 0) of the edge weights max(cos, 0)**power.
        solver (`str`, *optional*, defaults to `"cg"`):
            `"cg"` (conjugate gradient per class) or `"iterative"` (F ← αSF + (1 − α)Y).
        max_iter (`int`, *optional*, defaults to `30`):
            Maximum iterations of the solver (per class for CG).
        tol (`float`, *optional*, defaults to `1e-6`):
            Relative tolerance (> 0): CG residual, or change of F for the iterative solver.
        index (`str`, *optional*, defaults to `"auto"`):
            Neighbour search: `"exact"` (faiss flat, or chunked torch without faiss), `"ivf"` (approximate: a
            spherical k-means splits the rows into about sqrt(nprobe·n) lists and each list is searched against
            its ``nprobe`` nearest lists by matrix products; plain torch, no faiss needed), `"hnsw"` (faiss HNSW,
            approximate) or `"auto"` (exact up to ``exact_threshold`` rows, IVF above). See `hf_ssl.graph.knn`.
        exact_threshold (`int`, *optional*, defaults to `20000`):
            Largest number of rows searched exactly when ``index="auto"``.
        nprobe (`int`, *optional*, defaults to `8`):
            Lists each IVF list is searched against, itself included (more: closer to exact search, slower).
        metric (`str`, *optional*, defaults to `"cosine"`):
            Similarity; only `"cosine"` (rows are L2-normalised) is supported.
        random_state (`int`, *optional*, defaults to `0`):
            Seed of the IVF k-means.
        prior_weight (`float`, *optional*, defaults to `1.0`):
            Weight (>= 0) of ``fit``'s ``prior`` on the unlabeled rows, relative to the weight 1 of a labeled
            row's one-hot label; 0 ignores the prior's values (its classes still define ``classes_``).

    A ``prior`` passed to ``fit`` (an (n, C) array of class probabilities, e.g. from
    `hf_ssl.graph.zero_shot.zero_shot_probabilities`) initialises the label distributions of the unlabeled rows:
    Y[unlabeled] = prior_weight · prior[unlabeled], labeled rows stay one-hot. The classes are then 0..C-1, so a
    class without any labeled row can still be predicted, and ``y`` may have no labeled row at all.

    Attributes (after ``fit``):
        transduction_: (n,) labels; labeled rows keep theirs, rows that receive no label mass (not connected to
            any labeled row, and no prior or ``prior_weight=0``) get -1.
        label_distributions_: (n, C) row-normalised class distributions (one-hot on labeled rows, uniform on rows
            that receive no label mass).
        confidence_: (n,) maximum probability.  certainty_: (n,) 1 − entropy / log(C).
        classes_: (C,) sorted labels (0..C-1 with a prior).  n_iter_: solver iterations.  converged_: whether the
            solver reached ``tol``.
        neighbors_: (n, k) each row's nearest neighbours, best first (-1 where fewer than k were found).
        graph_: symmetrised (n, n) sparse affinity W.  index_: neighbour backend used ("faiss-flat", "torch-exact",
            "ivf-blocked" or "faiss-hnsw").  timings_: seconds for "index_build", "knn" (incl. build), "graph",
            "solve", "total".
    """

    def __init__(self, n_neighbors: int = 10, alpha: float = 0.99, power: float = 3, solver: str = "cg",
                 max_iter: int = 30, tol: float = 1e-6, index: str = "auto", exact_threshold: int = 20000,
                 nprobe: int = 8, metric: str = "cosine", random_state: int = 0,
                 prior_weight: float = 1.0):
        self.n_neighbors, self.alpha, self.power, self.solver = n_neighbors, alpha, power, solver
        self.max_iter, self.tol, self.index, self.exact_threshold = max_iter, tol, index, exact_threshold
        self.nprobe, self.metric, self.random_state = nprobe, metric, random_state
        self.prior_weight = prior_weight

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments, as in scikit-learn.

        Args:
            deep: unused (kept for scikit-learn compatibility).
        """
        names = ("n_neighbors", "alpha", "power", "solver", "max_iter", "tol", "index", "exact_threshold", "nprobe",
                 "metric", "random_state", "prior_weight")
        return {name: getattr(self, name) for name in names}

    def _check_params(self, n: int) -> None:
        def is_int(value: Any) -> bool:
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

        if not is_int(self.n_neighbors) or not 1 <= self.n_neighbors < n:
            raise ValueError(f"n_neighbors must be an integer in [1, n_samples={n}), got {self.n_neighbors!r}")
        if not 0.0 < float(self.alpha) < 1.0:
            raise ValueError(f"alpha must be in the open interval (0, 1), got {self.alpha!r}")
        if not float(self.power) > 0.0:
            raise ValueError(f"power must be > 0, got {self.power!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, got {self.solver!r}")
        if not is_int(self.max_iter) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not float(self.tol) > 0.0:
            raise ValueError(f"tol must be > 0, got {self.tol!r}")
        if self.index not in _INDEXES:
            raise ValueError(f"index must be one of {_INDEXES}, got {self.index!r}")
        if not is_int(self.exact_threshold) or self.exact_threshold < 0:
            raise ValueError(f"exact_threshold must be a non-negative integer, got {self.exact_threshold!r}")
        if not is_int(self.nprobe) or self.nprobe < 1:
            raise ValueError(f"nprobe must be a positive integer, got {self.nprobe!r}")
        if self.metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {self.metric!r}")
        if not is_int(self.random_state):
            raise ValueError(f"random_state must be an integer, got {self.random_state!r}")
        weight = self.prior_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)) or not (
                math.isfinite(weight) and weight >= 0):
            raise ValueError(f"prior_weight must be a finite number >= 0, got {weight!r}")

    @staticmethod
    def _check_data(X: Any, y: Any, require_labeled: bool = True) -> tuple[np.ndarray, np.ndarray]:
        X, y = as_numpy(X), as_numpy(y)
        if X.ndim != 2 or X.shape[0] < 2 or X.shape[1] < 1:
            raise ValueError(f"X must be a 2-D array with at least 2 rows and 1 column, got shape {X.shape}")
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
        if y.ndim != 1:
            raise ValueError(f"y must be a 1-D array, got shape {y.shape}")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries but X has {X.shape[0]} rows")
        if np.issubdtype(y.dtype, np.floating):
            if not np.isfinite(y).all() or not np.all(y == np.round(y)):
                raise ValueError("y must contain integer labels (-1 for unlabeled)")
            y = y.astype(np.int64)
        elif not np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
            raise ValueError(f"y must contain integer labels (-1 for unlabeled), got dtype {y.dtype}")
        y = y.astype(np.int64)
        if (y < -1).any():
            raise ValueError(f"y must be >= -1 (-1 marks unlabeled rows), found {int(y.min())}")
        if require_labeled and not (y >= 0).any():
            raise ValueError("y has no labeled rows: at least one entry must be >= 0")
        return X, y

    @staticmethod
    def _check_prior(prior: Any, y: np.ndarray) -> np.ndarray:
        """The prior as float64 with rows renormalised to sum to exactly 1; raises on an invalid prior."""
        prior = as_numpy(prior)
        n = y.shape[0]
        if prior.ndim != 2 or prior.shape[0] != n or prior.shape[1] < 1:
            raise ValueError(f"prior must be a 2-D (n_samples={n}, n_classes) array, got shape {prior.shape}")
        if prior.dtype == np.bool_ or not (np.issubdtype(prior.dtype, np.floating)
                                           or np.issubdtype(prior.dtype, np.integer)):
            raise ValueError(f"prior must hold real numbers (class probabilities), got dtype {prior.dtype}")
        prior = prior.astype(np.float64)
        if not np.isfinite(prior).all():
            raise ValueError("prior contains NaN or infinite values")
        if (prior < 0).any():
            raise ValueError(f"prior must be non-negative (class probabilities), found {float(prior.min()):.4g}")
        sums = prior.sum(axis=1)
        bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-3)  # loose enough for float32 softmax outputs
        if bad.size:
            raise ValueError(f"prior rows must sum to 1 (class probabilities, not logits): row {int(bad[0])} sums "
                             f"to {float(sums[bad[0]]):.6g}")
        n_classes = prior.shape[1]
        if y.max() >= n_classes:
            raise ValueError(f"y has label {int(y.max())} but prior has {n_classes} columns: with a prior, labels "
                             f"must lie in [0, {n_classes})")
        return prior / sums[:, None]

    def _neighbours(self, Xn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = Xn.shape[0]
        kind = self.index if self.index != "auto" else ("exact" if n <= self.exact_threshold else "ivf")
        sims, idx, self.index_, timings = knn_search(Xn, int(self.n_neighbors), kind, int(self.nprobe),
                                                     int(self.random_state))
        self.timings_.update(timings)
        return sims, idx

    def fit(self, X: Any, y: Any, prior: Any = None) -> LabelPropagator:
        """Build the kNN graph of X and spread the labels of y (and the prior, if any) over it.

        Args:
            X: (n, d) features (numpy array, array-like or torch tensor).
            y: (n,) integer labels, -1 for unlabeled rows; in [0, C) when ``prior`` is given.
            prior: optional (n, C) class probabilities (non-negative, rows summing to 1 within 1e-3; they are
                renormalised exactly) that initialise the unlabeled rows' label distributions, weighted by
                ``prior_weight``; its rows for labeled samples are ignored.

        Returns:
            self.
        """
        t0 = time.perf_counter()
        X, y = self._check_data(X, y, require_labeled=prior is None)
        self._check_params(X.shape[0])
        if prior is not None:
            prior = self._check_prior(prior, y)
        self.timings_: dict[str, float] = {}
        Xn = normalised_rows(X)
        n = Xn.shape[0]
        self.n_features_in_ = Xn.shape[1]
        sims, idx = self._neighbours(Xn)
        self.neighbors_ = idx
        del Xn

        start = time.perf_counter()
        self.graph_ = _knn_graph(sims, idx, float(self.power))
        del sims
        S = _normalise_graph(self.graph_)
        self.timings_["graph"] = time.perf_counter() - start

        labeled = y >= 0
        if prior is None:
            self.classes_ = np.unique(y[labeled])
            codes = np.searchsorted(self.classes_, y[labeled])
        else:
            self.classes_ = np.arange(prior.shape[1], dtype=np.int64)
            codes = y[labeled]
        n_classes = len(self.classes_)
        Y = np.zeros((n, n_classes))
        if prior is not None:
            Y[~labeled] = float(self.prior_weight) * prior[~labeled]
            del prior
        Y[np.flatnonzero(labeled), codes] = 1.0

        start = time.perf_counter()
        with single_threaded_blas():
            F, self.n_iter_, self.converged_ = _spread(S, Y, float(self.alpha), self.solver, int(self.max_iter),
                                                       float(self.tol))
        self.timings_["solve"] = time.perf_counter() - start
        del S, Y
        np.maximum(F, 0.0, out=F)  # the exact solution is non-negative; clip solver round-off

        row_mass = F.sum(axis=1)
        reachable = row_mass > 0
        F[reachable] /= row_mass[reachable, None]
        F[~reachable] = 1.0 / n_classes
        F[labeled] = 0.0
        F[np.flatnonzero(labeled), codes] = 1.0
        self.label_distributions_ = F

        transduction = self.classes_[F.argmax(axis=1)]
        transduction[labeled] = y[labeled]
        transduction[~reachable & ~labeled] = -1
        self.transduction_ = transduction
        self.confidence_ = F.max(axis=1)
        if n_classes > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                plogp = np.where(F > 0, F * np.log(F), 0.0)
            self.certainty_ = 1.0 + plogp.sum(axis=1) / math.log(n_classes)
        else:
            self.certainty_ = np.ones(n)
        self.certainty_[~reachable & ~labeled] = 0.0
        self.timings_["total"] = time.perf_counter() - t0
        return self
