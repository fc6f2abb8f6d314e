"""Checks run before any training, so a user mistake is a clear message and not a deep traceback."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Value

from hf_ssl.data.arrow_blocks import row_blocks
from hf_ssl.data.collators import SSL_COLUMNS

__all__ = ["LABEL_COLUMNS", "label_column_of", "check_labeled_pool", "check_eval_pool",
           "check_unlabeled_pool", "check_truth_column", "check_reserved_columns", "check_label_names", "check_texts"]

LABEL_COLUMNS = ("labels", "label")
_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


def label_column_of(dataset: Dataset, name: str = "train_dataset") -> str:
    """Return the label column of a labeled pool (``labels`` or ``label``), or raise naming the fix (none, or both:
    the collator would train on ``label`` whatever ``labels`` holds)."""
    present = [column for column in LABEL_COLUMNS if column in dataset.column_names]
    if len(present) == 2:
        raise ValueError(
            f"{name} has both 'label' and 'labels' columns: which one is the target is ambiguous (the data collator "
            "trains on 'label'). Keep one, e.g. dataset.remove_columns('labels')."
        )
    if not present:
        raise ValueError(
            f"{name} has no label column: expected 'labels' or 'label', found {dataset.column_names}. "
            "Rename your label column, e.g. dataset.rename_column('category', 'label')."
        )
    return present[0]


def check_reserved_columns(dataset: Dataset, name: str) -> None:
    """Reject a pool with a column named like one that hf_ssl adds to the rows it streams (`SSL_COLUMNS`).

    Parameters:
        dataset (`datasets.Dataset`): a pool.
        name (`str`): the argument name used in messages.
    """
    for column in SSL_COLUMNS:
        if column in dataset.column_names:
            raise ValueError(
                f"Column {column!r} of {name} is reserved by hf_ssl (it adds {list(SSL_COLUMNS)} to the rows it "
                f"streams) and would be overwritten or misread. Rename yours: "
                f"dataset.rename_column({column!r}, 'user_{column}')."
            )


def _labels(dataset: Dataset, num_labels: int, name: str) -> tuple[str, np.ndarray]:
    """The label column and its labels as an int array, all in ``[0, num_labels)``, or raise naming the fix."""
    column = label_column_of(dataset, name)
    feature = dataset.features.get(column)
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string", "string_view"):
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
    return column, labels


def check_labeled_pool(dataset: Dataset, num_labels: int, name: str = "train_dataset") -> np.ndarray:
    """Validate the labeled pool and return its labels as an int array.

    Raises if the pool is empty, has both or neither of ``label`` and ``labels``, labels are strings without a
    `ClassLabel`, a label lies outside ``[0, num_labels)`` (including the -1 unlabeled marker), or a class has no
    labeled example.

    Args:
        dataset: the labeled pool.
        num_labels: the model's number of classes.
        name: the argument name used in messages.
    """
    if dataset is None or len(dataset) == 0:
        raise ValueError(f"{name} (the labeled pool) is empty: pass at least one labeled example per class.")
    column, labels = _labels(dataset, num_labels, name)
    missing = sorted(set(range(num_labels)) - set(labels.tolist()))
    if missing:
        names = _class_names(dataset, column)
        shown = [names[i] if names else i for i in missing[:10]]
        raise ValueError(
            f"{name} has no labeled example of class(es) {shown}. Every class needs at least one label "
            "(use hf_ssl.sample_per_class), or load the model with fewer num_labels."
        )
    return labels


def check_eval_pool(dataset: Dataset, num_labels: int, name: str = "eval_dataset") -> None:
    """Validate an evaluation pool: one label column of integer classes in ``[0, num_labels)``, no reserved column.

    Parameters:
        dataset (`datasets.Dataset`): the evaluation pool.
        num_labels (`int`): the model's number of classes.
        name (`str`, *optional*, defaults to `"eval_dataset"`): the argument name used in messages.
    """
    check_reserved_columns(dataset, name)
    _labels(dataset, num_labels, name)


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
    for column in [c for c in LABEL_COLUMNS if c in unlabeled.column_names]:
        for _, block in row_blocks(unlabeled, [column]):
            values = block[column].combine_chunks()
            if pa.types.is_integer(values.type) and pc.any(pc.not_equal(values, -1)).as_py():
                raise ValueError(
                    f"{name} has a {column!r} column with real labels. Rows with labels belong in train_dataset; "
                    "keep true labels of unlabeled rows for monitoring only under the truth_column "
                    "(default 'ssl_truth'), or drop the column."
                )


def check_truth_column(unlabeled: Dataset, column: str, num_labels: int, name: str = "unlabeled_dataset") -> None:
    """Validate the hidden-truth column of the unlabeled pool, if present: an integer class in ``[0, num_labels)`` for
    every row (it is compared with the pseudo-labels).

    Parameters:
        unlabeled (`datasets.Dataset`): the unlabeled pool.
        column (`str`): the truth column (``truth_column`` of the config).
        num_labels (`int`): the model's number of classes.
        name (`str`, *optional*, defaults to `"unlabeled_dataset"`): the argument name used in messages.
    """
    if column not in unlabeled.column_names:
        return
    where = f"The truth column {column!r} of {name}"
    for start, block in row_blocks(unlabeled, [column]):
        values = block[column].combine_chunks()
        if not (pa.types.is_integer(values.type) or pa.types.is_null(values.type)):
            raise ValueError(
                f"{where} must hold integer class ids, got {values.type} values. Encode it with the labeled pool's "
                f"classes, e.g. unlabeled.cast_column({column!r}, train_dataset.features['label']), or drop it."
            )
        if values.null_count:
            rows = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False)) + start
            raise ValueError(
                f"{where} has {values.null_count} missing (None) value(s) (e.g. rows {rows[:5].tolist()}); the hidden "
                "truth needs a class for every row. Fill them in or drop the column."
            )
        extremes = pc.min_max(values).as_py()
        if extremes["min"] < 0 or extremes["max"] >= num_labels:
            array = values.to_numpy()
            bad = sorted(set(array[(array < 0) | (array >= num_labels)].tolist()))
            raise ValueError(
                f"{where} has labels {bad[:5]} outside [0, {num_labels}) (num_labels of the model). Encode it with the "
                "labeled pool's classes, or drop it."
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
