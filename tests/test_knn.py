"""hf_ssl.knn: the blocked IVF search against exact search, padding, determinism and the dispatcher."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from hf_ssl.graph.knn import blocked_ivf_knn, default_nlist, knn_search, normalised_rows
from hf_ssl.graph.propagation import LabelPropagator


def clustered(n: int, d: int, centres: int, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, d))
    X = means[rng.integers(centres, size=n)] + noise * rng.standard_normal((n, d))
    return normalised_rows(X.astype(np.float32))


def exact(Xn: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = Xn @ Xn.T
    np.fill_diagonal(sims, -np.inf)
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, axis=1), idx


def recall(approx: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(t)) / len(t) for a, t in zip(approx, truth, strict=True)]))


def test_probing_every_list_is_exact_search():
    Xn = clustered(600, 16, 6, noise=0.6, seed=1)
    nlist = 12
    sims, idx, info = blocked_ivf_knn(Xn, 7, nprobe=nlist, nlist=nlist, seed=0)
    exact_sims, exact_idx = exact(Xn, 7)
    assert info["nlist"] == nlist and info["candidates_per_row"] == len(Xn)
    np.testing.assert_allclose(sims, exact_sims, atol=1e-5)  # the same similarities, best first
    assert recall(idx, exact_idx) > 0.999  # (ties aside) the same neighbours


def test_self_is_never_a_neighbour_and_recall_grows_with_probes():
    Xn = clustered(3000, 32, 20, noise=0.9, seed=2)
    _, exact_idx = exact(Xn, 10)
    recalls = []
    for nprobe in (1, 4, 16):
        sims, idx, info = blocked_ivf_knn(Xn, 10, nprobe=nprobe, seed=0)
        assert not (idx == np.arange(len(Xn))[:, None]).any()
        finite = np.isfinite(sims)
        assert (finite == (idx >= 0)).all()  # padding (-inf, -1) only where a small list ran out of candidates
        assert np.all(np.diff(np.where(finite, sims, -10.0), axis=1) <= 1e-6)  # sorted, best first
        assert info["nlist"] == default_nlist(len(Xn), nprobe)
        recalls.append(recall(idx, exact_idx))
    assert recalls[0] < recalls[1] < recalls[2] and recalls[2] > 0.9


def test_small_lists_pad_with_minus_one_and_propagation_drops_them():
    Xn = clustered(40, 8, 4, noise=0.1, seed=3)
    sims, idx, _ = blocked_ivf_knn(Xn, 15, nprobe=1, nlist=8, seed=0)
    padded = idx < 0
    assert padded.any() and np.isneginf(sims[padded]).all() and (idx[~padded] >= 0).all()
    y = np.full(len(Xn), -1)
    y[:4] = np.arange(4)
    model = LabelPropagator(n_neighbors=15, index="ivf", nprobe=1).fit(Xn, y)
    assert model.graph_.nnz > 0 and (model.neighbors_ >= -1).all()


def test_same_seed_same_neighbours_and_no_faiss_needed(monkeypatch):
    Xn = clustered(2000, 16, 10, noise=0.8, seed=4)
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    a = knn_search(Xn, 5, "ivf", nprobe=4, seed=7)
    b = knn_search(Xn, 5, "ivf", nprobe=4, seed=7)
    assert a[2] == "ivf-blocked" and set(a[3]) == {"index_build", "knn"}
    np.testing.assert_array_equal(a[1], b[1])
    assert knn_search(Xn, 5, "exact")[2] == "torch-exact"
    with pytest.raises(ValueError, match="kind must be one of"):
        knn_search(Xn, 5, "annoy")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalised_rows_gives_unit_rows_in_the_asked_dtype(dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 7)) * rng.uniform(0.01, 100, size=(50, 1))
    X[3] = 0.0
    Xn = normalised_rows(X, dtype=dtype)
    assert Xn.dtype == dtype and Xn.flags.c_contiguous and Xn is not X
    expected = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(Xn, expected, rtol=1e-15 if dtype == np.float64 else 1e-6, atol=0)
    assert (Xn[3] == 0).all()
    X[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        normalised_rows(X, dtype=dtype)
