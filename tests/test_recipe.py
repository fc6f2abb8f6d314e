"""The text self-training recipe end to end on the real assets, shrunk by flags and a YAML config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_recipe_with_yaml_config_and_flags(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("labels_per_class: 2\nmax_unlabeled: 60\nmax_eval: 40\nmax_length: 32\n"
                      "num_train_epochs: 2\nmax_rounds: 1\nthreshold: 0.2\nreport_to: none\n")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "text_selftrain.py"), "--config", str(config),
         "--output_dir", str(out), "--save_strategy", "no", "--disable_tqdm", "true"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "labeled-only accuracy:" in result.stdout and "self-training accuracy:" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labeled"] == 16 and summary["unlabeled"] == 60 and summary["test"] == 40
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert (out / "pseudo_labeled" / "dataset_info.json").exists()
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "self_training" in card.data.tags
    assert card.data.datasets == ["reuters-r8"]


def test_recipe_rejects_unknown_yaml_keys(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("labels_per_klass: 2\n")
    result = subprocess.run([sys.executable, str(ROOT / "recipes" / "text_selftrain.py"), "--config", str(config)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "labels_per_klass" in result.stderr


@pytest.mark.slow
def test_labelprop_recipe_selects_propagates_and_exports(tmp_path):
    from datasets import load_from_disk

    out = tmp_path / "lp"
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "labelprop.py"), "--output_dir", str(out), "--max_rows", "200",
         "--max_length", "48", "--select", "kmeans", "--budget", "16"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 200 and summary["labeled"] == 16 and summary["select"] == "kmeans"
    exported = load_from_disk(str(out / "pseudo_labeled"))
    assert len(exported) == 200 and exported["source"].count("given") == 16
    assert set(exported.column_names) >= {"text", "label", "confidence", "source"}
    # propagation from 16 k-means representatives does far better than chance on R8's 8 classes
    assert summary["propagated_accuracy_vs_held_back_labels"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("recipe,flags", [
    ("text_consistency.py", ["--max_unlabeled", "40", "--max_eval", "40", "--method", "uda"]),
    ("image_fixmatch.py", ["--dataset", "mnist-5k", "--max_unlabeled", "40", "--max_eval", "40",
                           "--threshold_strategy", "flexmatch", "--contrastive_steps", "2",
                           "--contrastive_batch_size", "8"]),
])
def test_consistency_recipes_run_offline_and_save_model_and_card(tmp_path, recipe, flags):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / recipe), "--output_dir", str(out), "--num_train_epochs", "1",
         "--baseline", "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", *flags],
        capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labeled"] > 0 and summary["unlabeled"] == 40 and summary["test"] == 40
    assert 0 <= summary["accuracy"] <= 1 and 0 <= summary["labeled_only_accuracy"] <= 1
    card = (out / "README.md").read_text()
    assert (out / "model.safetensors").exists() and "hf_ssl" in card
    # the recipe's own defaults reach the trainer and its card
    assert "- `graph_prior_weight`: 0.5" in card and "- `head_init`: linear_probe" in card
    if recipe == "image_fixmatch.py":  # the contrastive adaptation ran before training
        assert "- `contrastive_steps`: 2" in card


def test_leave_together_does_nothing_in_one_process():
    from hf_ssl.scripts.utils import leave_together

    class OneProcess:
        num_processes = 1

        def wait_for_everyone(self) -> None:
            raise AssertionError("a single process has nobody to wait for")

    leave_together(OneProcess(), grace=0)
