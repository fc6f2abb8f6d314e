"""The README's Results table: one label budget, one row per arm, one column per dataset, from `report.summarise`.

Each cell is the arm's accuracy (mean ± sd over seeds), its gain over the labeled-only baseline, the gain on its
worst seed and the share of the labeled-only → full-label gap it closes. The README holds the table between two
markers; ``python -m bench report ... --readme README.md`` rewrites what lies between them, and the first marker
names the result folders and the budget, so a test can regenerate the block from the committed results::

    <!-- results: bench/results/suite/text_test labels_per_class=5 -->
    ...
    <!-- /results -->
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.suite.report import BASELINE_KIND, CEILING_KIND, load_records, signed, summarise
from hf_ssl.utils import write_text_atomic

BEGIN = re.compile(r"<!-- results: (?P<folders>[^=]+?) labels_per_class=(?P<k>\d+) -->\n")
END = "<!-- /results -->"


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return ""
    text = f"{row['mean']:.3f} ± {row['sd']:.3f}"
    if row["gain"] is not None:
        text += f" ({signed(row['gain'])}, worst {signed(row['worst_gain'])}"
        text += f", {row['gap_closed']:.0%} of gap)" if row["gap_closed"] is not None else ")"
    return text


def headline(rows: Sequence[dict[str, Any]], labels_per_class: int, folders: Sequence[str]) -> str:
    """The Markdown block (markers included) for ``labels_per_class`` over every dataset and split in ``rows``."""
    datasets = list(dict.fromkeys((r["dataset"], r["split"]) for r in rows))
    at_budget = {(r["dataset"], r["split"], r["arm"]): r for r in rows if r["labels_per_class"] == labels_per_class}
    arms = list(dict.fromkeys(r["arm"] for r in rows
                              if r["labels_per_class"] == labels_per_class and r["kind"] != CEILING_KIND))
    arms.sort(key=lambda arm: next(r["kind"] != BASELINE_KIND for r in rows if r["arm"] == arm))
    ceilings = {(r["dataset"], r["split"]): r for r in rows if r["kind"] == CEILING_KIND}
    header = " | ".join(f"{d} ({s})" for d, s in datasets)
    lines = [f"<!-- results: {' '.join(folders)} labels_per_class={labels_per_class} -->",
             f"| arm, {labels_per_class} labels per class | {header} |", "|---" * (len(datasets) + 1) + "|"]
    for arm in arms:
        lines.append(f"| {arm} | " + " | ".join(_cell(at_budget.get((d, s, arm))) for d, s in datasets) + " |")
    if ceilings:
        lines.append("| full labels | " + " | ".join(_cell(ceilings.get(key)) for key in datasets) + " |")
    return "\n".join(lines + [END])


def replace_block(text: str, block: str) -> str:
    """``text`` with its results block (first marker to `END`) replaced by ``block``."""
    begin = BEGIN.search(text)
    if begin is None or END not in text[begin.end():]:
        raise ValueError(f"no results block: put a line '<!-- results: FOLDER labels_per_class=K -->' and a line "
                         f"'{END}' where the table goes")
    end = text.index(END, begin.end()) + len(END)
    return text[:begin.start()] + block + text[end:]


def block_source(text: str) -> tuple[list[str], int]:
    """The result folders and label budget named by ``text``'s results marker."""
    begin = BEGIN.search(text)
    if begin is None:
        raise ValueError("no '<!-- results: FOLDER labels_per_class=K -->' marker")
    return begin["folders"].split(), int(begin["k"])


def main(argv: Sequence[str]) -> None:
    """``python -m bench readme [FILE]``: regenerate the results block of FILE (default README.md) from the
    folders and budget its marker names."""
    path = Path(argv[0] if argv else "README.md")
    text = path.read_text(encoding="utf-8")
    folders, labels_per_class = block_source(text)
    block = headline(summarise(load_records(folders)), labels_per_class, folders)
    write_text_atomic(str(path.parent), path.name, replace_block(text, block))
    print(f"wrote the results block of {path} ({labels_per_class} labels per class, from {', '.join(folders)})")
