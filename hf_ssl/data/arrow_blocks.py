"""Column reads for checks over whole pools: Arrow blocks of rows, flattened values and per-row lengths, without
Python objects per row and with bounded memory however large the pool."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

__all__ = ["row_blocks", "list_levels", "leaf_values", "leaf_type", "row_lengths", "rows_of"]

BLOCK_VALUES = 1 << 22  # values read per block (~32 MB of int64 or float64)


def _plain(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array, extension types (e.g. `datasets.Array3D`) replaced by their storage."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.storage if isinstance(array, pa.ExtensionArray) else array


def _is_list(array: pa.Array) -> bool:
    kind = array.type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def list_levels(array: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    """``array`` and each flattening of it down to its leaf values: ``[rows, rows' items, ..., leaves]``."""
    levels = [_plain(array)]
    while _is_list(levels[-1]):
        levels.append(_plain(levels[-1].flatten()))
    return levels


def leaf_values(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The innermost values of a (nested) list column, in row order."""
    return list_levels(array)[-1]


def leaf_type(dataset: Dataset, column: str) -> pa.DataType:
    """The Arrow type of the innermost values of ``column`` (read from the schema, no data)."""
    kind = dataset.data.schema.field(column).type
    while True:
        if isinstance(kind, pa.ExtensionType):
            kind = kind.storage_type
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            kind = kind.value_type
        else:
            return kind


def row_lengths(array: pa.Array) -> np.ndarray:
    """Length of each list of ``array`` as int64; a None row counts -1."""
    return pc.list_value_length(_plain(array)).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def rows_of(lengths: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Rows holding the flattened items at positions ``items``, given each row's item count ``lengths``."""
    ends = np.cumsum(np.maximum(lengths, 0))
    return np.searchsorted(ends, items, side="right")


def row_blocks(dataset: Dataset, columns: Sequence[str], block_values: int | None = None) -> Iterator[
        tuple[int, pa.Table]]:
    """Consecutive blocks of rows of ``columns`` as Arrow tables, each holding about ``block_values`` leaf values
    (judged from the first row; default `BLOCK_VALUES`), with the index of its first row.

    A dataset viewed through an indices mapping (after ``select``, ``filter``, ``shuffle``, ``train_test_split``)
    is read with one Arrow ``take`` per block rather than row by row.
    """
    data = dataset.select_columns(list(columns))
    table = data.data.table
    indices = data._indices.column(0) if data._indices is not None else None

    def rows(start: int, stop: int) -> pa.Table:
        if indices is None:
            return table.slice(start, stop - start)
        return table.take(indices.slice(start, stop - start))

    n = len(data)
    if n == 0:
        return
    first = rows(0, 1)
    per_row = max(1, sum(len(leaf_values(first[c])) for c in columns))
    step = max(1, (block_values or BLOCK_VALUES) // per_row)
    for start in range(0, n, step):
        yield start, rows(start, min(n, start + step))
