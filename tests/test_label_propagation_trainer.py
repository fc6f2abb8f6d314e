"""LabelPropagationTrainer on a tiny random BERT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_bert

from hf_ssl import LabelPropagationConfig, LabelPropagationTrainer
from hf_ssl.data.metrics import classification_metrics


def config(tmp_path, **overrides) -> LabelPropagationConfig:
    values = dict(output_dir=str(tmp_path / "lp"), num_train_epochs=8, warmup_epochs=2, propagate_every=2,
                  n_neighbors=5, per_device_train_batch_size=4, learning_rate=1e-2, report_to="none",
                  save_strategy="no", use_cpu=True, seed=0, encode_batch_size=16, disable_tqdm=True)
    values.update(overrides)
    return LabelPropagationConfig(**values)


def test_propagates_on_schedule_and_trains(tmp_path, pools, tokenizer):
    labeled, unlabeled, evaluation = pools
    trainer = LabelPropagationTrainer(model=tiny_bert(), args=config(tmp_path), train_dataset=labeled,
                                      unlabeled_dataset=unlabeled, eval_dataset=evaluation,
                                      processing_class=tokenizer, compute_metrics=classification_metrics)
    trainer.train()
    assert [r["epoch"] for r in trainer.propagations] == [2, 4, 6]
    last = trainer.propagations[-1]
    assert last["pseudo_labeled"] == len(unlabeled) and sum(last["per_class"].values()) == len(unlabeled)
    assert 0 < last["mean_certainty"] <= 1 and 0 <= last["pseudo_label_accuracy"] <= 1
    on_disk = json.loads((tmp_path / "lp" / "label_propagation.json").read_text())
    assert len(on_disk["propagations"]) == 3
    weights = trainer.pseudo["weights"]
    assert (weights >= 0).all() and weights.max() > 0
    assert abs(float(weights.mean()) - 1.0) < 1e-4  # rescaled to mean 1: λ alone sets the pseudo-label loss scale
    assert weights.std() > 1e-3  # ...and still ranking rows by certainty and class frequency
    assert any("pseudo_label_loss" in e for e in trainer.state.log_history)
    assert any("ssl_propagation_pseudo_labeled" in e for e in trainer.state.log_history)


def test_propagate_once_keeping_the_most_certain_fraction(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    runs = {}
    for fraction in (1.0, 0.5):
        args = config(tmp_path / str(fraction), warmup_epochs=0, propagate_every=0, certainty_fraction=fraction,
                      num_train_epochs=3)
        trainer = LabelPropagationTrainer(model=tiny_bert(), args=args, train_dataset=labeled,
                                          unlabeled_dataset=unlabeled, processing_class=tokenizer)
        trainer.train()
        assert [r["epoch"] for r in trainer.propagations] == [0]  # once, before any training, never again
        runs[fraction] = (trainer.propagations[0], set(trainer.pseudo["rows"].tolist()))
    (full, all_rows), (half, kept) = runs[1.0], runs[0.5]
    assert len(kept) == -(-len(all_rows) // 2) and kept < all_rows  # the same propagation (epoch 0), cut in half
    assert half["mean_certainty"] > full["mean_certainty"]  # ...keeping the most certain rows


@pytest.mark.parametrize("field,value", [("alpha", 1.0), ("propagate_every", -1), ("n_neighbors", 0),
                                         ("min_certainty", 1.0), ("pooling", "max"), ("certainty_fraction", 0.0),
                                         ("certainty_fraction", 1.5)])
def test_config_ranges(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        config(tmp_path, **{field: value})


def test_label_propagation_trainer_on_an_image_model(tmp_path):
    """Pixel pools: the ViT embeds both pools, labels spread, and the pseudo-labels follow the image classes."""
    from datasets import Array3D, ClassLabel, Dataset, Features
    from transformers import Dinov2Config, Dinov2ForImageClassification

    from hf_ssl import sample_per_class

    torch.manual_seed(0)
    model = Dinov2ForImageClassification(Dinov2Config(
        image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, num_labels=2))
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    pixels = rng.normal(size=(60, 3, 16, 16)).astype(np.float32) + labels[:, None, None, None] * 3.0
    features = Features({"pixel_values": Array3D((3, 16, 16), "float32"), "label": ClassLabel(names=["a", "b"])})
    data = Dataset.from_dict({"pixel_values": pixels, "label": labels.tolist()}, features=features)
    # torch-formatted, as hf_ssl.data.images.pixel_dataset returns: rows (and pseudo-label vectors) come as tensors.
    labeled, unlabeled = (d.with_format("torch") for d in sample_per_class(data, k=3, seed=0))
    config = LabelPropagationConfig(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=2,
                                    n_neighbors=5, report_to="none", use_cpu=True)
    trainer = LabelPropagationTrainer(model=model, args=config, train_dataset=labeled, unlabeled_dataset=unlabeled)
    trainer.train()
    record = trainer.propagations[0]
    assert record["pseudo_labeled"] == len(unlabeled)
    assert record["pseudo_label_accuracy"] >= 0.9
