"""Scale benchmark: scikit-learn LabelSpreading(kernel="knn") vs hf_ssl LabelPropagator on clustered 384-d data.

Usage:
    python -m bench.labelprop_scale --n 50000            # sklearn vs LabelPropagator (approximate and exact index)
    python -m bench.labelprop_scale --n 50000 --busy 1   # the same with one CPU-bound busy loop running alongside
    python -m bench.labelprop_scale --n 1000000          # LabelPropagator only: time and peak RSS

Each class is a mixture of a few Gaussian modes on the unit sphere with enough noise that kNN neighbourhoods are
mixed; about 1% of each class is labeled. Accuracy is measured on the unlabeled rows. ``--busy N`` starts N
``python -c "while True: pass"`` processes before the timed runs and stops them after, to measure on a loaded
machine; every run records the 1-minute load average before and after it. Results go to
bench/results/labelprop_scale_<n>.json (``_busy<N>`` before ``.json`` with ``--busy``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from bench.common import RESULTS, make_parser, start_run, write_result
from hf_ssl.graph.propagation import LabelPropagator


def make_data(n: int, dim: int, n_classes: int, modes: int, spread: float, noise: float,
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 (n, dim) unit vectors and their classes; generated in chunks to keep memory at n·dim·4 bytes.

    Args:
        n: rows.  dim: dimension.  n_classes: classes.  modes: Gaussian modes per class.
        spread: distance of the modes from their class centre (relative to the unit centre).
        noise: norm of the per-point Gaussian noise relative to the unit mode centre.
        seed: random seed.
    """
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    class_centres = unit(rng.standard_normal((n_classes, dim)))
    mode_centres = unit(class_centres[:, None, :] + spread * unit(rng.standard_normal((n_classes, modes, dim))))
    truth = rng.integers(n_classes, size=n)
    mode = rng.integers(modes, size=n)
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        centre = mode_centres[truth[start:stop], mode[start:stop]].astype(np.float32)
        eps = rng.standard_normal((stop - start, dim), dtype=np.float32) * np.float32(noise / np.sqrt(dim))
        X[start:stop] = unit(centre + eps)
    return X, truth


def label_subset(truth: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """y with round(fraction · class size) (at least 1) labeled rows per class, -1 elsewhere."""
    rng = np.random.default_rng(seed + 1)
    y = np.full(len(truth), -1, dtype=np.int64)
    for c in np.unique(truth):
        rows = np.flatnonzero(truth == c)
        y[rng.choice(rows, size=max(1, int(round(fraction * len(rows)))), replace=False)] = c
    return y


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def accuracy(pred: np.ndarray, truth: np.ndarray, y: np.ndarray) -> float:
    unlabeled = y < 0
    return float((pred[unlabeled] == truth[unlabeled]).mean())


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[list[int]]:
    """Run ``count`` CPU-bound ``python -c "while True: pass"`` processes inside the block; yields their pids."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(2.0 if count else 0.0)  # let the scheduler and the load average see them
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()


def load() -> float:
    return round(os.getloadavg()[0], 2)


def run_sklearn(X: np.ndarray, y: np.ndarray, truth: np.ndarray, k: int) -> dict[str, Any]:
    from sklearn.semi_supervised import LabelSpreading

    load_before = load()
    start = time.perf_counter()
    model = LabelSpreading(kernel="knn", n_neighbors=k).fit(X, y)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "accuracy": accuracy(model.transduction_, truth, y),
            "params": {"kernel": "knn", "n_neighbors": k, "alpha": model.alpha, "max_iter": model.max_iter},
            "load_before": load_before, "load_after": load()}


def exact_neighbours(X: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Exact cosine k nearest neighbours (self excluded) of ``rows`` among all rows of X, by blocked products."""
    import torch

    Xt = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)), dim=1)
    out = np.empty((len(rows), k), dtype=np.int64)
    for start in range(0, len(rows), 256):
        block = rows[start:start + 256]
        sims = Xt[torch.from_numpy(block)] @ Xt.T
        sims[torch.arange(len(block)), torch.from_numpy(block)] = -np.inf
        out[start:start + 256] = sims.topk(k, dim=1).indices.numpy()
    return out


