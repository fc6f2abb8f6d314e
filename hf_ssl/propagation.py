"""Label spreading (Zhou et al., 2004) over a sparse k-nearest-neighbour graph of embeddings.

The graph is never dense: neighbours come from faiss (exact, IVF or HNSW) when it is importable, or from an exact
chunked torch top-k otherwise, and everything downstream lives in ``scipy.sparse`` with O(n·k) memory.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, cg

__all__ = ["LabelPropagator"]

_SOLVERS = ("cg", "iterative")
_INDEXES = ("auto", "exact", "ivf", "hnsw")
_METRICS = ("cosine",)
_IVF_LISTS_PER_SQRT_N = 4  # nlist ≈ 4·sqrt(n)
_IVF_TRAIN_PER_LIST = 10  # training subsample per inverted list: the quantizer only has to partition the space
_IVF_TRAIN_ITERS = 5  # k-means iterations of the coarse quantizer
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 64
_HNSW_EF_SEARCH = 64
_BLOCK_ENTRIES = 1 << 24  # entries per block in chunked loops (64 MB of float32)


def _import_faiss() -> Any:
    """The faiss module, or None when it cannot be imported."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _as_numpy(a: Any) -> np.ndarray:
    """A numpy view of a numpy array, array-like or torch tensor."""
    if hasattr(a, "detach"):
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            a = a.float()
        a = a.numpy()
    return np.asarray(a)


