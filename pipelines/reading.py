"""Parquet -> numpy column arrays, one row group at a time, only the needed columns.

Memory is bounded by the largest row group of the unit (or by ``execution.memory_budget_mb`` when a
row group is larger), not by the dataset.
List columns of fixed length (class probabilities, multilabel targets) become
``[n, C]`` arrays without a per-row Python loop; ``fixed_size_binary`` columns (raw
8-bit pixels) become ``uint8 [n, width]`` views of the read buffer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from evaluators.adapters import ColumnType, Ragged, adapter_for
from evaluators.adapters.base import (
    BINARY,
    BOOLEAN,
    FIXED_BINARY,
    FLOATING,
    INTEGER,
    LIST,
    OTHER,
    STRING,
    STRUCT,
    TEMPORAL,
)
from evaluators.task import Task
from pipelines import arrow_columns
from pipelines.errors import DataError, exception_chain, is_transient_error
from pipelines.fingerprint import file_version
from pipelines.planning import FileInfo, UnitPart

Columns = dict[str, np.ndarray | pa.Array | Ragged]
TEXT_PREFIX = "slice:"
"""Roles with this prefix (slice columns) of string type stay Arrow arrays: slicing encodes them
with Arrow's hash-based dictionary encoding instead of building a Python string per row."""


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)


_PLAIN_OF_VIEW = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}
"""Arrow's view layouts of strings and bytes (what Polars writes by default) are read as the plain columns of the
same values."""


def _is_text_dictionary(t: pa.DataType) -> bool:
    """Dictionary-encoded strings (what a pandas ``category`` column writes): read as the plain column of its
    values, wherever a string column is."""
    return pa.types.is_dictionary(t) and arrow_columns.is_text_type(t.value_type)


_KINDS = (
    (pa.types.is_integer, INTEGER),
    (pa.types.is_floating, FLOATING),
    (pa.types.is_boolean, BOOLEAN),
    (arrow_columns.is_text_type, STRING),
    (_is_binary, BINARY),
    (pa.types.is_fixed_size_binary, FIXED_BINARY),
    (pa.types.is_temporal, TEMPORAL),
)


def column_type(t: pa.DataType) -> ColumnType:
    """An Arrow type as the task adapters describe column types (element type of a list, field names of
    a struct); dictionary-encoded strings as strings."""
    if _is_text_dictionary(t):
        return column_type(t.value_type)
    if _is_list(t):
        width = t.list_size if pa.types.is_fixed_size_list(t) else None
        return ColumnType(LIST, value=column_type(t.value_type), width=width)
    if pa.types.is_struct(t):
        return ColumnType(STRUCT, fields=tuple(t.field(i).name for i in range(t.num_fields)))
    return ColumnType(next((kind for test, kind in _KINDS if test(t)), OTHER))


def expected_type(role: str, task: Task) -> tuple[str, Any]:
    """``(description, predicate)`` of the Arrow type a role's column must have (the task adapter's
    column kind of the role)."""
    kind = adapter_for(task).column_kind(role)
    return kind.description, lambda t: kind.accepts(column_type(t))


