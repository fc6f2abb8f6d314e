"""hf_ssl.contrastive: the SimCLR loss, the adaptation loop, and `ConsistencyConfig(contrastive_steps=...)`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.tiny import tiny_bert
from transformers import ViTConfig, ViTForImageClassification

from hf_ssl import ConsistencyConfig, ConsistencyTrainer, ImageAugmenter
from hf_ssl.methods.contrastive import contrastive_adapt, nt_xent


def test_nt_xent_is_low_for_matching_pairs_and_log_2n_minus_1_for_uninformative_ones():
    z = torch.eye(6) * 5
    assert nt_xent(z, z.clone(), temperature=0.05) < 1e-6  # each row's partner is its only similar row
    same = torch.ones(6, 4)  # every projection identical: the partner is one of 2n - 1 equal choices
    assert nt_xent(same, same.clone()) == pytest.approx(math.log(11), abs=1e-5)
    a, b = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), torch.randn(5, 3)
    assert nt_xent(a, b) == pytest.approx(float(nt_xent(b, a)), abs=1e-6)  # symmetric in the two views
    swapped = nt_xent(a, b[torch.tensor([1, 0, 2, 3, 4])])
    assert swapped != pytest.approx(float(nt_xent(a, b)), abs=1e-4)  # the pairing matters
    with pytest.raises(ValueError, match="n >= 2"):
        nt_xent(a[:1], b[:1])
    with pytest.raises(ValueError, match="z1 and z2"):
        nt_xent(a, b[:, :2])


def tiny_vit(seed: int = 0) -> ViTForImageClassification:
    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                               num_attention_heads=2, intermediate_size=32, num_labels=3))


def test_contrastive_adapt_lowers_the_loss_and_moves_only_the_encoder():
    model = tiny_vit()
    model.eval()
    head = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    body = {k: v.clone() for k, v in model.vit.state_dict().items()}
    # smooth images (2x2 colours upsampled), so that a shifted, cropped view still resembles its source
    coarse = torch.rand(32, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    images = torch.nn.functional.interpolate(coarse, size=16, mode="bilinear")
    batches = [{"pixel_values": images[i:i + 8]} for i in range(0, 32, 8)]
    augmenter = ImageAugmenter(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), randaugment_n=1, randaugment_m=5,
                               cutout=0.25)
    torch.manual_seed(0)
    record = contrastive_adapt(model, batches, augmenter, steps=80, learning_rate=1e-3, log_every=20)
    assert record["steps"] == 80 and [step for step, _ in record["losses"]] == [20, 40, 60, 80]
    first, last = record["losses"][0][1], record["losses"][-1][1]
    assert last < first - 0.3, record["losses"]
    assert not model.training  # mode restored
    assert all(torch.equal(v, model.classifier.state_dict()[k]) for k, v in head.items())
    assert any(not torch.equal(v, model.vit.state_dict()[k]) for k, v in body.items())
    with pytest.raises(ValueError, match="steps"):
        contrastive_adapt(model, batches, augmenter, steps=0)
    with pytest.raises(ValueError, match="no batches"):
        contrastive_adapt(model, [], augmenter, steps=1)


def config(tmp_path, **overrides) -> ConsistencyConfig:
    values = dict(output_dir=str(tmp_path / "cons"), num_train_epochs=2, per_device_train_batch_size=4,
                  learning_rate=1e-2, report_to="none", save_strategy="no", use_cpu=True, seed=0, threshold=0.5)
    return ConsistencyConfig(**{**values, **overrides})


def test_trainer_adapts_before_training_refits_the_probe_and_skips_on_resume(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    args = config(tmp_path, contrastive_steps=3, contrastive_batch_size=8, head_init="linear_probe",
                  save_strategy="steps", save_steps=2, save_total_limit=None, logging_steps=1)
    trainer = ConsistencyTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                 processing_class=tokenizer)
    probe_before = trainer.head_init_record
    calls = []
    original = trainer.init_head_from_probe

    def counting_probe():
        calls.append(1)
        return original()

    trainer.init_head_from_probe = counting_probe
    trainer.train()
    record = trainer.contrastive_record
    assert record["steps"] == 3 and len(record["losses"]) == 1 and np.isfinite(record["losses"][0][1])
    assert calls == [1] and trainer.head_init_record is record["head_init"] is not probe_before
    assert any("contrastive_loss_last" in entry for entry in trainer.state.log_history)
    trainer.create_model_card()
    assert "- `contrastive_steps`: 3" in (tmp_path / "cons" / "README.md").read_text()

    resumed = ConsistencyTrainer(model=tiny_bert(seed=3), args=args, train_dataset=labeled,
                                 unlabeled_dataset=unlabeled, processing_class=tokenizer)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cons" / "checkpoint-2"))
    assert resumed.contrastive_record is None  # the checkpoint already holds adapted weights


def test_contrastive_settings_are_checked_before_training(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    for field, value in (("contrastive_steps", -1), ("contrastive_batch_size", 1),
                         ("contrastive_learning_rate", 0.0), ("contrastive_temperature", 0.0)):
        with pytest.raises(ValueError, match=field):
            config(tmp_path, **{field: value})
    with pytest.raises(ValueError, match="contrastive_batch_size=500 is larger than the unlabeled pool"):
        ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, contrastive_steps=1, contrastive_batch_size=500),
                           train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
