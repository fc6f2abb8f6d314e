"""The safeguard section of ``python -m bench report``: agreement between the check and accuracy, the kept round."""

from __future__ import annotations

import json

import pytest

from bench.suite import report, safeguard_report


def self_training(seed: int, accuracy: list, check: list, kept: int | None, arm: str = "self_training") -> dict:
    spec = {"dataset": "reuters-r8", "split": "validation", "labels_per_class": 5, "arm": arm,
            "kind": "self_training", "seed": seed}
    return {"run_id": f"{arm}-s{seed}", "spec": spec,
            "result": {"accuracy": accuracy[kept if kept is not None else -1], "per_round_accuracy": accuracy,
                       "per_round_check": [{"graph_agreement": c} for c in check], "kept_round": kept}}


def hand_made() -> list[dict]:
    return [
        self_training(0, [0.80, 0.85, 0.90], [0.70, 0.75, 0.80], kept=2),  # 3 of 3 pairs agree, keeps the best
        self_training(1, [0.80, 0.78, 0.82], [0.70, 0.72, 0.69], kept=1),  # (0,1) no, (0,2) no, (1,2) no
        self_training(2, [0.80, 0.80, 0.75], [0.70, 0.65, 0.60], kept=0),  # (0,1) tie skipped; 2 of 2 agree
        {"run_id": "labeled_only-s0", "spec": {"dataset": "reuters-r8", "split": "validation",
                                               "labels_per_class": 5, "arm": "labeled_only", "kind": "labeled_only",
                                               "seed": 0}, "result": {"accuracy": 0.8}},
    ]


def test_pairwise_agreement_counts_pairs_whose_accuracy_moves():
    assert safeguard_report.pairwise_agreement([0.8, 0.85, 0.9], [0.7, 0.75, 0.8]) == (3, 3)
    assert safeguard_report.pairwise_agreement([0.8, 0.78, 0.82], [0.7, 0.72, 0.69]) == (0, 3)
    assert safeguard_report.pairwise_agreement([0.8, 0.8, 0.75], [0.7, 0.65, 0.6]) == (2, 2)
    assert safeguard_report.pairwise_agreement([0.8, 0.9], [0.7, 0.7]) == (0, 1)  # a flat check is no help


def test_summary_of_the_kept_round_against_best_last_and_round_0():
    summary = safeguard_report.summarise(hand_made())
    assert [r["run_id"] for r in summary["runs"]] == ["self_training-s0", "self_training-s1", "self_training-s2"]
    assert (summary["pairs_agreeing"], summary["pairs"]) == (5, 8) and summary["agreement"] == pytest.approx(5 / 8)
    assert summary["kept_minus_best"] == pytest.approx((0 + (0.78 - 0.82) + 0) / 3)
    assert summary["kept_minus_last"] == pytest.approx((0 + (0.78 - 0.82) + (0.80 - 0.75)) / 3)
    assert summary["kept_minus_round0"] == pytest.approx((0.10 - 0.02 + 0) / 3)
    assert summary["kept_is_best"] == 2 and summary["last_below_round0"] == 1 and summary["kept_below_round0"] == 1


def test_runs_without_a_check_on_every_round_are_left_out():
    partial = self_training(3, [0.8, 0.9], [0.7, 0.8], kept=1)
    partial["result"]["per_round_check"][1] = None
    assert safeguard_report.summarise([partial])["runs"] == []
    assert safeguard_report.markdown(safeguard_report.summarise([partial])) == ""


def test_runs_whose_accuracy_never_moves_have_no_agreement_share():
    flat = safeguard_report.summarise([self_training(0, [0.8, 0.8], [0.7, 0.75], kept=1)])
    assert (flat["pairs"], flat["agreement"]) == (0, None)
    assert "0 of 0 (no round changed accuracy)" in safeguard_report.markdown(flat)


def test_report_appends_the_safeguard_section_and_its_plot(tmp_path):
    folder = tmp_path / "results"
    (folder / "runs").mkdir(parents=True)
    for r in hand_made():
        (folder / "runs" / f"{r['run_id']}.json").write_text(json.dumps(r), encoding="utf-8")
    report.main(["--results", str(folder), "--out", str(tmp_path / "results.md")])
    text = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "### Safeguard: the check against accuracy" in text
    assert "5 of 8 (62%)" in text and "2 of 3 runs keep the best" in text
    assert "| self_training-s1 | 0.800 / 0.780 / 0.820 | 0.700 / 0.720 / 0.690 | 1 | 0/3 |" in text
    assert (tmp_path / "results_safeguard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
