"""The safeguard of SelfTrainingTrainer (``safeguard="graph"``) on a tiny random BERT: the graph check of each round,
the round whose model the run keeps, on the console, in the log, on the card and across a resume."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
import torch
from helpers.checks import params
from helpers.kill import KillAt, Killed
from helpers.tiny import tiny_bert
from transformers import TrainerCallback

from hf_ssl import RoundCallback, SelfTrainingConfig, SelfTrainingTrainer
from hf_ssl.data.metrics import classification_metrics
from hf_ssl.trainer import safeguard
from hf_ssl.trainer.safeguard import BEST_WEIGHTS_NAME, best_round, graph_agreement


def config(tmp_path, **overrides) -> SelfTrainingConfig:
    values = dict(output_dir=str(tmp_path / "out"), max_rounds=1, threshold=0.4, num_train_epochs=4,
                  per_device_train_batch_size=4, learning_rate=1e-2, logging_steps=4, report_to="none",
                  save_strategy="no", use_cpu=True, seed=0, data_seed=0)
    return SelfTrainingConfig(**(values | overrides))


class RoundWeights(RoundCallback):
    """The model's parameters at the end of every round."""

    def __init__(self):
        self.weights = {}

    def on_round_end(self, args, state, control, round, record, model=None, **kwargs):
        self.weights[round] = params(model)


class LogRecorder(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def same(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def round_0_agrees_best(monkeypatch):
    """The graph is made to agree fully with round 0's predictions and never with a later round's."""
    real = SelfTrainingTrainer.check_round

    def check_round(self, record, probs):
        if record["round"] == 0:
            self.check_labels = probs.argmax(axis=1)
            self.check_weights = np.ones(len(probs), dtype=np.float32)
        else:
            probs = np.roll(probs, 1, axis=1)  # every row's argmax moves to another class
        real(self, record, probs)

    monkeypatch.setattr(SelfTrainingTrainer, "check_round", check_round)


def test_graph_agreement_and_best_round():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    # the last row is unlabeled by the graph: no weight whatever its certainty
    assert graph_agreement(probs, np.array([0, 0, 0, -1]), np.array([1.0, 3.0, 1.0, 5.0])) == pytest.approx(0.4)
    assert graph_agreement(probs, np.array([0, 1, 0, 0]), np.zeros(4)) is None
    assert best_round({0: 0.8, 1: 0.9, 2: 0.7}) == 1
    assert best_round({0: 0.8, 1: 0.8}) == 1  # a tie keeps the later round
    assert best_round({0: None, 1: None}) is None


def test_each_round_is_checked_logged_and_printed(tmp_path, pools, tokenizer, capsys):
    labeled, unlabeled, evaluation = pools
    recorder = LogRecorder()
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path), train_dataset=labeled,
                                  unlabeled_dataset=unlabeled, eval_dataset=evaluation, processing_class=tokenizer,
                                  compute_metrics=classification_metrics, callbacks=[recorder])
    predictions = []
    real_predict = trainer.predict_unlabeled_probs
    trainer.predict_unlabeled_probs = lambda *a, **k: predictions.append(1) or real_predict(*a, **k)
    trainer.train()
    assert len(predictions) == 2  # one prediction of the pool per round: the check reuses the pseudo-labeling one
    assert trainer.check_labels.shape == (len(unlabeled),) and (trainer.check_labels >= 0).any()
    scores = [r["check"]["graph_agreement"] for r in trainer.rounds]
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
    logged = [log["ssl_graph_agreement"] for log in recorder.logs if "ssl_graph_agreement" in log]
    assert logged == pytest.approx(scores)
    ends = [line for line in capsys.readouterr().out.splitlines() if " ended at step " in line]
    assert [f"graph agreement {s:.4f}" in line for line, s in zip(ends, scores, strict=True)] == [True, True]
    assert trainer.kept_round == best_round(dict(enumerate(scores)))


def test_a_worse_later_round_is_rolled_back(tmp_path, pools, tokenizer, round_0_agrees_best, capsys, caplog):
    labeled, unlabeled, evaluation = pools
    weights = RoundWeights()
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path), train_dataset=labeled,
                                  unlabeled_dataset=unlabeled, eval_dataset=evaluation, processing_class=tokenizer,
                                  compute_metrics=classification_metrics, callbacks=[weights])
    with caplog.at_level(logging.WARNING):
        trainer.train()
    scores = [r["check"]["graph_agreement"] for r in trainer.rounds]
    assert scores[0] == 1.0 and scores[1] < 1.0
    assert trainer.kept_round == 0 and trainer.termination_condition == "max_rounds" and len(trainer.rounds) == 2
    final = params(trainer.model)
    assert same(final, weights.weights[0]) and not same(final, weights.weights[1])
    assert "Safeguard: round 0's model" in caplog.text and "safeguard='none' keeps the last round" in caplog.text
    out = capsys.readouterr().out
    assert "keeps round 0's model, not the last round's (1)" in out and "round 1: " in out
    card = trainer.write_model_card(str(tmp_path / "card"))
    assert "This is the model of round 0, not of the last round (1)" in card
    assert "| graph agreement (safeguard) |" in card and "| 0 | " in card and "| 1.0000 |" in card
    # the card's evaluation is round 0's, the kept model's
    assert trainer.model_card_data().eval_results == trainer.rounds[0]["eval"]


