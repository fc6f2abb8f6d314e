"""Tables and a plot from suite result folders: ``python -m bench report --results DIR [DIR ...] --out FILE.md``.

Per dataset, split, label budget and arm: accuracy mean ± sample standard deviation over seeds; the gain over the
labeled-only baseline (the ``labeled_only`` arm with the best mean at that budget: the better of the random and
linear-probe heads when both ran) on the seeds both ran, its worst seed, and the fraction of the gap to full-label
fine-tuning closed, (method − labeled-only) / (full label − labeled-only), with the full-label mean over its seeds.
The plot has one panel per dataset and split: accuracy against labels per class, one line per arm (labeled-only
in black), full label as a dashed line. matplotlib is imported only to draw it. When self-training runs recorded
the safeguard's check per round, the Markdown ends with `bench.suite.safeguard_report`'s section and its scatter
plot is written beside the main one (``*_safeguard.png``). Cost runs (``kind: cost``) get a table of their own
(`bench.suite.cost_report`), also printed; a folder of cost runs only gets no accuracy table and no plot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.suite import cost_report, safeguard_report
from bench.suite.runner import RUNS
from hf_ssl.utils import write_file_atomic, write_text_atomic

BASELINE_KIND, CEILING_KIND = "labeled_only", "full_label"


def load_records(folders: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Every run file (``runs/*.json``) of the result folders; a run id found twice keeps the later folder's."""
    records: dict[str, dict[str, Any]] = {}
    for folder in folders:
        files = sorted((Path(folder) / RUNS).glob("*.json"))
        if not files:
            raise FileNotFoundError(f"{folder}: no run files in {Path(folder) / RUNS}; pass the output folder of "
                                    "a suite run (python -m bench --config ...)")
        for path in files:
            record = json.loads(path.read_text(encoding="utf-8"))
            records[record["run_id"]] = record
    return list(records.values())


