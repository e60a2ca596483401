"""From paths in a job spec to work units: fsspec listing, Parquet footers, packing.

A work unit is a list of row-group ranges of one or more files, about
``unit_rows`` rows in all: a large file splits at row-group boundaries into
several units, small files batch into one. Units are numbered in a
deterministic order (sorted paths, then row groups), which the reducer uses to
merge results in the same order whichever worker finished first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from pipelines.errors import DataError, SpecError, is_storage_access_error, opening_problem
from pipelines.fingerprint import file_version, is_local

_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class FileInfo:
    """One Parquet file as listed and as its footer describes it."""

    path: str  # full URL with protocol, e.g. ``s3://bucket/a.parquet`` or a local path
    size: int
    version: str  # etag, or local mtime + inode + ctime (:func:`pipelines.fingerprint.file_version`)
    row_groups: tuple[int, ...]  # rows per row group
    schema: pa.Schema

    @property
    def rows(self) -> int:
        return sum(self.row_groups)


@dataclass(frozen=True)
class UnitPart:
    """Row groups ``[start, stop)`` of one file."""

    path: str
    start: int
    stop: int
    rows: int
    size: int
    version: str


@dataclass(frozen=True)
class WorkUnit:
    """What one worker call reads: parts of files, in order."""

    index: int
    parts: tuple[UnitPart, ...]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def key(self) -> str:
        """Content key: changes when any part's file, version or row range does."""
        text = "|".join(f"{p.path}:{p.size}:{p.version}:{p.start}-{p.stop}" for p in self.parts)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def describe(self) -> str:
        """``a.parquet row groups 0-3, b.parquet``: for messages."""
        return ", ".join(
            f"{p.path} (row groups {p.start}-{p.stop - 1})" if p.stop > p.start else p.path for p in self.parts
        )


@dataclass(frozen=True)
class Plan:
    files: tuple[FileInfo, ...]
    units: tuple[WorkUnit, ...]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def files_with_rows(self) -> tuple[FileInfo, ...]:
        """The files that hold rows: a 0-row file is neutral, whatever types its footer gives its columns (pandas
        writes an empty column of strings as ``null``)."""
        return tuple(f for f in self.files if f.rows)


def _unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return fs.unstrip_protocol(path) if not is_local(fs) else path


PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
"""A file in a listed directory is read when its name ends so (any case), or when it begins with Parquet's magic
bytes (a Spark or Hadoop ``part-00000`` without a suffix)."""
_PARQUET_MAGIC = b"PAR1"


def _hidden(relative: str) -> bool:
    """Whether a path below a listed directory is, or lies in, a hidden or ``_``-prefixed file or directory: what
    other tools write beside data (Spark's ``_temporary/`` and ``_SUCCESS``, ``.crc`` checksums,
    ``.ipynb_checkpoints/``), left out as ``pyarrow.dataset`` leaves them out."""
    return any(part.startswith((".", "_")) for part in relative.split("/"))


def _is_parquet(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    if path.lower().endswith(PARQUET_SUFFIXES):
        return True
    try:
        return bytes(fs.cat_file(path, start=0, end=len(_PARQUET_MAGIC))) == _PARQUET_MAGIC
    except FileNotFoundError:  # (removed since it was listed)
        return False


def _directory_files(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, dict]:
    """The Parquet files under the directory ``root`` (:data:`PARQUET_SUFFIXES`), but for :func:`_hidden` ones."""
    base = root.rstrip("/")
    return {
        path: info
        for path, info in fs.find(root, detail=True).items()
        if info.get("type") != "directory" and not _hidden(path[len(base) :].lstrip("/")) and _is_parquet(fs, path)
    }


def _glob_files(fs: fsspec.AbstractFileSystem, pattern: str) -> dict[str, dict]:
    """The files ``pattern`` matches, and the Parquet files under the directories it matches (as a directory path
    is read); a match below the pattern's fixed part that is :func:`_hidden` is left out unless the pattern's own
    wildcard part names such a file (``data/_tmp*.parquet``): fsspec's ``*`` also matches a leading dot."""
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if any(c in part for c in _GLOB_CHARS))
    base = "/".join(parts[:fixed])
    named = any(part.startswith((".", "_")) for part in parts[fixed:])
    entries: dict[str, dict] = {}
    for path, info in fs.glob(pattern, detail=True).items():
        if not named and _hidden(path[len(base) :].lstrip("/")):
            continue
        entries.update(_directory_files(fs, path) if info.get("type") == "directory" else {path: info})
    return entries


def list_files(
    paths: Sequence[str], storage_options: dict[str, Any]
) -> list[tuple[fsspec.AbstractFileSystem, str, dict]]:
    """Expand globs and directories to Parquet files: ``[(fs, path, info)]`` sorted by path.

    Raises:
        DataError: a path that matches nothing.
    """
    found: dict[str, tuple[fsspec.AbstractFileSystem, str, dict]] = {}
    for pattern in paths:
        try:
            fs, root = url_to_fs(pattern, **storage_options)
        except (ImportError, ValueError) as exc:
            raise DataError(f"data.path {pattern!r}: cannot open this location: {opening_problem(exc)}.") from None
        if is_local(fs):  # (one spelling of each file: dir/./a.parquet and dir/../dir/a.parquet are dir/a.parquet)
            root = os.path.normpath(root)
        try:
            if any(c in root for c in _GLOB_CHARS) and not fs.exists(root):  # (a real x[1].parquet is no pattern)
                entries = _glob_files(fs, root)
            elif fs.isdir(root):
                entries = _directory_files(fs, root)
            elif fs.exists(root):
                entries = {root: fs.info(root)}
            else:
                entries = {}
        except TypeError as exc:  # the filesystem's client made on first use, with options it does not take
            if not storage_options or "keyword argument" not in str(exc):
                raise
            raise SpecError(
                f"data.storage_options: the filesystem of {pattern!r} does not take these options ({exc}); its "
                f"options are those of {type(fs).__module__.split('.')[0]}'s {type(fs).__name__}."
            ) from None
        except Exception as exc:
            if not is_storage_access_error(exc):
                raise
            raise DataError(
                f"data.path {pattern!r}: listing failed: {type(exc).__name__}: {exc}. Check the credentials "
                "(environment, profile or data.storage_options) and that the location exists."
            ) from None
        if not entries:
            raise DataError(f"data.path {pattern!r}: no Parquet files match this path.")
        for path, info in entries.items():
            found[_unstrip(fs, path)] = (fs, path, info)
    return [found[k] for k in sorted(found)]


