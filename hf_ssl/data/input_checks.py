"""Checks of a pool's model inputs against the model before training: token ids, masks and token types that the
model's embeddings can take, and images of one finite shape with the model's channel count.

Every check reads the columns in Arrow blocks (`hf_ssl.data.arrow_blocks`): no Python object per row, bounded
memory on pools of millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from hf_ssl.data.arrow_blocks import leaf_type, leaf_values, list_levels, row_blocks, row_lengths, rows_of

__all__ = ["ModelLimits", "check_model_inputs", "check_float_pixels"]


@dataclass(frozen=True)
class ModelLimits:
    """What the model's inputs must fit; `None` where the model sets no limit.

    Parameters:
        vocab_size (`int` or `None`): token ids must lie in ``[0, vocab_size)``.
        max_length (`int` or `None`): rows of at most this many tokens (the model's position embeddings).
        type_vocab_size (`int` or `None`): token types must lie in ``[0, type_vocab_size)``.
        num_channels (`int` or `None`): image channels.
    """

    vocab_size: int | None = None
    max_length: int | None = None
    type_vocab_size: int | None = None
    num_channels: int | None = None


def _rows(rows: np.ndarray) -> str:
    return f"{rows.size} row(s), e.g. rows {rows[:5].tolist()}"


def check_model_inputs(dataset: Dataset, limits: ModelLimits, name: str, prefix: str = "") -> None:
    """Check the model-input columns ``<prefix>input_ids``, ``<prefix>attention_mask``, ``<prefix>token_type_ids``
    and ``<prefix>pixel_values`` of ``dataset`` that are present.

    Parameters:
        dataset (`datasets.Dataset`): a pool.
        limits (`ModelLimits`): what the model takes.
        name (`str`): the pool's argument name, for messages.
        prefix (`str`, *optional*, defaults to `""`): prefix of the columns (e.g. ``"strong_"`` for precomputed
            strong views).
    """
    if f"{prefix}input_ids" in dataset.column_names:
        _check_tokens(dataset, limits, name, prefix)
    if f"{prefix}pixel_values" in dataset.column_names:
        _check_pixels(dataset, limits, name, f"{prefix}pixel_values")


# ----------------------------------------------------------------------------- text
def _check_tokens(dataset: Dataset, limits: ModelLimits, name: str, prefix: str) -> None:
    ids = f"{prefix}input_ids"
    paired = [c for c in (f"{prefix}attention_mask", f"{prefix}token_type_ids") if c in dataset.column_names]
    for start, block in row_blocks(dataset, [ids, *paired]):
        lengths = row_lengths(block[ids])
        values = leaf_values(block[ids])
        if not (pa.types.is_integer(values.type) or pa.types.is_null(values.type)):
            raise ValueError(f"{ids} of {name} must hold integer token ids, got {values.type} values. Tokenize the "
                             "texts with the model's tokenizer (dataset.map(tokenize, batched=True)).")
        empty = np.flatnonzero(lengths <= 0)
        if empty.size:
            raise ValueError(
                f"{name} has {empty.size} row(s) with empty {ids} (e.g. rows {(empty[:5] + start).tolist()}): empty "
                "or None texts. Drop them before tokenizing, e.g. dataset.filter(lambda r: bool(r['text'])).")
        if limits.max_length is not None and lengths.max() > limits.max_length:
            long = np.flatnonzero(lengths > limits.max_length) + start
            raise ValueError(
                f"{name} has {ids} of {int(lengths.max())} tokens ({_rows(long)}) but the model has "
                f"{limits.max_length} positions (max_position_embeddings). Tokenize with truncation=True, "
                f"max_length={limits.max_length}.")
        _check_range(values, lengths, start, name, ids, "token id", 0, limits.vocab_size,
                     "the tokenizer (processing_class) does not match the model. Tokenize with "
                     "AutoTokenizer.from_pretrained(<the model's path>).", limit_name="its vocabulary has {} ids")
        for column in paired:
            _check_paired(block[column], lengths, start, name, column, ids, limits)


def _check_paired(array: pa.ChunkedArray, lengths: np.ndarray, start: int, name: str, column: str, ids: str,
                  limits: ModelLimits) -> None:
    """A mask or token-type column: one entry per token of the row, values the model takes."""
    other = row_lengths(array)
    differ = np.flatnonzero(other != lengths)
    if differ.size:
        raise ValueError(
            f"{name} has {differ.size} row(s) whose {column} length differs from {ids} (rows "
            f"{(differ[:5] + start).tolist()}). Produce both in one tokenizer call, and edit input_ids only by "
            "re-tokenizing.")
    values = leaf_values(array)
    if not pa.types.is_integer(values.type):
        raise ValueError(f"{column} of {name} must hold integers, got {values.type} values.")
    if column.endswith("attention_mask"):
        _check_range(values, lengths, start, name, column, "value", 0, 2,
                     "attention_mask holds only 0 (padding) and 1 (a token).", limit_name="only 0 and 1 are valid")
    else:
        _check_range(values, lengths, start, name, column, "token type", 0, limits.type_vocab_size,
                     "use 0 for single texts (and 1 for the second text of a pair).",
                     limit_name="the model has type_vocab_size={}")


def _check_range(values: pa.Array, lengths: np.ndarray, start: int, name: str, column: str, what: str, low: int,
                 high: int | None, fix: str, limit_name: str) -> None:
    """Raise if an integer value lies outside ``[low, high)``, naming the value, its row, the limit and the fix."""
    if len(values) == 0:
        return
    extremes = pc.min_max(values).as_py()
    smallest, largest = int(extremes["min"]), int(extremes["max"])
    if smallest >= low and (high is None or largest < high):
        return
    bad_value = smallest if smallest < low else largest
    items = np.flatnonzero(values.to_numpy(zero_copy_only=False) == bad_value)
    row = int(rows_of(lengths, items[:1])[0]) + start
    limit = limit_name.format(high) if high is not None else f"values must be >= {low}"
    raise ValueError(f"{name} has {what} {bad_value} in {column} (row {row}) but {limit}: {fix}")


# ----------------------------------------------------------------------------- images
def check_float_pixels(dataset: Dataset, name: str, column: str = "pixel_values") -> None:
    """Reject integer pixel values (e.g. raw uint8 images) where normalised float pixels are needed (the image
    augmentations of `hf_ssl.augment.image`).

    Parameters:
        dataset (`datasets.Dataset`): a pool with a pixel column.
        name (`str`): the pool's argument name, for messages.
        column (`str`, *optional*, defaults to `"pixel_values"`): the pixel column.
    """
    kind = leaf_type(dataset, column)
    if not pa.types.is_floating(kind):
        raise ValueError(
            f"{column} of {name} hold {kind} values (e.g. raw uint8 images), but the image augmentations work on "
            "normalised float pixels. Convert the images with the model's image processor or hf_ssl.to_pixel_values.")


def _check_pixels(dataset: Dataset, limits: ModelLimits, name: str, column: str) -> None:
    shape: tuple[int, ...] | None = None
    for start, block in row_blocks(dataset, [column]):
        levels = list_levels(block[column])
        missing = np.flatnonzero(row_lengths(levels[0]) < 0) if len(levels) > 1 else np.arange(0)
        if missing.size:
            raise ValueError(f"{name} has None in {column} ({_rows(missing + start)}); drop those rows.")
        block_shape = _uniform_shape(levels, start, name, column, shape)
        shape = shape or block_shape
        values = levels[-1]
        if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
            raise ValueError(f"{column} of {name} must hold numbers, got {values.type} values. Convert the images "
                             "with the model's image processor or hf_ssl.to_pixel_values.")
        if pa.types.is_floating(values.type) and not pc.all(pc.is_finite(values)).as_py():
            items = np.flatnonzero(~pc.is_finite(values).to_numpy(zero_copy_only=False))
            rows = np.unique(items // max(1, int(np.prod(shape)))) + start
            raise ValueError(
                f"{name} has NaN or infinite values in {column} ({_rows(rows)}): they would turn the model's weights "
                "to NaN. Repair or drop those images, e.g. dataset.select(<the other rows>).")
    if shape is None:
        return
    if len(shape) != 3:
        raise ValueError(f"{name} {column} rows have shape {shape}; expected (channels, height, width). Convert the "
                         "images with the model's image processor or hf_ssl.to_pixel_values.")
    if limits.num_channels is not None and shape[0] != limits.num_channels:
        raise ValueError(
            f"{name} {column} have {shape[0]} channel(s) but the model expects {limits.num_channels}. Convert "
            "grayscale images to RGB (hf_ssl.to_pixel_values repeats the channel) or the other way.")


def _uniform_shape(levels: list[pa.Array], start: int, name: str, column: str,
                   expected: tuple[int, ...] | None) -> tuple[int, ...]:
    """The one shape of every row in the block (its list lengths at each nesting level), or raise naming a row
    whose shape differs from ``expected`` (or from the block's first row)."""
    rows = np.arange(len(levels[0]))
    shape = []
    for level in levels[:-1]:
        lengths = row_lengths(level)
        size = expected[len(shape)] if expected is not None else int(np.bincount(np.maximum(lengths, 0)).argmax())
        differ = np.flatnonzero(lengths != size)
        if differ.size:
            raise ValueError(
                f"{name} {column} rows differ in shape: {_rows(np.unique(rows[differ]) + start)} differ from "
                f"the others. Resize every image to the model's size (its image processor does).")
        shape.append(size)
        rows = np.repeat(rows, lengths)
    return tuple(shape)