def per_seed(records: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """{(dataset, split, labels_per_class, arm): {"kind": ..., "seeds": {seed: accuracy}}}."""
    table: dict[tuple, dict[str, Any]] = {}
    for r in records:
        spec = r["spec"]
        key = (spec["dataset"], spec["split"], spec["labels_per_class"], spec["arm"])
        table.setdefault(key, {"kind": spec["kind"], "seeds": {}})["seeds"][spec["seed"]] = r["result"]["accuracy"]
    return table


def gap_closed(method: float, labeled_only: float, full_label: float | None) -> float | None:
    """(method − labeled-only) / (full label − labeled-only); None without a full-label figure above labeled-only
    (no gap to close)."""
    if full_label is None or full_label <= labeled_only:
        return None
    return (method - labeled_only) / (full_label - labeled_only)


def summarise(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset, split, budget and arm (full-label rows have ``labels_per_class`` 0), in a stable order."""
    table = per_seed(records)
    ceilings: dict[tuple, list[float]] = {}
    for (dataset, split, _, _), entry in table.items():
        if entry["kind"] == CEILING_KIND:
            ceilings.setdefault((dataset, split), []).extend(entry["seeds"].values())
    rows = []
    for (dataset, split, k, arm), entry in sorted(table.items(), key=lambda item: (item[0][0], item[0][1],
                                                                                   item[0][2] or 10**9, item[0][3])):
        values = list(entry["seeds"].values())
        full = statistics.mean(ceilings[(dataset, split)]) if (dataset, split) in ceilings else None
        row = {"dataset": dataset, "split": split, "labels_per_class": k, "arm": arm, "kind": entry["kind"],
               "seeds": sorted(entry["seeds"]), "mean": statistics.mean(values),
               "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values),
               "full_label": full, "baseline": None, "gain": None, "worst_gain": None, "gap_closed": None}
        baselines = [(statistics.mean(e["seeds"].values()), a) for (d, s, b, a), e in table.items()
                     if (d, s, b) == (dataset, split, k) and e["kind"] == BASELINE_KIND]
        if baselines and entry["kind"] != CEILING_KIND:
            base_arm = max(baselines)[1]
            base = table[(dataset, split, k, base_arm)]["seeds"]
            shared = sorted(set(entry["seeds"]) & set(base))
            row["baseline"] = base_arm
            if shared and arm != base_arm:
                gains = [entry["seeds"][s] - base[s] for s in shared]
                row["gain"], row["worst_gain"] = statistics.mean(gains), min(gains)
                row["gap_closed"] = gap_closed(statistics.mean(entry["seeds"][s] for s in shared),
                                               statistics.mean(base[s] for s in shared), full)
        rows.append(row)
    return rows


def signed(value: float | None, percent: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.0%}" if percent else f"{value:+.3f}"


def markdown_sources(sources: Sequence[str] = ()) -> str:
    """The report's first line: where its runs come from."""
    return "Generated by `python -m bench report` from " + (", ".join(f"`{s}`" for s in sources) or "suite runs") + "."


def markdown(rows: Sequence[dict[str, Any]], sources: Sequence[str] = ()) -> str:
    """A Markdown table per dataset and split of `summarise`'s rows."""
    lines = [markdown_sources(sources) + " Accuracy: mean ± sd over seeds (n); gain and worst seed: against the "
             "labeled-only baseline on the same seeds; gap closed: (method − labeled-only) / (full label − "
             "labeled-only).", ""]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["split"]), []).append(row)
    for (dataset, split), group in groups.items():
        full = group[0]["full_label"]
        lines += [f"### {dataset} ({split})", "",
                  f"Full-label fine-tuning: {full:.3f}." if full is not None else "No full-label run.", "",
                  "| labels/class | arm | accuracy | gain | worst seed | gap closed |", "|---|---|---|---|---|---|"]
        for r in group:
            if r["kind"] == CEILING_KIND:
                continue
            name = f"**{r['arm']}** (baseline)" if r["arm"] == r["baseline"] else r["arm"]
            lines.append(f"| {r['labels_per_class']} | {name} | {r['mean']:.3f} ± {r['sd']:.3f} ({len(r['seeds'])}) "
                         f"| {signed(r['gain'])} | {signed(r['worst_gain'])} | {signed(r['gap_closed'], True)} |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> str:
    """Accuracy against labels per class, a panel per dataset and split; written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["split"]), []).append(row)
    figure, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
    for ax, ((dataset, split), group) in zip(axes[0], groups.items(), strict=True):
        arms = dict.fromkeys(r["arm"] for r in group if r["kind"] != CEILING_KIND)
        for arm in arms:
            points = sorted((r["labels_per_class"], r["mean"], r["min"], r["max"], r["kind"]) for r in group
                            if r["arm"] == arm)
            x, mean, low, high = ([p[i] for p in points] for i in range(4))
            style = {"color": "black", "linewidth": 2.5, "zorder": 3} if points[0][4] == BASELINE_KIND else {}
            ax.errorbar(x, mean, yerr=[[m - lo for m, lo in zip(mean, low, strict=True)],
                                       [h - m for m, h in zip(mean, high, strict=True)]],
                        marker="o", capsize=3, label=arm, **style)
        if group[0]["full_label"] is not None:
            ax.axhline(group[0]["full_label"], color="gray", linestyle="--", label="full label")
        budgets = sorted({r["labels_per_class"] for r in group if r["kind"] != CEILING_KIND})
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set(title=f"{dataset} ({split})", xlabel="labels per class", ylabel="accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.tight_layout()
    try:
        return write_file_atomic(os.fspath(path), lambda handle: figure.savefig(handle, format="png", dpi=110))
    finally:
        plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", nargs="+", required=True, help="suite output folders")
    parser.add_argument("--out", required=True, help="Markdown file to write")
    parser.add_argument("--plot", default=None, help="PNG to write (default: --out with a .png suffix)")
    return parser


def main(argv: Sequence[str]) -> None:
    args = build_parser().parse_args(argv)
    records = load_records(args.results)
    costs = cost_report.cost_rows(records)
    records = [r for r in records if not cost_report.is_cost(r)]
    rows = summarise(records)
    safeguard = safeguard_report.summarise(records)
    out = Path(args.out)
    text = markdown(rows, args.results) if rows or not costs else markdown_sources(args.results) + "\n"
    if safeguard["runs"]:
        text += "\n" + safeguard_report.markdown(safeguard)
    if costs:
        table = cost_report.cost_markdown(costs)
        text += "\n" + table
        print(table)
    write_text_atomic(str(out.parent), out.name, text)
    png = Path(args.plot or out.with_suffix(".png"))
    written = [str(out), plot(rows, png)] if rows else [str(out)]
    if safeguard["runs"]:
        written.append(safeguard_report.plot(safeguard, png.with_name(png.stem + "_safeguard.png")))
    print(f"wrote {', '.join(written)} ({len(rows)} rows, {len(costs)} cost runs)")
