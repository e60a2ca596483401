"""Slices: which rows of a batch belong to which slice key.

A :class:`SliceSpec` is one entry of the job's ``slices:`` list:

* ``{column: country}``                     one slice per value of a column;
* ``{columns: [country, device]}``          one slice per combination (a cross);
* ``{column: age, boundaries: [18, 65]}``   numeric buckets ``(-inf, 18)``, ``[18, 65)``, ``[65, inf)``;
* ``{column: age, quantiles: 4}``           buckets at the data's quartiles (found in a first pass);
* ``{filter: {country: {in: [US, DE]}, age: {ge: 18}}, name: adults_us_de}``
                                            one slice: the rows that pass every condition.

Slice values are discovered from the data; a slice key is a tuple of
``(column, value)`` string pairs, which becomes the tags of its ``Point``.
The overall slice (key ``()``) is always computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines import arrow_columns
from pipelines.errors import DataError
from pipelines.unit_result import SliceKey

FILTER_OPS = ("eq", "ne", "in", "not_in", "lt", "le", "gt", "ge")


@dataclass(frozen=True)
class Condition:
    """One filter condition on one column."""

    column: str
    op: str
    value: Any

    def describe(self) -> str:
        symbol = {"eq": "==", "ne": "!=", "in": "in", "not_in": "not in", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[
            self.op
        ]
        return f"{self.column} {symbol} {self.value!r}"

    def mask(self, values: np.ndarray) -> np.ndarray:
        if self.op in ("in", "not_in"):
            wanted = [_column_value(v, values.dtype) for v in self.value]
            inside = np.isin(values, np.asarray(wanted, dtype=values.dtype if values.dtype.kind in "MUSb" else None))
            return inside if self.op == "in" else ~inside
        op = {
            "eq": np.equal,
            "ne": np.not_equal,
            "lt": np.less,
            "le": np.less_equal,
            "gt": np.greater,
            "ge": np.greater_equal,
        }[self.op]
        return np.asarray(op(values, _column_value(self.value, values.dtype)), dtype=bool)


def _column_value(value: Any, dtype: np.dtype) -> Any:
    """A filter value as a column of ``dtype`` compares with it: a number written as text (a ``${var}`` is text)
    as that number beside numbers, a date or time as a ``datetime64`` beside dates and times."""
    if dtype.kind in "iuf" and isinstance(value, str):
        number = float(value)
        return int(value) if dtype.kind != "f" and number == int(number) and "." not in value else number
    if dtype.kind == "M" and not isinstance(value, np.datetime64):
        return np.datetime64(str(value))
    return value


def cross_label(columns: Sequence[str]) -> str:
    """The name of a ``slices:`` entry over ``columns`` that gives none (``countryxdevice``; one column: its own)."""
    return "x".join(columns)


DISTINCT_SLICES_FACTOR = 10
DISTINCT_SLICES_FLOOR = 1_000
"""A slice entry may have ``max(DISTINCT_SLICES_FACTOR * max_slices, DISTINCT_SLICES_FLOOR)`` distinct values."""


@dataclass(frozen=True)
class SliceSpec:
    """One ``slices:`` entry (see module doc)."""

    name: str
    columns: tuple[str, ...] = ()
    boundaries: tuple[float, ...] | None = None
    quantiles: int | None = None
    conditions: tuple[Condition, ...] = ()
    min_count: int = 0
    max_slices: int = 100
    index: int | None = field(default=None, compare=False)
    """Its position in the job's ``slices:`` list (for messages; not part of its meaning)."""

    @property
    def where(self) -> str:
        """``slices[i] ('name')``: the entry as a message names it; a cross the spec did not name, by its columns
        (``slices[i] (columns country, device)``)."""
        if self.index is None:
            return f"slice {self.name!r}"
        if len(self.columns) > 1 and self.name == cross_label(self.columns):
            return f"slices[{self.index}] (columns {', '.join(self.columns)})"
        return f"slices[{self.index}] ({self.name!r})"

    @property
    def is_filter(self) -> bool:
        return bool(self.conditions)

    @property
    def distinct_limit(self) -> int:
        """The most distinct values (slices) this entry may have in a job: :data:`DISTINCT_SLICES_FACTOR` times
        ``max_slices``, at least :data:`DISTINCT_SLICES_FLOOR`. A work unit past it stops early (each value holds
        states); the job's merged slices past it are refused too, so whether a run passes does not depend on how
        its rows were split into units."""
        return max(DISTINCT_SLICES_FACTOR * self.max_slices, DISTINCT_SLICES_FLOOR)

    def refuse_distinct(self, found: int, where: str) -> None:
        """:class:`DataError` where ``found`` distinct values (of a unit, or of the job: ``where``) pass
        :attr:`distinct_limit`."""
        if found > self.distinct_limit:
            raise DataError(
                f"{where}: slice {self.name!r} has {found} distinct values, more than {self.distinct_limit} "
                f"({DISTINCT_SLICES_FACTOR} x max_slices ({self.max_slices}), at least {DISTINCT_SLICES_FLOOR}); "
                "bucket the column (`boundaries:`) or raise `max_slices`."
            )

    def needed_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.columns, *(c.column for c in self.conditions)]))

    def with_boundaries(self, boundaries: Sequence[float]) -> SliceSpec:
        return SliceSpec(
            self.name,
            self.columns,
            tuple(boundaries),
            None,
            self.conditions,
            self.min_count,
            self.max_slices,
            self.index,
        )