def _normalised_rows(X: np.ndarray) -> np.ndarray:
    """A float32 C-contiguous copy of X with unit-norm rows (zero rows stay zero); raises on non-finite values."""
    Xn = np.array(X, dtype=np.float32, order="C")
    step = max(1, _BLOCK_ENTRIES // max(1, Xn.shape[1]))
    for start in range(0, Xn.shape[0], step):
        block = Xn[start:start + step]
        if not np.isfinite(block).all():
            raise ValueError("X contains NaN or infinite values")
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        block /= np.maximum(norms, 1e-12).astype(np.float32)[:, None]
    return Xn


def _drop_self(sims: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From k+1 neighbours per row, drop the row itself (or the last neighbour if the row is absent)."""
    n = idx.shape[0]
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return sims[keep].reshape(n, k), idx[keep].reshape(n, k)


def _torch_knn(Xn: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN by blocked matrix products and torch.topk (self excluded)."""
    import torch

    n = Xn.shape[0]
    Xt = torch.from_numpy(Xn)
    sims = np.empty((n, k), dtype=np.float32)
    idx = np.empty((n, k), dtype=np.int64)
    step = max(1, _BLOCK_ENTRIES // n)
    with torch.no_grad():
        for start in range(0, n, step):
            stop = min(n, start + step)
            block = Xt[start:stop] @ Xt.T
            block[torch.arange(stop - start), torch.arange(start, stop)] = -math.inf
            values, indices = torch.topk(block, k, dim=1)
            sims[start:stop], idx[start:stop] = values.numpy(), indices.numpy()
    return sims, idx


def _ivf_nlist(n: int) -> int:
    """Number of inverted lists: about 4·sqrt(n), capped at n/39 so that lists hold ~39+ rows on average and the
    ``nprobe`` probed lists always offer enough neighbour candidates on small inputs."""
    return max(1, min(int(round(_IVF_LISTS_PER_SQRT_N * math.sqrt(n))), n // 39))


def _ivf_self_search(faiss: Any, index: Any, quantizer: Any, Xn: np.ndarray, k: int,
                     nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """Add Xn to a trained IVF index and search it with itself, assigning each row to its lists only once.

    The rows are both database and queries, so one quantizer search for the ``nprobe`` nearest lists gives the
    list to add each row to (the first) and the lists to probe; a plain ``add`` + ``search`` would run the coarse
    quantizer twice. Falls back to that plain path if faiss lacks the pre-assigned entry points.
    """
    index.nprobe = nprobe
    try:
        from faiss.contrib.ivf_tools import add_preassigned, search_preassigned
    except ImportError:
        index.add(Xn)
        return index.search(Xn, k)
    coarse_sims, lists = quantizer.search(Xn, nprobe)
    add_preassigned(index, Xn, np.ascontiguousarray(lists[:, 0]))
    return search_preassigned(index, Xn, k, lists, coarse_sims)


def _faiss_knn(faiss: Any, Xn: np.ndarray, k: int, kind: str, nprobe: int, seed: int,
               timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine kNN with a faiss inner-product index of the given kind ("exact", "ivf" or "hnsw")."""
    n, d = Xn.shape
    start = time.perf_counter()
    if kind == "ivf":
        nlist = _ivf_nlist(n)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(seed)
        index.cp.niter = _IVF_TRAIN_ITERS
        index.cp.min_points_per_centroid = 1
        n_train = min(n, _IVF_TRAIN_PER_LIST * nlist)
        index.cp.max_points_per_centroid = max(1, -(-n_train // nlist))
        sample = np.sort(np.random.default_rng(seed).choice(n, size=n_train, replace=False))
        index.train(Xn[sample])
        timings["index_build"] = time.perf_counter() - start
        sims, idx = _ivf_self_search(faiss, index, quantizer, Xn, k + 1, min(nprobe, nlist))
        return _drop_self(sims, idx, k)
    if kind == "exact":
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, _HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = max(_HNSW_EF_SEARCH, 2 * (k + 1))
    index.add(Xn)
    timings["index_build"] = time.perf_counter() - start
    sims, idx = index.search(Xn, k + 1)
    return _drop_self(sims, idx, k)


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


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread: the solver's vector operations are too small to gain from threads, and on a busy
    machine waking BLAS threads for every dot product costs more than the solve itself."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


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

    Args:
        n_neighbors: neighbours per row (k).
        alpha: spreading factor in (0, 1); larger spreads further from the labeled rows.
        power: exponent of the edge weights max(cos, 0)**power (> 0).
        solver: "cg" (conjugate gradient per class) or "iterative" (F ← αSF + (1 − α)Y).
        max_iter: maximum iterations of the solver (per class for CG).
        tol: relative tolerance (CG residual, or change of F for the iterative solver).
        index: "exact", "ivf" (faiss IVF-Flat, approximate), "hnsw" (faiss HNSW, approximate) or "auto" (exact up
            to ``exact_threshold`` rows, IVF above). The IVF index has about 4·sqrt(n) lists, a quantizer trained
            by 5 k-means iterations on a subsample of 10 rows per list, and probes ``nprobe`` lists per row.
            Without faiss, search is always exact (chunked torch).
        exact_threshold: largest number of rows searched exactly when ``index="auto"``.
        nprobe: inverted lists probed per row by the IVF index (more: better recall, proportionally slower).
        class_balance: divide each class column of F by its total mass before normalising, so that classes with
            many labeled rows do not swallow the boundary; this moves predictions toward under-represented classes.
        metric: similarity; only "cosine" (rows are L2-normalised) is supported.
        random_state: seed of the IVF training subsample and quantizer.
        prior_weight: weight (>= 0) of ``fit``'s ``prior`` on the unlabeled rows, relative to the weight 1 of a
            labeled row's one-hot label; 0 ignores the prior's values (its classes still define ``classes_``).

    A ``prior`` passed to ``fit`` (an (n, C) array of class probabilities, e.g. from
    `hf_ssl.zero_shot.zero_shot_probabilities`) initialises the label distributions of the unlabeled rows:
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
        graph_: symmetrised (n, n) sparse affinity W.  index_: neighbour backend used ("faiss-flat", "faiss-ivf",
            "faiss-hnsw" or "torch-exact").  timings_: seconds for "index_build", "knn" (incl. build), "graph",
            "solve", "total".
    """

    def __init__(self, n_neighbors: int = 10, alpha: float = 0.99, power: float = 3, solver: str = "cg",
                 max_iter: int = 30, tol: float = 1e-6, index: str = "auto", exact_threshold: int = 20000,
                 nprobe: int = 4, class_balance: bool = False, metric: str = "cosine", random_state: int = 0,
                 prior_weight: float = 1.0):
        self.n_neighbors, self.alpha, self.power, self.solver = n_neighbors, alpha, power, solver
        self.max_iter, self.tol, self.index, self.exact_threshold = max_iter, tol, index, exact_threshold
        self.nprobe, self.class_balance, self.metric, self.random_state = nprobe, class_balance, metric, random_state
        self.prior_weight = prior_weight

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments, as in scikit-learn.

        Args:
            deep: unused (kept for scikit-learn compatibility).
        """
        names = ("n_neighbors", "alpha", "power", "solver", "max_iter", "tol", "index", "exact_threshold", "nprobe",
                 "class_balance", "metric", "random_state", "prior_weight")
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
        X, y = _as_numpy(X), _as_numpy(y)
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
        prior = _as_numpy(prior)
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
        k = int(self.n_neighbors)
        kind = self.index if self.index != "auto" else ("exact" if n <= self.exact_threshold else "ivf")
        faiss = _import_faiss()
        if faiss is None:
            if kind != "exact":
                warnings.warn(f"faiss is not installed: index={self.index!r} falls back to exact torch search, "
                              f"which is O(n^2) for n={n}", stacklevel=3)
            self.index_ = "torch-exact"
            start = time.perf_counter()
            result = _torch_knn(Xn, k)
            self.timings_["index_build"] = 0.0
            self.timings_["knn"] = time.perf_counter() - start
            return result
        self.index_ = {"exact": "faiss-flat", "ivf": "faiss-ivf", "hnsw": "faiss-hnsw"}[kind]
        start = time.perf_counter()
        result = _faiss_knn(faiss, Xn, k, kind, int(self.nprobe), int(self.random_state), self.timings_)
        self.timings_["knn"] = time.perf_counter() - start
        return result

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
        Xn = _normalised_rows(X)
        n = Xn.shape[0]
        self.n_features_in_ = Xn.shape[1]
        sims, idx = self._neighbours(Xn)
        del Xn

        start = time.perf_counter()
        self.graph_ = _knn_graph(sims, idx, float(self.power))
        del sims, idx
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
        with _single_threaded_blas():
            F, self.n_iter_, self.converged_ = _spread(S, Y, float(self.alpha), self.solver, int(self.max_iter),
                                                       float(self.tol))
        self.timings_["solve"] = time.perf_counter() - start
        del S, Y
        np.maximum(F, 0.0, out=F)  # the exact solution is non-negative; clip solver round-off
        if self.class_balance:
            mass = F.sum(axis=0)
            F /= np.where(mass > 0, mass, 1.0)

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
