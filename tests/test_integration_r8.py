"""Integration: the real all-MiniLM-L6-v2 on Reuters R8 at 5 labels per class (`helpers.r8`).

Every method must score above labeled-only fine-tuning on the same held-out validation rows. The labeled-only
score is round 0 of the shared self-training run (`r8_self_training` in conftest): plain fine-tuning on the
labeled pool with the same pretrained weights, seed, optimizer, schedule, epochs and labeled batch size as the
consistency runs.
"""

from __future__ import annotations

import pytest

from hf_ssl import ConsistencyConfig, ConsistencyTrainer
from hf_ssl.data.metrics import classification_metrics


def labeled_only_accuracy(run) -> float:
    return run.rounds[0]["eval"]["eval_accuracy"]


def consistency_run(r8, tmp_path, unlabeled_rows: int, **config) -> ConsistencyTrainer:
    args = ConsistencyConfig(output_dir=str(tmp_path), seed=0, report_to="none", save_strategy="no",
                             disable_tqdm=True, **config)
    trainer = ConsistencyTrainer(model=r8.new_model(), args=args, train_dataset=r8.labeled,
                                 unlabeled_dataset=r8.first_unlabeled(unlabeled_rows), eval_dataset=r8.validation,
                                 processing_class=r8.tokenizer, compute_metrics=classification_metrics)
    trainer.train()
    return trainer


@pytest.mark.slow
def test_self_training_pseudo_labels_are_more_accurate_than_the_pool(r8_self_training):
    stats = r8_self_training.rounds[0]["pseudo_labels"]
    print(f"pseudo-labels {stats}")
    assert stats["selected"] > 0
    assert stats["pseudo_label_accuracy"] > stats["pool_accuracy"]


@pytest.mark.slow
def test_self_training_beats_labeled_only(r8_self_training):
    labeled_only = labeled_only_accuracy(r8_self_training)
    kept = next(r for r in r8_self_training.rounds if r["round"] == r8_self_training.kept_round)
    self_trained = kept["eval"]["eval_accuracy"]  # the model the trainer keeps (its safeguard's choice)
    print(f"labeled-only {labeled_only:.4f}  self-training {self_trained:.4f}")
    assert self_trained > labeled_only


@pytest.mark.slow
def test_mixmatch_beats_labeled_only(r8, r8_self_training, tmp_path):
    trainer = consistency_run(r8, tmp_path, unlabeled_rows=800, method="mixmatch")
    labeled_only, accuracy = labeled_only_accuracy(r8_self_training), trainer.evaluate()["eval_accuracy"]
    print(f"labeled-only {labeled_only:.4f}  mixmatch {accuracy:.4f}  last epoch {trainer.epoch_records[-1]}")
    assert accuracy > labeled_only
    assert trainer.epoch_records[-1]["pseudo_label_accuracy"] > 0.5  # guessed labels mostly right (8 classes)


@pytest.mark.slow
def test_fixmatch_defaults_beat_labeled_only_by_two_points(r8, r8_self_training, tmp_path):
    """FixMatch at `ConsistencyConfig`'s defaults: the graph prior (label spreading over MiniLM's embeddings of both
    pools) mixed into its targets, τ 0.7, a linear-probe head."""
    trainer = consistency_run(r8, tmp_path, unlabeled_rows=2000)
    labeled_only, accuracy = labeled_only_accuracy(r8_self_training), trainer.evaluate()["eval_accuracy"]
    print(f"labeled-only {labeled_only:.4f}  fixmatch+graph {accuracy:.4f}  graph {trainer.graph_records}")
    assert trainer.graph_records[0]["graph_accuracy"] > 0.75
    assert accuracy > labeled_only + 0.02