def recall_at_k(neighbours: np.ndarray, rows: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each sampled row's exact k neighbours found in its approximate neighbour list."""
    return float(np.mean([len(set(neighbours[r]) & set(e)) / len(e) for r, e in zip(rows, exact, strict=True)]))


def run_propagator(X: np.ndarray, y: np.ndarray, truth: np.ndarray, exact: tuple[np.ndarray, np.ndarray] | None,
                   **params: Any) -> dict[str, Any]:
    load_before = load()
    start = time.perf_counter()
    model = LabelPropagator(**params).fit(X, y)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "accuracy": accuracy(model.transduction_, truth, y), "index": model.index_,
              "timings": {key: round(value, 3) for key, value in model.timings_.items()}, "n_iter": model.n_iter_,
              "n_threads": model.n_threads_, "unreachable": int((model.transduction_ < 0).sum()),
              "params": model.get_params(), "load_before": load_before, "load_after": load()}
    if exact is not None:
        result["recall_at_k"] = recall_at_k(model.neighbors_, *exact)
    result["same_class_neighbours"] = float(np.mean(truth[model.neighbors_] == truth[:, None]))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, seed=0)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--modes", type=int, default=4, help="Gaussian modes per class")
    parser.add_argument("--spread", type=float, default=0.8)
    parser.add_argument("--noise", type=float, default=3.0)
    parser.add_argument("--label-fraction", type=float, default=0.01)
    parser.add_argument("--k", type=int, default=10, help="neighbours for both methods")
    parser.add_argument("--compare-max-n", type=int, default=200_000,
                        help="above this n, only the default LabelPropagator runs (no sklearn, no exact index)")
    parser.add_argument("--busy", type=int, default=0,
                        help="CPU-bound busy-loop processes running alongside the timed runs")
    parser.add_argument("--recall_sample", type=int, default=2000,
                        help="rows whose exact neighbours are computed to measure the index's recall@k (0: skip)")
    return parser


def timed_runs(args: argparse.Namespace, X: np.ndarray, y: np.ndarray, truth: np.ndarray,
               exact: tuple[np.ndarray, np.ndarray] | None, runs: dict[str, dict[str, Any]], compare: bool) -> None:
    """scikit-learn's LabelSpreading (when comparing) and each LabelPropagator configuration, into ``runs``."""
    if compare:
        runs["sklearn_knn"] = run_sklearn(X, y, truth, args.k)
        print(f"sklearn LabelSpreading(knn, k={args.k}): {runs['sklearn_knn']['seconds']:.2f} s  "
              f"acc {runs['sklearn_knn']['accuracy']:.4f}  load {runs['sklearn_knn']['load_before']}->"
              f"{runs['sklearn_knn']['load_after']}", flush=True)
    configs = {"propagator_default": {"n_neighbors": args.k}}
    if compare:
        configs["propagator_exact"] = {"n_neighbors": args.k, "index": "exact"}
    for name, params in configs.items():
        runs[name] = run_propagator(X, y, truth, exact, **params)
        r = runs[name]
        print(f"LabelPropagator {name.split('_')[1]:<8} [{r['index']}]: {r['seconds']:.2f} s  acc {r['accuracy']:.4f}  "
              f"recall@{args.k} {r.get('recall_at_k', float('nan')):.3f}  same-class neighbours "
              f"{r['same_class_neighbours']:.4f}  timings {r['timings']}  threads {r['n_threads']}  "
              f"load {r['load_before']}->{r['load_after']}  unreachable {r['unreachable']}  "
              f"peak RSS {peak_rss_mb():.0f} MB", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.out = args.out or str(RESULTS / f"labelprop_scale_{args.n}{f'_busy{args.busy}' if args.busy else ''}.json")
    run = start_run(args, __file__, argv)

    start = time.perf_counter()
    X, truth = make_data(args.n, args.dim, args.classes, args.modes, args.spread, args.noise, args.seed)
    y = label_subset(truth, args.label_fraction, args.seed)
    result: dict[str, Any] = {
        "n": args.n, "dim": args.dim, "classes": args.classes, "labeled": int((y >= 0).sum()),
        "data": {"modes": args.modes, "spread": args.spread, "noise": args.noise, "seed": args.seed},
        "data_seconds": round(time.perf_counter() - start, 2), "rss_after_data_mb": round(peak_rss_mb(), 1),
    }
    print(f"n={args.n} dim={args.dim} classes={args.classes} labeled={result['labeled']} "
          f"(data {result['data_seconds']} s, RSS {result['rss_after_data_mb']} MB, load {os.getloadavg()[0]:.2f})",
          flush=True)

    exact = None
    if args.recall_sample > 0:
        rows = np.sort(np.random.default_rng(args.seed + 2).choice(args.n, min(args.n, args.recall_sample),
                                                                   replace=False))
        exact = (rows, exact_neighbours(X, rows, args.k))
        result["recall_sample"] = len(rows)
    runs: dict[str, dict[str, Any]] = {}
    compare = args.n <= args.compare_max_n
    with busy_loops(args.busy) as pids:
        if pids:
            print(f"busy loops {pids} running (load {load():.2f})", flush=True)
        timed_runs(args, X, y, truth, exact, runs, compare)
    result["busy_loops"] = args.busy
    configs = [name for name in runs if name.startswith("propagator_")]
    result["runs"] = runs
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if compare:
        base = runs["sklearn_knn"]
        result["speedup_vs_sklearn"] = {name: round(base["seconds"] / runs[name]["seconds"], 2) for name in configs}
        result["accuracy_gain_points"] = {name: round(100 * (runs[name]["accuracy"] - base["accuracy"]), 2)
                                          for name in configs}
        for name in configs:
            print(f"speed ratio sklearn/{name}: {result['speedup_vs_sklearn'][name]:.1f}x  "
                  f"accuracy difference {result['accuracy_gain_points'][name]:+.2f} points")
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB")

    print(f"wrote {write_result(args.out, result, run)}")


if __name__ == "__main__":
    main()