def _kind(t: pa.DataType) -> str:
    """What a slice entry can do with a column of Arrow type ``t``: ``number``, ``boolean``, ``string``, ``nested``
    (a list, struct or map: refused) or ``other`` (dates, times, decimals: grouped as read)."""
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_boolean(t):
        return "boolean"
    if arrow_columns.is_text_type(t):
        return "string"
    if pa.types.is_nested(t) or pa.types.is_null(t):
        return "nested"
    return "other"


def _array_kind(values: np.ndarray) -> str:
    """:func:`_kind` of a column read into numpy."""
    if values.ndim != 1:
        return "nested"
    return {"i": "number", "u": "number", "f": "number", "b": "boolean", "U": "string"}.get(values.dtype.kind, "other")


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def _fits(value: Any, kind: str, listed: bool) -> bool:
    """Whether a filter value compares with a column of ``kind``: of that kind, a boolean beside numbers (0 and 1), or
    a number written as text beside numbers (:func:`_column_value` reads it as the number)."""
    got = _value_kind(value)
    if got == kind or {got, kind} == {"number", "boolean"}:
        return True
    if kind == "number" and got == "string":  # (a number written as text: as a `${var}` fills it in)
        try:
            return np.isfinite(float(value))
        except ValueError:
            return False
    return False


def _problem(spec: SliceSpec, column: str, kind: str) -> str | None:
    """Why ``spec`` cannot use a ``column`` of ``kind`` (see :func:`_kind`), or None."""
    if kind == "nested":
        return "expected a column of one value per row (numbers, strings or booleans), not a list, struct or null"
    if column in spec.columns and (spec.boundaries is not None or spec.quantiles is not None) and kind != "number":
        return f"`{'boundaries' if spec.boundaries is not None else 'quantiles'}` buckets need a numeric column"
    if kind == "other":
        return None
    for cond in spec.conditions:
        if cond.column != column:
            continue
        listed = cond.op in ("in", "not_in")
        values = cond.value if listed else (cond.value,)
        wrong = [v for v in values if not _fits(v, kind, listed)]
        if wrong:
            written = list(cond.value) if listed else cond.value
            return (
                f"filter `{cond.op}: {written!r}` compares it with {_value_kind(wrong[0])} {wrong[0]!r}; "
                f"expected {kind} values for a {kind} column"
            )
        if cond.op in ("lt", "le", "gt", "ge") and kind == "boolean":
            return f"filter `{cond.op}` orders values; expected a numeric or string column"
    return None


def check_columns(slices: Sequence[SliceSpec], files: Iterable[Any]) -> None:
    """Raise :class:`DataError` if a ``slices:`` entry's column is missing from a file (``FileInfo``: ``path`` and
    Arrow ``schema``), appears twice in it, has a type the entry cannot use, or has another kind of type (number,
    string, boolean) than in an earlier file."""
    from pipelines.reading import schema_type

    seen: dict[str, tuple[str, pa.DataType]] = {}
    for info in files:
        for spec in slices:
            for column in spec.needed_columns():
                where = f"{info.path}: column {column!r} ({spec.where})"
                dtype = schema_type(info, column, spec.where)
                problem = _problem(spec, column, _kind(dtype))
                if problem is not None:
                    raise DataError(f"{where} has type {dtype}; {problem}.")
                path, first = seen.setdefault(column, (info.path, dtype))
                if _kind(first) != _kind(dtype) or (_kind(dtype) == "other" and first != dtype):
                    raise DataError(
                        f"{where} has type {dtype}, but {path} has it as {first}; expected the same type of column "
                        "in every file, since slices are named by value."
                    )


def bucket_label(boundaries: Sequence[float], index: int) -> str:
    """``"[18, 65)"`` for bucket ``index`` of ``boundaries`` (first and last open-ended): each boundary in six
    significant digits, or as many more as it takes for boundaries that differ to read differently."""
    texts = _boundary_texts(tuple(float(b) for b in boundaries))
    return f"[{texts[index - 1] if index > 0 else '-inf'}, {texts[index] if index < len(boundaries) else 'inf'})"


@cache
def _boundary_texts(boundaries: tuple[float, ...]) -> tuple[str, ...]:
    for digits in range(6, 18):
        texts = tuple(_num(x, digits) for x in boundaries)
        if len(set(texts)) == len(set(boundaries)):
            return texts
    return tuple(repr(x) for x in boundaries)


def _num(x: float, digits: int) -> str:
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    return str(int(x)) if float(x) == int(x) else f"{x:.{digits}g}"


