"""Checks run before any training, so a user mistake is a clear message and not a deep traceback."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Value

__all__ = ["label_column_of", "check_labeled_pool", "check_unlabeled_pool", "check_label_names", "check_model_inputs",
           "check_texts"]

LABEL_COLUMNS = ("labels", "label")
_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


def label_column_of(dataset: Dataset, name: str = "train_dataset") -> str:
    """Return the label column of a labeled pool (``labels`` or ``label``), or raise naming the fix."""
    for column in LABEL_COLUMNS:
        if column in dataset.column_names:
            return column
    raise ValueError(
        f"{name} has no label column: expected 'labels' or 'label', found {dataset.column_names}. "
        "Rename your label column, e.g. dataset.rename_column('category', 'label')."
    )


def check_labeled_pool(dataset: Dataset, num_labels: int, name: str = "train_dataset") -> np.ndarray:
    """Validate the labeled pool and return its labels as an int array.

    Raises if the pool is empty, labels are strings without a `ClassLabel`, a label lies outside
    ``[0, num_labels)`` (including the -1 unlabeled marker), or a class has no labeled example.

    Args:
        dataset: the labeled pool.
        num_labels: the model's number of classes.
        name: the argument name used in messages.
    """
    if dataset is None or len(dataset) == 0:
        raise ValueError(f"{name} (the labeled pool) is empty: pass at least one labeled example per class.")
    column = label_column_of(dataset, name)
    feature = dataset.features.get(column)
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        raise ValueError(
            f"Column {column!r} of {name} holds strings. Encode it as a ClassLabel first: "
            f"dataset = dataset.class_encode_column({column!r})."
        )
    labels = np.asarray(dataset[column])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"Column {column!r} of {name} must hold one integer class id per row, got dtype {labels.dtype}."
        )
    bad = labels[(labels < 0) | (labels >= num_labels)]
    if bad.size:
        hint = (" -1 marks unlabeled rows: split them off with hf_ssl.split_pools(dataset) and pass them as "
                "unlabeled_dataset.") if (bad == -1).any() else ""
        raise ValueError(
            f"Column {column!r} of {name} has labels {sorted(set(bad.tolist()))[:5]} outside [0, {num_labels}) "
            f"(num_labels of the model).{hint} Otherwise load the model with num_labels matching your classes."
        )
    missing = sorted(set(range(num_labels)) - set(labels.tolist()))
    if missing:
        names = _class_names(dataset, column)
        shown = [names[i] if names else i for i in missing[:10]]
        raise ValueError(
            f"{name} has no labeled example of class(es) {shown}. Every class needs at least one label "
            "(use hf_ssl.sample_per_class), or load the model with fewer num_labels."
        )
    return labels


def _class_names(dataset: Dataset, column: str) -> list[str] | None:
    feature = dataset.features.get(column)
    return list(feature.names) if isinstance(feature, ClassLabel) else None


def check_label_names(dataset: Dataset, id2label: dict[int, str] | None,
                      name: str = "train_dataset") -> list[str] | None:
    """Compare the dataset's `ClassLabel` names with the model's ``id2label``; return the names.

    A model whose ``id2label`` is the default ``LABEL_i`` is compatible with any names.

    Args:
        dataset: the labeled pool.
        id2label: the model config's mapping.
        name: the argument name used in messages.
    """
    names = _class_names(dataset, label_column_of(dataset, name))
    if not names or not id2label:
        return names
    model_names = [id2label[i] for i in sorted(id2label)]
    if all(_DEFAULT_LABEL.match(str(n)) for n in model_names):
        return names
    if [str(n) for n in model_names] != [str(n) for n in names]:
        raise ValueError(
            f"Label names of {name} {names[:8]} disagree with the model's config.id2label {model_names[:8]}. "
            "Load the model with id2label/label2id built from dataset.features['label'].names, "
            "or align the dataset with dataset.align_labels_with_mapping(model.config.label2id, 'label')."
        )
    return names


def check_unlabeled_pool(unlabeled: Dataset, input_columns: Iterable[str], name: str = "unlabeled_dataset") -> None:
    """Validate the unlabeled pool: non-empty and carrying the model input columns of the labeled pool.

    Args:
        unlabeled: the unlabeled pool.
        input_columns: model input columns present in the labeled pool (e.g. ``input_ids``).
        name: the argument name used in messages.
    """
    if unlabeled is None or len(unlabeled) == 0:
        raise ValueError(f"{name} is empty: pass the unlabeled pool as a non-empty datasets.Dataset.")
    missing = [c for c in input_columns if c not in unlabeled.column_names]
    if missing:
        raise ValueError(
            f"{name} is missing column(s) {missing} that the labeled pool feeds the model; "
            f"it has {unlabeled.column_names}. Preprocess it with the same function as the labeled pool "
            "(e.g. unlabeled.map(tokenize, batched=True))."
        )
    for column in LABEL_COLUMNS:
        if column in unlabeled.column_names:
            values = np.asarray(unlabeled[column])
            if values.size and np.issubdtype(values.dtype, np.integer) and (values != -1).any():
                raise ValueError(
                    f"{name} has a {column!r} column with real labels. Rows with labels belong in train_dataset; "
                    "keep true labels of unlabeled rows for monitoring only under the truth_column "
                    "(default 'ssl_truth'), or drop the column."
                )


def check_model_inputs(dataset: Dataset, model_config: object, name: str) -> None:
    """Check model inputs against the model before training: token ids inside the model's vocabulary,
    no empty rows, and images with the channel count (and square size) the model expects.

    Args:
        dataset: a pool with model inputs (``input_ids`` or ``pixel_values``).
        model_config: the model's config (``vocab_size``, ``num_channels``).
        name: the argument name used in messages.
    """
    if "input_ids" in dataset.column_names:
        column = dataset.with_format("arrow")[:]["input_ids"]  # Arrow: no Python objects per row
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        empty = np.flatnonzero(np.nan_to_num(lengths, nan=0) == 0)
        if empty.size:
            raise ValueError(
                f"{name} has {empty.size} row(s) with empty input_ids (e.g. rows {empty[:5].tolist()}): empty or "
                "None texts. Drop them before tokenizing, e.g. dataset.filter(lambda r: bool(r['text']))."
            )
        vocab = getattr(model_config, "vocab_size", None)
        if vocab is not None:
            largest = pc.max(pc.list_flatten(column)).as_py()
            largest = -1 if largest is None else int(largest)
            if largest >= vocab:
                raise ValueError(
                    f"{name} has token id {largest} in input_ids but the model's vocabulary has {vocab} ids: the "
                    "tokenizer (processing_class) does not match the model. Tokenize with "
                    "AutoTokenizer.from_pretrained(<the model's path>)."
                )
    if "pixel_values" in dataset.column_names and len(dataset):
        first = np.asarray(dataset.with_format("numpy")[0]["pixel_values"])
        channels = getattr(model_config, "num_channels", None)
        if first.ndim != 3:
            raise ValueError(
                f"{name} pixel_values rows have shape {first.shape}; expected (channels, height, width). "
                "Convert images with the model's image processor or hf_ssl.to_pixel_values."
            )
        if channels is not None and first.shape[0] != channels:
            raise ValueError(
                f"{name} pixel_values have {first.shape[0]} channel(s) but the model expects {channels}. "
                "Convert grayscale images to RGB (hf_ssl.to_pixel_values repeats the channel) or the other way."
            )


def check_texts(dataset: Dataset, column: str, name: str = "dataset") -> None:
    """Reject a missing text column and None or blank texts before tokenizing.

    Args:
        dataset: a text dataset.
        column: the text column.
        name: the dataset's name in messages.
    """
    if column not in dataset.column_names:
        raise ValueError(f"{name} has no text column {column!r} (columns: {dataset.column_names}); "
                         "pass --text_column naming it.")
    bad = [i for i, text in enumerate(dataset[column]) if text is None or not str(text).strip()]
    if bad:
        raise ValueError(
            f"{name} has {len(bad)} empty or None text(s) in column {column!r} (rows {bad[:5]}). Drop them first, "
            f"e.g. dataset.filter(lambda r: bool(r[{column!r}] and r[{column!r}].strip()))."
        )