def read_footer(fs: fsspec.AbstractFileSystem, path: str, info: dict) -> FileInfo:
    """Footer of one file. Raises :class:`DataError` for empty, truncated or non-Parquet files."""
    url = _unstrip(fs, path)
    size = int(info.get("size") or 0)
    if info.get("islink") and is_local(fs) and not os.path.exists(path):
        raise DataError(
            f"{url}: a symbolic link to {os.readlink(path)}, which does not exist; expected a Parquet file."
        )
    if size == 0:
        raise DataError(f"{url}: the file is empty (0 bytes); expected a Parquet file.")
    try:
        with fs.open(path, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
            schema = meta.schema.to_arrow_schema()
            row_groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{url}: not a readable Parquet file (truncated or corrupt?): {str(exc).rstrip('.')}."
        ) from None
    return FileInfo(url, size, file_version(info), row_groups, schema)


def read_footers(paths: Sequence[str], storage_options: dict[str, Any], threads: int = 8) -> tuple[FileInfo, ...]:
    """List the files and read their footers (in parallel threads: object stores are latency-bound)."""
    listed = list_files(paths, storage_options)
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(listed)))) as pool:
        return tuple(pool.map(lambda item: read_footer(*item), listed))


def pack_units(files: Sequence[FileInfo], unit_rows: int, whole_files: bool = False) -> tuple[WorkUnit, ...]:
    """Pack row groups into units of about ``unit_rows`` rows (never splitting a row group; with
    ``whole_files``, never splitting a file: a ranking job ranks each query's rows, which one file holds)."""
    if whole_files:
        groups = {f.path: len(f.row_groups) for f in files}
        units = pack_units([dataclasses.replace(f, row_groups=(f.rows,)) for f in files], unit_rows)
        return tuple(
            dataclasses.replace(u, parts=tuple(dataclasses.replace(p, stop=groups[p.path]) for p in u.parts))
            for u in units
        )
    units: list[WorkUnit] = []
    parts: list[UnitPart] = []
    rows = 0

    def flush() -> None:
        nonlocal parts, rows
        if parts:
            units.append(WorkUnit(len(units), tuple(parts)))
        parts, rows = [], 0

    for f in files:
        start = 0
        part_rows = 0
        for i, n in enumerate(f.row_groups):
            if rows + part_rows > 0 and rows + part_rows + n > unit_rows:
                if part_rows or i > start:
                    parts.append(UnitPart(f.path, start, i, part_rows, f.size, f.version))
                flush()
                start, part_rows = i, 0
            part_rows += n
        if len(f.row_groups) > start or not f.row_groups:
            parts.append(UnitPart(f.path, start, len(f.row_groups), part_rows, f.size, f.version))
            rows += part_rows
        if rows >= unit_rows:
            flush()
    flush()
    return tuple(units)


MIN_UNIT_ROWS = 256
"""Units are not made smaller than this to spread a job over its workers (each unit has a fixed cost)."""
BACKBONE_UNITS_PER_WORKER = 4
"""A backbone costs far more per row than a statistic update: its jobs get a few units per worker, so that the
workers finish together and progress moves."""


def sized_unit_rows(rows: int, unit_rows: int, workers: int, units_per_worker: int = 1) -> int:
    """``unit_rows``, lowered so that ``workers`` workers get ``units_per_worker`` units each when there are
    enough rows (never below ``MIN_UNIT_ROWS``, nor above ``unit_rows``).

    >>> sized_unit_rows(4_000, 1_000_000, 2)  # two actors, 4,000 rows: a unit each
    2000
    >>> sized_unit_rows(4_000, 1_000_000, 2, BACKBONE_UNITS_PER_WORKER)
    500
    >>> sized_unit_rows(10_000_000, 1_000_000, 2)  # enough units already
    1000000
    """
    wanted = max(1, workers * units_per_worker)
    return max(min(unit_rows, MIN_UNIT_ROWS), min(unit_rows, -(-rows // wanted)))


def plan(
    paths: Sequence[str],
    storage_options: dict[str, Any],
    unit_rows: int,
    workers: int = 1,
    units_per_worker: int = 1,
    whole_files: bool = False,
) -> Plan:
    """List and read the footers of ``paths``; pack units of at most ``unit_rows`` rows, smaller when needed to
    give each of ``workers`` workers ``units_per_worker`` units (see :func:`sized_unit_rows`); ``whole_files``:
    a file is never split between units."""
    files = read_footers(paths, storage_options)
    rows = sum(f.rows for f in files)
    return Plan(files, pack_units(files, sized_unit_rows(rows, unit_rows, workers, units_per_worker), whole_files))
