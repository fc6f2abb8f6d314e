"""`check_model_inputs` reads pools in Arrow blocks: rows are reported in the pool's own order (through select,
filter and shuffle), in any block, and rows outside the view are not read; model limits come from the embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Array3D, Dataset, Features, Value
from helpers.tiny import tiny_bert

import hf_ssl.data.arrow_blocks as arrow_blocks
from hf_ssl.data.input_checks import ModelLimits, check_model_inputs
from hf_ssl.data.validation import check_truth_column
from hf_ssl.trainer.preflight import model_limits

LIMITS = ModelLimits(vocab_size=50, max_length=16, type_vocab_size=2, num_channels=3)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(arrow_blocks, "BLOCK_VALUES", 40)  # about 8 rows of 5 tokens per block


def tokens(n: int = 100) -> Dataset:
    ids = [[1, 5 + i % 40, 6, 7, 2] for i in range(n)]
    return Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * 5] * n, "token_type_ids": [[0] * 5] * n,
                              "row": list(range(n))})


def put(dataset: Dataset, row: int, column: str, value) -> Dataset:
    return dataset.map(lambda r, i: {column: value if i == row else r[column]}, with_indices=True)


def test_row_of_a_later_block_is_reported_in_the_views_order():
    view = put(tokens(), 77, "input_ids", [1, 99, 2]).shuffle(seed=0).filter(lambda r: r["row"] % 3 != 1)
    position = view["row"].index(77)
    assert position > 10  # not in the first block
    with pytest.raises(ValueError, match=rf"token id 99 in input_ids \(row {position}\) but its vocabulary has 50"):
        check_model_inputs(view, LIMITS, "unlabeled_dataset")


def test_rows_outside_the_view_are_not_read():
    pool = put(put(tokens(), 40, "input_ids", [1, -4, 6, 7, 2]), 41, "attention_mask", [1, 1])
    check_model_inputs(pool.filter(lambda r: r["row"] not in (40, 41)), LIMITS, "unlabeled_dataset")
    with pytest.raises(ValueError, match=r"1 row\(s\) whose attention_mask length differs .*\(rows \[40\]\)"):
        check_model_inputs(pool.filter(lambda r: r["row"] != 40), LIMITS, "unlabeled_dataset")


def test_image_shapes_and_values_in_later_blocks():
    features = Features({"pixel_values": Array3D((3, 2, 2), "float32")})
    pixels = np.zeros((30, 3, 2, 2), dtype=np.float32)
    pixels[23, 1, 0, 1] = np.nan
    pool = Dataset.from_dict({"pixel_values": pixels}, features=features)
    with pytest.raises(ValueError, match=r"NaN or infinite values in pixel_values \(1 row\(s\), e.g. rows \[20\]\)"):
        check_model_inputs(pool.select(range(3, 30)), LIMITS, "train_dataset")
    mixed = Dataset.from_dict({"pixel_values": [np.zeros((3, 2, 2)).tolist()] * 25 + [np.zeros((3, 2, 3)).tolist()]})
    with pytest.raises(ValueError, match=r"rows differ in shape: 1 row\(s\), e.g. rows \[25\]"):
        check_model_inputs(mixed, LIMITS, "train_dataset")


def test_truth_column_in_later_blocks():
    pool = Dataset.from_dict({"ssl_truth": [0, 1, 2] * 30 + [None] + [0] * 9},
                             features=Features({"ssl_truth": Value("int64")}))
    with pytest.raises(ValueError, match=r"1 missing \(None\) value\(s\) \(e.g. rows \[90\]\)"):
        check_truth_column(pool, "ssl_truth", 3)


def test_positions_of_roberta_style_embeddings_start_after_padding():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    roberta = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=34, pad_token_id=1))
    assert model_limits(roberta).max_length == 32
    bert = tiny_bert()
    assert model_limits(bert) == ModelLimits(vocab_size=17, max_length=32, type_vocab_size=2, num_channels=None)
    bert.resize_token_embeddings(20)
    assert model_limits(bert).vocab_size == 20
