"""Which 40 Reuters R8 training documents to label: k-means representatives vs a random draw, 3 seeds.

Uses the same frozen all-MiniLM-L6-v2 embeddings as `bench.labelprop_r8` (cached). For each seed and strategy,
`select_for_labeling(X_train, budget=40, ...)` picks 40 train rows; a logistic regression trained on them with their
true labels is scored on the R8 test rows, and `propagate_cluster_labels` (every train row takes the label of its
most similar selected row) is scored on the train rows.

    python -m bench.select_r8 --seeds 0 1 2 --out bench/results/select_r8.json
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench.common import PROBE_C, make_parser, start_run, summary, write_result
from bench.labelprop_r8 import r8_embeddings
from hf_ssl import propagate_cluster_labels, select_for_labeling

STRATEGIES = ("kmeans", "random")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, out="bench/results/select_r8.json", seeds=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--max_length", type=int, default=128)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run = start_run(args, __file__, argv)

    data = r8_embeddings(args.max_length)
    X, truth, n_train = data["X"], data["labels"], data["n_train"]
    X_train, y_train, X_test, y_test = X[:n_train], truth[:n_train], X[n_train:], truth[n_train:]
    n_classes = len(data["names"])
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in STRATEGIES}
    for seed in args.seeds:
        for strategy in STRATEGIES:
            start = time.perf_counter()
            rows = select_for_labeling(X_train, budget=args.budget, strategy=strategy, random_state=seed)
            seconds = time.perf_counter() - start
            labels = y_train[rows]
            clf = LogisticRegression(C=PROBE_C, max_iter=2000).fit(X_train[rows], labels)
            propagated = propagate_cluster_labels(X_train, rows, labels)
            rest = np.setdiff1d(np.arange(n_train), rows)
            record = {"seed": seed, "rows": rows.tolist(), "classes_covered": int(len(np.unique(labels))),
                      "class_counts": np.bincount(labels, minlength=n_classes).tolist(),
                      "select_seconds": round(seconds, 3),
                      "test_accuracy": float((clf.predict(X_test) == y_test).mean()),
                      "propagated_train_accuracy": float((propagated == y_train).mean()),
                      "propagated_unselected_train_accuracy": float((propagated[rest] == y_train[rest]).mean())}
            runs[strategy].append(record)
            print(json.dumps({"strategy": strategy} | {k: v for k, v in record.items() if k != "rows"}), flush=True)

    arms = {}
    for strategy in STRATEGIES:
        arms[strategy] = {key: summary([r[key] for r in runs[strategy]])
                          for key in ("test_accuracy", "propagated_train_accuracy",
                                      "propagated_unselected_train_accuracy", "classes_covered")}
    kmeans_better = arms["kmeans"]["test_accuracy"]["mean"] > arms["random"]["test_accuracy"]["mean"]
    report = {"embeddings": data["meta"], "classifier": {"C": PROBE_C, "max_iter": 2000},
              "arms": arms, "runs": runs, "targets": {"kmeans_beats_random_on_average": kmeans_better}}

    print(f"{'strategy':<8} {'metric':<38} {'mean':>7}  per seed")
    for strategy in STRATEGIES:
        for key, stats in arms[strategy].items():
            seeds = " ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in stats["values"])
            print(f"{strategy:<8} {key:<38} {stats['mean']:7.4f}  {seeds}")
    print(f"target kmeans beats random (mean test accuracy): {'met' if kmeans_better else 'MISSED'}")
    write_result(args.out, report, run)


if __name__ == "__main__":
    main()
