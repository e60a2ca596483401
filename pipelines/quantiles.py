"""``quantiles:`` slice entries: bucket boundaries found in a first pass over one column.

Before the main pass, the driver reads just the bucketed column of every input file (a columnar
read of one field) and takes exact quantiles of all its non-NaN values, so the boundaries, and
every result after them, do not depend on sharding or runner. Repeated quantiles (a column with
few distinct values) collapse into one boundary. Memory: 8 bytes per row of the column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from pipelines import arrow_columns
from pipelines.errors import DataError
from pipelines.planning import FileInfo
from pipelines.spec import JobSpec


def quantile_boundaries(values: np.ndarray, buckets: int) -> tuple[float, ...]:
    """Distinct interior quantiles ``q = 1/buckets, ..., (buckets-1)/buckets`` (linear interpolation) of the non-NaN
    ``values``; a quantile that falls among infinite values (``inf``, or NaN from ``inf - inf``) is no boundary: the
    first and last buckets are open-ended already, and hold those rows."""
    numbers = values[~np.isnan(values)]
    if numbers.size == 0:
        return ()
    q = np.arange(1, buckets) / buckets
    with np.errstate(invalid="ignore"):
        cuts = np.quantile(numbers, q)
    if not np.isfinite(cuts).all():  # (a quantile on a value itself is that value beside an inf too, not 0 * inf)
        position = q * (numbers.size - 1)
        whole = position == np.floor(position)
        cuts[whole] = np.sort(numbers)[position[whole].astype(np.int64)]
    return tuple(float(x) for x in np.unique(cuts[np.isfinite(cuts)]))


def _read_column(info: FileInfo, column: str, storage_options: dict) -> np.ndarray:
    fs, path = url_to_fs(info.path, **storage_options)
    with fs.open(path, "rb") as handle:
        array = pq.ParquetFile(handle).read(columns=[column]).column(column)
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise DataError(f"{info.path}: column {column!r} has type {array.type}; `quantiles:` buckets need numbers.")
    if array.null_count:
        raise DataError(
            f"{info.path}: column {column!r} has {array.null_count} null rows; expected a value in every row."
        )
    return arrow_columns.to_numpy(array).astype(np.float64, copy=False)


def resolve_quantiles(spec: JobSpec, files: Sequence[FileInfo]) -> tuple[JobSpec, dict[str, list[float]]]:
    """``spec`` with every ``quantiles:`` entry turned into ``boundaries:``, and the boundaries by entry name."""
    found: dict[str, list[float]] = {}
    slices = []
    for entry in spec.slices:
        if entry.quantiles is None:
            slices.append(entry)
            continue
        (column,) = entry.columns
        values = np.concatenate([_read_column(f, column, spec.data.storage_options) for f in files] or [np.zeros(0)])
        boundaries = quantile_boundaries(values, entry.quantiles)
        found[entry.name] = list(boundaries)
        slices.append(entry.with_boundaries(boundaries))
    if not found:
        return spec, found
    return dataclasses.replace(spec, slices=tuple(slices)), found
