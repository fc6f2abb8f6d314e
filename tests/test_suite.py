"""The benchmark suite (``python -m bench``): config expansion and validation, run ids, resume, atomic result
files, the report's figures and plot, and one end-to-end run of bench/configs/quick.yaml on the real assets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from bench import index
from bench.__main__ import main as bench_main
from bench.common import REPO, RESULTS
from bench.suite import arms, data, report, runner
from bench.suite.config import ConfigError, expand, load_config
from bench.suite.spec import CHEAP_KINDS, DATA_FREE_KINDS, FINETUNE_KINDS, NO_DATA, RunSpec

BASE = {"split": "validation", "datasets": {"reuters-r8": {"validation_size": 100}}, "budgets": [2, 5],
        "seeds": [0, 1, 2], "finetune": {"learning_rate": 3e-5},
        "arms": {"linear_probe": {}, "labeled_only": {}, "full_label": {},
                 "fixmatch@t0.7": {"kind": "consistency", "settings": {"threshold": 0.7}, "budgets": [5]}}}


def write_config(folder: Path, config: dict, name: str = "c.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_expand_crosses_datasets_budgets_arms_and_seeds():
    specs = expand(BASE)
    ids = [s.run_id for s in specs]
    assert len(ids) == len(set(ids)) == 2 * 3 + 2 * 3 + 1 + 1 * 3
    full = [s for s in specs if s.kind == "full_label"]
    assert [(s.labels_per_class, s.seed) for s in full] == [(0, 0)] and full[0].run_id.endswith("-kall-full_label-s0")
    assert full[0].settings["num_train_epochs"] == 2.0 and "learning_rate" in full[0].settings
    fixmatch = [s for s in specs if s.arm == "fixmatch@t0.7"]
    assert {s.labels_per_class for s in fixmatch} == {5}
    assert fixmatch[0].settings == {"learning_rate": 3e-5, "threshold": 0.7}  # finetune under the arm's own
    assert [s for s in specs if s.arm == "linear_probe"][0].settings == {}  # no trainer settings for probes
    assert specs[0].data == {"validation_size": 100, "max_unlabeled": 1500, "train_rows": -1, "eval_rows": -1,
                             "max_length": 64}
    assert set(arms.ARMS) == set(CHEAP_KINDS + FINETUNE_KINDS + DATA_FREE_KINDS)


def test_quick_shrinks_seeds_budgets_rows_and_steps(tmp_path):
    config = load_config(write_config(tmp_path, {**BASE, "output": "somewhere/dev"}), quick=True)
    assert config.output == "somewhere/dev-quick"
    assert {s.seed for s in config.specs} == {0} and {s.labels_per_class for s in config.specs} <= {0, 2, 5}
    spec = next(s for s in config.specs if s.kind == "labeled_only")
    assert spec.settings["max_steps"] == 4 and spec.data["train_rows"] == 400 and spec.data["eval_rows"] == 200
    assert load_config(write_config(tmp_path, BASE), output="x").output == "x"
    assert load_config(write_config(tmp_path, BASE)).output == "bench/results/suite/c"


@pytest.mark.parametrize("change, message", [
    ({"seed": [0]}, "config: unknown key 'seed'"),
    ({"budgets": [0]}, "budgets: expected a non-empty list of integers >= 1"),
    ({"split": "train"}, "split: expected one of"),
    ({"datasets": {"mnist": {}}}, "datasets.mnist: unknown dataset"),
    ({"datasets": {"reuters-r8": {"max_unlabled": 5}}}, "datasets.reuters-r8: unknown key 'max_unlabled'"),
    ({"datasets": {"reuters-r8": {"validation_size": 0}}}, "datasets.reuters-r8.validation_size: split: validation"),
    ({"split": "test"}, "datasets.reuters-r8.validation_size: a test-split config"),
    ({"arms": {"fixmatch": {}}}, "arms.fixmatch.kind: unknown kind 'fixmatch'"),
    ({"arms": {"labeled_only": {"setting": {}}}}, "arms.labeled_only: unknown key 'setting'"),
    ({"arms": {"labeled_only": {"datasets": ["20newsgroups"]}}}, "arms.labeled_only.datasets"),
    ({"arms": {"labeled_only": {"seeds": "0"}}}, "arms.labeled_only.seeds"),
])
def test_bad_configs_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as caught:
        load_config(write_config(tmp_path, {**BASE, **change}))
    assert str(tmp_path / "c.yaml") in str(caught.value)


def test_the_command_line_reports_a_bad_config_without_a_traceback(tmp_path):
    path = write_config(tmp_path, {**BASE, "arms": {"fixmatch": {}}})
    with pytest.raises(SystemExit, match=r"config error: .*arms\.fixmatch\.kind: unknown kind"):
        bench_main(["--config", str(path), "--dry_run"])


def test_missing_config_and_missing_keys_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="missing key 'arms'"):
        expand({k: v for k, v in BASE.items() if k != "arms"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: pools: all\narms: {}\n", encoding="utf-8")
    message = r"bad\.yaml: not valid YAML at line 1 \(mapping values are not allowed here\); quote a value that holds"
    with pytest.raises(ConfigError, match=message):
        load_config(bad)


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "bench" / "configs").glob("*.yaml")))
def test_every_shipped_config_expands(name):
    config = load_config(REPO / "bench" / "configs" / name)
    assert config.specs and config.output.startswith("bench/results/suite/")
    split = "validation" if name.startswith(("dev", "quick")) else NO_DATA if name == "costs.yaml" else "test"
    assert {s.split for s in config.specs} == {split}


def test_configs_sharing_a_folder_agree_on_every_shared_run():
    folders: dict[str, dict[str, RunSpec]] = {}
    for path in sorted((REPO / "bench" / "configs").glob("*.yaml")):
        config = load_config(path)
        runs = folders.setdefault(config.output, {})
        for spec in config.specs:
            assert runs.setdefault(spec.run_id, spec) == spec, f"{path.name}: {spec.run_id} differs"
    assert len(folders["bench/results/suite/text_test"]) > len(load_config(REPO / "bench/configs/report_text.yaml")
                                                                .specs)


def test_run_ids_are_stable_file_names_and_specs_compare_after_json():
    spec = RunSpec("20newsgroups", "test", 5, "fixmatch/graph 0.5", "consistency", 1, {"ops": ("mask",)}, {})
    assert spec.run_id == "20newsgroups-test-k5-fixmatch_graph_0.5-s1" and spec.file_name == spec.run_id + ".json"
    assert spec.matches(json.loads(json.dumps(spec.to_dict())))
    assert not spec.matches({**spec.to_dict(), "settings": {"ops": ["replace"]}})


def fake_pools(calls: list):
    def build(spec):
        calls.append(spec.run_id)
        rows = Dataset.from_dict({"x": [1, 2, 3]})
        return data.Pools(names=["a", "b"], train=rows, labeled=rows.select([0]), unlabeled=rows.select([1]),
                          evaluation=rows.select([2]), modality="text")
    return build


@pytest.fixture
def fake_suite(tmp_path, monkeypatch):
    """A two-arm config whose arms return fixed accuracies without touching any model or dataset."""
    calls: list[str] = []
    monkeypatch.setattr(data, "build_pools", fake_pools(calls))
    for kind in ("linear_probe", "labeled_only"):
        monkeypatch.setitem(arms.ARMS, kind, lambda spec, pools, cache: {"accuracy": 0.5 + spec.seed / 10,
                                                                          "macro_f1": 0.4})
    config = {**BASE, "arms": {"linear_probe": {}, "labeled_only": {}}, "seeds": [0, 1], "budgets": [2]}
    return write_config(tmp_path, config), tmp_path / "out", calls


def test_a_second_invocation_skips_done_runs_and_overwrite_reruns_them(fake_suite, capsys):
    path, out, calls = fake_suite
    argv = ["--config", str(path), "--out", str(out)]
    runner.main(argv)
    assert len(calls) == 4 and len(list((out / "runs").glob("*.json"))) == 4
    listed = json.loads((out / "index.json").read_text(encoding="utf-8"))
    assert [r["accuracy"] for r in listed["runs"]] == [0.5, 0.6, 0.5, 0.6]
    assert listed["provenance"]["command"].startswith("python -m bench --config")
    assert list(listed["configs"]) == [str(path)]
    record = json.loads((out / "runs" / listed["runs"][0]["file"].split("/")[1]).read_text(encoding="utf-8"))
    assert {"settings", "versions", "git", "machine"} <= set(record["provenance"])
    assert record["spec"]["arm"] == "labeled_only" and record["result"]["accuracy"] == 0.5
    runner.main(argv)
    assert len(calls) == 4
    runner.main([*argv, "--overwrite", "--only", "*labeled_only-s1"])
    assert calls[4:] == ["reuters-r8-validation-k2-labeled_only-s1"]
    capsys.readouterr()
    runner.main([*argv, "--dry_run"])
    assert "4 done, 0 todo, 0 stale" in capsys.readouterr().out


def test_changed_settings_make_a_run_stale_until_overwrite(fake_suite, capsys):
    path, out, calls = fake_suite
    runner.main(["--config", str(path), "--out", str(out)])
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["arms"]["labeled_only"] = {"settings": {"head_init": "linear_probe"}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    runner.main(["--config", str(path), "--out", str(out), "--dry_run"])
    assert capsys.readouterr().out.count("stale") == 3  # two runs and the count line
    with pytest.raises(SystemExit, match="record other settings"):
        runner.main(["--config", str(path), "--out", str(out)])
    assert len(calls) == 4
    runner.main(["--config", str(path), "--out", str(out), "--overwrite", "--only", "*labeled_only*"])
    assert len(calls) == 6


def test_a_failing_run_leaves_no_file_and_the_earlier_results_intact(fake_suite, monkeypatch):
    path, out, calls = fake_suite
    runner.main(["--config", str(path), "--out", str(out), "--only", "*linear_probe*"])

    def broken(spec, pools, cache):
        raise RuntimeError("arm failed")

    monkeypatch.setitem(arms.ARMS, "labeled_only", broken)
    with pytest.raises(RuntimeError, match="arm failed"):
        runner.main(["--config", str(path), "--out", str(out)])
    assert sorted(os.listdir(out / "runs")) == ["reuters-r8-validation-k2-linear_probe-s0.json",
                                                "reuters-r8-validation-k2-linear_probe-s1.json"]
    assert len(json.loads((out / "index.json").read_text(encoding="utf-8"))["runs"]) == 2
    assert sorted(os.listdir(out)) == ["index.json", "runs"]  # no temporary files


def test_keep_going_runs_the_other_runs_and_names_the_failed_ones(fake_suite, monkeypatch):
    path, out, calls = fake_suite

    def broken(spec, pools, cache):
        raise RuntimeError("arm failed")

    monkeypatch.setitem(arms.ARMS, "linear_probe", broken)
    with pytest.raises(SystemExit, match="2 of 4 runs failed: reuters-r8-validation-k2-linear_probe-s0, "):
        runner.main(["--config", str(path), "--out", str(out), "--keep_going"])
    assert sorted(os.listdir(out / "runs")) == ["reuters-r8-validation-k2-labeled_only-s0.json",
                                                "reuters-r8-validation-k2-labeled_only-s1.json"]
    with pytest.raises(SystemExit, match="--only nothing matches none of the 4 runs"):
        runner.main(["--config", str(path), "--out", str(out), "--only", "nothing"])


def test_dev_splits_come_from_train_and_every_arm_gets_the_same_pools(monkeypatch):
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b"])})
    rows = Dataset.from_dict({"text": [f"t{i}" for i in range(40)], "label": [i % 2 for i in range(40)]}, features)
    asked = []

    def load(name, validation_size=0, seed=0):
        asked.append(validation_size)
        parts = rows.train_test_split(test_size=validation_size, seed=seed, stratify_by_column="label")
        return DatasetDict({"train": parts["train"], "validation": parts["test"], "test": rows.select([])})

    monkeypatch.setattr(data, "load_text_dataset", load)
    data.splits.cache_clear()
    try:
        settings = {"validation_size": 10, "max_unlabeled": 5, "train_rows": -1, "eval_rows": -1, "max_length": 8}
        specs = [RunSpec("reuters-r8", "validation", 3, arm, kind, 1, {}, settings)
                 for arm, kind in (("labeled_only", "labeled_only"), ("fixmatch", "consistency"))]
        first, second = (data.build_pools(s) for s in specs)
    finally:
        data.splits.cache_clear()
    assert asked == [10] and len(first.evaluation) == 10 and len(first.train) == 30
    assert set(first.evaluation["text"]).isdisjoint(first.train["text"])
    assert first.labeled["row"] == second.labeled["row"] and first.unlabeled["row"] == second.unlabeled["row"]
    assert len(first.labeled) == 6 and len(first.unlabeled) == 5 and "ssl_truth" in first.unlabeled.column_names


def record(arm: str, kind: str, k: int, seed: int, accuracy: float, dataset: str = "reuters-r8") -> dict:
    spec = {"dataset": dataset, "split": "test", "labels_per_class": k, "arm": arm, "kind": kind, "seed": seed}
    return {"run_id": f"{dataset}-{arm}-{k}-{seed}", "spec": spec, "result": {"accuracy": accuracy}}


def hand_made_records() -> list[dict]:
    runs = [record("labeled_only", "labeled_only", 5, s, a) for s, a in ((0, 0.50), (1, 0.60))]
    runs += [record("labeled_only_lp", "labeled_only", 5, s, a) for s, a in ((0, 0.55), (1, 0.65))]
    runs += [record("fixmatch", "consistency", 5, s, a) for s, a in ((0, 0.58), (1, 0.75), (2, 0.9))]
    runs += [record("fixmatch", "consistency", 20, 0, 0.8), record("full_label", "full_label", 0, 0, 0.9)]
    return runs


def test_report_gains_worst_seed_and_gap_closed_against_the_better_labeled_only_head():
    rows = {(r["arm"], r["labels_per_class"]): r for r in report.summarise(hand_made_records())}
    fixmatch = rows[("fixmatch", 5)]
    assert fixmatch["baseline"] == "labeled_only_lp" and fixmatch["seeds"] == [0, 1, 2]
    assert fixmatch["gain"] == pytest.approx(0.065) and fixmatch["worst_gain"] == pytest.approx(0.03)
    assert fixmatch["gap_closed"] == pytest.approx((0.665 - 0.60) / (0.9 - 0.60))  # on the seeds both ran
    assert fixmatch["mean"] == pytest.approx(0.7433333) and fixmatch["full_label"] == 0.9
    assert rows[("labeled_only", 5)]["gain"] == pytest.approx(-0.05)
    assert rows[("labeled_only_lp", 5)]["gain"] is None and rows[("fixmatch", 20)]["baseline"] is None
    assert report.gap_closed(0.7, 0.6, None) is None and report.gap_closed(0.7, 0.6, 0.6) is None
    assert report.gap_closed(0.7, 0.6, 0.5) is None  # full label below labeled-only: no gap


def test_report_writes_the_table_and_a_png(tmp_path):
    folder = tmp_path / "results"
    (folder / "runs").mkdir(parents=True)
    for r in hand_made_records():
        (folder / "runs" / f"{r['run_id']}.json").write_text(json.dumps(r), encoding="utf-8")
    report.main(["--results", str(folder), "--out", str(tmp_path / "docs" / "results.md")])
    table = (tmp_path / "docs" / "results.md").read_text(encoding="utf-8")
    assert "### reuters-r8 (test)" in table and "Full-label fine-tuning: 0.900." in table
    assert "| 5 | fixmatch | 0.743 ± 0.160 (3) | +0.065 | +0.030 | +22% |" in table
    assert "| 5 | **labeled_only_lp** (baseline) |" in table
    assert (tmp_path / "docs" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError, match="no run files"):
        report.load_records([tmp_path / "empty"])


def test_bench_index_lists_a_suite_folder_by_its_index_only():
    assert index.indexed(RESULTS / "suite" / "dev_r8" / "index.json")
    assert not index.indexed(RESULTS / "suite" / "dev_r8" / "runs" / "a.json")
    assert not index.indexed(RESULTS / "suite" / "dev_r8" / "cache" / "e.npy")
    assert index.indexed(RESULTS / "selftrain_r8.json") and not index.indexed(RESULTS / "index.json")


@pytest.mark.slow
def test_quick_config_runs_end_to_end_and_reports(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "quick"
    subprocess.run([sys.executable, "-m", "bench", "--config", "bench/configs/quick.yaml", "--quick", "--out",
                    str(out), "--threads", "1"], cwd=REPO, env=env, check=True)
    config = load_config(REPO / "bench" / "configs" / "quick.yaml", quick=True)
    listed = json.loads((out / "index.json").read_text(encoding="utf-8"))["runs"]
    assert sorted(r["run_id"] for r in listed) == sorted(s.run_id for s in config.specs)
    for entry in listed:
        saved = json.loads((out / entry["file"]).read_text(encoding="utf-8"))
        assert saved["spec"]["split"] == "validation" and 0 <= saved["result"]["accuracy"] <= 1
        assert saved["provenance"]["git"]["commit"] and saved["provenance"]["machine"]["torch_threads"] == 1
    subprocess.run([sys.executable, "-m", "bench", "report", "--results", str(out), "--out",
                    str(tmp_path / "report.md")], cwd=REPO, env=env, check=True)
    assert "| 2 | fixmatch_graph |" in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "report.png").stat().st_size > 1000
