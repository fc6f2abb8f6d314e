"""head_init="linear_probe" (LP-FT): the probe fit, the layer it writes, and its use by every trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_bert
from peft import LoraConfig
from sklearn.linear_model import LogisticRegression
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, Dinov2Config, Dinov2ForImageClassification

from hf_ssl import ConsistencyConfig, ConsistencyTrainer, SSLConfig, SSLTrainer
from hf_ssl.methods.head_init import classifier_layer, fit_linear_probe, head_features


def test_probe_matches_scikit_learn_logistic_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) + np.repeat(np.eye(3, 5) * 1.5, 20, axis=0)
    y = np.repeat(np.arange(3), 20)
    weight, bias = fit_linear_probe(torch.as_tensor(x), torch.as_tensor(y), 3, c=0.7)
    ours = torch.softmax(torch.as_tensor(x, dtype=torch.float32) @ weight.T + bias, dim=1).numpy()
    reference = LogisticRegression(C=0.7, max_iter=5000, tol=1e-10).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(ours, reference, atol=2e-4)
    # The penalty shrinks the weights: a smaller C gives a smaller norm.
    small, _ = fit_linear_probe(torch.as_tensor(x), torch.as_tensor(y), 3, c=0.01)
    assert small.norm() < 0.5 * weight.norm()
    with pytest.raises(ValueError, match="c must be > 0"):
        fit_linear_probe(torch.as_tensor(x), torch.as_tensor(y), 3, c=0)


def test_classifier_layer_is_the_last_linear_with_num_labels_outputs():
    model = tiny_bert(num_labels=3)
    assert classifier_layer(model, 3) is model.classifier
    with pytest.raises(ValueError, match="head_init='random'"):
        classifier_layer(model, 7)


def _probe_on(model, dataset, tokenizer):
    columns = ["input_ids", "token_type_ids", "attention_mask", "label"]
    loader = DataLoader(dataset.select_columns(columns), batch_size=5, collate_fn=DataCollatorWithPadding(tokenizer))
    features, labels = head_features(model, classifier_layer(model, 3), loader)
    return features, labels, fit_linear_probe(features, labels, 3)


def test_trainer_writes_the_probe_into_the_head_and_keeps_the_body(pools, tokenizer, tmp_path):
    labeled, unlabeled, _ = pools
    reference = tiny_bert(num_labels=3, seed=5)
    features, labels, (weight, bias) = _probe_on(reference, labeled, tokenizer)
    model = tiny_bert(num_labels=3, seed=5)
    body_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier")}
    head_before = model.classifier.weight.detach().clone()
    trainer = SSLTrainer(model=model, args=SSLConfig(output_dir=str(tmp_path), head_init="linear_probe",
                                                     report_to="none", use_cpu=True),
                         train_dataset=labeled, processing_class=tokenizer)
    assert not torch.equal(model.classifier.weight, head_before)
    torch.testing.assert_close(model.classifier.weight.detach(), weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.classifier.bias.detach(), bias, atol=1e-5, rtol=1e-4)
    for k, v in model.state_dict().items():
        if k in body_before:
            assert torch.equal(v, body_before[k]), k
    # The model now predicts the labeled pool as the probe does (eval mode, same features).
    model.eval()
    with torch.no_grad():
        logits = model.classifier(features)
    expected = (features @ weight.T + bias).argmax(1)
    assert torch.equal(logits.argmax(1), expected)
    record = trainer.head_init_record
    assert record["rows"] == len(labeled)
    assert record["probe_train_accuracy"] == pytest.approx(float((expected == labels).float().mean()))
    assert "head_init" in trainer.card_hyperparameters()


def test_head_init_happens_before_the_ema_teacher_copies_the_model(pools, tokenizer, tmp_path):
    labeled, unlabeled, _ = pools
    model = tiny_bert(num_labels=3, seed=5)
    config = ConsistencyConfig(output_dir=str(tmp_path), method="mean_teacher", head_init="linear_probe",
                               report_to="none", use_cpu=True, max_steps=2, per_device_train_batch_size=4)
    trainer = ConsistencyTrainer(model=model, args=config, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                 processing_class=tokenizer)
    names = dict(model.named_parameters())
    teacher = trainer.ema.shadow
    key = next(k for k in teacher if k.endswith("classifier.weight"))
    torch.testing.assert_close(teacher[key], names[key].detach())
    trainer.train()


def test_head_init_under_peft_writes_the_trainable_copy(pools, tokenizer, tmp_path):
    labeled, _, _ = pools
    reference = tiny_bert(num_labels=3, seed=5)
    _, _, (weight, _) = _probe_on(reference, labeled, tokenizer)
    model = tiny_bert(num_labels=3, seed=5)
    config = SSLConfig(output_dir=str(tmp_path), head_init="linear_probe", report_to="none", use_cpu=True)
    trainer = SSLTrainer(model=model, args=config, train_dataset=labeled, processing_class=tokenizer,
                         peft_config=LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query", "value"]))
    head = classifier_layer(trainer.model, 3)
    assert head.weight.requires_grad
    # A fresh LoRA does not change the features, so the probe equals the plain model's.
    torch.testing.assert_close(head.weight.detach(), weight, atol=1e-5, rtol=1e-4)


def test_head_init_on_an_image_model(tmp_path):
    from datasets import Array3D, ClassLabel, Dataset, Features

    torch.manual_seed(0)
    config = Dinov2Config(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=32, num_labels=2)
    model = Dinov2ForImageClassification(config)
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 6)
    pixels = rng.normal(size=(12, 3, 16, 16)).astype(np.float32) + labels[:, None, None, None] * 2.0
    features = Features({"pixel_values": Array3D((3, 16, 16), "float32"), "label": ClassLabel(names=["a", "b"])})
    data = Dataset.from_dict({"pixel_values": pixels, "label": labels.tolist()}, features=features)
    trainer = SSLTrainer(model=model, args=SSLConfig(output_dir=str(tmp_path), head_init="linear_probe",
                                                     report_to="none", use_cpu=True), train_dataset=data)
    # Dinov2's head reads [CLS, mean patch] (2 × hidden): the probe was fitted on those 32 features.
    assert model.classifier.in_features == 32
    assert trainer.head_init_record["probe_train_accuracy"] == 1.0


def test_head_init_rejects_an_unknown_value(tmp_path):
    with pytest.raises(ValueError, match="head_init must be 'random' or 'linear_probe'"):
        SSLConfig(output_dir=str(tmp_path), head_init="zeros")