def float_text(value: np.floating) -> str:
    """A slice's name for a floating-point ``value``: a whole number as an integer column names it (``1000000``, in
    any float width), else six significant digits (``{:g}``) where they read back as the same number of its dtype,
    else the shortest text that does (``0.1234567`` and ``0.1234568`` are two slices, not one ``0.123457``). A
    float64 value that a float32 holds exactly is named as that float32 (``0.1``): a float32 column read beside
    float64 ones in a work unit is widened, and its values keep the names they have alone, whatever the units. Values
    of one name are one slice (float32 0.1 and float64 0.1, as in units that read them apart)."""
    if np.isfinite(value) and value == np.trunc(value) and abs(value) < 2**63:
        return str(int(value))
    if value.dtype == np.float64 and np.isfinite(value) and abs(value) <= np.finfo(np.float32).max:
        narrow = np.float32(value)
        value = narrow if narrow == value else value
    short = f"{value:g}"
    if value.dtype.type(short) == value:
        return short
    return str(value)


def _as_text(values: np.ndarray) -> np.ndarray:
    if values.dtype == object or values.dtype.kind in "USb":
        return values.astype(str)
    if values.dtype.kind == "f":
        return np.array([float_text(v) for v in values], dtype=object).astype(str)
    return values.astype(str)


def _numpy(values: np.ndarray | pa.Array) -> np.ndarray:
    return arrow_columns.to_numpy(values) if isinstance(values, pa.Array) else values


def assign(spec: SliceSpec, columns: Mapping[str, np.ndarray | pa.Array]) -> dict[SliceKey, np.ndarray]:
    """Row indices of each slice of ``spec`` present in ``columns`` (numpy arrays, or Arrow string arrays).

    Raises:
        DataError: a column of a type the entry cannot use (see :func:`check_columns`, which refuses it earlier).
    """
    for column in spec.needed_columns():
        values = columns[column]
        kind = _kind(values.type) if isinstance(values, pa.Array) else _array_kind(values)
        problem = _problem(spec, column, kind)
        if problem is not None:
            what = (
                values.type
                if isinstance(values, pa.Array)
                else f"list of {values.shape[1]} values"
                if values.ndim == 2
                else values.dtype
            )
            raise DataError(f"column {column!r} ({spec.where}) has type {what}; {problem}.")
    n = len(next(iter(columns.values())))
    if spec.is_filter:
        keep = np.ones(n, dtype=bool)
        for cond in spec.conditions:
            keep &= cond.mask(_numpy(columns[cond.column]))
        rows = np.flatnonzero(keep)
        return {(("filter", spec.name),): rows} if len(rows) else {}
    codes = np.zeros(n, dtype=np.int64)
    labels: list[np.ndarray] = []
    for column in spec.columns:
        values = columns[column]
        if isinstance(values, pa.Array) and spec.boundaries is None:
            # Strings: Arrow's hash-based dictionary encoding (no Python object per row).
            encoded = values.dictionary_encode()
            inverse = arrow_columns.to_numpy(encoded.indices).astype(np.int64)
            text = _as_text(arrow_columns.to_numpy(encoded.dictionary))
            size = len(text)
            codes = codes * size + inverse
            labels.append(text)
            continue
        values = _numpy(values)
        if spec.boundaries is not None:
            inverse = np.searchsorted(np.asarray(spec.boundaries, dtype=np.float64), values, side="right")
            size = len(spec.boundaries) + 2  # the buckets, then NaN: a slice of its own, as a column's NaN values
            if values.dtype.kind == "f":
                inverse = np.where(np.isnan(values), size - 1, inverse)
            text = np.array([*(bucket_label(spec.boundaries, i) for i in range(size - 1)), "nan"], dtype=object)
        elif values.dtype == object:
            # Strings: hash-based dictionary encoding (sorting strings is slow).
            encoded = pa.array(values).dictionary_encode()
            inverse = arrow_columns.to_numpy(encoded.indices).astype(np.int64)
            text = _as_text(arrow_columns.to_numpy(encoded.dictionary))
            size = len(text)
        else:
            uniq, inverse = np.unique(values, return_inverse=True)
            if uniq.dtype.kind == "f":  # -0.0 and 0.0 are one value: named 0 whichever a unit's rows held first
                uniq = uniq + uniq.dtype.type(0.0)
            # values of one name are one slice (a float32 0.1 widened beside a float64 0.1: both 0.1)
            text, named = np.unique(_as_text(uniq), return_inverse=True)
            inverse, size = named.reshape(-1)[inverse], len(text)
        codes = codes * size + inverse.reshape(-1)
        labels.append(text)
    if int(np.prod([len(t) for t in labels], dtype=np.float64)) < np.iinfo(np.int16).max:
        codes = codes.astype(np.int16)  # stable argsort of 16-bit integers is a radix sort
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) if n else np.zeros(0, int)
    ends = np.r_[starts[1:], n] if n else np.zeros(0, int)
    out: dict[SliceKey, np.ndarray] = {}
    sizes = [len(t) for t in labels]
    for start, end in zip(starts, ends, strict=True):
        code = int(sorted_codes[start])
        parts = []
        for size in reversed(sizes):
            parts.append(code % size)
            code //= size
        parts.reverse()
        key = tuple((column, str(labels[i][parts[i]])) for i, column in enumerate(spec.columns))
        out[key] = order[start:end]  # a stable sort keeps each slice's rows in order
    return out
