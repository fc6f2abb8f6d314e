"""The README's Results block: generated from suite result folders, rewritten between its markers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main as bench_main
from bench.suite import headline, report


def record(dataset: str, arm: str, kind: str, k: int, seed: int, accuracy: float) -> dict:
    spec = {"dataset": dataset, "split": "test", "labels_per_class": k, "arm": arm, "kind": kind, "seed": seed}
    return {"run_id": f"{dataset}-{arm}-{k}-{seed}", "spec": spec, "result": {"accuracy": accuracy}}


def records() -> list[dict]:
    runs = []
    for dataset, base, method, full in (("r8", (0.80, 0.90), (0.85, 0.93), 0.96), ("news", (0.50, 0.60),
                                                                                  (0.45, 0.70), 0.80)):
        runs += [record(dataset, "labeled_only", "labeled_only", 5, s, a) for s, a in enumerate(base)]
        runs += [record(dataset, "self_training", "self_training", 5, s, a) for s, a in enumerate(method)]
        runs += [record(dataset, "self_training", "self_training", 20, 0, 0.99),
                 record(dataset, "full_label", "full_label", 0, 0, full)]
    return runs


def test_headline_has_a_row_per_arm_and_a_column_per_dataset():
    block = headline.headline(report.summarise(records()), 5, ["some/folder"])
    lines = block.splitlines()
    assert lines[0] == "<!-- results: some/folder labels_per_class=5 -->" and lines[-1] == headline.END
    assert lines[1] == "| arm, 5 labels per class | news (test) | r8 (test) |"
    assert lines[3] == "| labeled_only | 0.550 ± 0.071 | 0.850 ± 0.071 |"  # the baseline first, no gain
    # news: gains -0.05 and +0.10 (mean +0.025), gap (0.575 - 0.55) / (0.80 - 0.55) = 10%
    assert lines[4] == ("| self_training | 0.575 ± 0.177 (+0.025, worst -0.050, 10% of gap) "
                        "| 0.890 ± 0.057 (+0.040, worst +0.030, 36% of gap) |")
    assert lines[5] == "| full labels | 0.800 ± 0.000 | 0.960 ± 0.000 |"
    assert "0.99" not in block  # other budgets stay out


def test_replace_block_keeps_the_rest_and_needs_both_markers():
    text = "intro\n<!-- results: a b labels_per_class=20 -->\nold table\n<!-- /results -->\noutro\n"
    assert headline.block_source(text) == (["a", "b"], 20)
    assert headline.replace_block(text, "NEW") == "intro\nNEW\noutro\n"
    with pytest.raises(ValueError, match="no results block"):
        headline.replace_block("intro\n<!-- results: a labels_per_class=5 -->\nno end\n", "NEW")
    with pytest.raises(ValueError, match="marker"):
        headline.block_source("no marker")


def test_python_m_bench_readme_rewrites_the_block_from_the_named_folder(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    (folder / "runs").mkdir(parents=True)
    for r in records():
        (folder / "runs" / f"{r['run_id']}.json").write_text(json.dumps(r), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results: results labels_per_class=5 -->\nstale\n<!-- /results -->\nend\n")
    monkeypatch.chdir(tmp_path)
    bench_main(["readme", "README.md"])
    text = readme.read_text(encoding="utf-8")
    assert "stale" not in text and text.startswith("# x\n<!-- results: results labels_per_class=5 -->\n| arm, 5")
    assert "| self_training | 0.575 ± 0.177" in text and text.endswith("<!-- /results -->\nend\n")


def test_the_readme_results_block_is_the_one_the_committed_results_give():
    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text(encoding="utf-8")
    folders, labels_per_class = headline.block_source(text)
    block = headline.headline(report.summarise(report.load_records([root / f for f in folders])), labels_per_class,
                              folders)
    begin = text.index("<!-- results: ")
    assert text[begin:text.index(headline.END, begin) + len(headline.END)] == block
