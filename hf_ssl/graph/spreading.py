"""Label spreading (Zhou et al., 2004) on a sparse kNN affinity graph, and its extension to new points.

Pure functions on ``scipy.sparse`` graphs with O(n·k) memory; `hf_ssl.graph.propagation.LabelPropagator` wraps
them as a scikit-learn estimator.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, cg

__all__ = ["SOLVERS", "edge_weights", "induce", "knn_graph", "normalise_graph", "spread"]

SOLVERS = ("cg", "iterative")


def edge_weights(sims: np.ndarray, idx: np.ndarray, power: float) -> np.ndarray:
    """Float64 weights max(cos, 0)**power of (n, k) neighbour similarities; 0 where a neighbour is missing (-1)."""
    weights = np.maximum(sims.astype(np.float64), 0.0) ** power
    weights[idx < 0] = 0.0
    return weights


def knn_graph(sims: np.ndarray, idx: np.ndarray, power: float) -> sp.csr_matrix:
    """Symmetrised affinity W + Wᵀ of a kNN list with weights max(cos, 0)**power (missing neighbours dropped).

    Parameters:
        sims (`np.ndarray`):
            (n, k) similarity of every row to its neighbours.
        idx (`np.ndarray`):
            (n, k) neighbour indices, -1 where a row has fewer than k.
        power (`float`):
            Exponent of the weights.
    """
    n, k = idx.shape
    weights = edge_weights(sims, idx, power)
    index_dtype = np.int32 if n < 2**31 - 1 else np.int64
    rows = np.repeat(np.arange(n, dtype=index_dtype), k)
    cols = np.where(idx >= 0, idx, 0).astype(index_dtype).ravel()
    W = sp.csr_matrix((weights.ravel(), (rows, cols)), shape=(n, n))
    W = (W + W.T).tocsr()
    W.eliminate_zeros()
    return W


def normalise_graph(W: sp.csr_matrix) -> sp.csr_matrix:
    """S = D^-1/2 W D^-1/2 of an affinity W; isolated rows (degree 0) stay zero."""
    degree = np.asarray(W.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=inv_sqrt, where=degree > 0)
    S = W.copy()
    row_of_entry = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    S.data *= inv_sqrt[row_of_entry] * inv_sqrt[S.indices]
    return S


def spread(S: sp.csr_matrix, Y: np.ndarray, alpha: float, solver: str, max_iter: int,
           tol: float) -> tuple[np.ndarray, int, bool]:
    """F* = (1 − α)(I − αS)⁻¹Y by per-class conjugate gradient or by the fixed-point iteration F ← αSF + (1 − α)Y.

    Parameters:
        S (`scipy.sparse.csr_matrix`):
            (n, n) normalised graph.
        Y (`np.ndarray`):
            (n, C) initial label distributions.
        alpha (`float`):
            Spreading factor in (0, 1).
        solver (`str`):
            ``"cg"`` or ``"iterative"``.
        max_iter (`int`):
            Iterations at most (per class for CG).
        tol (`float`):
            Relative tolerance: CG residual, or change of F for the iteration.

    Returns:
        (F, iterations, converged); for CG, iterations is the maximum over classes.
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


def induce(sims: np.ndarray, idx: np.ndarray, distributions: np.ndarray, power: float) -> np.ndarray:
    """Class probabilities of new points from the spread distributions of their neighbours in the graph.

    Each new point gets the average of its neighbours' label distributions weighted by the graph's edge weights
    max(cos, 0)**power (Delalleau, Bengio and Le Roux, 2005); a point whose weights are all zero gets the uniform
    distribution.

    Parameters:
        sims (`np.ndarray`):
            (m, k) similarity of every new point to its neighbours among the fitted rows.
        idx (`np.ndarray`):
            (m, k) indices of those neighbours.
        distributions (`np.ndarray`):
            (n, C) label distributions of the fitted rows.
        power (`float`):
            Exponent of the weights.
    """
    weights = edge_weights(sims, idx, power)
    probs = np.einsum("mk,mkc->mc", weights, distributions[np.maximum(idx, 0)])
    mass = probs.sum(axis=1)
    reached = mass > 0
    probs[reached] /= mass[reached, None]
    probs[~reached] = 1.0 / distributions.shape[1]
    return probs
