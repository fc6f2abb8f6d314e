"""Shared fixtures: tiny random models built in the tests, and small synthetic pools."""

from __future__ import annotations

import os

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "golf", "hotel", "india", "juliet", "kilo", "lima"]


@pytest.fixture
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    """A word-level BERT tokenizer over a tiny vocabulary, built in the test."""
    folder = tmp_path_factory.mktemp("tok")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast.from_pretrained(str(folder))


def tiny_bert(num_labels: int = 3, seed: int = 0, **config) -> BertForSequenceClassification:
    """A 2-layer BERT with hidden size 16."""
    import torch

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=num_labels,
                     **({"initializer_range": 0.2} | config))
    return BertForSequenceClassification(cfg)


def make_texts(n: int, num_labels: int = 3, seed: int = 0) -> tuple[list[str], list[int]]:
    """Texts whose class is signalled by a class keyword among random filler words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        y = int(rng.integers(num_labels))
        filler = rng.choice(WORDS[num_labels:], size=3).tolist()
        filler.insert(int(rng.integers(4)), WORDS[y])
        filler.insert(int(rng.integers(5)), WORDS[y])
        texts.append(" ".join(filler))
        labels.append(y)
    return texts, labels


def text_pool(tokenizer, n: int, num_labels: int = 3, seed: int = 0, label_name: str = "label") -> Dataset:
    texts, labels = make_texts(n, num_labels, seed)
    features = Features({"text": Value("string"), label_name: ClassLabel(names=[f"c{i}" for i in range(num_labels)])})
    data = Dataset.from_dict({"text": texts, label_name: labels}, features=features)
    return data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=16), batched=True)


@pytest.fixture
def pools(tokenizer):
    """(labeled 4/class, unlabeled with hidden truth, eval) pools of keyword texts."""
    from hf_ssl import sample_per_class

    train = text_pool(tokenizer, 120, seed=0)
    labeled, unlabeled = sample_per_class(train, k=4, seed=0)
    return labeled, unlabeled, text_pool(tokenizer, 60, seed=1)


__all__ = ["tiny_bert", "make_texts", "text_pool", "Sequence"]
