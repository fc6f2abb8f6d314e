"""LabelPropagator as a scikit-learn estimator: the estimator checks, parameters, sparse input, string labels,
convergence warnings, large finite values and inductive prediction."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from helpers.points import clusters, label_some
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from hf_ssl.graph.propagation import LabelPropagator

DOCS = Path(__file__).resolve().parents[1] / "docs" / "label_propagator.md"
UNLABELED_CLASS = ("-1 marks unlabeled rows (the scikit-learn semi_supervised convention), so it cannot also be a "
                   "class; scikit-learn exempts its own LabelSpreading from this part of the check by name")
TEN_SAMPLES = ("the check fits 10 samples and a row is not its own neighbour, so n_neighbors=10 needs 11; it passes "
               "with n_neighbors < 10")
SMALL_DATA_CHECKS = ("check_classifiers_one_label", "check_estimators_nan_inf", "check_fit2d_1feature")


def expected_failed_checks(estimator: LabelPropagator) -> dict[str, str]:
    """The estimator checks LabelPropagator fails on purpose, with the reason (listed in docs/label_propagator.md)."""
    small = {name: TEN_SAMPLES for name in SMALL_DATA_CHECKS} if estimator.n_neighbors >= 10 else {}
    return {"check_classifiers_classes": UNLABELED_CLASS, **small}


@parametrize_with_checks([LabelPropagator()], expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("name", SMALL_DATA_CHECKS)
def test_small_data_checks_pass_with_fewer_neighbours(name):
    getattr(estimator_checks, name)("LabelPropagator", LabelPropagator(n_neighbors=3))


def test_expected_failures_are_listed_in_the_docs():
    text = DOCS.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(check_\w+)` \|", text, flags=re.MULTILINE))
    assert listed == set(expected_failed_checks(LabelPropagator())) | {"check_array_api_input"}


@pytest.mark.parametrize("labels", [np.array(["one", "two", "three"]), np.array(["one", "two", "three"], dtype=object)])
def test_string_labels_fit_and_predict(labels):
    X, truth = clusters(20, 3, 4, noise=0.2, seed=8)
    estimator_checks.check_classifiers_predictions(X, labels[truth], "LabelPropagator", LabelPropagator())
    y = label_some(truth, 2, seed=8).astype(object)
    y[y >= 0] = labels[truth[y >= 0].astype(int)]
    model = LabelPropagator(n_neighbors=5).fit(X, y)
    assert model.classes_.tolist() == sorted(labels.tolist())
    assert model.transduction_.dtype == object
    assert (model.transduction_ == labels[truth]).mean() > 0.95
    assert (model.predict(X + 0.01) == labels[truth]).mean() > 0.95


def test_string_labels_keep_minus_one_for_unreachable_rows():
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    y = np.array(["a", -1, -1, -1, -1], dtype=object)
    model = LabelPropagator(n_neighbors=1).fit(X, y)
    assert model.transduction_.tolist() == ["a", "a", "a", -1, -1]


def test_get_set_params_and_clone():
    model = LabelPropagator(n_neighbors=4)
    assert model.set_params(alpha=0.5, n_jobs=1) is model
    assert model.get_params()["alpha"] == 0.5 and model.get_params()["n_jobs"] == 1
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    with pytest.raises(ValueError, match="Invalid parameter 'alpah'"):
        model.set_params(alpah=0.5)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_input_matches_dense(fmt):
    X, truth = clusters(30, 3, 6, noise=0.5, seed=9)
    X[np.abs(X) < 0.5] = 0.0
    y = label_some(truth, 2, seed=9)
    dense = LabelPropagator(n_neighbors=5, index="exact").fit(X, y)
    sparse = LabelPropagator(n_neighbors=5).fit(sp.coo_matrix(X).asformat(fmt), y)
    assert sparse.index_ == "sparse-exact" and sp.issparse(sparse.X_)
    np.testing.assert_allclose(sparse.graph_.toarray(), dense.graph_.toarray(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sparse.transduction_, dense.transduction_)
    np.testing.assert_allclose(sparse.predict_proba(sp.csr_matrix(X[:7])), dense.predict_proba(X[:7]), atol=1e-6)
    np.testing.assert_allclose(dense.predict_proba(sp.csr_matrix(X[:7])), dense.predict_proba(X[:7]), atol=1e-6)


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_sparse_input_with_an_approximate_index_names_x_and_the_fix(index):
    X, truth = clusters(10, 2, 3, noise=0.3)
    with pytest.raises(ValueError, match=rf"index='{index}' needs dense X.*use index='exact'.*X.toarray\(\)"):
        LabelPropagator(n_neighbors=3, index=index).fit(sp.csr_matrix(X), label_some(truth, 2))


@pytest.mark.parametrize("solver", ["cg", "iterative"])
def test_convergence_warning_when_max_iter_is_reached(solver):
    X, truth = clusters(60, 4, 16, noise=1.0, seed=10)
    y = label_some(truth, 2, seed=10)
    with pytest.warns(ConvergenceWarning, match="max_iter=2 was reached without convergence"):
        model = LabelPropagator(solver=solver, max_iter=2).fit(X, y)
    assert not model.converged_ and model.n_iter_ == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert LabelPropagator(solver=solver, alpha=0.9, max_iter=5000).fit(X, y).converged_


def test_large_finite_values_are_not_called_infinite():
    X, truth = clusters(20, 2, 4, noise=0.3, seed=11)
    y = label_some(truth, 2, seed=11)
    plain = LabelPropagator(n_neighbors=4).fit(X, y)
    huge = LabelPropagator(n_neighbors=4).fit(X * 1e39, y)
    np.testing.assert_allclose(huge.label_distributions_, plain.label_distributions_, atol=1e-6)
    np.testing.assert_allclose(huge.predict_proba(X[:3] * 1e300), plain.predict_proba(X[:3]), atol=1e-6)
    with pytest.raises(ValueError, match="Input X contains infinity"):
        LabelPropagator(n_neighbors=4).fit(np.where(np.arange(4) == 2, np.inf, X), y)


def test_predict_proba_weights_neighbours_like_the_graph():
    X, truth = clusters(40, 3, 8, noise=0.6, seed=12)
    y = label_some(truth, 3, seed=12)
    model = LabelPropagator(n_neighbors=6, max_iter=500, tol=1e-10).fit(X, y)
    rng = np.random.default_rng(12)
    Q = X[:15] + 0.3 * rng.normal(size=(15, 8))
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    cos = Qn @ Xn.T
    expected = np.zeros((15, 3))
    for i in range(15):
        top = np.argsort(-cos[i], kind="stable")[:6]
        expected[i] = (np.maximum(cos[i, top], 0) ** 3) @ model.label_distributions_[top]
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(Q), expected, atol=1e-5)
    np.testing.assert_array_equal(model.predict(Q), model.classes_[expected.argmax(axis=1)])
    assert (model.predict(Q) == truth[:15]).mean() > 0.8


def test_predict_gives_the_uniform_distribution_without_positive_similarity():
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.7, 0.2]])
    model = LabelPropagator(n_neighbors=2).fit(X, [0, 1, -1, -1])
    np.testing.assert_allclose(model.predict_proba([[-1.0, 0.0]]), [[0.5, 0.5]])


def test_predict_checks_the_number_of_features():
    X, truth = clusters(10, 2, 3, noise=0.3)
    model = LabelPropagator(n_neighbors=3).fit(X, label_some(truth, 2))
    with pytest.raises(ValueError, match="X has 2 features, but LabelPropagator is expecting 3 features"):
        model.predict(X[:, :2])
