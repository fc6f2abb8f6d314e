"""Integration: the real all-MiniLM-L6-v2 on a Reuters R8 subset, 5 labels per class.

Self-training must score above labeled-only fine-tuning (round 0 of the same run, same seed and
hyperparameters) on held-out R8 test rows.
"""

from __future__ import annotations

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer, load_text_dataset, minilm_path, sample_per_class
from hf_ssl.data.metrics import classification_metrics


@pytest.mark.slow
def test_self_training_beats_labeled_only_on_r8(tmp_path):
    raw = load_text_dataset("reuters-r8")
    names = raw["train"].features["label"].names
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    labeled, unlabeled = sample_per_class(raw["train"], k=5, seed=0, max_unlabeled=800)
    test = raw["test"].shuffle(seed=0).select(range(600))

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=64)

    labeled, unlabeled, test = (d.map(tokenize, batched=True) for d in (labeled, unlabeled, test))
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)})
    args = SelfTrainingConfig(output_dir=str(tmp_path / "r8"), seed=0, max_rounds=1, report_to="none",
                              save_strategy="no", disable_tqdm=True, per_device_eval_batch_size=32)
    trainer = SelfTrainingTrainer(model=model, args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  eval_dataset=test, processing_class=tokenizer,
                                  compute_metrics=classification_metrics)
    trainer.train()
    labeled_only = trainer.rounds[0]["eval"]["eval_accuracy"]
    self_trained = trainer.rounds[-1]["eval"]["eval_accuracy"]
    stats = trainer.rounds[0]["pseudo_labels"]
    print(f"labeled-only {labeled_only:.4f}  self-training {self_trained:.4f}  pseudo-labels {stats}")
    assert stats["selected"] > 0
    assert stats["pseudo_label_accuracy"] > stats["pool_accuracy"]
    assert self_trained > labeled_only
