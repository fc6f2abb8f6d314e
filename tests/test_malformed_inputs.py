"""Reliability suite: malformed pools and models given to each of the three trainers are rejected before any training
step, with an error that names the culprit column or argument (and no step runs: `NoTrainingStep`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset
from helpers.malformed import KINDS, TRAINERS, Inputs, base_config, edit_row, edit_rows, run, with_column
from helpers.tiny import pixel_pool, text_pool, tiny_bert, tiny_vit, word_tokenizer
from transformers import BertConfig, BertForTokenClassification, BertModel

from hf_ssl import sample_per_class


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Inputs:
    """Keyword texts: 4 labels per class (3 classes), 24 unlabeled rows with hidden truth, a tiny BERT (32
    positions, vocabulary 17, 2 token types)."""
    tokenizer = word_tokenizer(tmp_path_factory.mktemp("tok"))
    labeled, unlabeled = sample_per_class(text_pool(tokenizer, 36, seed=0), k=4, seed=0)
    return Inputs(labeled=labeled, unlabeled=unlabeled, model=None, processing_class=tokenizer)


@pytest.fixture(scope="module")
def images() -> Inputs:
    """16×16 RGB images: 4 labels per class (2 classes), 8 unlabeled rows with hidden truth."""
    labeled, unlabeled = sample_per_class(pixel_pool(16, seed=0), k=4, seed=0)
    return Inputs(labeled=labeled, unlabeled=unlabeled, model=None)


def _bert_config(**overrides):
    return BertConfig(vocab_size=17, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32, num_labels=3, **overrides)


def _too_long(ids: list[int]) -> list[int]:
    return ids[:1] + ids[1:-1] * 12 + ids[-1:]  # well past 32 positions


def _strings(dataset: Dataset, column: str) -> Dataset:
    return with_column(dataset, column, [str(v) for v in dataset[column]])


TEXT_CASES = [
    # --- labels
    pytest.param(lambda x: x.but(labeled=x.labeled.add_column("labels", x.labeled["label"])),
                 r"train_dataset has both 'label' and 'labels' columns", id="label-and-labels"),
    pytest.param(lambda x: x.but(labeled=_strings(x.labeled, "label")),
                 r"'label' of train_dataset holds strings.*class_encode_column", id="digit-string-labels"),
    pytest.param(lambda x: x.but(labeled=edit_rows(x.labeled, "label", lambda i, y: float(y) + 0.5)),
                 r"'label' of train_dataset must hold one integer class id", id="float-labels"),
    pytest.param(lambda x: x.but(labeled=edit_rows(x.labeled, "label", lambda i, y: [y, y])),
                 r"'label' of train_dataset must hold one integer class id", id="list-labels"),
    # --- the model
    pytest.param(lambda x: x.but(model=tiny_bert(num_labels=1)),
                 r"num_labels=1.*regression.*not supported", id="regression-head"),
    pytest.param(lambda x: x.but(model=tiny_bert(problem_type="regression")),
                 r"problem_type='regression'.*not supported", id="regression-problem-type"),
    pytest.param(lambda x: x.but(model=tiny_bert(problem_type="multi_label_classification")),
                 r"problem_type='multi_label_classification'.*not supported", id="multi-label"),
    pytest.param(lambda x: x.but(model=BertModel(_bert_config())),
                 r"BertModel is not a sequence or image classifier.*AutoModelForSequenceClassification", id="no-head"),
    pytest.param(lambda x: x.but(model=BertForTokenClassification(_bert_config())),
                 r"BertForTokenClassification.*not supported", id="token-classification-head"),
    # --- token ids, masks and token types
    pytest.param(lambda x: x.but(labeled=edit_rows(x.labeled, "attention_mask", lambda i, m: m[:-2])),
                 r"train_dataset.*attention_mask.*input_ids", id="short-attention-mask-labeled"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "attention_mask", 5, lambda m: m[:-1])),
                 r"unlabeled_dataset.*attention_mask.*input_ids.*\[5\]", id="short-attention-mask-unlabeled"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "token_type_ids", 2, lambda t: t + [0])),
                 r"unlabeled_dataset.*token_type_ids.*input_ids.*\[2\]", id="long-token-type-ids"),
    pytest.param(lambda x: x.but(labeled=edit_row(x.labeled, "attention_mask", 1, lambda m: [2] * len(m))),
                 r"train_dataset.*attention_mask.*0 and 1", id="attention-mask-values"),
    pytest.param(lambda x: x.but(labeled=edit_row(x.labeled, "input_ids", 0, _too_long)),
                 r"train_dataset.*input_ids of \d+ tokens.*32 positions.*truncation=True", id="too-long-labeled"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "input_ids", 3, _too_long)),
                 r"unlabeled_dataset.*input_ids of \d+ tokens.*32 positions", id="too-long-unlabeled"),
    pytest.param(lambda x: x.but(labeled=edit_row(x.labeled, "input_ids", 0, lambda t: [-1] + t[1:])),
                 r"train_dataset has token id -1 in input_ids", id="negative-token-labeled"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "input_ids", 4, lambda t: t[:1] + [-5] + t[2:])),
                 r"unlabeled_dataset has token id -5 in input_ids", id="negative-token-unlabeled"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "input_ids", 4, lambda t: t[:1] + [17] + t[2:])),
                 r"unlabeled_dataset has token id 17 in input_ids.*17 ids", id="token-past-vocab-unlabeled"),
    pytest.param(lambda x: x.but(labeled=edit_row(x.labeled, "token_type_ids", 0, lambda t: [2] * len(t))),
                 r"train_dataset has token type 2 in token_type_ids.*type_vocab_size=2", id="token-type-too-big"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "token_type_ids", 1, lambda t: [-1] * len(t))),
                 r"unlabeled_dataset has token type -1 in token_type_ids", id="token-type-negative"),
    pytest.param(lambda x: x.but(labeled=edit_rows(x.labeled, "input_ids", lambda i, t: [v + 0.5 for v in t])),
                 r"input_ids of train_dataset must hold integer token ids", id="float-token-ids"),
    # --- the hidden truth column
    pytest.param(lambda x: x.but(unlabeled=_strings(x.unlabeled, "ssl_truth")),
                 r"truth column 'ssl_truth' of unlabeled_dataset.*integer class ids", id="truth-strings"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "ssl_truth", 2, lambda y: None)),
                 r"truth column 'ssl_truth' of unlabeled_dataset has 1 missing", id="truth-none"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "ssl_truth", 0, lambda y: 7)),
                 r"truth column 'ssl_truth' of unlabeled_dataset.*\[7\] outside \[0, 3\)", id="truth-out-of-range"),
    # --- names hf_ssl uses itself
    pytest.param(lambda x: x.but(unlabeled=with_column(x.unlabeled, "ssl_index", [0] * len(x.unlabeled))),
                 r"Column 'ssl_index' of unlabeled_dataset is reserved by hf_ssl", id="user-ssl-index"),
    pytest.param(lambda x: x.but(labeled=with_column(x.labeled, "ssl_weight", [1.0] * len(x.labeled))),
                 r"Column 'ssl_weight' of train_dataset is reserved by hf_ssl", id="user-ssl-weight"),
    pytest.param(lambda x: x.but(config={"truth_column": "input_ids"}),
                 r"truth_column='input_ids' is a model input", id="truth-column-input-ids"),
    pytest.param(lambda x: x.but(config={"truth_column": "attention_mask"}),
                 r"truth_column='attention_mask' is a model input", id="truth-column-attention-mask"),
    # --- the evaluation pool
    pytest.param(lambda x: x.but(eval_dataset=edit_row(x.labeled, "input_ids", 1, lambda t: t[:1] + [99] + t[2:])),
                 r"eval_dataset has token id 99 in input_ids", id="eval-token-past-vocab"),
    pytest.param(lambda x: x.but(eval_dataset=x.labeled.remove_columns("label")),
                 r"eval_dataset has no label column", id="eval-without-labels"),
    pytest.param(lambda x: x.but(eval_dataset=_strings(x.labeled, "label")),
                 r"'label' of eval_dataset holds strings", id="eval-digit-string-labels"),
    pytest.param(lambda x: x.but(eval_dataset=edit_row(x.labeled, "label", 0, lambda y: 5)),
                 r"'label' of eval_dataset has labels \[5\] outside \[0, 3\)", id="eval-label-out-of-range"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case,match", TEXT_CASES)
def test_malformed_text_input(tmp_path, text, kind, case, match):
    inputs = case(text.but(model=tiny_bert(num_labels=3)))
    with pytest.raises(ValueError, match=match):
        run(kind, tmp_path, inputs)


def _nan_at(value: list, where: float = math.nan) -> list:
    value = np.asarray(value, dtype=np.float32)
    value[0, 3, 5] = where
    return value.tolist()


def _resized(value: list, size: int) -> list:
    return np.zeros((3, size, size), dtype=np.float32).tolist()


IMAGE_CASES = [
    pytest.param(lambda x: x.but(labeled=edit_row(x.labeled, "pixel_values", 1, _nan_at)),
                 r"train_dataset has NaN or infinite values in pixel_values.*rows \[1\]", id="nan-pixels-labeled"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "pixel_values", 6, _nan_at)),
                 r"unlabeled_dataset has NaN or infinite values in pixel_values.*\[6\]", id="nan-pixels-unlabeled"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "pixel_values", 0,
                                                    lambda v: _nan_at(v, -math.inf))),
                 r"unlabeled_dataset has NaN or infinite values in pixel_values", id="inf-pixels-unlabeled"),
    pytest.param(lambda x: x.but(unlabeled=edit_row(x.unlabeled, "pixel_values", 3, lambda v: _resized(v, 24))),
                 r"unlabeled_dataset pixel_values rows differ in shape.*\[3\]", id="mixed-image-sizes"),
    pytest.param(lambda x: x.but(labeled=edit_rows(x.labeled, "pixel_values", lambda i, v: _resized(v, 24)),
                                 unlabeled=edit_rows(x.unlabeled, "pixel_values", lambda i, v: _resized(v, 24))),
                 r"the model cannot take the pixel_values of train_dataset.*\(3, 24, 24\).*image processor",
                 id="wrong-image-size"),
    pytest.param(lambda x: x.but(unlabeled=edit_rows(x.unlabeled, "pixel_values",
                                                     lambda i, v: np.asarray(v)[:1].tolist())),
                 r"unlabeled_dataset pixel_values have 1 channel", id="grayscale-unlabeled"),
    pytest.param(lambda x: x.but(model=tiny_vit(num_labels=1)),
                 r"num_labels=1.*regression.*not supported", id="image-regression-head"),
    pytest.param(lambda x: x.but(unlabeled=with_column(x.unlabeled, "ssl_index", list(range(len(x.unlabeled))))),
                 r"Column 'ssl_index' of unlabeled_dataset is reserved", id="image-user-ssl-index"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case,match", IMAGE_CASES)
def test_malformed_image_input(tmp_path, images, kind, case, match):
    inputs = case(images.but(model=tiny_vit()))
    with pytest.raises(ValueError, match=match):
        run(kind, tmp_path, inputs)


def _strong(x: Inputs, column: str = "input_ids", edit=None, row: int = 2) -> Inputs:
    """``x`` with precomputed strong views ``strong_<column>`` (copies of the inputs), row ``row`` edited."""
    unlabeled = x.unlabeled.add_column(f"strong_{column}", x.unlabeled[column])
    return x.but(unlabeled=edit_row(unlabeled, f"strong_{column}", row, edit) if edit else unlabeled)


ONE_TRAINER_CASES = [
    pytest.param("consistency", lambda x: _strong(x, edit=lambda t: t[:1] + [17] + t[2:]),
                 r"unlabeled_dataset has token id 17 in strong_input_ids \(row 2\)", id="strong-token-past-vocab"),
    pytest.param("consistency", lambda x: _strong(x, edit=lambda t: [-3] + t[1:]),
                 r"unlabeled_dataset has token id -3 in strong_input_ids", id="strong-negative-token"),
    pytest.param("consistency", lambda x: _strong(x, edit=_too_long),
                 r"unlabeled_dataset has strong_input_ids of \d+ tokens.*32 positions", id="strong-too-long"),
    pytest.param("consistency", lambda x: _strong(_strong(x), "attention_mask", edit=lambda m: m[:-1], row=4),
                 r"strong_attention_mask length differs from strong_input_ids \(rows \[4\]\)",
                 id="strong-short-attention-mask"),
    pytest.param("consistency", lambda x: _strong(x, "attention_mask"),
                 r"strong_view_prefix='strong_'.*must include 'strong_input_ids'", id="strong-mask-without-ids"),
    pytest.param("consistency", lambda x: x.but(unlabeled=x.unlabeled.add_column("strong_text", x.unlabeled["text"])),
                 r"strong_view_prefix='strong_' marks column\(s\) \['strong_text'\]", id="strong-stray-column"),
    pytest.param("consistency", lambda x: x.but(config={"strong_view_prefix": "input"}),
                 r"strong_view_prefix='input' marks column\(s\) \['input_ids'\]", id="strong-prefix-input"),
    pytest.param("consistency", lambda x: x.but(config={"graph_prior_weight": 0.5, "n_neighbors": 36}),
                 r"n_neighbors=36 .*have 36 together", id="graph-prior-n-neighbors"),
    pytest.param("consistency", lambda x: x.but(config={"contrastive_steps": 2, "contrastive_batch_size": 32}),
                 r"contrastive_batch_size=32 is larger than the unlabeled pool", id="contrastive-batch-too-big"),
    pytest.param("consistency", lambda x: x.but(unlabeled=None),
                 r"ConsistencyTrainer needs unlabeled_dataset=", id="consistency-without-pool"),
    pytest.param("label_propagation", lambda x: x.but(config={"n_neighbors": 36}),
                 r"n_neighbors=36 .*have 36 together", id="propagation-n-neighbors"),
    pytest.param("label_propagation", lambda x: x.but(config={"warmup_epochs": 1, "max_steps": 2}),
                 r"warmup_epochs=1 but max_steps=2 ends training within 1 epoch", id="warmup-past-max-steps"),
    pytest.param("label_propagation", lambda x: x.but(unlabeled=None),
                 r"LabelPropagationTrainer needs unlabeled_dataset=", id="propagation-without-pool"),
    pytest.param("self_training", lambda x: x.but(unlabeled=None),
                 r"SelfTrainingTrainer needs unlabeled_dataset= when max_rounds > 0", id="self-training-without-pool"),
]


@pytest.mark.parametrize("kind,case,match", ONE_TRAINER_CASES)
def test_malformed_input_of_one_trainer(tmp_path, text, kind, case, match):
    inputs = case(text.but(model=tiny_bert(num_labels=3)))
    with pytest.raises(ValueError, match=match):
        run(kind, tmp_path, inputs)


def _integer_pixels(x: Inputs) -> Inputs:
    return x.but(labeled=edit_rows(x.labeled, "pixel_values", lambda i, v: np.asarray(v).round().astype(int).tolist()))


def test_integer_pixels_are_rejected_by_the_image_augmentations(tmp_path, images):
    with pytest.raises(ValueError, match=r"pixel_values of train_dataset hold int64 values .*normalised float"):
        run("consistency", tmp_path, _integer_pixels(images.but(model=tiny_vit())))


def _trains_one_step(kind: str, tmp_path, inputs: Inputs) -> None:
    trainer = TRAINERS[kind][0](model=inputs.model, args=base_config(kind, tmp_path, max_steps=1),
                                train_dataset=inputs.labeled, unlabeled_dataset=inputs.unlabeled,
                                processing_class=inputs.processing_class)
    trainer.train()
    rounds = len(trainer.rounds) if kind == "self_training" else 1  # one step per round
    assert trainer.state.global_step == rounds >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_pools_whose_columns_differ_in_type_are_accepted(tmp_path, text, kind):
    """Not malformed: a mask stored as int8 in one pool and int64 in the other."""
    unlabeled = edit_rows(text.unlabeled, "attention_mask", lambda i, m: m)  # int8 -> int64
    assert text.labeled.features["attention_mask"] != unlabeled.features["attention_mask"]
    _trains_one_step(kind, tmp_path, text.but(model=tiny_bert(num_labels=3), unlabeled=unlabeled))


@pytest.mark.parametrize("kind", ["self_training", "label_propagation"])
def test_integer_and_float_pixels_are_accepted_without_augmentations(tmp_path, images, kind):
    _trains_one_step(kind, tmp_path, _integer_pixels(images.but(model=tiny_vit())))


class _EvaluateLikeMetric:
    """What `evaluate.load` returns: a ``compute(predictions=, references=)``, not a function of an EvalPrediction."""

    def compute(self, predictions=None, references=None) -> dict:
        return {}


@pytest.mark.parametrize("kind", KINDS)
def test_uncallable_compute_metrics_is_rejected_when_built(tmp_path, text, kind):
    with pytest.raises(TypeError, match=r"compute_metrics must be a function of an EvalPrediction.*_EvaluateLike"
                                        r".*wrap it.*classification_metrics"):
        TRAINERS[kind][0](model=tiny_bert(num_labels=3), args=base_config(kind, tmp_path), train_dataset=text.labeled,
                          unlabeled_dataset=text.unlabeled, processing_class=text.processing_class,
                          compute_metrics=_EvaluateLikeMetric())
