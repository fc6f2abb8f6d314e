"""The suite's cost arms (``kind: cost``): config expansion without datasets, bad cost settings, one end-to-end
run of every measure on tiny inputs (random tiny models, fake Fashion-MNIST) and the report's cost table; the
shipped bench/configs/costs.yaml with --quick on the real assets is the slow test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from datasets import Dataset
from helpers.tiny import band_images, pixel_pool, tiny_bert, tiny_vit, variable_texts, word_tokenizer

import hf_ssl
from bench import consistency_step, encode_throughput
from bench.common import REPO
from bench.suite import cost_report, report, runner
from bench.suite.config import ConfigError, expand, load_config
from bench.suite.cost_arms import torch_threads
from bench.suite.cost_settings import MEASURES
from bench.suite.spec import NO_DATA

COSTS = {
    "seeds": [0, 1],
    "arms": {
        "encode": {"kind": "cost", "settings": {"measure": "encode", "threads": 1}},
        "augment": {"kind": "cost", "settings": {"measure": "augment", "n": 32}, "seeds": [3]},
        "fashion": {"kind": "cost", "settings": {"measure": "label_propagator_fashion"}},
    },
}


def write_config(folder, config, name="costs.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_cost_arms_expand_without_datasets_or_budgets_one_run_per_seed():
    specs = expand(COSTS)
    assert [s.run_id for s in specs] == [
        "cost-encode-s0",
        "cost-encode-s1",
        "cost-augment-s3",
        "cost-fashion-s0",
        "cost-fashion-s1",
    ]
    assert {(s.dataset, s.split, s.labels_per_class, s.kind) for s in specs} == {(NO_DATA, NO_DATA, 0, "cost")}
    encode = specs[0].settings
    assert encode == {"measure": "encode", "threads": 1, **MEASURES["encode"]} and encode["n"] == 1000
    assert specs[2].settings["n"] == 32 and specs[2].settings["threads"] is None
    quick = {s.arm: s for s in expand(COSTS, quick=True)}
    assert [s.seed for s in expand(COSTS, quick=True)] == [0, 3, 0]
    assert quick["encode"].settings["n"] == 64 and quick["encode"].settings["repeats"] == 1
    assert quick["augment"].settings["n"] == 16 and quick["fashion"].settings["rows"] == 2000  # -1 (all) is capped


def test_cost_arms_run_after_the_data_arms_of_a_mixed_config():
    mixed = {
        "datasets": {"reuters-r8": {}},
        "budgets": [2],
        "seeds": [0],
        "arms": {"augment": COSTS["arms"]["augment"], "linear_probe": {}},
    }
    assert [s.run_id for s in expand(mixed)] == ["reuters-r8-validation-k2-linear_probe-s0", "cost-augment-s3"]


@pytest.mark.parametrize(
    "arm, message",
    [
        ({"kind": "cost"}, "arms.c.settings.measure: expected one of ssl_step, encode"),
        ({"kind": "cost", "settings": {"measure": "timing"}}, "arms.c.settings.measure: expected one of"),
        (
            {"kind": "cost", "settings": {"measure": "encode", "rows": 5}},
            "arms.c.settings.rows: unknown setting of measure 'encode'",
        ),
        ({"kind": "cost", "settings": {"measure": "encode", "n": "many"}}, "arms.c.settings.n: expected int"),
        ({"kind": "cost", "settings": {"measure": "augment", "n": 4.5}}, "arms.c.settings.n: expected int"),
        (
            {"kind": "cost", "settings": {"measure": "augment", "threads": 0}},
            "arms.c.settings.threads: expected an integer >= 1 or null",
        ),
        (
            {"kind": "cost", "settings": {"measure": "ssl_step", "model": "bert"}},
            "arms.c.settings.model: expected one of minilm, dinov2",
        ),
        (
            {"kind": "cost", "settings": {"measure": "augment", "repeats": 0}},
            "arms.c.settings.repeats: expected at least",
        ),
        (
            {"kind": "cost", "settings": {"measure": "augment"}, "datasets": ["reuters-r8"]},
            "arms.c.datasets: a cost arm builds its own inputs",
        ),
        ({"kind": "cost", "settings": {"measure": "augment"}, "budgets": [2]}, "arms.c.budgets: a cost arm"),
        ({"kind": "costs"}, "arms.c.kind: unknown kind 'costs'.*cost"),
    ],
)
def test_bad_cost_arms_name_the_key(tmp_path, arm, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(write_config(tmp_path, {"seeds": [0], "arms": {"c": arm}}))
    assert str(tmp_path / "costs.yaml") in str(caught.value)


def test_a_data_arm_still_needs_datasets_and_budgets():
    with pytest.raises(ConfigError, match="missing key 'datasets' \\(arm 'linear_probe' needs it"):
        expand({"seeds": [0], "arms": {"augment": COSTS["arms"]["augment"], "linear_probe": {}}})
    with pytest.raises(ConfigError, match="missing key 'budgets'"):
        expand({"seeds": [0], "datasets": {"reuters-r8": {}}, "arms": {"linear_probe": {}}})


def test_an_arms_thread_setting_holds_during_its_measure_only():
    torch.set_num_threads(1)
    with torch_threads(2) as threads:
        assert threads == torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    with torch_threads(None) as threads:
        assert threads == 1


@pytest.fixture
def tiny_costs(tmp_path, monkeypatch):
    """Every measure on tiny inputs: a tiny ViT for the SSL step, a tiny BERT for encode, fake Fashion-MNIST."""

    def step_pools(model, n_unlabeled, max_length, image_size):
        labeled = pixel_pool(8).with_format("torch")
        unlabeled = pixel_pool(16, seed=1).remove_columns("label").with_format("torch")
        return tiny_vit(), None, labeled, unlabeled

    def encode_inputs(n):
        texts = Dataset.from_dict({"text": variable_texts(n)})
        return tiny_bert().bert, word_tokenizer(tmp_path), texts

    monkeypatch.setattr(consistency_step, "pools", step_pools)
    monkeypatch.setattr(encode_throughput, "load_inputs", encode_inputs)
    monkeypatch.setattr(hf_ssl, "load_fashion_mnist", band_images)
    arms = {
        "step": {"measure": "ssl_step", "model": "dinov2", "batch_size": 4, "repeats": 2},
        "encode": {"measure": "encode", "n": 24, "batch_size": 8, "max_length": 16, "repeats": 2},
        "synthetic": {
            "measure": "label_propagator_synthetic",
            "n": 300,
            "dim": 16,
            "n_neighbors": 5,
            "label_fraction": 0.05,
            "repeats": 2,
        },
        "fashion": {"measure": "label_propagator_fashion", "pca_dim": 5, "n_neighbors": 5},
        "augment": {"measure": "augment", "n": 4, "size": 16, "repeats": 3, "threads": 2},
    }
    config = {
        "seeds": [0],
        "arms": {name: {"kind": "cost", "settings": {"threads": 1, **settings}} for name, settings in arms.items()},
    }
    return write_config(tmp_path, config), tmp_path / "out"


def test_every_measure_runs_end_to_end_and_the_report_tabulates_it(tiny_costs, tmp_path, capsys):
    path, out = tiny_costs
    torch.set_num_threads(1)
    runner.main(["--config", str(path), "--out", str(out)])
    files = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert files == [f"cost-{arm}-s0.json" for arm in ("augment", "encode", "fashion", "step", "synthetic")]
    results = {name[5:-8]: json.loads((out / "runs" / name).read_text(encoding="utf-8")) for name in files}
    ratio_of = {
        "step": "ssl_step / raw_step",
        "encode": "naive / encode",
        "synthetic": "sklearn / label_propagator",
        "fashion": "sklearn / label_propagator",
        "augment": "strong_per_sample / strong_batched",
    }
    for arm, record in results.items():
        result = record["result"]
        top, bottom = result["ratio_of"].split(" / ")
        assert result["ratio_of"] == ratio_of[arm] and "rows" not in record  # no data pools
        assert result["ratio"] == pytest.approx(result["seconds"][top] / result["seconds"][bottom])
        assert result["threads"] == (2 if arm == "augment" else 1)
        assert len(result["load_before"]) == len(result["load_after"]) == 3
        assert len(result["all_seconds"][top]) == record["spec"]["settings"]["repeats"] and result["wall_seconds"] > 0
        assert record["provenance"]["machine"]["load_start"] and record["spec"]["split"] == NO_DATA
    assert results["step"]["result"]["statistic"] == "median" and results["encode"]["result"]["statistic"] == "best"
    assert results["encode"]["result"]["agreement"]["min_cosine"] > 0.999  # both loops embed the same
    fashion = results["fashion"]["result"]
    assert fashion["rows"] == 180 and fashion["labeled"] == 30 and fashion["pca_dim"] == 5
    assert (
        fashion["runs"]["sklearn"]["params"]["n_neighbors"]
        == fashion["runs"]["label_propagator"]["params"]["n_neighbors"]
        == 5
    )
    assert min(fashion["accuracies"].values()) > 0.9  # the bands separate the classes
    assert 0 <= min(results["synthetic"]["result"]["accuracies"].values()) <= 1
    listed = json.loads((out / "index.json").read_text(encoding="utf-8"))["runs"]
    assert {r["run_id"]: r["ratio"] for r in listed} == {r["run_id"]: r["result"]["ratio"] for r in results.values()}
    capsys.readouterr()

    report.main(["--results", str(out), "--out", str(tmp_path / "costs.md")])
    table = (tmp_path / "costs.md").read_text(encoding="utf-8")
    assert "### Costs" in table and table == report.markdown_sources([str(out)]) + "\n\n" + cost_report.cost_markdown(
        cost_report.cost_rows(results.values())
    )
    assert "### Costs" in capsys.readouterr().out and not (tmp_path / "costs.png").exists()
    fashion_row = next(line for line in table.splitlines() if line.startswith("| fashion |"))
    cells = [c.strip() for c in fashion_row.split("|")[1:-1]]
    assert cells[1] == "label_propagator_fashion" and cells[2].startswith(f"{fashion['ratio']:.2f} (sklearn / ")
    assert cells[3].startswith(f"sklearn {fashion['seconds']['sklearn']:.3g} s; label_propagator ")
    assert cells[4] == "; ".join(f"{k} {v:.4f}" for k, v in fashion["accuracies"].items()) and cells[5] == "1"
    assert cells[6] == f"{fashion['load_before'][0]:.2f} → {fashion['load_after'][0]:.2f}"


@pytest.mark.slow
def test_the_costs_config_runs_quick_on_the_real_assets(tmp_path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "costs"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--config",
            "bench/configs/costs.yaml",
            "--quick",
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        cwd=REPO,
        env=env,
        check=True,
    )
    config = load_config(REPO / "bench" / "configs" / "costs.yaml", quick=True)
    measures = set()
    for spec in config.specs:
        result = json.loads((out / "runs" / spec.file_name).read_text(encoding="utf-8"))["result"]
        assert result["ratio"] > 0 and result["threads"] == 1
        measures.add(result["measure"])
    assert measures == set(MEASURES)
    fashion = json.loads((out / "runs" / "cost-label_propagator_fashion-s0.json").read_text(encoding="utf-8"))
    assert fashion["result"]["rows"] == 2000 and fashion["result"]["labeled"] == 100
    subprocess.run(
        [sys.executable, "-m", "bench", "report", "--results", str(out), "--out", str(tmp_path / "costs.md")],
        cwd=REPO,
        env=env,
        check=True,
    )
    assert "| label_propagator_fashion | label_propagator_fashion |" in (tmp_path / "costs.md").read_text("utf-8")
