"""Shared fixtures: a word-level tokenizer and small synthetic pools (plain builders live in `helpers.tiny`)."""

from __future__ import annotations

import os

import pytest
from helpers.tiny import text_pool, word_tokenizer
from transformers import BertTokenizerFast

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    """A word-level BERT tokenizer over a tiny vocabulary, built in the test."""
    return word_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture
def pools(tokenizer):
    """(labeled 4/class, unlabeled with hidden truth, eval) pools of keyword texts."""
    from hf_ssl import sample_per_class

    train = text_pool(tokenizer, 120, seed=0)
    labeled, unlabeled = sample_per_class(train, k=4, seed=0)
    return labeled, unlabeled, text_pool(tokenizer, 60, seed=1)
