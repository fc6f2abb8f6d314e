"""How well the self-training safeguard's check (graph agreement, no held-out labels) tracks accuracy.

From every self-training run of a suite folder that recorded, per round, its accuracy on the evaluation rows and
the safeguard's check (`bench.suite.finetune_arms.trainer_records`):

- **pairwise agreement**: over every pair of rounds of a run whose accuracies differ, the share where the check
  moves the same way as accuracy;
- **the kept round**: the accuracy of the model the safeguard keeps against the run's best round, its last round
  and its labeled-only round 0 (how much the check costs or saves against "always keep the last round");
- a scatter plot of each round's change in check against its change in accuracy, both from round 0.
"""

from __future__ import annotations

import itertools
import os
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from hf_ssl.utils import write_file_atomic


def round_series(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per self-training run with a check on every round: run id, arm, seed, the accuracy and check per
    round and the kept round."""
    series = []
    for record in records:
        result = record["result"]
        accuracy, checks = result.get("per_round_accuracy"), result.get("per_round_check")
        if not accuracy or not checks or len(accuracy) != len(checks):
            continue
        scores = [c.get("graph_agreement") if c else None for c in checks]
        if any(a is None for a in accuracy) or any(s is None for s in scores):
            continue
        series.append({"run_id": record["run_id"], "arm": record["spec"]["arm"], "seed": record["spec"]["seed"],
                       "dataset": record["spec"]["dataset"], "split": record["spec"]["split"],
                       "accuracy": accuracy, "check": scores, "kept_round": result.get("kept_round")})
    return series


def pairwise_agreement(accuracy: Sequence[float], check: Sequence[float]) -> tuple[int, int]:
    """(pairs where the check moves the same way as accuracy, pairs whose accuracies differ) over a run's rounds.
    A pair whose check ties while accuracy moves counts as a disagreement."""
    same = total = 0
    for i, j in itertools.combinations(range(len(accuracy)), 2):
        moved = accuracy[j] - accuracy[i]
        if moved == 0:
            continue
        total += 1
        same += (check[j] - check[i]) * moved > 0
    return same, total


def summarise(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The agreement figures over every run with per-round checks (see the module docstring)."""
    series = round_series(records)
    same = total = 0
    rows = []
    for s in series:
        a, t = pairwise_agreement(s["accuracy"], s["check"])
        same, total = same + a, total + t
        kept = s["kept_round"] if s["kept_round"] is not None else len(s["accuracy"]) - 1
        rows.append({**s, "kept_accuracy": s["accuracy"][kept], "best_accuracy": max(s["accuracy"]),
                     "last_accuracy": s["accuracy"][-1], "round0_accuracy": s["accuracy"][0],
                     "pairs_agreeing": a, "pairs": t})
    summary: dict[str, Any] = {"runs": rows, "pairs_agreeing": same, "pairs": total,
                               "agreement": same / total if total else None}
    if rows:
        summary["kept_minus_best"] = statistics.mean(r["kept_accuracy"] - r["best_accuracy"] for r in rows)
        summary["kept_minus_last"] = statistics.mean(r["kept_accuracy"] - r["last_accuracy"] for r in rows)
        summary["kept_minus_round0"] = statistics.mean(r["kept_accuracy"] - r["round0_accuracy"] for r in rows)
        summary["kept_is_best"] = sum(r["kept_accuracy"] == r["best_accuracy"] for r in rows)
        summary["last_below_round0"] = sum(r["last_accuracy"] < r["round0_accuracy"] for r in rows)
        summary["kept_below_round0"] = sum(r["kept_accuracy"] < r["round0_accuracy"] for r in rows)
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """The agreement summary and one line per run, as Markdown (empty when no run recorded checks)."""
    rows = summary["runs"]
    if not rows:
        return ""
    share = f" ({summary['agreement']:.0%})" if summary["pairs"] else " (no round changed accuracy)"
    lines = ["### Safeguard: the check against accuracy", "",
             f"Pairs of rounds where the check moves the same way as accuracy: {summary['pairs_agreeing']} of "
             f"{summary['pairs']}{share}. Kept model against the best round: "
             f"{summary['kept_minus_best']:+.3f} on average ({summary['kept_is_best']} of {len(rows)} runs keep the "
             f"best); against the last round: {summary['kept_minus_last']:+.3f}; against round 0 (labeled-only): "
             f"{summary['kept_minus_round0']:+.3f}. Runs whose last round ends below round 0: "
             f"{summary['last_below_round0']}; whose kept model does: {summary['kept_below_round0']}.", "",
             "| run | accuracy per round | check per round | kept | agreeing pairs |", "|---|---|---|---|---|"]
    for r in rows:
        accuracy = " / ".join(f"{a:.3f}" for a in r["accuracy"])
        check = " / ".join(f"{c:.3f}" for c in r["check"])
        agreeing = f"{r['pairs_agreeing']}/{r['pairs']}"
        lines.append(f"| {r['run_id']} | {accuracy} | {check} | {r['kept_round']} | {agreeing} |")
    return "\n".join(lines + [""])


def plot(summary: dict[str, Any], path: str | os.PathLike) -> str:
    """Change in check against change in accuracy from round 0, one point per later round; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(5, 4.5))
    for arm in dict.fromkeys(r["arm"] for r in summary["runs"]):
        runs = [r for r in summary["runs"] if r["arm"] == arm]
        x = [c - r["check"][0] for r in runs for c in r["check"][1:]]
        y = [a - r["accuracy"][0] for r in runs for a in r["accuracy"][1:]]
        ax.scatter(x, y, label=arm, alpha=0.8)
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.set(xlabel="change in graph agreement from round 0", ylabel="change in accuracy from round 0",
           title="Safeguard check vs accuracy, per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    figure.tight_layout()
    try:
        return write_file_atomic(os.fspath(path), lambda handle: figure.savefig(handle, format="png", dpi=110))
    finally:
        plt.close(figure)
