"""Reuters R8 at 5 labels per class with the packaged all-MiniLM-L6-v2: the pools the text integration tests share.

The rows the tests score on are a validation split carved from R8's train split (`load_text_dataset`'s
``validation_size``): the settings of these tests are chosen on it, never on R8's test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from hf_ssl import load_text_dataset, minilm_path, sample_per_class

VALIDATION_ROWS = 600
LABELS_PER_CLASS = 5
MAX_LENGTH = 32


@dataclass
class R8Pools:
    """Tokenized R8 pools (seed 0) and a factory of fresh MiniLM classifiers over R8's classes."""

    labeled: Dataset
    unlabeled: Dataset
    validation: Dataset
    tokenizer: PreTrainedTokenizerBase
    names: list[str]

    def new_model(self):
        """A MiniLM classifier whose new head is initialised from seed 0, whatever ran before."""
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_pretrained(
            minilm_path(), num_labels=len(self.names), id2label=dict(enumerate(self.names)),
            label2id={n: i for i, n in enumerate(self.names)})

    def first_unlabeled(self, rows: int) -> Dataset:
        """The first ``rows`` of the (randomly sampled) unlabeled pool: a smaller random pool."""
        return self.unlabeled.select(range(min(rows, len(self.unlabeled))))


def r8_pools(max_unlabeled: int) -> R8Pools:
    raw = load_text_dataset("reuters-r8", validation_size=VALIDATION_ROWS, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    labeled, unlabeled = sample_per_class(raw["train"], k=LABELS_PER_CLASS, seed=0, max_unlabeled=max_unlabeled)

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=MAX_LENGTH)

    labeled, unlabeled, validation = (d.map(tokenize, batched=True)
                                      for d in (labeled, unlabeled, raw["validation"]))
    return R8Pools(labeled, unlabeled, validation, tokenizer, raw["train"].features["label"].names)