def schema_type(info: FileInfo, column: str, key: str) -> pa.DataType:
    """The Arrow type of ``column`` in ``info``'s schema; :class:`DataError` naming the file, the column and the spec
    ``key`` that reads it where the file lacks it (with the closest name it has) or has it twice."""
    names = info.schema.names
    if column not in names:
        from difflib import get_close_matches

        near = get_close_matches(column, names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise DataError(
            f"{info.path}: column {column!r} ({key}) is missing{hint}; the file has columns: {', '.join(names)}."
        )
    if names.count(column) > 1:
        raise DataError(
            f"{info.path}: column {column!r} ({key}) appears {names.count(column)} times in the file; expected one "
            "column of each name."
        )
    return info.schema.field(column).type


def check_schema(info: FileInfo, roles: Mapping[str, str], task: Task) -> None:
    """Raise :class:`DataError` if a role's column is missing from ``info`` or has the wrong type."""
    for role, column in roles.items():
        dtype = schema_type(info, column, f"data.columns.{role}")
        description, ok = expected_type(role, task)
        if not ok(dtype):
            raise DataError(
                f"{info.path}: column {column!r} (data.columns.{role}) has type {dtype}; expected {description} "
                f"for {adapter_for(task).task_words(role)}."
            )


LABELLED_ROLES = ("sensitive",)
"""Roles whose values are labels named by their text (group labels): their files must agree on integers or
strings, or ``1`` in one file and ``"1"`` in another would be counted as one group."""


def check_label_types(files: Sequence[FileInfo], roles: Mapping[str, str]) -> None:
    """Raise :class:`DataError` if a :data:`LABELLED_ROLES` column holds integers in one file and strings in
    another (each file's type already checked by :func:`check_schema`)."""
    for role in LABELLED_ROLES:
        column = roles.get(role)
        if column is None:
            continue
        first: tuple[str, pa.DataType] | None = None
        for info in files:
            dtype = info.schema.field(column).type
            if first is None:
                first = (info.path, dtype)
            elif pa.types.is_integer(dtype) != pa.types.is_integer(first[1]):
                raise DataError(
                    f"{info.path}: column {column!r} (data.columns.{role}) has type {dtype}, but {first[0]} has it as "
                    f"{first[1]}; expected integers in every file or strings in every file, since groups are named by "
                    "their labels' text (1 and '1' would be one group)."
                )


def to_numpy(array: pa.ChunkedArray | pa.Array, *, where: str, varying: bool = False) -> np.ndarray:
    """One Arrow column -> numpy; fixed-length lists -> ``[n, width]``; with ``varying``, lists whose rows differ in
    length -> an object array of each row's ``[length]`` values (views of one array).

    Raises:
        DataError: nulls, or (without ``varying``) list rows of different lengths.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if array.null_count:
        raise DataError(f"{where}: {_null_rows(array.null_count)}; expected a value in every row.")
    if pa.types.is_fixed_size_binary(array.type):
        return raw_bytes(array)
    if _is_list(array.type):
        n = len(array)
        if pa.types.is_fixed_size_list(array.type):
            width = array.type.list_size
        else:
            offsets = arrow_columns.numbers(array.offsets)
            lengths = np.diff(offsets)
            width = int(lengths.max()) if n else 0
            if n and lengths.min() != width and varying:
                return _rows_of(_list_values(array, where), offsets - offsets[0])
            if n and lengths.min() != width:
                raise DataError(
                    f"{where}: list rows have different lengths ({lengths.min()} to {width}); expected the same in "
                    "every row."
                )
        return _list_values(array, where).reshape(n, width)
    return arrow_columns.to_numpy(array)


def _list_values(array: pa.Array, where: str) -> np.ndarray:
    """The values of a list column's rows, one after another (nulls refused)."""
    values = array.flatten()
    if values.null_count:
        raise DataError(f"{where}: {values.null_count} list elements are null; expected numbers.")
    return arrow_columns.to_numpy(values)


def _rows_of(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """An object array of ``values[offsets[i]:offsets[i + 1]]`` for each row (views)."""
    return _object_array(np.split(values, offsets[1:-1]))


def per_row(values: np.ndarray) -> np.ndarray:
    """``values`` ``[n, ...]`` as an object array of its ``n`` rows (views); an object array as it is."""
    return values if values.dtype == object else _object_array(list(values))


def _object_array(rows: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(rows), object)
    for i, row in enumerate(rows):  # (one by one: rows of one length would be read as one 2-D array)
        out[i] = row
    return out


def raw_bytes(array: pa.FixedSizeBinaryArray) -> np.ndarray:
    """A ``fixed_size_binary(w)`` column (raw 8-bit values, e.g. the pixels of a mask) -> uint8 ``[n, w]``: a
    view of Arrow's buffer, no copy. Parquet stores such a column as plain bytes, several times faster to
    read than a list of small integers, whose repetition levels are decoded value by value."""
    width = array.type.byte_width
    data = np.frombuffer(array.buffers()[1], np.uint8, count=(array.offset + len(array)) * width)
    return data[array.offset * width :].reshape(len(array), width)


def ragged(array: pa.ChunkedArray, *, where: str) -> Ragged:
    """A list column of varying lengths -> its per-row Python lists and its type, for the task adapter to
    decode (:meth:`~evaluators.adapters.base.TaskAdapter.decode`)."""
    if array.null_count:
        raise DataError(f"{where}: {_null_rows(array.null_count)}; expected a (possibly empty) list in every row.")
    nulls = _null_entries(array)
    if nulls:
        raise DataError(
            f"{where}: {nulls} entries of the rows' lists are null; expected a value in every entry (a box, score, "
            "label or mask: a null is a missing value, refused with on_bad_rows: drop too)."
        )
    return Ragged(array.to_pylist(), column_type(array.type))


def _null_entries(array: pa.ChunkedArray) -> int:
    """The null entries of a list column's rows, at every level of nesting (a null box, or a null in a box)."""
    count = 0
    chunks = list(array.chunks)
    while chunks and _is_list(chunks[0].type):
        chunks = [chunk.flatten() for chunk in chunks]
        count += sum(chunk.null_count for chunk in chunks)
    return count


RAGGED_PREFIX = "ragged:"
"""Roles with this prefix are per-row lists of varying length (detection boxes, instance masks): see
:func:`ragged`."""
VARYING_PREFIX = "varying:"
"""Roles with this prefix are lists of numbers whose rows may differ in length (the pixels of images of several
sizes): ``[n, width]`` where every row has the same length, else an object array of each row's values (see
:func:`to_numpy`)."""


def role_of(key: str) -> str:
    """The role a read column's key names (without :data:`RAGGED_PREFIX` or :data:`VARYING_PREFIX`)."""
    return key.removeprefix(RAGGED_PREFIX).removeprefix(VARYING_PREFIX)


def _named(role: str, column: str) -> str:
    """A read column as an error names it: the column and the YAML key that asked for it."""
    if role.startswith(TEXT_PREFIX):
        return f"column {column!r} (slices)"
    return f"column {column!r} (data.columns.{role_of(role)})"


def _column(role: str, array: pa.ChunkedArray, *, where: str) -> np.ndarray | pa.Array | Ragged:
    if role.startswith(RAGGED_PREFIX):
        return ragged(array, where=where)
    if _is_text_dictionary(array.type):  # decoded: the values, nulls and type of the same column written plain
        array = array.cast(array.type.value_type)
    if array.type in _PLAIN_OF_VIEW:
        array = array.cast(_PLAIN_OF_VIEW[array.type])
    if role.startswith(TEXT_PREFIX) and arrow_columns.is_text_type(array.type):
        combined = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
        if combined.null_count:
            raise DataError(f"{where}: {_null_rows(combined.null_count)}; expected a value in every row.")
        return combined
    return to_numpy(array, where=where, varying=role.startswith(VARYING_PREFIX))


STREAM_BUFFER_BYTES = 1 << 20
"""Read-ahead of a row group read in slices (instead of its whole column chunks at once)."""
SLICES_PER_BUDGET = 4
"""A slice of an oversized row group decodes to a quarter of the budget: room for the slice being
decoded, the one being folded in and Arrow's page buffers."""


def decoded_bytes(meta: pq.FileMetaData, group: int, names: set[str]) -> int:
    """Decoded (uncompressed) bytes of row group ``group``'s columns named ``names`` (top-level names),
    from the footer."""
    row_group = meta.row_group(group)
    return sum(
        row_group.column(i).total_uncompressed_size
        for i in range(row_group.num_columns)
        if row_group.column(i).path_in_schema.split(".", 1)[0] in names
    )


@contextlib.contextmanager
def _source(part: UnitPart, storage_options: dict[str, Any]) -> Iterator[Any]:
    """A readable file for ``part``: Arrow's own for a local path (its reads and read-ahead threads never call
    back into Python, so none can be left waiting for the interpreter), the fsspec file otherwise."""
    fs, path = url_to_fs(part.path, **storage_options)
    if type(fs) is LocalFileSystem:
        with pa.OSFile(path, "rb") as native:
            _check_unchanged(fs.info(path), part)
            yield native
    else:
        fs.invalidate_cache(path)  # (the file's details asked of the store as it opens, not of a cached listing)
        with fs.open(path, "rb") as handle:
            _check_unchanged(getattr(handle, "details", None) or fs.info(path), part)
            yield handle


def _check_unchanged(info: Mapping[str, Any], part: UnitPart) -> None:
    """Refuse (:class:`DataError`) a file whose size or version (:func:`~pipelines.fingerprint.file_version` of its
    fsspec ``info``: an object store's ETag or generation, a local file's times and inode) is not the one the run was
    planned with: its rows would be checkpointed, and committed, under the version the plan recorded."""
    if not part.version:  # (a store that gives no version)
        return
    size, version = int(info.get("size") or 0), file_version(info)
    if (size, version) != (part.size, part.version):
        raise DataError(
            f"{part.path}: the file changed after the run was planned ({part.size} bytes, version {part.version!r}; "
            f"now {size} bytes, version {version!r}), so its rows are not the ones the run records; run the job again "
            "once its inputs stop changing."
        )


_STORAGE_CLIENT_MODULES = ("aiohttp", "botocore", "aiobotocore", "urllib3", "requests", "google", "azure", "ssl")


def _unreadable(exc: OSError) -> str | None:
    """What says the file itself cannot be read (removed since it was listed, reading refused, a page damaged behind
    a valid footer), or None where the storage failed to answer (a refused connection behind an HTTP
    ``FileNotFoundError``, a throttled request behind s3fs's ``OSError``): those are tried again and never blamed on
    the file."""
    chain = exception_chain(exc)
    if any(is_transient_error(e) or isinstance(e, ConnectionError | TimeoutError) for e in chain):
        return None
    if isinstance(exc, FileNotFoundError):
        return (
            "the file is gone: it was listed when the job started and removed or moved since; run the job again "
            "once its inputs stay put."
        )
    if isinstance(exc, PermissionError):
        return f"reading it was refused ({exc}); check the credentials (data.storage_options)."
    if exc.errno is None and len(chain) == 1 and not type(exc).__module__.startswith(_STORAGE_CLIENT_MODULES):
        return f"cannot read it ({type(exc).__name__}: {exc}); the file looks damaged past its footer: write it again."
    return None


def read_part(
    part: UnitPart, roles: Mapping[str, str], storage_options: dict[str, Any], memory_budget: int | None = None
) -> Iterator[tuple[int, int, Columns]]:
    """Yield ``(row group, first row's position in the file, role columns)`` for each row group in ``part``.

    A row group whose needed columns decode to more than ``memory_budget`` bytes (from the footer) is
    read in slices of as many rows as fit, through a small read-ahead buffer, so memory stays near the
    budget whatever the writer chose; one whose single rows exceed the budget is refused.

    The file, its Parquet readers and any batch iterator are closed when the generator ends, by an
    error in it or in its consumer, or by ``close()`` (use it as ``with contextlib.closing(read_part(...))``
    when the loop may stop early): nothing is left to the garbage collector.
    """
    names = list(dict.fromkeys(roles.values()))
    readers: list[pq.ParquetFile] = []
    try:
        with _source(part, storage_options) as handle:
            try:
                parquet = pq.ParquetFile(handle)
                readers.append(parquet)
                meta = parquet.metadata
                sizes = {g: decoded_bytes(meta, g, set(names)) for g in range(part.start, part.stop)}
                oversize = memory_budget is not None and max(sizes.values(), default=0) > memory_budget
                if oversize:
                    parquet = pq.ParquetFile(handle, metadata=meta, buffer_size=STREAM_BUFFER_BYTES, pre_buffer=False)
                    readers.append(parquet)
                first_row = sum(meta.row_group(g).num_rows for g in range(part.start))
                for group in range(part.start, part.stop):
                    where_group = f"{part.path} row group {group}"
                    rows = meta.row_group(group).num_rows
                    if oversize and sizes[group] > memory_budget:
                        per_row = sizes[group] / max(rows, 1)
                        if per_row > memory_budget:
                            raise DataError(
                                f"{where_group}: one row of columns {', '.join(names)} decodes to {per_row / 2**20:.1f} "
                                f"MiB, more than execution.memory_budget_mb ({memory_budget / 2**20:g} MiB); raise the "
                                "budget."
                            )
                        batches = parquet.iter_batches(
                            batch_size=max(1, int(memory_budget // (SLICES_PER_BUDGET * per_row))),
                            row_groups=[group],
                            columns=names,
                            use_threads=False,
                        )
                    else:
                        batches = (t for t in [parquet.read_row_group(group, columns=names)])
                    with contextlib.closing(batches):
                        for batch in batches:
                            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
                            yield (
                                group,
                                first_row,
                                {
                                    role: _column(role, table.column(col), where=f"{where_group}: {_named(role, col)}")
                                    for role, col in roles.items()
                                },
                            )
                            first_row += table.num_rows
            finally:  # the readers first (a reader may hold read-ahead on the file), then the file
                for reader in readers:
                    reader.close(force=True)
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise DataError(f"{part.path}: cannot read row groups {part.start}-{part.stop - 1}: {exc}.") from None
    except OSError as exc:
        problem = _unreadable(exc)
        if problem is None:  # the storage failed to answer: tried again, then a storage failure (exit 1)
            raise
        raise DataError(f"{part.path} (row groups {part.start}-{part.stop - 1}): {problem}") from None


def _null_rows(count: int) -> str:
    """``"1 row is null"``, ``"2 rows are null"``."""
    return "1 row is null" if count == 1 else f"{count} rows are null"
