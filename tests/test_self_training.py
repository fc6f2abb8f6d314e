"""SelfTrainingTrainer on tiny random BERT / ViT models built in the tests."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from datasets import load_from_disk
from helpers.tiny import tiny_bert
from transformers import EarlyStoppingCallback, TrainerCallback, ViTConfig, ViTForImageClassification
from transformers.trainer_utils import get_last_checkpoint

from hf_ssl import RoundCallback, SelfTrainingConfig, SelfTrainingTrainer, SSLTrainer
from hf_ssl.data.metrics import classification_metrics


def config(tmp_path, **overrides) -> SelfTrainingConfig:
    values = dict(output_dir=str(tmp_path / "out"), max_rounds=1, threshold=0.4, num_train_epochs=8,
                  per_device_train_batch_size=4, learning_rate=1e-2, logging_steps=4, report_to="none",
                  save_strategy="no", use_cpu=True, seed=0, data_seed=0)
    values.update(overrides)
    return SelfTrainingConfig(**values)


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


class LogRecorder(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_trains_rounds_records_and_exports(tmp_path, pools, tokenizer):
    labeled, unlabeled, evaluation = pools
    model = tiny_bert()
    before = params(model)
    recorder = LogRecorder()
    trainer = SelfTrainingTrainer(model=model, args=config(tmp_path), train_dataset=labeled,
                                  unlabeled_dataset=unlabeled, eval_dataset=evaluation, processing_class=tokenizer,
                                  compute_metrics=classification_metrics, callbacks=[recorder])
    trainer.train()
    after = params(trainer.model)
    # every trainable parameter moved
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert [r["round"] for r in trainer.rounds] == [0, 1], (trainer.rounds, trainer.termination_condition)
    stats = trainer.rounds[0]["pseudo_labels"]
    assert stats["selected"] > 0 and stats["new"] == stats["selected"]
    assert sum(stats["per_class"].values()) == stats["selected"]
    assert 0 <= stats["pseudo_label_accuracy"] <= 1
    assert "eval_accuracy" in trainer.rounds[1]["eval"]
    on_disk = json.loads((tmp_path / "out" / "self_training_rounds.json").read_text())
    assert on_disk["rounds"][0]["pseudo_labels"]["selected"] == stats["selected"]
    assert trainer.termination_condition == "max_rounds"
    # SSL metrics reach callbacks through the Trainer's own logging
    ssl_logged = [log for log in recorder.logs if "pseudo_label_loss" in log]
    assert ssl_logged and all(np.isfinite(log["pseudo_label_loss"]) for log in ssl_logged)
    assert any("ssl_selected" in log for log in recorder.logs)
    # export: label, confidence, round; written atomically
    path = trainer.export_pseudo_labels(str(tmp_path / "export"))
    exported = load_from_disk(path)
    assert len(exported) == stats["selected"]
    assert set(exported["pseudo_round"]) == {1}
    assert min(exported["pseudo_confidence"]) >= 0.4
    assert exported.features["pseudo_label"].names == ["c0", "c1", "c2"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".export-")]


def test_remove_unused_columns_keeps_ssl_columns(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path, remove_unused_columns=True),
                                  train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    trainer._set_signature_columns_if_needed()
    assert {"ssl_target", "ssl_weight", "ssl_index"} <= set(trainer._signature_columns)
    trainer.train()
    assert trainer.rounds[-1]["pseudo_labeled_rows_used"] > 0


def test_stream_cleared_after_training_and_base_loss_is_labeled_only(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path), train_dataset=labeled,
                                  unlabeled_dataset=unlabeled, processing_class=tokenizer)
    trainer.train()
    assert not trainer.has_unlabeled_stream()
    with pytest.raises(RuntimeError, match="No unlabeled stream"):
        trainer.next_unlabeled_batch()
    # the base trainer's loss ignores a stream of pseudo-labels: only the methods that opt in train on it
    assert not hasattr(SSLTrainer, "set_pseudo_label_stream")
    trainer.set_pseudo_label_stream(np.arange(4), np.eye(3, dtype=np.float32)[[0, 1, 2, 0]], np.ones(4))
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with_stream = trainer.compute_loss(trainer.model.eval(), batch)  # not training: the labeled loss only
    labeled_only = SSLTrainer.compute_loss(trainer, trainer.model, batch)
    assert torch.equal(with_stream, labeled_only) and trainer.unlabeled_batches_consumed == 0
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch)
    assert trainer.unlabeled_batches_consumed == 1


def test_soft_labels_confidence_weights_and_class_cap(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    args = config(tmp_path, soft_labels=True, soft_label_temperature=0.5, weight_by_confidence=True,
                  k_per_class=5, reset_model_each_round=False)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled,
                                  unlabeled_dataset=unlabeled, processing_class=tokenizer)
    trainer.train()
    assert max(trainer.rounds[0]["pseudo_labels"]["per_class"].values()) <= 5
    assert np.allclose(trainer.pseudo_targets.sum(axis=1), 1, atol=1e-5)
    assert (trainer.pseudo_targets.max(axis=1) < 1).all()


def test_stops_when_nothing_passes(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path, threshold=1.0, max_rounds=3),
                                  train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    trainer.train()
    assert trainer.termination_condition == "no_new_pseudo_labels" and len(trainer.rounds) == 1


def test_image_classification_model(tmp_path):
    from datasets import Array3D, ClassLabel, Dataset, Features

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=40)
    images = rng.normal(size=(40, 3, 8, 8)).astype("float32") * 0.1
    images[labels == 1, 0] += 1.0
    features = Features({"pixel_values": Array3D((3, 8, 8), "float32"), "label": ClassLabel(names=["a", "b"])})
    data = Dataset.from_dict({"pixel_values": images, "label": labels}, features=features)
    labeled = data.select(range(8))
    unlabeled = data.select(range(8, 40)).rename_column("label", "ssl_truth")
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(image_size=8, patch_size=4, num_channels=3, hidden_size=16,
                                                num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                                num_labels=2))
    trainer = SelfTrainingTrainer(model=model, args=config(tmp_path, threshold=0.5), train_dataset=labeled,
                                  unlabeled_dataset=unlabeled)
    trainer.train()
    assert trainer.rounds[0]["pseudo_labels"]["selected"] > 0
    assert trainer.model.config.id2label == {0: "a", 1: "b"}


def test_gradient_accumulation_matches_one_larger_batch(tmp_path, pools, tokenizer):
    """Batches of 2 accumulated twice train like batches of 4 (dropout off): the labeled loss is a per-batch mean
    that the Trainer divides by the accumulation steps, as the pseudo-label loss beside it (also the guard for
    several processes, where the Trainer would otherwise multiply the labeled loss by the number of processes)."""
    labeled, unlabeled, _ = pools
    runs = []
    for batch, accumulation in ((4, 1), (2, 2)):
        trainer = SelfTrainingTrainer(model=tiny_bert(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                                      args=config(tmp_path, per_device_train_batch_size=batch,
                                                  gradient_accumulation_steps=accumulation, eval_each_round=False),
                                      train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
        trainer.train()
        assert not trainer.model_accepts_loss_kwargs
        runs.append(trainer)
    big, small = runs
    assert big.state.global_step == small.state.global_step == 48 and len(big.rounds) == len(small.rounds) == 2
    np.testing.assert_allclose([r["train_loss"] for r in small.rounds], [r["train_loss"] for r in big.rounds],
                               rtol=1e-4)
    # the same model: the same probabilities over the pool (parameters are compared through the outputs, as the
    # attention key biases get only float-noise gradients that Adam turns into arbitrary steps)
    np.testing.assert_allclose(small.predict_unlabeled_probs(), big.predict_unlabeled_probs(), atol=1e-4)


class RoundEvents(RoundCallback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.events.append(("train_begin", state.global_step))

    def on_train_end(self, args, state, control, **kwargs):
        self.events.append(("train_end", state.global_step))

    def on_round_begin(self, args, state, control, round, **kwargs):
        assert kwargs["model"] is not None and kwargs["optimizer"] is not None
        self.events.append(("round_begin", round, state.global_step))

    def on_round_end(self, args, state, control, round, record, **kwargs):
        self.events.append(("round_end", round, record["global_step"], "eval" in record, "pseudo_labels" in record))


class DuckTyped(TrainerCallback):
    """A plain `TrainerCallback` with a round hook of its own."""

    def __init__(self):
        self.rounds = []

    def on_round_begin(self, args, state, control, round, **kwargs):
        self.rounds.append(round)


def test_one_run_with_round_hooks(tmp_path, pools, tokenizer):
    """Two rounds of 24 steps: callbacks hear one run, each round's begin and end (its record complete, evaluated and
    pseudo-labeled); the learning-rate schedule restarts with each round."""
    labeled, unlabeled, evaluation = pools
    events, duck = RoundEvents(), DuckTyped()
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path, logging_steps=1), train_dataset=labeled,
                                  unlabeled_dataset=unlabeled, eval_dataset=evaluation, processing_class=tokenizer,
                                  compute_metrics=classification_metrics, callbacks=[events, duck])
    trainer.train()
    assert events.events == [("train_begin", 0), ("round_begin", 0, 0), ("round_end", 0, 24, True, True),
                             ("round_begin", 1, 24), ("round_end", 1, 48, True, False), ("train_end", 48)]
    assert duck.rounds == [0, 1]
    assert [r["global_step"] for r in trainer.rounds] == [24, 48] and trainer.steps_per_round == 24
    rates = {e["step"]: e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e}
    assert rates[1] == rates[25] and rates[24] == rates[48] and rates[1] > rates[24]
    on_disk = json.loads((tmp_path / "out" / "self_training_rounds.json").read_text())
    assert [r["global_step"] for r in on_disk["rounds"]] == [24, 48]
    assert on_disk["termination_condition"] == "max_rounds"


def test_early_stopping_mid_round_ends_the_run(tmp_path, pools, tokenizer):
    """Evaluations at steps 16, 24 (round 0's end) and 32 score ever lower: patience 2 stops the run at step 32, in
    round 1, whose record covers the steps it ran."""
    labeled, unlabeled, evaluation = pools
    calls = []

    def falling(prediction):
        calls.append(1)
        return {"score": 1.0 / len(calls)}

    args = config(tmp_path, eval_strategy="steps", eval_steps=16, save_strategy="steps", save_steps=16,
                  load_best_model_at_end=True, metric_for_best_model="score")
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  eval_dataset=evaluation, processing_class=tokenizer, compute_metrics=falling,
                                  callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])
    trainer.train()
    assert trainer.state.global_step == 32 and trainer.termination_condition == "training_stopped"
    assert [(r["round"], r["global_step"]) for r in trainer.rounds] == [(0, 24), (1, 32)]
    assert trainer.rounds[0]["eval"]["eval_score"] == 0.5 and trainer.rounds[1]["eval"]["eval_score"] == 1 / 3
    assert trainer.state.best_model_checkpoint == str(tmp_path / "out" / "checkpoint-16")
    # save_total_limit=1 (SSLConfig's default) with load_best_model_at_end: the Trainer keeps the best checkpoint only
    assert sorted(os.listdir(tmp_path / "out")) == ["checkpoint-16",
                                                    "checkpoint-initial-weights.pt", "self_training_rounds.json"]


def test_epoch_strategy_evaluates_a_round_end_once(tmp_path, pools, tokenizer):
    labeled, unlabeled, evaluation = pools
    args = config(tmp_path, eval_strategy="epoch", save_strategy="epoch", threshold=0.34)  # 3 classes: every row
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args,
                                  train_dataset=labeled, unlabeled_dataset=unlabeled, eval_dataset=evaluation,
                                  processing_class=tokenizer, compute_metrics=classification_metrics)
    trainer.train()
    steps = [e["step"] for e in trainer.state.log_history if "eval_loss" in e]
    assert steps == list(range(3, 49, 3))  # every epoch, once
    assert [r["global_step"] for r in trainer.rounds if "eval" in r] == [24, 48]
    assert get_last_checkpoint(str(tmp_path / "out")) == str(tmp_path / "out" / "checkpoint-48")


def test_round_report_prints_each_round_on_the_console(tmp_path, pools, tokenizer, capsys):
    """The default `RoundReport` prints the round number, its steps and what it trains on, then its evaluation and
    pseudo-label counts; ``log_level="error"`` silences it."""
    labeled, unlabeled, evaluation = pools
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path), train_dataset=labeled,
                                  unlabeled_dataset=unlabeled, eval_dataset=evaluation, processing_class=tokenizer,
                                  compute_metrics=classification_metrics)
    trainer.train()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[round ")]
    selected = trainer.rounds[0]["pseudo_labels"]["selected"]
    accuracy = trainer.rounds[0]["eval"]["eval_accuracy"]
    assert len(lines) == 4, lines
    assert lines[0].startswith("[round 0/1] steps 1-24: labeled rows only")
    assert lines[1].startswith("[round 0/1] ended at step 24: train loss ")
    assert f"eval_accuracy {accuracy:.4f}" in lines[1]
    assert f"next round: {selected:,} with confidence >= 0.4" in lines[1]
    assert "accuracy against the hidden truth" in lines[1]
    assert lines[2].startswith(f"[round 1/1] steps 25-48: labeled rows plus {selected:,} pseudo-labeled rows, from "
                               "the initial weights") and "jumps up" in lines[2]
    assert lines[3].startswith("[round 1/1] ended at step 48: ") and "pseudo-labels" not in lines[3]

    quiet = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path, log_level="error"), train_dataset=labeled,
                                unlabeled_dataset=unlabeled, processing_class=tokenizer)
    quiet.train()
    assert "[round " not in capsys.readouterr().out
