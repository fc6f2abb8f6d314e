"""``SelfTrainingConfig.graph_prior_weight`` on a tiny random BERT: the graph of the initial embeddings mixed into the
teacher's probabilities before the threshold."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tiny import tiny_bert

from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer
from hf_ssl.trainer import safeguard


def config(tmp_path, **overrides) -> SelfTrainingConfig:
    values = dict(output_dir=str(tmp_path / "out"), max_rounds=1, threshold=0.7, num_train_epochs=2,
                  per_device_train_batch_size=4, learning_rate=1e-2, report_to="none", save_strategy="no",
                  use_cpu=True, seed=0, data_seed=0)
    return SelfTrainingConfig(**(values | overrides))


def trained(tmp_path, pools, tokenizer, **overrides) -> SelfTrainingTrainer:
    labeled, unlabeled, _ = pools
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=config(tmp_path, **overrides), train_dataset=labeled,
                                  unlabeled_dataset=unlabeled, processing_class=tokenizer)
    trainer.train()
    return trainer


def test_weight_one_pseudo_labels_every_graph_labeled_row_with_its_graph_class(tmp_path, pools, tokenizer):
    trainer = trained(tmp_path, pools, tokenizer, graph_prior_weight=1.0)
    graph = trainer.check_labels
    assert (graph >= 0).sum() > 0
    # the mixed confidence of the graph class is 1 >= threshold: every graph-labeled row, with the graph's class
    assert sorted(trainer.pseudo_rows) == sorted(np.flatnonzero(graph >= 0))
    np.testing.assert_array_equal(trainer.pseudo_targets.argmax(axis=1), graph[trainer.pseudo_rows])


def test_half_weight_keeps_only_rows_where_the_model_gives_the_graph_class_enough(tmp_path, pools, tokenizer,
                                                                                   monkeypatch):
    probs_seen = []
    real = SelfTrainingTrainer._pseudo_label_round

    def spy(self, record, probs):
        probs_seen.append(probs.copy())
        return real(self, record, probs)

    monkeypatch.setattr(SelfTrainingTrainer, "_pseudo_label_round", spy)
    trainer = trained(tmp_path, pools, tokenizer, graph_prior_weight=0.5, threshold=0.6)
    probs, graph = probs_seen[0], trainer.check_labels
    has = graph >= 0
    graph_prob = np.where(has, probs[np.arange(len(graph)), np.maximum(graph, 0)], 0.0)
    # mixed confidence 0.5 + 0.5 p(graph class) >= 0.6 <=> p(graph class) >= 0.2; a row the graph leaves unlabeled
    # keeps the model's own probabilities
    expected = np.flatnonzero((has & (graph_prob >= 0.2)) | (~has & (probs.max(axis=1) >= 0.6)))
    assert sorted(trainer.pseudo_rows) == sorted(expected)
    labeled_rows = np.isin(trainer.pseudo_rows, np.flatnonzero(has))
    np.testing.assert_array_equal(trainer.pseudo_targets.argmax(axis=1)[labeled_rows],
                                  graph[trainer.pseudo_rows[labeled_rows]])
    assert trainer.card_hyperparameters()["graph_prior_weight"] == 0.5


def test_the_graph_is_built_for_the_prior_without_the_safeguard(tmp_path, pools, tokenizer, monkeypatch):
    built = []
    real = safeguard.spread_over_pools
    monkeypatch.setattr(safeguard, "spread_over_pools", lambda *a, **k: built.append(1) or real(*a, **k))
    trainer = trained(tmp_path, pools, tokenizer, graph_prior_weight=1.0, safeguard="none")
    assert built == [1] and trainer.kept_round == 1 and not any("check" in r for r in trainer.rounds)
    trained(tmp_path / "off", pools, tokenizer, safeguard="none", graph_prior_weight=0.0)
    assert built == [1]  # no prior, no safeguard: nothing encoded


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_rejects_weights_outside_zero_one(tmp_path, value):
    with pytest.raises(ValueError, match="graph_prior_weight"):
        config(tmp_path, graph_prior_weight=value)
