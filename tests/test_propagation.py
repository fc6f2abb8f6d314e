"""LabelPropagator against a dense reference, its -1 handling, class balance, backends and input checks."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers.points import clusters, label_some

from hf_ssl.graph.propagation import LabelPropagator


def dense_reference(X: np.ndarray, y: np.ndarray, k: int, alpha: float, power: float) -> tuple[np.ndarray, ...]:
    """Label spreading written out with dense matrices: (W, distributions, transduction)."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    cos = Xn @ Xn.T
    n = len(X)
    W = np.zeros((n, n))
    for i in range(n):
        others = np.argsort(-np.where(np.arange(n) == i, -np.inf, cos[i]), kind="stable")[:k]
        W[i, others] = np.maximum(cos[i, others], 0) ** power
    W = W + W.T
    d = W.sum(axis=1)
    S = W / np.sqrt(np.outer(d, d))
    classes = np.unique(y[y >= 0])
    Y = (y[:, None] == classes[None, :]).astype(float)
    F = (1 - alpha) * np.linalg.solve(np.eye(n) - alpha * S, Y)
    F /= F.sum(axis=1, keepdims=True)
    F[y >= 0] = Y[y >= 0]
    transduction = classes[F.argmax(axis=1)]
    return W, F, transduction


@pytest.mark.parametrize("solver,alpha,max_iter", [("cg", 0.99, 1000), ("iterative", 0.9, 2000)])
def test_matches_dense_reference(solver, alpha, max_iter):
    X, truth = clusters(40, 3, 6, noise=0.5, seed=1)
    y = label_some(truth, 2, seed=1)
    W_ref, F_ref, t_ref = dense_reference(X, y, k=6, alpha=alpha, power=3)
    model = LabelPropagator(n_neighbors=6, alpha=alpha, solver=solver, max_iter=max_iter, tol=1e-12).fit(X, y)
    np.testing.assert_allclose(model.graph_.toarray(), W_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.label_distributions_, F_ref, atol=1e-6)
    np.testing.assert_array_equal(model.transduction_, t_ref)
    assert model.converged_
    # the task is noisy enough that spreading is not trivially perfect, but it must beat chance by far
    assert 0.7 < (t_ref == truth).mean()
    plogp = np.where(F_ref > 0, F_ref * np.log(np.where(F_ref > 0, F_ref, 1)), 0)
    expected_certainty = 1 + plogp.sum(axis=1) / np.log(3)
    np.testing.assert_allclose(model.certainty_, expected_certainty, atol=1e-5)
    np.testing.assert_allclose(model.confidence_, F_ref.max(axis=1), atol=1e-6)


