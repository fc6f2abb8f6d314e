"""The bench package's shared result writer and the index of bench/results/."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess

import numpy as np
import pytest
import torch

from bench import index
from bench.common import REPO, RESULTS, VERSIONED_PACKAGES, start_run, summary, write_result

SCRIPTS = sorted(p.stem for p in (REPO / "bench").glob("*.py")
                 if p.stem not in ("__init__", "__main__", "common", "index"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_imports_as_a_package_module_with_the_shared_flags(script):
    module = importlib.import_module(f"bench.{script}")
    args = module.build_parser().parse_args(["--out", "result.json"])
    assert args.out == "result.json" and callable(module.main)


def test_index_lists_every_result_file_and_no_archived_one():
    missing, gone = index.unlisted()
    assert missing == [], f"bench/results/ files not in index.json (run python -m bench.index): {missing}"
    assert gone == [], f"index.json lists files no longer in bench/results/: {gone}"
    listed = json.loads((RESULTS / "index.json").read_text(encoding="utf-8"))
    for entry in listed["results"]:
        assert entry["script"] == "bench" or entry["script"].startswith("bench."), entry  # bench: the suite
        assert entry["commands"] and entry["commit"], entry
        assert entry["description"], entry
    for entry in listed["archived"]:
        assert not (RESULTS / entry["file"]).exists(), entry
        assert entry["commit"] and entry["reason"], entry
    markdown = (RESULTS / "INDEX.md").read_text(encoding="utf-8")
    for entry in listed["results"] + listed["archived"]:
        assert entry["file"] in markdown


def test_index_rebuilds_a_command_from_recorded_settings():
    command = index.command("bench.augment_speed", {"n": 8, "threads": 1, "seed": None, "out": "r.json",
                                                    "not_a_flag": 3})
    assert command == "python -m bench.augment_speed --threads 1 --out r.json --n 8"
    assert index.legacy_script("pilot_fashion_x.json") == "bench.consistency_bench"
    assert index.legacy_script("consistency_step_minilm.json") == "bench.consistency_step"
    with pytest.raises(ValueError, match="LEGACY_SCRIPTS"):
        index.legacy_script("unknown.json")


def test_write_result_records_settings_versions_commit_and_load(tmp_path):
    args = argparse.Namespace(seeds=[0, 1], threads=None, out=str(tmp_path / "sub" / "result.json"))
    run = start_run(args, "/somewhere/bench/example.py", ["--seeds", "0", "1"])
    path = write_result(args.out, {"value": 1, "provenance": "overwritten"}, run)
    assert path == args.out and os.listdir(tmp_path / "sub") == ["result.json"]  # no temporary file left
    report = json.loads((tmp_path / "sub" / "result.json").read_text(encoding="utf-8"))
    assert list(report) == ["provenance", "value"] and report["value"] == 1
    record = report["provenance"]
    assert record["script"] == "bench.example"
    assert record["command"] == "python -m bench.example --seeds 0 1"
    assert record["settings"] == vars(args)
    assert set(record["versions"]) == set(VERSIONED_PACKAGES)
    assert record["versions"]["torch"] == torch.__version__ and record["versions"]["numpy"] == np.__version__
    assert record["versions"]["hf-ssl"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert record["git"]["commit"] == head.stdout.strip()
    assert isinstance(record["git"]["dirty"], bool)
    machine = record["machine"]
    assert machine["cpus"] == os.cpu_count() and machine["torch_threads"] == torch.get_num_threads()
    for key in ("load_start", "load_end"):
        assert len(machine[key]) == 3 and all(isinstance(v, float) and v >= 0 for v in machine[key])
    assert record["seconds"] >= 0 and record["started_at"].endswith("+00:00")


def test_start_run_applies_threads():
    before = torch.get_num_threads()
    try:
        start_run(argparse.Namespace(threads=1, out=None), "bench/example.py", [])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_summary_over_seeds():
    stats = summary([0.5, 0.7, 0.9])
    assert stats["mean"] == pytest.approx(0.7) and stats["min"] == 0.5 and stats["max"] == 0.9
    assert stats["stdev"] == pytest.approx(0.2) and stats["values"] == [0.5, 0.7, 0.9]
    assert summary([0.4])["stdev"] == 0.0
    with pytest.raises(ValueError, match="at least one value"):
        summary([])
