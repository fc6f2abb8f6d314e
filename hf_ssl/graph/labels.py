"""Semi-supervised targets as scikit-learn's ``semi_supervised`` module takes them: class labels, -1 for unlabeled
rows.

Labels may be integers, integral floats, booleans or strings; string labels come in an object array in which the
integer -1 marks the unlabeled rows (as for `sklearn.semi_supervised.SelfTrainingClassifier`).
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

__all__ = ["UNLABELED", "encode_targets", "unlabeled_mask", "with_unlabeled"]

UNLABELED = -1


def unlabeled_mask(y: np.ndarray) -> np.ndarray:
    """Boolean mask of the entries of a 1-D target array equal to the number -1 (strings never are)."""
    if y.dtype == object:
        return np.array([isinstance(v, numbers.Real) and not isinstance(v, bool) and v == UNLABELED for v in y],
                        dtype=bool)
    if y.dtype.kind in "iuf":
        return y == UNLABELED
    return np.zeros(y.shape, dtype=bool)


def encode_targets(y: np.ndarray, n_prior_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes, labeled mask and class codes of a 1-D semi-supervised target array.

    Parameters:
        y (`np.ndarray`):
            (n,) class labels, -1 for unlabeled rows.
        n_prior_classes (`int` or `None`, *optional*, defaults to `None`):
            Columns of a class prior: the classes are then 0..n_prior_classes-1 and the labels must be indices.

    Returns:
        (classes, labeled, codes): the sorted classes, the (n,) mask of labeled rows and the index into ``classes``
        of every labeled row's label.
    """
    labeled = ~unlabeled_mask(y)
    values = y[labeled]
    if values.dtype == object:
        kinds = {isinstance(v, str) for v in values}
        if len(kinds) > 1:
            raise ValueError("y mixes strings and other values among its labels: use one type for the class labels "
                             "and the integer -1 (not '-1') for unlabeled rows")
        if kinds == {True}:
            values = values.astype(str)
    if values.size:
        check_classification_targets(values)
    if values.dtype.kind in "iuf" and (values < UNLABELED).any():
        raise ValueError(f"y has label {values.min()!r} below -1: -1 marks unlabeled rows, so class labels must not "
                         f"be negative; map the classes to 0..C-1 (or to strings)")
    if n_prior_classes is not None:
        if values.dtype.kind not in "iuf" or (values.size and not np.all(values == np.round(values))):
            raise ValueError(f"with a prior, y must hold class indices 0..{n_prior_classes - 1} (the prior's "
                             f"columns) or -1, got labels of dtype {values.dtype}")
        if values.size and values.max() >= n_prior_classes:
            raise ValueError(f"y has label {int(values.max())} but prior has {n_prior_classes} columns: with a prior, "
                             f"labels must lie in [0, {n_prior_classes})")
        return np.arange(n_prior_classes, dtype=np.int64), labeled, values.astype(np.int64)
    if not values.size:
        raise ValueError("y has no labeled rows: at least one entry must be a class label (-1 marks unlabeled rows)")
    classes = np.unique(values)
    return classes, labeled, np.searchsorted(classes, values)


def with_unlabeled(classes: np.ndarray, codes: np.ndarray, unlabeled: np.ndarray) -> np.ndarray:
    """``classes[codes]`` with -1 where ``unlabeled``; numeric classes keep their dtype (unsigned ones widen to a
    signed one), other classes give an object array.

    Parameters:
        classes (`np.ndarray`):
            (C,) classes.
        codes (`np.ndarray`):
            (n,) indices into ``classes``.
        unlabeled (`np.ndarray`):
            (n,) rows to mark -1.
    """
    kind = classes.dtype.kind
    if kind in "if":
        dtype = classes.dtype
    elif kind == "u":
        dtype = np.result_type(classes.dtype, np.int8)
    else:
        dtype = np.dtype(object)
    out = classes.astype(dtype)[codes]
    out[unlabeled] = UNLABELED
    return out