def test_solvers_agree_and_attributes():
    X, truth = clusters(60, 4, 8, noise=0.8, seed=2)
    y = label_some(truth, 3, seed=2)
    cg_model = LabelPropagator(alpha=0.9, max_iter=500, tol=1e-10).fit(X, y)
    it_model = LabelPropagator(alpha=0.9, solver="iterative", max_iter=1000, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(cg_model.label_distributions_, it_model.label_distributions_, atol=1e-6)
    assert it_model.n_iter_ > cg_model.n_iter_ > 1
    assert set(cg_model.timings_) >= {"knn", "graph", "solve", "total"}
    assert cg_model.label_distributions_.shape == (240, 4)
    np.testing.assert_allclose(cg_model.label_distributions_.sum(axis=1), 1.0)


def test_minus_one_handling_and_label_values():
    X, truth = clusters(50, 2, 5, noise=0.3, seed=3)
    labels = np.array([3, 7])[truth]  # non-contiguous class values
    y = np.full(len(X), -1)
    y[[0, 1, 50, 51]] = labels[[0, 1, 50, 51]]
    y[2] = 7  # a wrong label inside class 3's cluster must be kept on its own row
    model = LabelPropagator(n_neighbors=8).fit(X, y)
    np.testing.assert_array_equal(model.classes_, [3, 7])
    labeled = y >= 0
    np.testing.assert_array_equal(model.transduction_[labeled], y[labeled])
    assert model.transduction_[2] == 7
    unlabeled = ~labeled
    assert set(model.transduction_[unlabeled]) <= {3, 7}
    assert (model.transduction_[unlabeled] == labels[unlabeled]).mean() > 0.95
    np.testing.assert_allclose(model.confidence_[labeled], 1.0)
    assert model.certainty_.min() >= -1e-9 and model.certainty_.max() <= 1 + 1e-9
    # the wrong label on row 2 leaks class 7 mass into class 3's cluster: its neighbours are less certain
    cluster3 = unlabeled & (truth == 0)
    assert model.confidence_[cluster3].min() < 1


def test_unreachable_rows_stay_unlabeled():
    rng = np.random.default_rng(4)
    a = np.array([1.0, 0.0, 0.0]) + 0.05 * rng.normal(size=(10, 3))
    b = np.array([0.0, 0.0, 1.0]) + 0.05 * rng.normal(size=(10, 3))  # orthogonal to a: zero-weight edges only
    X = np.vstack([a, b])
    y = np.full(20, -1)
    y[0] = 0
    model = LabelPropagator(n_neighbors=3).fit(X, y)
    assert (model.transduction_[1:10] == 0).all()
    assert (model.transduction_[10:] == -1).all()
    np.testing.assert_allclose(model.certainty_[10:], 0.0)


def test_faiss_and_torch_fallback_agree(monkeypatch):
    pytest.importorskip("faiss")
    X, truth = clusters(100, 3, 16, noise=1.0, seed=5)
    y = label_some(truth, 3, seed=5)
    with_faiss = LabelPropagator(index="exact").fit(X, y)
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    without = LabelPropagator(index="exact").fit(X, y)
    assert with_faiss.index_ == "faiss-flat" and without.index_ == "torch-exact"
    np.testing.assert_array_equal(with_faiss.graph_.indptr, without.graph_.indptr)
    np.testing.assert_array_equal(with_faiss.graph_.indices, without.graph_.indices)
    np.testing.assert_allclose(with_faiss.graph_.data, without.graph_.data, rtol=1e-4)
    np.testing.assert_array_equal(with_faiss.transduction_, without.transduction_)
    np.testing.assert_allclose(with_faiss.label_distributions_, without.label_distributions_, atol=1e-5)
    with pytest.warns(UserWarning, match="faiss is not installed"):
        fallback = LabelPropagator(index="hnsw").fit(X, y)
    assert fallback.index_ == "torch-exact"
    ivf = LabelPropagator(index="ivf").fit(X, y)  # the IVF search is plain torch: no faiss needed
    assert ivf.index_ == "ivf-blocked"


def test_torch_input():
    torch = pytest.importorskip("torch")
    X, truth = clusters(30, 2, 4, noise=0.3, seed=6)
    y = label_some(truth, 2, seed=6)
    from_numpy = LabelPropagator(n_neighbors=5).fit(X, y)
    from_torch = LabelPropagator(n_neighbors=5).fit(torch.tensor(X), torch.tensor(y))
    np.testing.assert_array_equal(from_numpy.transduction_, from_torch.transduction_)


@pytest.mark.parametrize("index", ["ivf", "hnsw", "auto"])
def test_approximate_index_accuracy(index):
    pytest.importorskip("faiss")
    X, truth = clusters(300, 10, 32, noise=0.7, seed=7)  # 3000 rows
    y = label_some(truth, 3, seed=7)
    model = LabelPropagator(index=index, exact_threshold=1000).fit(X, y)
    assert model.index_ == {"ivf": "ivf-blocked", "hnsw": "faiss-hnsw", "auto": "ivf-blocked"}[index]
    unlabeled = y < 0
    assert (model.transduction_[unlabeled] == truth[unlabeled]).mean() >= 0.99


def test_auto_uses_exact_below_threshold():
    pytest.importorskip("faiss")
    X, truth = clusters(20, 2, 4, noise=0.3)
    model = LabelPropagator(n_neighbors=5).fit(X, label_some(truth, 2))
    assert model.index_ == "faiss-flat"


GOOD_X, GOOD_TRUTH = clusters(10, 2, 3, noise=0.3)
GOOD_Y = label_some(GOOD_TRUTH, 2)


@pytest.mark.parametrize("X,y,params,name", [
    (GOOD_X, GOOD_Y[:-1], {}, "y has 19 entries but X has 20 rows"),
    (GOOD_X[:, 0], GOOD_Y, {}, "Expected 2D array, got 1D array"),
    (GOOD_X[:1], GOOD_Y[:1], {}, "1 sample"),
    (GOOD_X, np.full(20, -1), {}, "y has no labeled rows"),
    (np.where(np.arange(3) == 1, np.nan, GOOD_X), GOOD_Y, {}, "Input X contains NaN"),
    (GOOD_X, np.where(np.arange(20) == 5, -2, GOOD_Y), {}, "below -1: -1 marks unlabeled rows"),
    (GOOD_X, GOOD_Y + 0.5, {}, "Unknown label type: continuous"),
    (GOOD_X, np.where(np.arange(20) == 5, "a", GOOD_Y.astype(object)), {}, "y mixes strings"),
    (GOOD_X, GOOD_Y, {"n_neighbors": 20}, "n_neighbors"),
    (GOOD_X, GOOD_Y, {"n_neighbors": 0}, "n_neighbors"),
    (GOOD_X, GOOD_Y, {"alpha": 1.0}, "alpha"),
    (GOOD_X, GOOD_Y, {"alpha": 0.0}, "alpha"),
    (GOOD_X, GOOD_Y, {"alpha": "0.5"}, "alpha"),
    (GOOD_X, GOOD_Y, {"power": 0}, "power"),
    (GOOD_X, GOOD_Y, {"power": np.inf}, "power must be a finite number"),
    (GOOD_X, GOOD_Y, {"power": np.nan}, "power must be a finite number"),
    (GOOD_X, GOOD_Y, {"solver": "lsqr"}, "solver"),
    (GOOD_X, GOOD_Y, {"index": "lsh"}, "index"),
    (GOOD_X, GOOD_Y, {"metric": "euclidean"}, "metric"),
    (GOOD_X, GOOD_Y, {"nprobe": 0}, "nprobe"),
    (GOOD_X, GOOD_Y, {"max_iter": 0}, "max_iter"),
    (GOOD_X, GOOD_Y, {"tol": np.inf}, "tol"),
    (GOOD_X, GOOD_Y, {"n_jobs": 0}, "n_jobs"),
    (GOOD_X, GOOD_Y, {"n_jobs": 1.5}, "n_jobs"),
])
def test_input_errors(X, y, params, name):
    params = {"n_neighbors": 3, **params}
    with pytest.raises(ValueError, match=name):
        LabelPropagator(**params).fit(X, y)
