"""Checks every hf_ssl config runs when it is built: numbers of the declared kind, a run that trains at least one
step, an output folder that can be one, and a truth column that is not one of hf_ssl's own names; and the check of
the graph-prior weight that two configs share."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import types
import typing
from typing import Any

from hf_ssl.data.collators import SSL_COLUMNS
from hf_ssl.data.validation import LABEL_COLUMNS

__all__ = ["check_graph_prior_weight", "check_number_fields", "check_training_length", "check_output_dir",
           "check_truth_column_name"]

# Float fields for which infinity has a meaning (no gradient clipping).
INFINITE_ALLOWED = frozenset({"max_grad_norm"})


@functools.cache
def _number_fields(config_class: type) -> dict[str, tuple[type, bool]]:
    """``{field: (int or float, optional)}`` for the fields of ``config_class`` declared ``int``, ``float``, or
    either ``| None``."""
    hints = typing.get_type_hints(config_class)
    fields = {}
    for field in dataclasses.fields(config_class):
        declared = hints.get(field.name)
        members = typing.get_args(declared) if typing.get_origin(declared) in (typing.Union, types.UnionType) else (
            declared,)
        kinds = [m for m in members if m is not type(None)]
        if len(kinds) == 1 and kinds[0] in (int, float):
            fields[field.name] = (kinds[0], len(kinds) < len(members))
    return fields


def check_number_fields(config: Any) -> None:
    """Reject a value that is not of its field's declared kind: a non-whole number for an ``int`` field (a whole
    float such as ``2.0`` becomes ``2``), NaN or infinity for a ``float`` field.

    Parameters:
        config (`dataclass`): a config; its fields are edited in place (whole floats to int).
    """
    for name, (kind, optional) in _number_fields(type(config)).items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        if not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number, got {value!r}.")
        if kind is int and not isinstance(value, numbers.Integral):
            if not (math.isfinite(value) and float(value).is_integer()):
                raise ValueError(f"{name} must be a whole number, got {value!r}; e.g. {name}={_example(value)}.")
            setattr(config, name, int(value))
        elif kind is float and not math.isfinite(value) and not (math.isinf(value) and name in INFINITE_ALLOWED):
            raise ValueError(f"{name} must be a finite number, got {value!r}.")


def _example(value: float) -> int:
    return max(1, round(value)) if math.isfinite(value) else 1


def check_training_length(num_train_epochs: float, max_steps: int) -> None:
    """Reject a run that trains no step: ``max_steps=0``, or no ``max_steps`` and ``num_train_epochs <= 0``."""
    if max_steps == 0:
        raise ValueError("max_steps=0 trains nothing: leave it at -1 to train num_train_epochs epochs, or set a "
                         "positive number of optimizer steps.")
    if max_steps < 0 and num_train_epochs <= 0:
        raise ValueError(f"num_train_epochs={num_train_epochs:g} trains nothing (and max_steps is not set): pass a "
                         "positive number of epochs, or max_steps > 0.")


def check_output_dir(output_dir: str | None) -> None:
    """Reject an ``output_dir`` that is an existing file (checkpoints, records and the model go in a folder)."""
    if output_dir is not None and os.path.isfile(output_dir):
        raise ValueError(f"output_dir={output_dir!r} is an existing file; hf_ssl writes checkpoints, records and the "
                         "model into a folder there. Pass a folder path (it is created if missing).")


def check_truth_column_name(truth_column: Any) -> None:
    """Reject a truth column named like a label column or a column hf_ssl adds to the rows it streams."""
    if not isinstance(truth_column, str) or not truth_column:
        raise ValueError(f"truth_column must be a non-empty column name, got {truth_column!r}; default 'ssl_truth'.")
    if truth_column in SSL_COLUMNS:
        raise ValueError(f"truth_column={truth_column!r} is a column hf_ssl adds to the rows it streams "
                         f"({list(SSL_COLUMNS)}); name the hidden-truth column otherwise, e.g. 'ssl_truth'.")
    if truth_column in LABEL_COLUMNS:
        raise ValueError(f"truth_column={truth_column!r} is a label column name: labeled rows belong in "
                         "train_dataset, and hidden labels of the unlabeled pool (monitoring only) go under another "
                         "name, e.g. 'ssl_truth'.")


def check_graph_prior_weight(weight: float) -> None:
    """Reject a ``graph_prior_weight`` outside [0, 1] (`ConsistencyConfig`, `SelfTrainingConfig`)."""
    if not (math.isfinite(weight) and 0 <= weight <= 1):
        raise ValueError(f"graph_prior_weight must be in [0, 1], got {weight}; e.g. 0.5.")
