"""Thread counts of the graph tools: free CPUs measured from /proc/stat, n_jobs, and LabelPropagator using them."""

from __future__ import annotations

import pytest
import torch
from helpers.points import clusters, label_some

from hf_ssl.graph import knn, propagation, threads
from hf_ssl.graph.propagation import LabelPropagator


@pytest.fixture
def two_torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_busy_cpus_reads_other_processes_time_on_our_cpus(monkeypatch):
    samples = iter([(100, 400), (150, 500)])  # (busy, total) jiffies: 50 of 100 busy over 2 CPUs
    monkeypatch.setattr(threads, "_affinity", lambda: {0, 1})
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads, "_cpu_times", lambda cpus: next(samples))
    assert threads.busy_cpus(window=0.0) == pytest.approx(1.0)


def test_busy_cpus_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(threads, "_cpu_times", lambda cpus: None)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (5.0, 1.0, 1.0))
    assert threads.busy_cpus(window=0.0) == 2.0


def test_cpu_times_sums_only_the_given_cpus(tmp_path, monkeypatch):
    stat = "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 10 0 5 80 5 0 0 0 0 0\ncpu1 1 1 1 1 1 1 1 1 0 0\nintr 1 2\n"
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(tmp_path / "stat", *a, **k)
                        if path == "/proc/stat" else real_open(path, *a, **k))
    (tmp_path / "stat").write_text(stat)
    assert threads._cpu_times({0}) == (15, 100)


@pytest.mark.usefixtures("two_torch_threads")
@pytest.mark.parametrize("busy,expected", [(0.0, 2), (0.9, 1), (1.2, 1), (2.0, 1)])
def test_free_cpus_subtracts_busy_cpus(monkeypatch, busy, expected):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads, "busy_cpus", lambda window: busy)
    assert threads.free_cpus() == expected


def test_free_cpus_never_exceeds_torch_threads(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 8)
    monkeypatch.setattr(threads, "busy_cpus", lambda window: 0.0)
    assert threads.free_cpus() == min(8, torch.get_num_threads())


def test_resolve_n_jobs(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)
    monkeypatch.setattr(threads, "free_cpus", lambda: 3)
    assert threads.resolve_n_jobs(None, 10, 100) == 1
    assert threads.resolve_n_jobs(None, 1000, 100) == 3
    assert threads.resolve_n_jobs(2, 10, 100) == 2
    assert threads.resolve_n_jobs(-1, 10, 100) == 4
    assert threads.resolve_n_jobs(-2, 10, 100) == 3
    assert threads.resolve_n_jobs(-9, 10, 100) == 1


def test_compute_threads_sets_and_restores_torch_and_faiss():
    faiss = pytest.importorskip("faiss")
    torch_before, faiss_before = torch.get_num_threads(), faiss.omp_get_max_threads()
    with threads.compute_threads(3) as n:
        assert n == 3 and torch.get_num_threads() == 3 and faiss.omp_get_max_threads() == 3
    assert torch.get_num_threads() == torch_before and faiss.omp_get_max_threads() == faiss_before


def test_usable_cpus_is_within_the_affinity_mask():
    assert 1 <= threads.usable_cpus() <= len(threads._affinity())


@pytest.mark.usefixtures("two_torch_threads")
@pytest.mark.parametrize("busy,n_jobs,expected", [(1.0, None, 1), (0.0, None, 2), (2.0, 2, 2)])
def test_label_propagator_searches_on_the_free_cpus(monkeypatch, busy, n_jobs, expected):
    X, truth = clusters(50, 2, 8, noise=1.0, seed=13)
    monkeypatch.setattr(propagation, "_SMALL_WORK", 0)
    seen = []
    search = knn.knn_search

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return search(*args, **kwargs)

    monkeypatch.setattr(propagation, "knn_search", spy)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setattr(threads, "busy_cpus", lambda window: busy)
    model = LabelPropagator(n_jobs=n_jobs, max_iter=1000).fit(X, label_some(truth, 3, seed=13))
    assert seen == [expected] and model.n_threads_ == expected and torch.get_num_threads() == 2


def test_small_inputs_search_on_one_thread_without_measuring(monkeypatch):
    monkeypatch.setattr(threads, "busy_cpus", lambda window: pytest.fail("measured the load for a small input"))
    X, truth = clusters(20, 2, 4, noise=0.3)
    y = label_some(truth, 2)
    assert LabelPropagator(n_neighbors=3, max_iter=1000).fit(X, y).n_threads_ == 1
    assert LabelPropagator(n_neighbors=3, max_iter=1000, n_jobs=2).fit(X, y).n_threads_ == 2
