"""Shared fixtures: a word-level tokenizer and small synthetic pools (plain builders live in `helpers.tiny`)."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N worker processes share the cores, one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from helpers.tiny import text_pool, word_tokenizer  # noqa: E402
from transformers import BertTokenizerFast  # noqa: E402


@pytest.fixture(autouse=True)
def default_verbosity():
    """Every test starts at transformers' default verbosity (warning): a Trainer with ``log_level`` set, or the bench
    runner, changes it for the whole process, which would silence the console lines of the tests after it."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    yield
    hf_logging.set_verbosity(before)


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


@pytest.fixture(scope="session")
def r8():
    """Reuters R8 pools tokenized for the packaged MiniLM (`helpers.r8`), built once per session."""
    from helpers.r8 import r8_pools

    return r8_pools(max_unlabeled=2000)


@pytest.fixture(scope="session")
def r8_self_training(r8, tmp_path_factory):
    """One self-training run on R8 (defaults, 800 unlabeled rows, one pseudo-labeling round), shared by the R8
    integration tests: its round 0 is their labeled-only baseline."""
    from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer
    from hf_ssl.data.metrics import classification_metrics

    args = SelfTrainingConfig(output_dir=str(tmp_path_factory.mktemp("r8_self_training")), seed=0, max_rounds=1,
                              report_to="none", save_strategy="no", disable_tqdm=True)
    trainer = SelfTrainingTrainer(model=r8.new_model(), args=args, train_dataset=r8.labeled,
                                  unlabeled_dataset=r8.first_unlabeled(800), eval_dataset=r8.validation,
                                  processing_class=r8.tokenizer, compute_metrics=classification_metrics)
    trainer.train()
    return trainer