def test_safeguard_none_keeps_the_last_round_and_never_encodes(tmp_path, pools, tokenizer, monkeypatch):
    labeled, unlabeled, _ = pools

    def fail(*args, **kwargs):
        raise AssertionError("safeguard='none' encoded the pools")

    monkeypatch.setattr(safeguard, "spread_over_pools", fail)
    weights = RoundWeights()
    args = config(tmp_path, safeguard="none", graph_prior_weight=0.0)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  processing_class=tokenizer, callbacks=[weights])
    predictions = []
    real_predict = trainer.predict_unlabeled_probs
    trainer.predict_unlabeled_probs = lambda *a, **k: predictions.append(1) or real_predict(*a, **k)
    trainer.train()
    assert len(predictions) == 1  # round 0's pseudo-labels only
    assert trainer.kept_round == 1 and not any("check" in r for r in trainer.rounds)
    assert same(params(trainer.model), weights.weights[1])
    assert "safeguard='none'" in trainer.write_model_card(str(tmp_path / "card"))


def test_resume_keeps_the_best_round_so_far(tmp_path, pools, tokenizer, round_0_agrees_best, caplog):
    """Killed in round 1 (after round 0's checkpoint) and resumed from a model of other weights: the run still ends
    with round 0's weights, saved beside the checkpoints; without that file it warns and keeps round 1."""
    labeled, unlabeled, _ = pools
    args = dict(save_strategy="steps", save_steps=3)
    weights = RoundWeights()
    killed = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path, **args), train_dataset=labeled,
                                 unlabeled_dataset=unlabeled, processing_class=tokenizer,
                                 callbacks=[weights, KillAt("on_save", 6)])  # saves every 3 steps: killed at 18
    with pytest.raises(Killed):
        killed.train()
    assert list(weights.weights) == [0] and os.path.exists(tmp_path / "out" / BEST_WEIGHTS_NAME)
    shutil.copytree(tmp_path / "out", tmp_path / "copy")
    resumed = SelfTrainingTrainer(model=tiny_bert(seed=5), args=config(tmp_path, **args), train_dataset=labeled,
                                  unlabeled_dataset=unlabeled, processing_class=tokenizer)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.kept_round == 0 and same(params(resumed.model), weights.weights[0])
    np.testing.assert_array_equal(resumed.check_labels, killed.check_labels)  # the graph came from the checkpoint

    os.remove(tmp_path / "copy" / BEST_WEIGHTS_NAME)
    again = SelfTrainingTrainer(model=tiny_bert(seed=5), args=config(tmp_path, output_dir=str(tmp_path / "copy"),
                                                                     **args),
                                train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    with caplog.at_level(logging.WARNING):
        again.train(resume_from_checkpoint=True)
    assert f"{BEST_WEIGHTS_NAME} is missing" in caplog.text and "only the rounds run from here on" in caplog.text
    assert again.kept_round == 1


def test_load_best_model_at_end_wins_and_the_check_only_reports(tmp_path, pools, tokenizer, round_0_agrees_best):
    labeled, unlabeled, evaluation = pools
    args = config(tmp_path, eval_strategy="steps", eval_steps=12, save_strategy="steps", save_steps=12,
                  load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=False)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  eval_dataset=evaluation, processing_class=tokenizer)
    trainer.train()
    assert [r["check"]["graph_agreement"] == 1.0 for r in trainer.rounds] == [True, False]
    best_step = int(trainer.state.best_model_checkpoint.rsplit("-", 1)[1])
    assert trainer.kept_round == {12: 0, 24: 1}[best_step]
    assert not os.path.exists(tmp_path / "out" / BEST_WEIGHTS_NAME)  # no copy of weights the run will not use
    assert "the safeguard only reports" in trainer.write_model_card(str(tmp_path / "card"))


def test_bad_safeguard_and_too_small_pools_are_refused(tmp_path, pools, tokenizer):
    with pytest.raises(ValueError, match="safeguard must be one of 'graph', 'none', got 'best'"):
        config(tmp_path, safeguard="best")
    labeled, unlabeled, _ = pools
    refused = "safeguard='graph' and graph_prior_weight > 0 build a 10-nearest-neighbour graph.*safeguard='none'"
    with pytest.raises(ValueError, match=refused + ".*graph_prior_weight=0"):
        one_per_class = [labeled["label"].index(c) for c in range(3)]
        SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path), train_dataset=labeled.select(one_per_class),
                            unlabeled_dataset=unlabeled.select(range(4)), processing_class=tokenizer)
