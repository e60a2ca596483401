"""Arrow arrays to numpy and back through their buffers, without pandas.

``pa.array``, ``pa.table`` and ``Array.to_numpy`` ask of every input whether it is a pandas object (or
convert through pandas' machinery), and that imports pandas wherever it is installed: 0.2-0.4 s of CPU in a
process that never uses it. Read and built here from their buffers (``np.frombuffer``,
``pa.Array.from_buffers``, ``pa.MapArray.from_arrays``), the same arrays come out (same dtype or type,
values and nulls) without pandas. Built: the types evalpipe writes on its run path, ``int32``/``int64``/
``float64``, ``string``, ``timestamp`` and ``map<string, string>`` from Python values, and numbers, booleans
and text from numpy arrays; read: numbers, booleans and strings without nulls (other types go through
pyarrow's own conversions).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

_NUMERIC = {pa.int32(): np.int32, pa.int64(): np.int64, pa.float64(): np.float64}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIME_UNITS = {"s": dt.timedelta(seconds=1), "ms": dt.timedelta(milliseconds=1), "us": dt.timedelta(microseconds=1)}


def is_text_type(t: pa.DataType) -> bool:
    """Whether ``t`` holds strings in any of Arrow's layouts: ``string``, ``large_string`` or ``string_view``."""
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _validity(values: Sequence[Any]) -> pa.Buffer | None:
    """Arrow's validity bitmap of ``values``: bit i set where ``values[i] is not None``; none when no value is."""
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    return None if present.all() else pa.py_buffer(np.packbits(present, bitorder="little"))


def _fixed_width(data: np.ndarray, arrow_type: pa.DataType, values: Sequence[Any]) -> pa.Array:
    """``data`` (one fixed-width value per row) as ``arrow_type``, null where ``values`` holds ``None``."""
    validity = _validity(values)
    return pa.Array.from_buffers(arrow_type, len(data), [validity, pa.py_buffer(np.ascontiguousarray(data))])


def numeric(values: Sequence[float | int | None] | np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """``pa.array(values, arrow_type)`` for a 1-d array or a sequence of numbers (``None``: null) as int32,
    int64 or float64; NaN stays a value, as in ``pa.array``."""
    dtype = _NUMERIC[arrow_type]
    if isinstance(values, np.ndarray):
        return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(np.ascontiguousarray(values, dtype))])
    data = np.array([0 if v is None else v for v in values], dtype=dtype)
    return _fixed_width(data, arrow_type, values)


def strings(values: Sequence[str | None]) -> pa.Array:
    """``pa.array(values, pa.string())``: UTF-8 text, ``None`` as null."""
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [_validity(values), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def timestamps(values: Sequence[dt.datetime | None], arrow_type: pa.TimestampType) -> pa.Array:
    """``pa.array(values, arrow_type)`` for time-zone-aware datetimes at unit ``s``, ``ms`` or ``us``."""
    unit = _TIME_UNITS[arrow_type.unit]
    ticks = np.array([0 if v is None else (v - _EPOCH) // unit for v in values], dtype=np.int64)
    return _fixed_width(ticks, arrow_type, values)


def string_maps(values: Sequence[Iterable[tuple[str, str]] | Mapping[str, str]], arrow_type: pa.MapType) -> pa.Array:
    """``pa.array(values, map<string, string>)``: each row a mapping or a list of ``(key, item)`` pairs."""
    rows = [list(v.items()) if isinstance(v, Mapping) else list(v) for v in values]
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    pairs = [pair for r in rows for pair in r]
    keys, items = strings([k for k, _ in pairs]), strings([i for _, i in pairs])
    return pa.MapArray.from_arrays(numeric(offsets, pa.int32()), keys, items, type=arrow_type)


def from_numpy(values: np.ndarray) -> pa.Array:
    """``pa.array(values)`` for a 1-d array without nulls: numbers, booleans and text (``str`` objects) from
    their buffers; other dtypes through ``pa.array`` itself."""
    kind = values.dtype.kind
    if kind in "iuf":
        data = np.ascontiguousarray(values, values.dtype.newbyteorder("="))  # Arrow's buffers: native order
        return pa.Array.from_buffers(pa.from_numpy_dtype(data.dtype), len(data), [None, pa.py_buffer(data)])
    if kind == "b":
        return pa.Array.from_buffers(
            pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(values, bitorder="little"))]
        )
    if kind == "U" or (kind == "O" and all(isinstance(v, str) for v in values)):
        return strings(values.tolist())
    return pa.array(values)


def column(values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    """``pa.array(values, arrow_type)`` for the supported types (module doc)."""
    if arrow_type in _NUMERIC:
        return numeric(values, arrow_type)
    if arrow_type == pa.string():
        return strings(values)
    if pa.types.is_timestamp(arrow_type):
        return timestamps(values, arrow_type)
    if pa.types.is_map(arrow_type) and arrow_type.key_type == arrow_type.item_type == pa.string():
        return string_maps(values, arrow_type)
    raise TypeError(f"no buffer-built Arrow column of type {arrow_type}")


def table(columns: Mapping[str, Sequence[Any]], schema: pa.Schema) -> pa.Table:
    """``pa.table(columns, schema=schema)``: one column per field of ``schema``, in its order."""
    return pa.Table.from_arrays([column(columns[f.name], f.type) for f in schema], schema=schema)


def numbers(array: pa.Array) -> np.ndarray:
    """An integer or floating-point column without nulls -> its numpy dtype ``[n]``: a read-only view of
    Arrow's buffer, as ``to_numpy`` returns."""
    kind = "f" if pa.types.is_floating(array.type) else "i" if pa.types.is_signed_integer(array.type) else "u"
    dtype = np.dtype(f"<{kind}{array.type.bit_width // 8}")
    if not len(array):  # an empty column may come without a data buffer
        return np.zeros(0, dtype)
    return np.frombuffer(array.buffers()[1], dtype, count=array.offset + len(array))[array.offset :]


def booleans(array: pa.BooleanArray) -> np.ndarray:
    """A boolean column without nulls -> bool ``[n]`` (Arrow packs 8 rows a byte, least significant bit first)."""
    if not len(array):
        return np.zeros(0, bool)
    bits = np.unpackbits(np.frombuffer(array.buffers()[1], np.uint8), bitorder="little")
    return bits[array.offset : array.offset + len(array)].astype(bool)


TEXT_SAMPLE_ROWS = 1024
"""Rows at the head of a string column that tell a column of few distinct values from one of many."""


def texts(array: pa.Array) -> np.ndarray:
    """A string column without nulls -> object ``[n]`` of ``str``. A column of few distinct values (groups,
    labels: at most half of the first :data:`TEXT_SAMPLE_ROWS` distinct) goes through Arrow's dictionary
    encoding, each distinct value decoded once; another (free text) is decoded row by row."""
    head = array[:TEXT_SAMPLE_ROWS].to_pylist()
    if 2 * len(set(head)) > len(head):
        return np.asarray(array.to_pylist(), dtype=object)
    encoded = array.dictionary_encode()
    return np.asarray(encoded.dictionary.to_pylist(), dtype=object)[numbers(encoded.indices)]


def to_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``array.to_numpy(zero_copy_only=False)``, without pandas for numbers, booleans and strings without
    nulls."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    kind = array.type
    if array.null_count:
        return array.to_numpy(zero_copy_only=False)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return numbers(array)
    if pa.types.is_boolean(kind):
        return booleans(array)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return texts(array)
    return array.to_numpy(zero_copy_only=False)
