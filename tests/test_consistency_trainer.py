"""ConsistencyTrainer on tiny random BERT / ViT models built in the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_bert
from transformers import ViTConfig, ViTForImageClassification

from hf_ssl import ConsistencyConfig, ConsistencyTrainer
from hf_ssl.consistency_config import METHODS
from hf_ssl.metrics import classification_metrics
from hf_ssl.thresholds import THRESHOLD_STRATEGIES


def config(tmp_path, **overrides) -> ConsistencyConfig:
    values = dict(output_dir=str(tmp_path / "cons"), num_train_epochs=3, per_device_train_batch_size=4,
                  learning_rate=1e-2, logging_steps=2, report_to="none", save_strategy="no", use_cpu=True,
                  seed=0, data_seed=0, threshold_momentum=0.9)
    values.update(overrides)
    return ConsistencyConfig(**values)


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("strategy", THRESHOLD_STRATEGIES)
def test_every_method_and_threshold_trains(tmp_path, pools, tokenizer, method, strategy):
    labeled, unlabeled, _ = pools
    model = tiny_bert()
    before = params(model)
    trainer = ConsistencyTrainer(model=model, args=config(tmp_path, method=method, threshold_strategy=strategy,
                                                          threshold=0.5 if method in ("fixmatch", "uda") else None),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    trainer.train()
    after = params(trainer.model)
    assert all(not torch.equal(before[k], after[k]) for k in before), [k for k in before if torch.equal(before[k],
                                                                                                         after[k])]
    logged = [e for e in trainer.state.log_history if "mask_rate" in e]
    assert logged and all(np.isfinite(e["unlabeled_loss"]) and 0 <= e["mask_rate"] <= 1 for e in logged)
    assert trainer.epoch_records and len(trainer.epoch_records) == 3
    assert trainer.unlabeled_batches_consumed == trainer.state.global_step


def test_fixmatch_learns_the_keyword_task(tmp_path, pools, tokenizer):
    labeled, unlabeled, evaluation = pools
    trainer = ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, num_train_epochs=25, threshold=0.6),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, eval_dataset=evaluation,
                                 processing_class=tokenizer, compute_metrics=classification_metrics)
    trainer.train()
    assert trainer.evaluate()["eval_accuracy"] > 0.6
    records = trainer.epoch_records
    assert records[-1]["mask_rate"] > 0
    assert "pseudo_label_accuracy" in records[-1]


def test_image_model_trains(tmp_path):
    from datasets import Dataset

    from hf_ssl import sample_per_class

    torch.manual_seed(0)
    n = 40
    labels = np.arange(n) % 2
    pixels = np.random.default_rng(0).normal(size=(n, 3, 16, 16)).astype(np.float32)
    pixels[labels == 1, :, :8] += 1.0
    pool = Dataset.from_dict({"pixel_values": pixels.tolist(), "label": labels.tolist()})
    labeled, unlabeled = sample_per_class(pool, k=4, seed=0)
    vit = ViTForImageClassification(ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=32, num_labels=2))
    for method in ("fixmatch", "mixmatch"):
        trainer = ConsistencyTrainer(model=vit, args=config(tmp_path, method=method, threshold=0.5,
                                                            randaugment_n=1),
                                     train_dataset=labeled, unlabeled_dataset=unlabeled)
        trainer.train()
        assert trainer.state.global_step == 6
