"""Writing runs to any fsspec location, and the commit protocol that makes them visible.

Layout of one run::

    {output}/{job}/{run id}/
        run.json           the Run record (points, metric defs, metadata)
        metrics.parquet    one row per point x metric (long format)
        statistics.npz     the merged sufficient statistics, per slice
        statistics.json    what each array in statistics.npz is
        _COMMITTED         manifest: the files above with their sizes; written last

A reader takes a run only when its ``_COMMITTED`` manifest exists and lists
files of the sizes found. The manifest is created exclusively (it never
overwrites one), so a run directory is committed at most once. Run ids begin
with the UTC time, so they sort by time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import secrets
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from evaluators.statistic import State, Statistic
from pipelines import arrow_columns
from pipelines.errors import DamagedRunFile, UserError, opening_problem
from pipelines.exclusive import create_exclusive
from pipelines.records import Run, evalpipe_run_dict, listed_files_problem, manifest_problem, utc
from pipelines.stacked_arrays import npz_bytes, stack_arrays, unstack_arrays
from pipelines.storage_budget import CLEANUP_S, within
from pipelines.unit_result import SliceKey

COMMIT_MARKER = "_COMMITTED"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.parquet"
STATISTICS_FILE = "statistics.npz"
STATISTICS_INDEX = "statistics.json"


def new_run_id(now: dt.datetime) -> str:
    """``20261123T141233123Z-5f2a9c``: UTC time to the millisecond, then random hex against collisions."""
    now = utc(now)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


RUN_ID = re.compile(r"\d{8}T\d{9}Z-[0-9a-f]{6}")
"""What :func:`new_run_id` makes: the names of run directories (anything else under a job's directory is not a run)."""


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


@dataclass(frozen=True)
class RunLocation:
    """Where one run lives."""

    fs: fsspec.AbstractFileSystem
    path: str  # path within ``fs``
    uri: str  # as the user writes it

    def file(self, name: str) -> str:
        return join(self.path, name)


def run_location(output_uri: str, job: str, run_id: str, storage_options: Mapping[str, Any]) -> RunLocation:
    try:
        fs, root = url_to_fs(output_uri, **storage_options)
    except (ImportError, ValueError) as exc:
        raise UserError(f"output.uri {output_uri!r}: cannot open this location: {opening_problem(exc)}.") from None
    return RunLocation(fs, join(root, job, run_id), join(output_uri, job, run_id))


# --- encoding ----------------------------------------------------------------------


def flatten_state(state: State, prefix: str, out: dict[str, np.ndarray]) -> None:
    """Put a state's leaves (nested tuples / dicts of arrays) into ``out`` as ``{prefix}/{i or key}...``."""
    if isinstance(state, tuple | list):
        for i, leaf in enumerate(state):
            flatten_state(leaf, f"{prefix}/{i}", out)
    elif isinstance(state, dict):
        for k in sorted(state):
            flatten_state(state[k], f"{prefix}/{k}", out)
    else:
        out[prefix] = np.asarray(state)


def stored_state(statistic: Statistic, prefix: str, arrays: Mapping[str, np.ndarray]) -> State:
    """The state of ``statistic`` stored under ``prefix``: :func:`unflatten_state` of its zero state, with the leaves
    it holds only at times (:meth:`~evaluators.statistic.Statistic.optional_leaves`) where they were stored."""
    return unflatten_state(statistic.zero(), prefix, arrays, statistic.optional_leaves())


def unflatten_state(
    template: State, prefix: str, arrays: Mapping[str, np.ndarray], optional: tuple[str, ...] = ()
) -> State:
    """Inverse of :func:`flatten_state`, shaped like ``template`` (a dict also with those of its ``optional`` leaves
    that were stored). A tuple stored before its statistic's state gained trailing array leaves (the regression
    moments' row count) comes back without them: the statistic reads it."""
    if isinstance(template, tuple | list):
        leaves = []
        for i, leaf in enumerate(template):
            name = f"{prefix}/{i}"
            if not isinstance(leaf, tuple | list | dict) and name not in arrays:
                break
            leaves.append(unflatten_state(leaf, name, arrays))
        return tuple(leaves)
    if isinstance(template, dict):
        if all(isinstance(v, tuple | list | dict) or f"{prefix}/{k}" in arrays for k, v in template.items()):
            state = {k: unflatten_state(template[k], f"{prefix}/{k}", arrays) for k in template}
            return {**state, **{k: arrays[f"{prefix}/{k}"] for k in optional if f"{prefix}/{k}" in arrays}}
        # a state stored in another layout of the same statistic (an older run's dense ranking histogram):
        # its own leaves, which the statistic's finalize still reads
        found = sorted({name[len(prefix) + 1 :].split("/")[0] for name in arrays if name.startswith(f"{prefix}/")})
        return {k: arrays[f"{prefix}/{k}"] for k in found}
    return arrays[prefix]


def encode_statistics(
    statistics: Sequence[Statistic],
    merged: Mapping[SliceKey, tuple[State, ...]],
    bucket_states: Mapping[SliceKey, tuple[State, ...]] | None = None,
    slice_rows: Mapping[SliceKey, int] | None = None,
) -> tuple[bytes, bytes]:
    """``(npz bytes, index json bytes)`` for the merged states of every slice.

    ``bucket_states`` (slice -> the bootstrap-bucket states of the replicate statistics, each leaf with a leading
    ``[buckets]`` axis) are stored as ``b{s}/t{i}`` arrays (like arrays of all slices grouped:
    :mod:`pipelines.stacked_arrays`) and ``slice_rows`` (rows per slice) in the index, so
    that stored runs can be merged later with their intervals (:mod:`pipelines.merge`).
    """
    arrays: dict[str, np.ndarray] = {}
    slices = sorted(merged, key=lambda k: (len(k), k))
    for s, key in enumerate(slices):
        for i, state in enumerate(merged[key]):
            flatten_state(state, f"s{s}/t{i}", arrays)
    bucketed = sorted(bucket_states or {}, key=lambda k: (len(k), k))
    bucket_arrays: dict[str, np.ndarray] = {}
    for s, key in enumerate(bucketed):
        for i, state in enumerate((bucket_states or {})[key]):
            flatten_state(state, f"b{s}/t{i}", bucket_arrays)
    for name, array in bucket_arrays.items():
        arrays.update(pack_mostly_zero(name, np.asarray(array)))
    arrays = stack_arrays(arrays)  # (1,000 slices: 13,000 arrays stored as a few dozen)
    npz = npz_bytes(arrays)
    index: dict[str, Any] = {
        "slices": [[list(pair) for pair in key] for key in slices],
        "statistics": [{"type": type(st).__name__, "repr": repr(st)} for st in statistics],
    }
    if slice_rows is not None:
        index["slice_rows"] = [
            [[list(pair) for pair in key], int(slice_rows[key])]
            for key in sorted(slice_rows, key=lambda k: (len(k), k))
        ]
        index["bucket_slices"] = [[list(pair) for pair in key] for key in bucketed]
    return npz, json.dumps(index, indent=1).encode()


PACKED = "~shape"
"""Suffix of the shape array of a mostly-zero array stored by :func:`pack_mostly_zero`."""


def pack_mostly_zero(name: str, array: np.ndarray) -> dict[str, np.ndarray]:
    """``{name: array}``, or, for an array of at least 4,096 elements of which at most a quarter are non-zero
    (bit patterns, so ``-0.0`` and NaN count as non-zero and come back bit for bit), its non-zero flat positions
    (``name~at``, int64), their values (``name~values``, the array's dtype) and its shape (``name~shape``).
    Bootstrap-bucket states (dense replicate histograms, nearly all zero) are stored this way: writing them
    whole cost seconds of compression per run."""
    width = array.dtype.itemsize
    if array.size < 4096 or width not in (1, 2, 4, 8) or array.dtype.kind not in "biuf":
        return {name: array}
    flat = np.ascontiguousarray(array).reshape(-1)
    at = np.flatnonzero(flat.view(f"u{width}"))
    if 4 * at.size > flat.size:
        return {name: array}
    return {f"{name}~at": at.astype(np.int64), f"{name}~values": flat[at], f"{name}{PACKED}": np.asarray(array.shape)}


def _unpack(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_mostly_zero` over an archive's arrays."""
    for packed in [k for k in arrays if k.endswith(PACKED)]:
        name = packed[: -len(PACKED)]
        shape = tuple(int(d) for d in arrays.pop(packed))
        values = arrays.pop(f"{name}~values")
        full = np.zeros(int(np.prod(shape, dtype=np.int64)), values.dtype)
        full[arrays.pop(f"{name}~at")] = values
        arrays[name] = full.reshape(shape)
    return arrays


def _npz_arrays(npz: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(npz)) as data:
        return _unpack(unstack_arrays({k: data[k] for k in data.files}))


def _reading(uri: str | None, name: str, read: Callable[[], Any]) -> Any:
    """``read()`` of the run's file ``name``; what a file whose bytes were changed raises (the size its manifest
    lists still matching) becomes a :class:`UserError` naming the file."""
    try:
        return read()
    except (ValueError, KeyError, IndexError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DamagedRunFile(
            f"{join(uri, name) if uri else name}: this run's {name} cannot be read although it has the size its "
            f"{COMMIT_MARKER} manifest lists ({type(exc).__name__}: {exc}); the file was damaged after the commit. "
            "Remove the run directory or restore the file.",
            uri,
        ) from None


def _index(index: bytes) -> dict[str, Any]:
    meta = json.loads(index)
    list(meta["slices"])  # (raises unless an object with a list of slices)
    return meta


def _slice_key(raw: Sequence[Sequence[str]]) -> SliceKey:
    return tuple((k, v) for k, v in raw)


class StoredLayoutError(ValueError):
    """A run's stored states are not those of the statistics this evalpipe builds for its metrics."""


def stored_positions(
    statistics: Sequence[Statistic], meta: Mapping[str, Any], approximately: bool = False
) -> list[int] | None:
    """Where each of ``statistics`` (rebuilt from a run's spec by this evalpipe) has its state among those the run
    stored (``meta``: its ``statistics.json``): the same places where the stored statistics are these, else by the
    reprs a statistic was stored under (:meth:`~evaluators.statistic.Statistic.stored_reprs`: the calibration errors
    and the reliability diagram of older runs share one state). None where some statistic has no stored state."""
    stored = [entry.get("repr") for entry in meta.get("statistics", [])]
    if not stored or stored == [repr(st) for st in statistics]:
        return list(range(len(statistics)))
    positions = []
    for st in statistics:
        found = next((stored.index(r) for r in st.stored_reprs(approximately) if r in stored), None)
        if found is None:
            # (reprs that name nothing known, as of a user's own statistics, keep their places; a run holding an
            # older form of these statistics, or one of evalpipe's statistics with other settings, does not)
            return list(range(len(statistics))) if _by_place(statistics, stored) else None
        positions.append(found)
    return positions


def _by_place(statistics: Sequence[Statistic], stored: Sequence[str | None]) -> bool:
    """Whether states stored under ``stored`` reprs may be read by their places as ``statistics``': as many of
    them, none an older form of these statistics, and none a statistic of evalpipe's own (whose repr names all its
    settings) stored with other settings than this one's (a ranking state binned on another grid: its cells merged
    with this one's would be out of order)."""
    if len(stored) != len(statistics):
        return False
    if {r for st in statistics for r in st.stored_reprs(approximately=True)[1:]} & set(stored):
        return False
    return not any(
        type(st).__module__.startswith("evaluators.")
        and isinstance(r, str)
        and r.startswith(f"{type(st).__name__}(")
        and r not in st.stored_reprs(approximately=True)
        for st, r in zip(statistics, stored, strict=True)
    )


def decode_statistics(
    statistics: Sequence[Statistic], npz: bytes, index: bytes, approximately: bool = False, uri: str | None = None
) -> dict[SliceKey, tuple[State, ...]]:
    """Inverse of :func:`encode_statistics`, given the same statistics (rebuilt from the run's spec); a run stored
    when some of them were stored otherwise is read through :func:`stored_positions` (``approximately``: for
    display). Files that do not read (damaged) are a :class:`UserError` naming them (under the run's ``uri``)."""
    meta = _reading(uri, STATISTICS_INDEX, lambda: _index(index))
    positions = stored_positions(statistics, meta, approximately)
    if positions is None:
        raise ValueError(
            f"the stored statistics {[e.get('repr') for e in meta.get('statistics', [])]} do not hold those of this "
            f"run's metrics, {[repr(st) for st in statistics]}"
        )
    arrays = _reading(uri, STATISTICS_FILE, lambda: _npz_arrays(npz))
    return _reading(
        uri,
        STATISTICS_FILE,
        lambda: {
            _slice_key(key): tuple(stored_state(st, f"s{s}/t{positions[n]}", arrays) for n, st in enumerate(statistics))
            for s, key in enumerate(meta["slices"])
        },
    )


@dataclass(frozen=True)
class StoredStatistics:
    """Everything :func:`encode_statistics` stored: merged states, bootstrap-bucket states and rows per slice."""

    states: dict[SliceKey, tuple[State, ...]]
    bucket_states: dict[SliceKey, tuple[State, ...]]
    rows: dict[SliceKey, int]


def decode_stored(
    statistics: Sequence[Statistic],
    bucket_templates: Sequence[State],
    npz: bytes,
    index: bytes,
    uri: str | None = None,
) -> StoredStatistics | None:
    """The full inverse of :func:`encode_statistics`; ``bucket_templates``: the replicate statistics' zero
    states stacked on a ``[buckets]`` axis (empty without intervals). None for a run stored without rows per
    slice (written before runs could be merged). Damaged files: as :func:`decode_statistics`."""
    meta = _reading(uri, STATISTICS_INDEX, lambda: _index(index))
    if "slice_rows" not in meta:
        return None
    if stored_positions(statistics, meta) != list(range(len(statistics))):
        raise StoredLayoutError(
            "its statistics were stored as other statistics than this evalpipe builds for its metrics (since then, "
            "the reliability diagram's bins close on the right, as calibration_curve; ROC-AUC and average precision "
            "cells give scores of score_decimals decimals cells of their own, and a binary task's bins are 11 bits "
            "that keep up to 8 scores each by default (bin_scores: 8), where they had 12 bits of one cell each, and 10 "
            "bits before that)"
        )
    rows = _reading(uri, STATISTICS_INDEX, lambda: {_slice_key(key): int(n) for key, n in meta["slice_rows"]})
    buckets = _reading(uri, STATISTICS_INDEX, lambda: [_slice_key(key) for key in meta["bucket_slices"]])
    arrays = _reading(uri, STATISTICS_FILE, lambda: _npz_arrays(npz))

    def decoded() -> StoredStatistics:
        states = {
            _slice_key(key): tuple(stored_state(st, f"s{s}/t{i}", arrays) for i, st in enumerate(statistics))
            for s, key in enumerate(meta["slices"])
        }
        bucket_states = {
            key: tuple(unflatten_state(t, f"b{s}/t{i}", arrays) for i, t in enumerate(bucket_templates))
            for s, key in enumerate(buckets)
        }
        return StoredStatistics(states, bucket_states, rows)

    return _reading(uri, STATISTICS_FILE, decoded)


METRICS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("job", pa.string()),
        ("commit", pa.string()),
        ("point", pa.string()),
        ("tags", pa.map_(pa.string(), pa.string())),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("lower", pa.float64()),
        ("upper", pa.float64()),
        ("direction", pa.string()),
    ]
)
"""Schema of ``metrics.parquet``."""


def metrics_table(run: Run, job: str) -> pa.Table:
    """Long format: one row per point x metric (built without pandas: :mod:`pipelines.arrow_columns`)."""
    rows: dict[str, list[Any]] = {k: [] for k in ("point", "tags", "metric", "value", "lower", "upper", "direction")}
    directions = {name: str(definition.direction) for name, definition in run.metric_defs.items()}
    for point in run.points:  # (column by column: a run of 1,000 slices has 15,000 rows)
        metrics = point.metrics
        rows["point"] += [point.name] * len(metrics)
        tags = list(point.tags.items())
        rows["tags"] += [tags] * len(metrics)
        rows["metric"] += metrics.keys()
        rows["value"] += [m.value for m in metrics.values()]
        rows["lower"] += [m.lower for m in metrics.values()]
        rows["upper"] += [m.upper for m in metrics.values()]
        rows["direction"] += [directions.get(name, "higher") for name in metrics]
    n = len(rows["metric"])
    rows |= {
        "run_id": [run.id] * n,
        "timestamp": [utc(run.timestamp)] * n,
        "job": [job] * n,
        "commit": [run.commit] * n,
    }
    return arrow_columns.table(rows, METRICS_SCHEMA)


# --- writing and committing -----------------------------------------------------------


def run_json(run: Run) -> bytes:
    """``run.json``: the run's record, indented, with one point per line (JSON's indenting encoder is pure
    Python: a run of 1,000 slices took 0.06 s with every value on a line of its own)."""
    record = run.to_dict()
    points = record.pop("points")
    head = json.dumps(record, indent=1, allow_nan=False)
    lines = "".join(f"\n  {json.dumps(point, allow_nan=False)}," for point in points)[:-1]
    return (head[:-2] + ',\n "points": [' + (lines + "\n " if points else "") + "]\n}").encode()


def _write(loc: RunLocation, name: str, payload: bytes) -> int:
    """Write one file of the run. Interrupted or failed, an object-store upload is aborted (``discard``:
    s3fs and gcsfs abort the multipart upload), not completed with part of the bytes or left dangling."""
    handle = loc.fs.open(loc.file(name), "wb")
    try:
        handle.write(payload)
        handle.close()
    except BaseException:
        with contextlib.suppress(Exception):
            handle.discard()
            handle.closed = True  # discarded: nothing left to flush when it is collected
        raise
    return len(payload)


def write_run(
    loc: RunLocation,
    run: Run,
    job: str,
    statistics: Sequence[Statistic],
    merged: Mapping[SliceKey, tuple[State, ...]],
    *,
    bucket_states: Mapping[SliceKey, tuple[State, ...]] | None = None,
    slice_rows: Mapping[SliceKey, int] | None = None,
    instance: str | None = None,
    exclusive_instance: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
    on_commit: Callable[[], None] | None = None,
    finish: Callable[[Run], Run] | None = None,
) -> None:
    """Write every file of the run, then commit it with the manifest (``on_commit`` is called as soon as the
    manifest exists).

    ``bucket_states`` and ``slice_rows`` (the merged partial's bootstrap-bucket states and rows per slice) are
    stored beside the states (see :func:`encode_statistics`).

    ``finish`` (optional) returns the run to write as ``run.json``, called after every other file is
    written (the run's timings then include the writing of the states).

    ``instance`` (what identifies a rerun of the same inputs) goes into the manifest. With
    ``exclusive_instance`` the commit first creates ``{job}/_instances/{instance}.json`` only if
    absent, so of two concurrent runs of the same inputs exactly one commits; the other's files are
    removed and a :class:`UserError` says which run holds the inputs (a stale claim, of a run that never
    committed, is taken over: :mod:`pipelines.claims`). If anything fails or is interrupted (SIGTERM, Ctrl-C)
    before the commit, the run's files and its claim are removed.
    """
    try:
        npz, index = encode_statistics(statistics, merged, bucket_states, slice_rows)
        _write_and_commit(loc, run, job, (npz, index), instance, exclusive_instance, extra_files, finish)
        if on_commit is not None:
            on_commit()
    except BaseException:
        # interrupted or failed before the commit: leave nothing behind (a committed run is left alone), within
        # a bounded time whatever the storage does
        def cleanup() -> None:
            if not loc.fs.exists(loc.file(COMMIT_MARKER)):
                abort_uploads(loc.fs, loc.path)
                if loc.fs.exists(loc.path):
                    loc.fs.rm(loc.path, recursive=True)
                if exclusive_instance and instance is not None:
                    from pipelines.claims import release_claim

                    release_claim(loc.fs, loc.path.rsplit("/", 1)[0], instance, run.id)

        within(CLEANUP_S, cleanup)
        raise


def abort_uploads(fs: fsspec.AbstractFileSystem, prefix: str) -> int:
    """Abort the multipart uploads in flight under ``prefix`` (``bucket/key prefix``) on an S3-compatible
    store; returns how many. An upload interrupted between its creation and the client learning its id
    cannot be aborted by the client's own handle: this finds it by listing. Other stores: a no-op."""
    lister = getattr(fs, "list_multipart_uploads", None)
    if lister is None:
        return 0
    bucket, _, key_prefix = prefix.strip("/").partition("/")
    aborted = 0
    for upload in lister(bucket):
        if upload.get("Key", "").startswith(f"{key_prefix}/"):
            fs.abort_mpu(bucket, upload["Key"], upload["UploadId"])
            aborted += 1
    return aborted


def _write_and_commit(
    loc: RunLocation,
    run: Run,
    job: str,
    encoded: tuple[bytes, bytes],
    instance: str | None,
    exclusive_instance: bool,
    extra_files: Mapping[str, bytes] | None,
    finish: Callable[[Run], Run] | None = None,
) -> None:
    loc.fs.makedirs(loc.path, exist_ok=True)
    files: dict[str, int] = {}
    npz, index = encoded
    files[STATISTICS_FILE] = _write(loc, STATISTICS_FILE, npz)
    files[STATISTICS_INDEX] = _write(loc, STATISTICS_INDEX, index)
    table = io.BytesIO()
    pq.write_table(metrics_table(run, job), table)
    files[METRICS_FILE] = _write(loc, METRICS_FILE, table.getvalue())
    for name, payload in (extra_files or {}).items():
        files[name] = _write(loc, name, payload)
    run = finish(run) if finish is not None else run
    files[RUN_FILE] = _write(loc, RUN_FILE, run_json(run))
    manifest = {
        "run_id": run.id,
        "job": job,
        "timestamp": utc(run.timestamp).isoformat(),
        "instance": instance,
        "files": files,
    }
    if exclusive_instance and instance is not None:
        from pipelines.claims import take_claim

        try:
            take_claim(loc.fs, loc.path.rsplit("/", 1)[0], instance, run.id, job)
        except UserError:
            loc.fs.rm(loc.path, recursive=True)
            raise
    create_exclusive(loc.fs, loc.file(COMMIT_MARKER), json.dumps(manifest, indent=1).encode())


# --- reading ---------------------------------------------------------------------------


def read_manifest(loc: RunLocation) -> dict[str, Any] | None:
    """The run's manifest, or None when the run is not committed."""
    try:
        with loc.fs.open(loc.file(COMMIT_MARKER), "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        return None


def open_run(uri: str, storage_options: Mapping[str, Any] | None = None) -> RunLocation:
    fs, path = url_to_fs(uri, **(storage_options or {}))
    return RunLocation(fs, path.rstrip("/"), uri.rstrip("/"))


def committed_manifest(fs: fsspec.AbstractFileSystem, run_path: str) -> dict[str, Any] | None:
    """The manifest of the complete run in directory ``run_path``, else None.

    A run is complete when its ``_COMMITTED`` manifest reads as JSON with a ``files`` table and every file
    it lists is there with the size it lists (a copy cut short, or a file removed or rewritten since the
    commit, is no complete run). :func:`read_run` and :func:`~pipelines.results.list_runs` both use this.
    """
    try:
        with fs.open(join(run_path, COMMIT_MARKER), "rb") as handle:
            manifest = json.loads(handle.read())
        sizes = {entry["name"].rsplit("/", 1)[-1]: entry["size"] for entry in fs.ls(run_path, detail=True)}
    except (FileNotFoundError, ValueError):
        return None
    if manifest_problem(manifest) is not None or any(sizes.get(n) != size for n, size in manifest["files"].items()):
        return None
    return manifest


def read_run(uri: str, storage_options: Mapping[str, Any] | None = None) -> Run:
    """The committed :class:`Run` at ``uri``.

    Raises:
        UserError: no run there, or the run is not committed or not complete (see :func:`committed_manifest`).
    """
    loc = open_run(uri, storage_options)
    if committed_manifest(loc.fs, loc.path) is None:
        if loc.fs.exists(loc.file(COMMIT_MARKER)):
            try:
                manifest = json.loads(loc.fs.cat_file(loc.file(COMMIT_MARKER)))
                sizes = {entry["name"].rsplit("/", 1)[-1]: entry["size"] for entry in loc.fs.ls(loc.path, detail=True)}
                problem = manifest_problem(manifest) or listed_files_problem(manifest["files"], sizes)
            except ValueError as exc:
                problem = f"not JSON ({exc})"
            found = f" ({join(uri, COMMIT_MARKER)}: {problem}; readers skip the run)" if problem else ""
            raise UserError(
                f"{uri}: this run is not complete: its {COMMIT_MARKER} manifest is unreadable, or a file it lists "
                f"is missing or of another size than it lists{found}."
            )
        if loc.fs.exists(loc.file(RUN_FILE)):
            raise UserError(
                f"{uri}: this run is not committed (no {COMMIT_MARKER} manifest); it may have failed or still be running."
            )
        raise UserError(f"{uri}: no evalpipe run here (expected {COMMIT_MARKER} and {RUN_FILE}).")
    with loc.fs.open(loc.file(RUN_FILE), "rb") as handle:
        text = handle.read()
    try:
        return Run.from_dict(evalpipe_run_dict(json.loads(text)))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(
            f"{uri}: this run's {RUN_FILE} is unreadable although it has the size its {COMMIT_MARKER} manifest lists "
            f"({type(exc).__name__}: {exc}); the file was damaged after the commit. Remove the run directory or "
            "restore the file."
        ) from None
