"""Parquet -> numpy column arrays, one row group at a time, only the needed columns.

Memory is bounded by the largest row group of the unit, not by the dataset.
List columns of fixed length (class probabilities, multilabel targets) become
``[n, C]`` arrays without a per-row Python loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from evaluators.task import PredictionKind, Task, TaskKind
from pipelines.errors import DataError
from pipelines.planning import FileInfo, UnitPart

Columns = dict[str, np.ndarray | pa.Array]
TEXT_PREFIX = "slice:"
"""Roles with this prefix (slice columns) of string type stay Arrow arrays: slicing encodes them
with Arrow's hash-based dictionary encoding instead of building a Python string per row."""


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _is_label(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_floating(t)


def expected_type(role: str, task: Task) -> tuple[str, Any]:
    """``(description, predicate)`` of the Arrow type a role's column must have."""
    per_row = task.kind is TaskKind.MULTILABEL or (
        task.kind is TaskKind.MULTICLASS and role == "predictions" and task.prediction is not PredictionKind.LABELS
    )
    if role in ("weights",):
        return "a numeric column", _is_numeric
    if role == "row_id":
        return "any column", lambda t: True
    if task.kind is TaskKind.TEXT and role in ("predictions", "targets"):
        return "a string column", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
    if task.kind is TaskKind.DETECTION and role not in ("weights", "image_id"):
        return "a list column per image (boxes: list of 4 numbers per box, or 4k numbers)", _is_list
    if task.kind is TaskKind.SEGMENTATION and role in ("predictions", "targets"):
        return (
            "single-channel PNG masks of class ids (binary) or class ids per pixel (list of integers)",
            lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or (_is_list(t) and _is_label(t.value_type)),
        )
    if task.kind is TaskKind.IMAGE and role in ("predictions", "targets"):
        return (
            "encoded image bytes (binary) or S*S*3 pixel values per row (list or fixed_size_list of numbers)",
            lambda t: (
                pa.types.is_binary(t)
                or pa.types.is_large_binary(t)
                or (_is_list(t) and (pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)))
            ),
        )
    if per_row and role in ("predictions", "targets"):
        width = task.classes
        return (
            f"a list column of {width} numbers per row (list<float> or fixed_size_list)",
            lambda t: _is_list(t) and _is_numeric(t.value_type),
        )
    if task.kind is TaskKind.REGRESSION or (role == "predictions" and task.prediction is not PredictionKind.LABELS):
        return "a numeric column", _is_numeric
    return "an integer label column", _is_label


def check_schema(info: FileInfo, roles: Mapping[str, str], task: Task) -> None:
    """Raise :class:`DataError` if a role's column is missing from ``info`` or has the wrong type."""
    names = info.schema.names
    for role, column in roles.items():
        if column not in names:
            from difflib import get_close_matches

            near = get_close_matches(column, names, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise DataError(
                f"{info.path}: column {column!r} (data.columns.{role}) is missing{hint}; "
                f"the file has columns: {', '.join(names)}."
            )
        dtype = info.schema.field(column).type
        description, ok = expected_type(role, task)
        if not ok(dtype):
            raise DataError(
                f"{info.path}: column {column!r} (data.columns.{role}) has type {dtype}; expected {description} "
                f"for a {task.kind} task with {task.prediction} predictions."
            )


def to_numpy(array: pa.ChunkedArray | pa.Array, *, where: str) -> np.ndarray:
    """One Arrow column -> numpy; fixed-length lists -> ``[n, width]``.

    Raises:
        DataError: nulls, or list rows of different lengths.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if array.null_count:
        raise DataError(f"{where}: {array.null_count} rows are null; expected a value in every row.")
    if _is_list(array.type):
        n = len(array)
        if pa.types.is_fixed_size_list(array.type):
            width = array.type.list_size
        else:
            lengths = pc.list_value_length(array)
            lo, hi = pc.min(lengths).as_py(), pc.max(lengths).as_py()
            if n and lo != hi:
                raise DataError(
                    f"{where}: list rows have different lengths ({lo} to {hi}); expected the same in every row."
                )
            width = hi or 0
        values = array.flatten()
        if values.null_count:
            raise DataError(f"{where}: {values.null_count} list elements are null; expected numbers.")
        flat = values.to_numpy(zero_copy_only=False)
        return flat.reshape(n, width)
    return array.to_numpy(zero_copy_only=False)


def ragged(array: pa.ChunkedArray, *, where: str) -> np.ndarray:
    """A list column of varying lengths -> object array of per-row float64 arrays (nested lists flattened
    per row: ``[[x, y, w, h], ...]`` -> ``[4k]``)."""
    if array.null_count:
        raise DataError(f"{where}: {array.null_count} rows are null; expected a (possibly empty) list in every row.")
    out = np.empty(len(array), object)
    for i, row in enumerate(array.to_pylist()):
        out[i] = np.asarray(row, np.float64).reshape(-1)
    return out


RAGGED_PREFIX = "ragged:"
"""Roles with this prefix are per-row lists of varying length (detection boxes): see :func:`ragged`."""


def _column(role: str, array: pa.ChunkedArray, *, where: str) -> np.ndarray | pa.Array:
    if role.startswith(RAGGED_PREFIX):
        return ragged(array, where=where)
    if role.startswith(TEXT_PREFIX) and (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        combined = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
        if combined.null_count:
            raise DataError(f"{where}: {combined.null_count} rows are null; expected a value in every row.")
        return combined
    return to_numpy(array, where=where)


def read_part(
    part: UnitPart, roles: Mapping[str, str], storage_options: dict[str, Any]
) -> Iterator[tuple[int, int, Columns]]:
    """Yield ``(row group, first row's position in the file, role columns)`` for each row group in ``part``."""
    fs, path = url_to_fs(part.path, **storage_options)
    names = list(dict.fromkeys(roles.values()))
    try:
        with fs.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            meta = parquet.metadata
            first_row = sum(meta.row_group(g).num_rows for g in range(part.start))
            for group in range(part.start, part.stop):
                table = parquet.read_row_group(group, columns=names)
                where_group = f"{part.path} row group {group}"
                yield (
                    group,
                    first_row,
                    {
                        role: _column(role, table.column(col), where=f"{where_group}, column {col!r}")
                        for role, col in roles.items()
                    },
                )
                first_row += table.num_rows
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise DataError(f"{part.path}: cannot read row groups {part.start}-{part.stop - 1}: {exc}.") from None
