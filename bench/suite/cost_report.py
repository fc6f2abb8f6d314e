"""The cost table of ``python -m bench report``: one row per ``cost`` run (`bench.suite.cost_arms`) with its
ratio, the timing of each side, the accuracies where the measure has them, the torch threads and the 1-minute load
average before and after the measurement.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bench.suite.spec import DATA_FREE_KINDS


def is_cost(record: dict[str, Any]) -> bool:
    """Whether a run file is a data-free (cost) run."""
    return record["spec"]["kind"] in DATA_FREE_KINDS


def cost_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cost run among ``records``, by run id."""
    rows = []
    for record in records:
        if not is_cost(record):
            continue
        result, spec = record["result"], record["spec"]
        numerator, denominator = (side.strip() for side in result["ratio_of"].split("/"))
        rows.append(
            {
                "run_id": record["run_id"],
                "arm": spec["arm"],
                "seed": spec["seed"],
                "measure": result["measure"],
                "ratio": result["ratio"],
                "ratio_of": result["ratio_of"],
                "statistic": result["statistic"],
                "numerator": (numerator, result["seconds"][numerator]),
                "denominator": (denominator, result["seconds"][denominator]),
                "accuracies": result.get("accuracies", {}),
                "threads": result["threads"],
                "load_before": result["load_before"][0],
                "load_after": result["load_after"][0],
                "wall_seconds": result["wall_seconds"],
                "commit": (record.get("provenance", {}).get("git") or {}).get("commit"),
            }
        )
    return sorted(rows, key=lambda r: r["run_id"])


def _seconds(side: tuple[str, float]) -> str:
    name, value = side
    return f"{name} {value:.3g} s"


def cost_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of `cost_rows`."""
    lines = [
        "### Costs",
        "",
        "Ratio: the first side's time over the second's (median or best of the repeats, as stated); load: "
        "1-minute load average before → after the measurement.",
        "",
        "| arm | measure | ratio | timings | accuracy (unlabeled rows) | torch threads | load | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        accuracy = "; ".join(f"{name} {value:.4f}" for name, value in r["accuracies"].items())
        lines.append(
            f"| {r['arm']} | {r['measure']} | {r['ratio']:.2f} ({r['ratio_of']}, {r['statistic']}) | "
            f"{_seconds(r['numerator'])}; {_seconds(r['denominator'])} | {accuracy} | {r['threads']} | "
            f"{r['load_before']:.2f} → {r['load_after']:.2f} | {r['wall_seconds']:.1f} s |"
        )
    lines.append("")
    return "\n".join(lines)
