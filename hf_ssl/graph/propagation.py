"""`LabelPropagator`: label spreading (Zhou et al., 2004) over a sparse cosine k-nearest-neighbour graph, as a
scikit-learn classifier.

The graph is never dense: neighbours come from `hf_ssl.graph.knn` (exact, a blocked IVF search in torch, or faiss
HNSW), and everything downstream lives in ``scipy.sparse`` with O(n·k) memory (`hf_ssl.graph.spreading`).
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data

from hf_ssl.graph.knn import KINDS, exact_knn, knn_search, normalised_rows
from hf_ssl.graph.labels import encode_targets, with_unlabeled
from hf_ssl.graph.spreading import SOLVERS, induce, knn_graph, normalise_graph, spread
from hf_ssl.graph.threads import compute_threads, resolve_n_jobs
from hf_ssl.utils import as_numpy, single_threaded_blas

__all__ = ["LabelPropagator"]

_INDEXES = ("auto", *KINDS)
_METRICS = ("cosine",)
_SMALL_WORK = 1 << 20
"""Entries of X below which the search runs on one thread without measuring the load."""


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_array(a: Any) -> Any:
    """Torch tensors as numpy arrays; everything else (arrays, lists, data frames, sparse matrices) unchanged."""
    return as_numpy(a) if hasattr(a, "detach") else a


def _length(a: Any) -> int | None:
    """Rows of an array-like (None for a scalar)."""
    shape = getattr(a, "shape", None)
    if shape is not None:
        return shape[0] if len(shape) else None
    return len(a) if hasattr(a, "__len__") else None


class LabelPropagator(ClassifierMixin, BaseEstimator):
    """Label spreading over a sparse cosine kNN graph, as a scikit-learn semi-supervised classifier.

    ``fit(X, y)`` takes the rows of every sample and their labels, -1 for unlabeled rows, as
    `sklearn.semi_supervised.LabelSpreading` does, and solves (I − αS)F = Y with S = D^-1/2 W D^-1/2 and W the
    symmetrised kNN graph with weights max(cos, 0)**power. ``predict`` / ``predict_proba`` extend the result to new
    points through their neighbours among the fitted rows.

    Parameters:
        n_neighbors (`int`, *optional*, defaults to `10`):
            Neighbours per row (k), in [1, n_samples).
        alpha (`float`, *optional*, defaults to `0.95`):
            Spreading factor in (0, 1); larger spreads further from the labeled rows.
        power (`float`, *optional*, defaults to `3`):
            Exponent (finite, > 0) of the edge weights max(cos, 0)**power.
        solver (`str`, *optional*, defaults to `"cg"`):
            `"cg"` (conjugate gradient per class) or `"iterative"` (F ← αSF + (1 − α)Y).
        max_iter (`int`, *optional*, defaults to `30`):
            Maximum iterations of the solver (per class for CG); a `ConvergenceWarning` says when it stopped there
            before reaching ``tol``.
        tol (`float`, *optional*, defaults to `1e-6`):
            Relative tolerance (> 0): CG residual, or change of F for the iterative solver.
        index (`str`, *optional*, defaults to `"auto"`):
            Neighbour search: `"exact"` (faiss flat, or chunked torch without faiss), `"ivf"` (approximate: a
            spherical k-means splits the rows into about sqrt(nprobe·n) lists and each list is searched against
            its ``nprobe`` nearest lists by matrix products; plain torch, no faiss needed), `"hnsw"` (faiss HNSW,
            approximate) or `"auto"` (exact up to ``exact_threshold`` rows, IVF above). See `hf_ssl.graph.knn`.
            Sparse X is always searched exactly, by sparse products (`"ivf"` and `"hnsw"` need dense X).
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
        n_jobs (`int` or `None`, *optional*, defaults to `None`):
            Threads of the neighbour search (torch and faiss). `None`: as many as CPUs are free, measured when
            the search starts (one for small inputs), at most torch's thread setting; see `hf_ssl.graph.threads`.
            A positive number: that many; -1: every usable CPU, -2: all but one, as in joblib.

    A ``prior`` passed to ``fit`` (an (n, C) array of class probabilities, e.g. from
    `hf_ssl.graph.zero_shot.zero_shot_probabilities`) initialises the label distributions of the unlabeled rows:
    Y[unlabeled] = prior_weight · prior[unlabeled], labeled rows stay one-hot. The classes are then 0..C-1, so a
    class without any labeled row can still be predicted, and ``y`` may have no labeled row at all.

    Attributes (after ``fit``):
        transduction_: (n,) labels; labeled rows keep theirs, rows that receive no label mass (not connected to
            any labeled row, and no prior or ``prior_weight=0``) get -1 (an object array when the classes are not
            numbers).
        label_distributions_: (n, C) row-normalised class distributions (one-hot on labeled rows, uniform on rows
            that receive no label mass).
        confidence_: (n,) maximum probability.  certainty_: (n,) 1 − entropy / log(C).
        classes_: (C,) sorted labels (0..C-1 with a prior).  n_iter_: solver iterations.  converged_: whether the
            solver reached ``tol``.
        n_features_in_: features of X.  feature_names_in_: column names of X, when X is a data frame.
        X_: (n, d) the L2-normalised rows (float32; CSR when X is sparse) that ``predict`` searches.
        neighbors_: (n, k) each row's nearest neighbours, best first (-1 where fewer than k were found).
        graph_: symmetrised (n, n) sparse affinity W.  index_: neighbour backend used ("faiss-flat", "torch-exact",
            "sparse-exact", "ivf-blocked" or "faiss-hnsw").  n_threads_: threads of the search.
        timings_: seconds for "index_build", "knn" (incl. build), "graph", "solve", "total".
    """

    def __init__(self, n_neighbors: int = 10, alpha: float = 0.95, power: float = 3, solver: str = "cg",
                 max_iter: int = 30, tol: float = 1e-6, index: str = "auto", exact_threshold: int = 20000,
                 nprobe: int = 8, metric: str = "cosine", random_state: int = 0, prior_weight: float = 1.0,
                 n_jobs: int | None = None):
        self.n_neighbors, self.alpha, self.power, self.solver = n_neighbors, alpha, power, solver
        self.max_iter, self.tol, self.index, self.exact_threshold = max_iter, tol, index, exact_threshold
        self.nprobe, self.metric, self.random_state = nprobe, metric, random_state
        self.prior_weight, self.n_jobs = prior_weight, n_jobs

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _check_params(self, n: int, sparse: bool) -> None:
        if not _is_int(self.n_neighbors) or not 1 <= self.n_neighbors < n:
            raise ValueError(f"n_neighbors must be an integer in [1, n_samples={n}), got {self.n_neighbors!r}")
        if not _is_real(self.alpha) or not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be a number in the open interval (0, 1), got {self.alpha!r}")
        if not _is_real(self.power) or not (math.isfinite(self.power) and self.power > 0):
            raise ValueError(f"power must be a finite number > 0, got {self.power!r}: the edge weights are "
                             f"max(cos, 0)**power, and an infinite power zeroes every edge but exact duplicates")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if not _is_int(self.max_iter) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not _is_real(self.tol) or not (math.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"tol must be a finite number > 0, got {self.tol!r}")
        if self.index not in _INDEXES:
            raise ValueError(f"index must be one of {_INDEXES}, got {self.index!r}")
        if sparse and self.index in ("ivf", "hnsw"):
            raise ValueError(f"index={self.index!r} needs dense X, got a scipy sparse X: use index='exact' or 'auto' "
                             f"(exact search by sparse products), or pass X.toarray()")
        if not _is_int(self.exact_threshold) or self.exact_threshold < 0:
            raise ValueError(f"exact_threshold must be a non-negative integer, got {self.exact_threshold!r}")
        if not _is_int(self.nprobe) or self.nprobe < 1:
            raise ValueError(f"nprobe must be a positive integer, got {self.nprobe!r}")
        if self.metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {self.metric!r}")
        if not _is_int(self.random_state):
            raise ValueError(f"random_state must be an integer, got {self.random_state!r}")
        weight = self.prior_weight
        if not _is_real(weight) or not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"prior_weight must be a finite number >= 0, got {weight!r}")
        if self.n_jobs is not None and (not _is_int(self.n_jobs) or self.n_jobs == 0):
            raise ValueError(f"n_jobs must be None or a non-zero integer (-1: every CPU), got {self.n_jobs!r}")

    @staticmethod
    def _check_prior(prior: Any, n: int) -> np.ndarray:
        """The prior as float64 with rows renormalised to sum to exactly 1; raises on an invalid prior."""
        prior = as_numpy(prior)
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
        return prior / sums[:, None]

    def _threads(self, X: Any) -> int:
        work = X.nnz if sp.issparse(X) else X.shape[0] * X.shape[1]
        return resolve_n_jobs(self.n_jobs, work, _SMALL_WORK)

    def _neighbours(self, Xn: Any) -> tuple[np.ndarray, np.ndarray]:
        n = Xn.shape[0]
        kind = self.index if self.index != "auto" else ("exact" if n <= self.exact_threshold else "ivf")
        if sp.issparse(Xn):
            kind = "exact"
        with compute_threads(self._threads(Xn)) as self.n_threads_:
            sims, idx, self.index_, timings = knn_search(Xn, int(self.n_neighbors), kind, int(self.nprobe),
                                                         int(self.random_state))
        self.timings_.update(timings)
        return sims, idx

    def fit(self, X: Any, y: Any, prior: Any = None) -> LabelPropagator:
        """Build the kNN graph of X and spread the labels of y (and the prior, if any) over it.

        Parameters:
            X (array-like, scipy sparse matrix or `torch.Tensor`):
                (n, d) features, n >= 2.
            y (array-like or `torch.Tensor`):
                (n,) class labels, -1 for unlabeled rows: integers, or strings in an object array with the
                integer -1 for unlabeled rows; indices in [0, C) when ``prior`` is given.
            prior (array-like or `torch.Tensor`, *optional*, defaults to `None`):
                (n, C) class probabilities (non-negative, rows summing to 1 within 1e-3; they are renormalised
                exactly) that initialise the unlabeled rows' label distributions, weighted by ``prior_weight``;
                its rows for labeled samples are ignored.

        Returns:
            self.
        """
        t0 = time.perf_counter()
        X, y = _as_array(X), _as_array(y)
        n_rows, n_labels = _length(X), _length(y)
        if n_rows is not None and n_labels is not None and n_rows != n_labels:
            raise ValueError(f"y has {n_labels} entries but X has {n_rows} rows: give one label per row of X (-1 for "
                             f"unlabeled rows)")
        X, y = validate_data(self, X, y, accept_sparse=True, ensure_min_samples=2)
        self._check_params(X.shape[0], sp.issparse(X))
        if prior is not None:
            prior = self._check_prior(prior, X.shape[0])
        self.classes_, labeled, codes = encode_targets(y, None if prior is None else prior.shape[1])
        self.timings_: dict[str, float] = {}
        self.X_ = normalised_rows(X)
        n = self.X_.shape[0]
        sims, idx = self._neighbours(self.X_)
        self.neighbors_ = idx

        start = time.perf_counter()
        self.graph_ = knn_graph(sims, idx, float(self.power))
        del sims
        S = normalise_graph(self.graph_)
        self.timings_["graph"] = time.perf_counter() - start

        n_classes = len(self.classes_)
        Y = np.zeros((n, n_classes))
        if prior is not None:
            Y[~labeled] = float(self.prior_weight) * prior[~labeled]
            del prior
        Y[np.flatnonzero(labeled), codes] = 1.0

        start = time.perf_counter()
        with single_threaded_blas():
            F, self.n_iter_, self.converged_ = spread(S, Y, float(self.alpha), self.solver, int(self.max_iter),
                                                      float(self.tol))
        self.timings_["solve"] = time.perf_counter() - start
        del S, Y
        if not self.converged_:
            warnings.warn(f"max_iter={self.max_iter} was reached without convergence (solver={self.solver!r}, "
                          f"tol={self.tol}): the distributions are those of the last iteration; raise max_iter for "
                          f"the converged solution", ConvergenceWarning, stacklevel=2)
        self._set_results(F, labeled, codes)
        self.timings_["total"] = time.perf_counter() - t0
        return self

    def _set_results(self, F: np.ndarray, labeled: np.ndarray, codes: np.ndarray) -> None:
        """Normalise the solution F in place and set the distributions, transduction, confidence and certainty."""
        n, n_classes = F.shape
        np.maximum(F, 0.0, out=F)  # the exact solution is non-negative; clip solver round-off
        row_mass = F.sum(axis=1)
        reachable = row_mass > 0
        F[reachable] /= row_mass[reachable, None]
        F[~reachable] = 1.0 / n_classes
        F[labeled] = 0.0
        F[np.flatnonzero(labeled), codes] = 1.0
        self.label_distributions_ = F

        unreached = ~reachable & ~labeled
        self.transduction_ = with_unlabeled(self.classes_, F.argmax(axis=1), unreached)
        self.confidence_ = F.max(axis=1)
        if n_classes > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                plogp = np.where(F > 0, F * np.log(F), 0.0)
            self.certainty_ = 1.0 + plogp.sum(axis=1) / math.log(n_classes)
        else:
            self.certainty_ = np.ones(n)
        self.certainty_[unreached] = 0.0

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of new points: the average of the label distributions of their ``n_neighbors``
        most similar fitted rows (exact cosine search), weighted by max(cos, 0)**power as the graph's edges are.
        A point with no positive similarity to its neighbours gets the uniform distribution.

        Parameters:
            X (array-like, scipy sparse matrix or `torch.Tensor`):
                (m, d) points with the fitted number of features.

        Returns:
            (m, C) probabilities, columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        X = validate_data(self, _as_array(X), accept_sparse=True, reset=False)
        Q = normalised_rows(X)
        k = min(int(self.n_neighbors), self.X_.shape[0])
        with compute_threads(self._threads(Q)):
            sims, idx = exact_knn(Q, self.X_, k)
        return induce(sims, idx, self.label_distributions_, float(self.power))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of every new point (see `predict_proba`).

        Parameters:
            X (array-like, scipy sparse matrix or `torch.Tensor`):
                (m, d) points with the fitted number of features.

        Returns:
            (m,) labels from ``classes_``.
        """
        probs = self.predict_proba(X)
        return self.classes_[probs.argmax(axis=1)]
