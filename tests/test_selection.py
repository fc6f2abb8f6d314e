"""select_for_labeling strategies, the diversity guard, propagate_cluster_labels, and input checks."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from hf_ssl.graph.selection import propagate_cluster_labels, select_for_labeling


def clusters(sizes: list[int], dim: int = 16, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian clusters of the given sizes around random unit centres; (X, cluster ids)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    X = centres[truth] + noise * rng.normal(size=(len(truth), dim)) / math.sqrt(dim)
    return X, truth


def random_probs(n: int, n_classes: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(n_classes), size=n)


@pytest.mark.parametrize("strategy", ["kmeans", "uncertainty", "margin", "random"])
def test_returns_budget_distinct_indices(strategy):
    X, _ = clusters([60, 50, 40])
    picks = select_for_labeling(X, 12, strategy=strategy, probs=random_probs(len(X)))
    assert picks.shape == (12,) and np.issubdtype(picks.dtype, np.integer)
    assert len(np.unique(picks)) == 12
    assert picks.min() >= 0 and picks.max() < len(X)


def test_kmeans_distinct_rows_even_with_duplicates():
    X = np.repeat(np.eye(3), 10, axis=0)  # 3 distinct vectors, 10 copies each: centroids share nearest rows
    picks = select_for_labeling(X, 6, strategy="kmeans")
    assert len(np.unique(picks)) == 6
    assert len(np.unique(X[picks], axis=0)) == 3  # every distinct vector is represented


def test_budget_equal_to_n_and_torch_input():
    torch = pytest.importorskip("torch")
    X, _ = clusters([5, 5])
    np.testing.assert_array_equal(np.sort(select_for_labeling(X, 10)), np.arange(10))
    from_torch = select_for_labeling(torch.tensor(X), 3, strategy="margin", probs=torch.tensor(random_probs(10)))
    from_numpy = select_for_labeling(X, 3, strategy="margin", probs=random_probs(10))
    np.testing.assert_array_equal(from_torch, from_numpy)


SIZES = [80, 60, 50, 40, 30, 25, 20, 15, 12, 10]  # 10 well-separated clusters, some small


def test_kmeans_covers_every_cluster_where_random_does_not(monkeypatch):
    X, truth = clusters(SIZES, seed=1)
    picks = []
    for seed in range(3):
        kmeans = select_for_labeling(X, 10, strategy="kmeans", random_state=seed)
        assert len(np.unique(truth[kmeans])) == 10
        picks.append(kmeans)
        random = select_for_labeling(X, 10, strategy="random", random_state=seed)
        assert len(np.unique(truth[random])) < 10
    # deterministic for a fixed seed, and the same without faiss (the k-means is plain torch)
    np.testing.assert_array_equal(select_for_labeling(X, 10, random_state=0), picks[0])
    monkeypatch.setitem(sys.modules, "faiss", None)
    np.testing.assert_array_equal(select_for_labeling(X, 10, random_state=0), picks[0])


@pytest.mark.parametrize(("sizes", "k"), [(SIZES, 10), ([300] * 8, 40)])
def test_kmeans_matches_faiss_spherical_kmeans_from_the_same_seeding(sizes, k):
    faiss = pytest.importorskip("faiss")
    from sklearn.cluster import kmeans_plusplus

    from hf_ssl.graph.selection import _KMEANS_ITERS, _kmeans, _normalised_features

    X, _ = clusters(sizes, dim=32, noise=2.0, seed=3)
    Xn = _normalised_features(X)
    init, _ = kmeans_plusplus(Xn, k, random_state=5)
    km = faiss.Kmeans(Xn.shape[1], k, niter=_KMEANS_ITERS, seed=5, spherical=True, min_points_per_centroid=1,
                      max_points_per_centroid=256, verbose=False)
    km.train(Xn, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
    _, faiss_assign = km.index.search(Xn, 1)
    centroids, assign = _kmeans(Xn, k, 5)
    np.testing.assert_array_equal(assign, faiss_assign.ravel())
    np.testing.assert_allclose(centroids, km.centroids, atol=1e-5)


def test_kmeans_picks_are_central():
    X, truth = clusters([100, 100], noise=0.5, seed=2)
    picks = select_for_labeling(X, 2, strategy="kmeans")
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    for row in picks:
        members = Xn[truth == truth[row]]
        centre = members.mean(axis=0)
        centre /= np.linalg.norm(centre)
        # the pick is among the 10% of its cluster most similar to the cluster mean
        assert Xn[row] @ centre >= np.quantile(members @ centre, 0.9)


@pytest.mark.parametrize("strategy", ["uncertainty", "margin"])
def test_uncertainty_picks_are_uncertain(strategy):
    X, _ = clusters([150, 150], dim=8, noise=1.0, seed=3)
    probs = random_probs(len(X), seed=3)
    budget = 5
    picks = select_for_labeling(X, budget, strategy=strategy, probs=probs)
    if strategy == "uncertainty":
        score = probs.max(axis=1)
    else:
        top2 = np.sort(probs, axis=1)[:, -2:]
        score = top2[:, 1] - top2[:, 0]
    candidates = np.argsort(score, kind="stable")[:10 * budget]
    assert set(picks.tolist()) <= set(candidates.tolist())
    assert score[picks].max() <= np.quantile(score, 10 * budget / len(X))
    plain = select_for_labeling(X, budget, strategy=strategy, probs=probs, diversity=False)
    np.testing.assert_array_equal(plain, candidates[:budget])


def test_diversity_guard_avoids_duplicates():
    rng = np.random.default_rng(4)
    distinct = rng.normal(size=(20, 8))
    X = np.vstack([np.repeat(distinct, 10, axis=0), rng.normal(size=(200, 8))])  # rows 0-199: 10 copies each
    probs = np.zeros((400, 2))
    conf = np.concatenate([0.5 + 0.01 * np.arange(200) / 200, np.full(200, 0.99)])  # copies are most uncertain
    probs[:, 0], probs[:, 1] = conf, 1 - conf
    plain = select_for_labeling(X, 8, strategy="uncertainty", probs=probs, diversity=False)
    guarded = select_for_labeling(X, 8, strategy="uncertainty", probs=probs)
    assert len(np.unique(X[plain], axis=0)) == 1  # without the guard: 8 copies of the same row
    assert len(np.unique(X[guarded], axis=0)) == 8  # with it: 8 different vectors
    assert conf[guarded].max() < 0.99  # still all from the uncertain block


def test_propagate_cluster_labels_all_members():
    X, truth = clusters([30, 20, 10], seed=5)
    selected = select_for_labeling(X, 3, strategy="kmeans")
    out = propagate_cluster_labels(X, selected, truth[selected] + 5)
    np.testing.assert_array_equal(out, truth + 5)


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9])
def test_propagate_cluster_labels_respects_fraction(fraction):
    X, truth = clusters([40, 21, 7], noise=0.6, seed=6)
    selected = select_for_labeling(X, 3, strategy="kmeans")
    labels = truth[selected]
    out = propagate_cluster_labels(X, selected, labels, fraction=fraction)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    group = np.argmax(Xn @ Xn[selected].T, axis=1)
    for g, rep in enumerate(selected):
        members = np.flatnonzero(group == g)
        assigned = members[out[members] >= 0]
        assert len(assigned) == math.ceil(fraction * len(members))
        assert out[rep] == labels[g] and (out[assigned] == labels[g]).all()
        rest = np.setdiff1d(members, assigned)
        if len(rest):  # the labeled members are the ones closest to the representative
            assert (Xn[assigned] @ Xn[rep]).min() >= (Xn[rest] @ Xn[rep]).max()


def test_propagate_unknown_representative_label():
    X, truth = clusters([10, 10], seed=7)
    out = propagate_cluster_labels(X, [0, 10], [-1, 4])
    assert (out[truth == 0] == -1).all() and (out[truth == 1] == 4).all()


X_SMALL, _ = clusters([5, 5])


@pytest.mark.parametrize("kwargs,name", [
    ({"budget": 11}, "budget"),
    ({"budget": 0}, "budget"),
    ({"budget": 2.5}, "budget"),
    ({"budget": 2, "strategy": "uncertainty"}, "probs"),
    ({"budget": 2, "strategy": "margin"}, "probs"),
    ({"budget": 2, "strategy": "margin", "probs": np.ones((9, 2))}, "probs"),
    ({"budget": 2, "strategy": "margin", "probs": np.ones((10, 1))}, "probs"),
    ({"budget": 2, "strategy": "entropy"}, "strategy"),
    ({"budget": 2, "X": X_SMALL[0]}, "X"),
    ({"budget": 2, "X": np.full((10, 3), np.nan)}, "X"),
])
def test_selection_errors(kwargs, name):
    kwargs = {"X": X_SMALL, **kwargs}
    with pytest.raises(ValueError, match=name):
        select_for_labeling(**kwargs)


@pytest.mark.parametrize("selected,labels,fraction,name", [
    ([0, 1], [0], 1.0, "labels"),
    ([0, 10], [0, 1], 1.0, "selected"),
    ([0, 0], [0, 1], 1.0, "selected"),
    ([[0, 1]], [0, 1], 1.0, "selected"),
    ([0, 1], [0, -2], 1.0, "labels"),
    ([0, 1], [0, 1], 0.0, "fraction"),
    ([0, 1], [0, 1], 1.5, "fraction"),
])
def test_propagate_errors(selected, labels, fraction, name):
    with pytest.raises(ValueError, match=name):
        propagate_cluster_labels(X_SMALL, np.array(selected), np.array(labels), fraction=fraction)
