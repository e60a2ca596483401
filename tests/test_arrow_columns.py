"""Arrow columns built from and read into buffers (``pipelines.arrow_columns``) are the ones pyarrow's own
``pa.array``/``pa.table``/``to_numpy`` give: same type, values, nulls and Parquet bytes."""

from __future__ import annotations

import datetime as dt
import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import arrow_columns
from pipelines.errors import DataError
from pipelines.reading import to_numpy
from pipelines.storage import METRICS_SCHEMA

NOW = dt.datetime(2026, 12, 3, 20, 11, 30, 222123, tzinfo=dt.UTC)
COLUMNS = [
    ([1.0, None, math.nan, 2, np.float64(-3.5), 1e-300], pa.float64()),
    ([None, None], pa.float64()),
    ([], pa.float64()),
    ([1, None, -(2**40)], pa.int64()),
    ([7, -1], pa.int32()),
    (["a", None, "ü€", ""], pa.string()),
    ([None], pa.string()),
    ([NOW, NOW.astimezone(dt.timezone(dt.timedelta(hours=-5))), None], pa.timestamp("us", tz="UTC")),
    ([NOW], pa.timestamp("ms", tz="UTC")),
    ([[("country", "US"), ("device", "ios")], [], {"a": "ü"}], pa.map_(pa.string(), pa.string())),
]


def _same(got: pa.Array, want: pa.Array) -> None:
    got.validate(full=True)
    assert got.type == want.type
    assert got.null_count == want.null_count
    assert repr(got.to_pylist()) == repr(want.to_pylist())  # NaN == NaN as text


@pytest.mark.parametrize(("values", "arrow_type"), COLUMNS, ids=lambda v: str(v) if isinstance(v, pa.DataType) else "")
def test_column_is_pyarrows_array(values, arrow_type):
    _same(arrow_columns.column(values, arrow_type), pa.array(values, arrow_type))


def test_numeric_of_an_ndarray_is_pyarrows_array():
    values = np.array([3, 0, 9, 2**40])
    _same(arrow_columns.numeric(values, pa.int64()), pa.array(values))
    _same(arrow_columns.numeric(values[::2], pa.int64()), pa.array(values[::2]))  # not contiguous


def test_unsupported_type_is_refused():
    with pytest.raises(TypeError, match="bool"):
        arrow_columns.column([True], pa.bool_())


def test_metrics_table_writes_the_parquet_bytes_pyarrow_writes():
    rows = {
        "run_id": ["r1", "r1", "r1"],
        "timestamp": [NOW] * 3,
        "job": ["j"] * 3,
        "commit": [None, None, None],
        "point": ["overall", "country=US", "country=US"],
        "tags": [[], [("country", "US")], [("country", "US")]],
        "metric": ["accuracy", "accuracy", "log_loss"],
        "value": [0.5, math.nan, 0.25],
        "lower": [None, 0.1, None],
        "upper": [None, 0.9, None],
        "direction": ["higher", "higher", "lower"],
    }
    ours, theirs = io.BytesIO(), io.BytesIO()
    pq.write_table(arrow_columns.table(rows, METRICS_SCHEMA), ours)
    pq.write_table(pa.table(rows, schema=METRICS_SCHEMA), theirs)
    assert ours.getvalue() == theirs.getvalue()


def _arrays():
    rng = np.random.default_rng(2)
    words = np.array(["US", "DE", "ü€", "", "a longer value"], dtype=object)[rng.integers(0, 5, 300)]
    yield pa.array(rng.normal(size=300))
    yield pa.array(rng.integers(-9, 9, 300).astype(np.int8))
    yield pa.array(rng.integers(0, 9, 300).astype(np.uint16))
    yield pa.array(rng.random(300) < 0.3)
    yield pa.array(words)
    yield pa.array(words, pa.large_string())
    yield pa.array([f"row {i} ü€" for i in range(300)])  # many distinct values: decoded row by row
    yield pa.array([], pa.string())
    yield pa.array([1.5, None])  # nulls: pyarrow's own conversion
    yield pa.array([dt.date(2026, 1, 2)])  # another type: pyarrow's own conversion


@pytest.mark.parametrize("array", list(_arrays()), ids=lambda a: str(a.type))
@pytest.mark.parametrize("piece", [slice(None), slice(3, 250), slice(7, 7)])
def test_to_numpy_is_pyarrows(array, piece):
    part = array[piece]
    want = part.to_numpy(zero_copy_only=False)
    for given in (part, pa.chunked_array([part[:5], part[5:]], part.type)):
        got = arrow_columns.to_numpy(given)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_list_columns_read_through_their_offsets():
    rows = [[1.0, 2.0], [3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]]
    array = pa.array(rows)
    np.testing.assert_array_equal(to_numpy(array[2:], where="f"), np.array(rows[2:]))  # a slice: offsets start at 3
    assert to_numpy(array[:0], where="f").shape == (0, 0)
    with pytest.raises(DataError, match=r"f: list rows have different lengths \(1 to 2\)"):
        to_numpy(array[:3], where="f")


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.5, math.nan, -2.0]),
        np.array([1.5, 2.5], np.float32),
        np.arange(10, dtype=np.int16)[::3],  # not contiguous
        np.array([3, 2**40], np.uint64),
        np.array([True, False, True] * 5),
        np.array(["US", "ü€", ""], dtype=object),
        np.array(["US", "DE"]),
        np.array([1, "a"], dtype=object),  # mixed objects: pyarrow's own conversion (and its error)
        np.array(["2026-01-02"], dtype="datetime64[D]"),
    ],
    ids=str,
)
def test_from_numpy_is_pyarrows_array(values):
    try:
        want = pa.array(values)
    except pa.ArrowException as error:
        with pytest.raises(type(error)):
            arrow_columns.from_numpy(values)
        return
    _same(arrow_columns.from_numpy(values), want)


def test_from_numpy_of_a_big_endian_array_is_its_values():
    values = np.array([1.25, -3.0, 2**60])
    _same(arrow_columns.from_numpy(values.astype(">f8")), pa.array(values))  # pa.array refuses byte-swapped input
