"""Each trainer warns, naming the setting to change, when (almost) no unlabeled row passes its threshold, and stays
quiet in a run where rows pass (tiny random BERT)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from helpers.tiny import tiny_bert

from hf_ssl import (
    ConsistencyConfig,
    ConsistencyTrainer,
    LabelPropagationConfig,
    LabelPropagationTrainer,
    SelfTrainingConfig,
    SelfTrainingTrainer,
)
from hf_ssl.trainer.pass_rate_warnings import MASK_RATE_PATIENCE_STEPS, WarnLowMaskRate

COMMON = dict(per_device_train_batch_size=4, learning_rate=1e-2, report_to="none", save_strategy="no",
              use_cpu=True, seed=0, data_seed=0, disable_tqdm=True)


def _train(trainer, caplog) -> str:
    with caplog.at_level(logging.WARNING, logger="hf_ssl.trainer.pass_rate_warnings"):
        trainer.train()
    return caplog.text


@pytest.mark.parametrize("max_steps", [MASK_RATE_PATIENCE_STEPS + 10, 6])
def test_fixmatch_that_masks_every_row_warns(tmp_path, pools, tokenizer, caplog, max_steps):
    """τ = 1 lets no row pass: warned after the patience, or at the end of a shorter run."""
    labeled, unlabeled, _ = pools
    args = ConsistencyConfig(output_dir=str(tmp_path / "c"), threshold=1.0, max_steps=max_steps, logging_steps=2,
                             **COMMON)
    trainer = ConsistencyTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                 processing_class=tokenizer)
    text = _train(trainer, caplog)
    steps = MASK_RATE_PATIENCE_STEPS if max_steps > MASK_RATE_PATIENCE_STEPS else max_steps
    assert text.count("almost no unlabeled row passed") == 1, text
    assert f"for {steps} optimizer steps" in text and "lower threshold (now 1.0)" in text
    assert "threshold_strategy='freematch'" in text


def test_fixmatch_without_unlabeled_loss_is_quiet(tmp_path, pools, tokenizer, caplog):
    """λ = 0 asks for labeled-only training: τ = 1 masking every row is then no mistake to warn about."""
    labeled, unlabeled, _ = pools
    args = ConsistencyConfig(output_dir=str(tmp_path / "c"), threshold=1.0, unlabeled_loss_weight=0.0, max_steps=6,
                             logging_steps=2, **COMMON)
    trainer = ConsistencyTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                 processing_class=tokenizer)
    assert "almost no unlabeled row" not in _train(trainer, caplog)
    assert max(e["mask_rate"] for e in trainer.state.log_history if "mask_rate" in e) == 0


def test_fixmatch_whose_rows_pass_is_quiet(tmp_path, pools, tokenizer, caplog):
    labeled, unlabeled, _ = pools  # 3 classes: every confidence is >= 1/3 > τ
    args = ConsistencyConfig(output_dir=str(tmp_path / "c"), threshold=0.3, max_steps=MASK_RATE_PATIENCE_STEPS + 10,
                             logging_steps=2, **COMMON)
    trainer = ConsistencyTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                 processing_class=tokenizer)
    assert "almost no unlabeled row" not in _train(trainer, caplog)
    assert min(e["mask_rate"] for e in trainer.state.log_history if "mask_rate" in e) == 1


def test_mask_rate_that_recovers_within_the_patience_is_quiet(caplog):
    callback = WarnLowMaskRate()
    args = SimpleNamespace(threshold_strategy="fixed", threshold=0.95, method="fixmatch")
    callback.on_train_begin(args, SimpleNamespace(global_step=0), None)
    rates = [0.0] * (MASK_RATE_PATIENCE_STEPS // 10 - 1) + [0.5] + [0.0] * (MASK_RATE_PATIENCE_STEPS // 10 - 1)
    with caplog.at_level(logging.WARNING, logger="hf_ssl.trainer.pass_rate_warnings"):
        for i, rate in enumerate(rates, start=1):
            callback.on_log(args, SimpleNamespace(global_step=10 * i), None, logs={"mask_rate": rate})
        callback.on_train_end(args, SimpleNamespace(global_step=10 * len(rates)), None)
    assert "almost no unlabeled row" not in caplog.text


@pytest.mark.parametrize("threshold,warns", [(1.0, True), (0.3, False)])
def test_self_training_round_without_pseudo_labels_warns(tmp_path, pools, tokenizer, caplog, threshold, warns):
    labeled, unlabeled, _ = pools
    args = SelfTrainingConfig(output_dir=str(tmp_path / "s"), threshold=threshold, max_rounds=1, num_train_epochs=1,
                              **COMMON)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  processing_class=tokenizer)
    text = _train(trainer, caplog)
    assert (f"round 0's model gives 0 of {len(unlabeled)} unlabeled rows (0.0%)" in text) is warns, text
    assert ("Lower threshold." in text) is warns
    assert trainer.rounds[0]["pseudo_labels"]["selected"] == (0 if warns else len(unlabeled))


@pytest.mark.parametrize("min_certainty,warns", [(0.999, True), (0.0, False)])
def test_label_propagation_that_keeps_no_row_warns(tmp_path, pools, tokenizer, caplog, min_certainty, warns):
    labeled, unlabeled, _ = pools
    args = LabelPropagationConfig(output_dir=str(tmp_path / "lp"), min_certainty=min_certainty, num_train_epochs=1,
                                  n_neighbors=5, encode_batch_size=16, **COMMON)
    trainer = LabelPropagationTrainer(model=tiny_bert(), args=args, train_dataset=labeled,
                                      unlabeled_dataset=unlabeled, processing_class=tokenizer)
    text = _train(trainer, caplog)
    assert ("lower min_certainty (now 0.999)" in text) is warns, text
    assert (trainer.propagations[0]["pseudo_labeled"] == 0) is warns
