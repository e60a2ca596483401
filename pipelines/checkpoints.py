"""Per-unit checkpoints: what a finished work unit produced, kept until the run commits.

A nightly job killed part-way (driver lost, ``ray job stop``, a preempted node) is run again with the same
spec; the units that had finished are read back instead of recomputed. A checkpoint is keyed by

* the run key (:func:`pipelines.execute.instance_key`: job name and resolved input paths), and a
  fingerprint of everything that shapes a unit's states (task, columns, metrics with their parameters,
  slices, bootstrap settings, user functions, backbone and its BERTScore idf weights, bad-row policy,
  evalpipe's version, the source of the modules defining the statistics, user functions and backbone, the
  backbone's weight files), which name
  the directory ``{output}/{job}/_checkpoints/{run key}-{fingerprint}/``;
* the unit's content key (:attr:`pipelines.planning.WorkUnit.key`: each file's path, size, version (etag,
  or local modification time, inode and status-change time), and row-group range), which names the file ``{unit key}.npz``.

So a changed input file, a changed metric or a different night's paths never reuse a stale state. The
file holds an ``.npz`` (no pickle; compressed from :data:`COMPRESS_FROM` bytes): the states' arrays exactly as
the worker returned them, so a resumed run is bit-identical to an uninterrupted one. A checkpoint that cannot be read back (a write cut short) is
recomputed. The directory is removed when the run commits; readers of runs never look under
``_checkpoints/``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import hashlib
import io
import json
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from evaluators.accumulate import Accumulator
from evaluators.statistic import State
from pipelines.errors import UserError, opening_problem
from pipelines.fingerprint import code_identity, tree_identity
from pipelines.functions import split_path
from pipelines.planning import WorkUnit
from pipelines.records import unknown_message
from pipelines.spec import JobSpec
from pipelines.stacked_arrays import stack_arrays, unstack_arrays
from pipelines.storage import COMMIT_MARKER, flatten_state, join, stored_state, unflatten_state
from pipelines.unit_result import Partial, SliceKey, UnitResult, received

CHECKPOINTS_DIR = "_checkpoints"


def state_fingerprint(spec: JobSpec, accumulator: Accumulator) -> str:
    """Hash of everything that decides a unit's states, besides the unit's rows: the spec's settings, the
    source of every module that defines a statistic, metric function or the backbone, and the backbone's
    weight files (size and version, see :mod:`pipelines.fingerprint`)."""
    try:
        version = metadata.version("evalpipe")
    except metadata.PackageNotFoundError:
        version = "source"
    modules = [split_path(f.path)[0] for f in spec.functions]
    modules += [type(s).__module__ for s in accumulator.statistics]
    if spec.slices:
        modules.append("pipelines.slicing")  # (which rows each slice holds)
    if spec.backbone is not None:
        modules.append(f"evaluators.backbones.{spec.backbone.kind}")
    parts = (
        version,
        code_identity(modules),
        tree_identity(spec.backbone.weights) if spec.backbone is not None else None,
        spec.task,
        spec.data.columns,
        spec.data.on_bad_rows,
        spec.slices,
        spec.confidence,
        spec.functions,
        spec.backbone,
        tuple(repr(s) for s in accumulator.statistics),
        None if spec.idf is None else hashlib.sha256(np.asarray(spec.idf).tobytes()).hexdigest(),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _slice_list(keys: Iterable[SliceKey]) -> list[list[list[str]]]:
    return [[list(pair) for pair in key] for key in keys]


def _states(prefix: str, states: dict[SliceKey, tuple[State, ...]], arrays: dict[str, np.ndarray]) -> list:
    keys = list(states)
    for s, key in enumerate(keys):
        for i, state in enumerate(states[key]):
            flatten_state(state, f"{prefix}{s}/t{i}", arrays)
    return _slice_list(keys)


def encode_result(result: UnitResult) -> bytes:
    """A unit's result as ``.npz`` bytes: state arrays plus a JSON header (``header`` entry)."""
    arrays: dict[str, np.ndarray] = {}
    partial = result.partial
    header = {
        "index": result.index,
        "key": result.key,
        "rows": result.rows,
        "seconds": result.seconds,
        "worker": result.worker,
        "dropped": result.dropped,
        "weight": result.weight,
        "key_digest": result.key_digest,
        "states": _states("s", partial.states, arrays),
        "bucket_states": _states("b", partial.bucket_states, arrays),
        "slice_rows": [[[list(p) for p in key], n] for key, n in partial.rows.items()],
    }
    if result.scores is not None:
        buffer = io.BytesIO()
        pq.write_table(result.scores, buffer)
        arrays["scores"] = np.frombuffer(buffer.getvalue(), np.uint8)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    out = io.BytesIO()
    np.savez(out, **stack_arrays(arrays, planes=False))  # (no byte planes: the whole file is compressed below)
    payload = out.getvalue()
    if len(payload) < COMPRESS_FROM:
        return payload
    return COMPRESSED + len(payload).to_bytes(8, "little") + pa.Codec("zstd", 1).compress(payload, asbytes=True)


COMPRESS_FROM = 1 << 22
"""Checkpoints of at least this many bytes (4 MiB) are compressed: those of dense bootstrap-bucket states, mostly
zeros (a unit of a sliced multiclass job with intervals: 311 MB of ``.npz`` stored as 0.87 MB). A binary job's 1.5 MB
unit states would cost 3 ms of zstd each for a sixth of their size: written as they are."""


COMPRESSED = b"EPZSTD01"
"""The first bytes of a compressed checkpoint (:data:`COMPRESS_FROM`): the ``.npz`` that follows (after its length,
8 bytes little-endian) is compressed with zstd, level 1. A checkpoint without them is the ``.npz`` itself."""


def _npz_bytes(payload: bytes) -> bytes:
    if not payload.startswith(COMPRESSED):
        return payload
    size = int.from_bytes(payload[len(COMPRESSED) : len(COMPRESSED) + 8], "little")
    return pa.Codec("zstd").decompress(payload[len(COMPRESSED) + 8 :], decompressed_size=size, asbytes=True)


def decode_result(
    payload: bytes, unit: WorkUnit, acc: Accumulator, racc: Accumulator | None, buckets: int
) -> UnitResult:
    """Inverse of :func:`encode_result`, for ``unit`` (whose index may differ from the stored one)."""
    with np.load(io.BytesIO(_npz_bytes(payload)), allow_pickle=False) as data:
        arrays = unstack_arrays({k: data[k] for k in data.files})
    header: dict[str, Any] = json.loads(arrays.pop("header").tobytes())
    if header["key"] != unit.key:
        raise ValueError(f"checkpoint holds unit {header['key']}, not {unit.key}")

    def key_of(raw: list) -> SliceKey:
        return tuple((c, v) for c, v in raw)

    states = {
        key_of(raw): tuple(stored_state(st, f"s{s}/t{i}", arrays) for i, st in enumerate(acc.statistics))
        for s, raw in enumerate(header["states"])
    }
    bucket_states: dict[SliceKey, tuple[State, ...]] = {}
    if header["bucket_states"]:
        assert racc is not None
        template = racc.zero_grouped(buckets)
        bucket_states = {
            key_of(raw): tuple(unflatten_state(t, f"b{s}/t{i}", arrays) for i, t in enumerate(template))
            for s, raw in enumerate(header["bucket_states"])
        }
    rows = {key_of(raw): int(n) for raw, n in header["slice_rows"]}
    scores = pq.ParquetFile(pa.BufferReader(arrays["scores"].tobytes())).read() if "scores" in arrays else None
    return UnitResult(
        unit.index,
        unit.key,
        Partial(states, bucket_states, rows),
        int(header["rows"]),
        float(header["seconds"]),
        str(header["worker"]),
        0,
        scores,
        {k: int(v) for k, v in header["dropped"].items()},
        weight=header.get("weight"),
        key_digest=header.get("key_digest"),
    )


class BackgroundWriter:
    """One daemon thread that runs the calls handed to it in order. A ``ThreadPoolExecutor``'s queue is drained when
    the interpreter exits, so a job stopped by Ctrl-C or SIGTERM waited for every queued checkpoint upload (110 s);
    this one's queue ends with the process: a stopped job keeps the checkpoints already written."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, fn, args))
        return future

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # (handed to whoever waits on the future)
                future.set_exception(exc)

    def shutdown(self, wait: bool = True) -> None:
        """End the thread once it has run what is queued (``wait``: wait for that)."""
        self._queue.put(None)
        if wait:
            self._thread.join()


class CheckpointStore:
    """The checkpoints of one job's run key and state fingerprint (see the module docstring)."""

    def __init__(self, spec: JobSpec, instance: str, acc: Accumulator, racc: Accumulator | None) -> None:
        self.fs, root = url_to_fs(spec.output.uri, **spec.output.storage_options)
        self.directory = join(root, spec.name, CHECKPOINTS_DIR, f"{instance}-{state_fingerprint(spec, acc)}")
        self.acc, self.racc = acc, racc
        self.buckets = spec.confidence.buckets if spec.confidence else 0
        self._writer: BackgroundWriter | None = None
        self._pending: list[Future[None]] = []
        self._written: list[str] = []

    def _path(self, unit_key: str) -> str:
        return join(self.directory, f"{unit_key}.npz")

    def load(self, units: Iterable[WorkUnit]) -> dict[int, UnitResult]:
        """The stored results of ``units`` that have a readable checkpoint, by unit index."""
        try:
            present = {p.rsplit("/", 1)[-1] for p in self.fs.ls(self.directory, detail=False)}
        except FileNotFoundError:
            return {}
        found: dict[int, UnitResult] = {}
        for unit in units:
            if f"{unit.key}.npz" not in present:
                continue
            try:
                payload = self.fs.cat_file(self._path(unit.key))
                found[unit.index] = decode_result(payload, unit, self.acc, self.racc, self.buckets)
            except Exception:  # cut short or unreadable: compute the unit again
                continue
        return found

    def save(self, result: UnitResult) -> None:
        """Write ``result``'s checkpoint in the background (one writer thread, so the driver keeps handing
        out and merging units); :meth:`wait` or :meth:`clear` waits for the writes."""
        if self._writer is None:
            self.fs.makedirs(self.directory, exist_ok=True)
            self._writer = BackgroundWriter("evalpipe-checkpoint")
        self._pending.append(self._writer.submit(self._write, result))

    def _write(self, result: UnitResult) -> None:
        payload = encode_result(replace(result, partial=received(self.acc, result.partial)))
        path = self._path(result.key)
        self._written.append(path)
        try:
            try:
                self._put(path, payload)
            except FileNotFoundError:  # a run of the same key committed meanwhile and removed the directory
                self.fs.makedirs(self.directory, exist_ok=True)
                self._put(path, payload)
        except OSError:  # a full disk: leave no broken checkpoint behind
            with contextlib.suppress(Exception):
                self.fs.rm(path)
            raise

    def _put(self, path: str, payload: bytes) -> None:
        """Write a checkpoint whole or not at all: an object store's put is; a local file is written beside it
        (``.part``, which :meth:`load` does not read) and renamed, so a driver killed mid-write leaves no cut-short
        checkpoint to reject, and its unit is not computed again."""
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        if "file" not in protocols and "local" not in protocols:
            self.fs.pipe_file(path, payload)
            return
        part = f"{path}.part"
        try:
            self.fs.pipe_file(part, payload)
            self.fs.mv(part, path)
        except BaseException:  # (a full disk: no part left behind either)
            with contextlib.suppress(Exception):
                self.fs.rm(part)
            raise

    def discard_written(self) -> int:
        """Remove the checkpoints this store wrote (a run that cannot commit for lack of space gives the space
        back); returns how many there were. Checkpoints of earlier runs are kept."""
        self._drain()
        written, self._written = self._written, []
        for path in written:
            with contextlib.suppress(Exception):
                self.fs.rm(path)
        with contextlib.suppress(Exception):
            if not self.fs.ls(self.directory, detail=False):
                self.fs.rmdir(self.directory)
        return len(written)

    def _drain(self) -> list[BaseException]:
        """Wait for every checkpoint handed to :meth:`save`; the errors of those that failed."""
        pending, self._pending = self._pending, []
        return [error for error in (future.exception() for future in pending) if error is not None]

    def abandon(self) -> None:
        """Drop the checkpoint writes not started yet (a stopped job). The one in progress goes on while the process
        does: a local one cut short at exit leaves a ``.part`` file, which is never read back nor counted."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.cancel()
        if self._writer is not None:
            self._writer.shutdown(wait=False)
            self._writer = None

    def pending_writes(self) -> int:
        """How many checkpoints handed to :meth:`save` are not written yet."""
        return sum(not future.done() for future in self._pending)

    def finish_writes(self) -> None:
        """Wait for every checkpoint handed to :meth:`save` (a failed job keeps its finished units), errors ignored."""
        self._drain()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    def wait(self) -> None:
        """Block until every checkpoint handed to :meth:`save` is written; raise the first write error."""
        errors = self._drain()
        if errors:
            raise errors[0]

    def clear(self) -> None:
        """Remove this run key's checkpoints (after the run committed: a checkpoint whose write failed is not
        needed any more, so write errors are not raised here)."""
        self.finish_writes()
        # Another run of the same key (started concurrently) may clear the directory at the same time.
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.directory, recursive=True)
        parent = self.directory.rsplit("/", 1)[0]
        with contextlib.suppress(OSError):
            if not self.fs.ls(parent, detail=False):
                self.fs.rmdir(parent)


@dataclass(frozen=True)
class LeftoverCheckpoints:
    """The checkpoints of one run key and fingerprint that no committed run has cleared yet: a run that was
    stopped and not run again, or a job whose spec changed since."""

    job: str
    uri: str
    """``{output}/{job}/_checkpoints/{run key}-{fingerprint}``."""
    units: int
    bytes: int
    last_written: dt.datetime | None
    """UTC time of the newest checkpoint file (None when the storage does not say)."""


def modified_time(info: dict[str, Any]) -> dt.datetime | None:
    """Modification time from an fsspec ``info`` dict: ``mtime`` (local), ``LastModified`` (S3), ``updated`` (GCS)."""
    value = info.get("mtime", info.get("LastModified", info.get("updated")))
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return None


def job_directories(
    uri: str, job: str | None, storage_options: dict[str, Any] | None
) -> tuple[fsspec.AbstractFileSystem, str, str, list[str]]:
    """``(fs, root path, "s3://"-style protocol prefix or "", job names)`` under a results URI: ``job`` alone
    when given, else every job directory there (none when the URI does not exist)."""
    fs, root = url_to_fs(uri, **(storage_options or {}))
    protocol = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    try:
        # job names start with a letter or digit: ``_outcomes`` and other evalpipe bookkeeping are no jobs
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
        jobs = [job] if job else sorted(n for n in names if not n.startswith("_"))
    except FileNotFoundError:
        jobs = []
    return fs, root, protocol, jobs


def check_location(fs: Any, root: str, uri: str) -> None:
    """Raise :class:`UserError` unless ``root`` (``uri`` on ``fs``) is a directory: a results location."""
    if not fs.exists(root):
        raise UserError(f"{uri}: no such results location (expected the output.uri that jobs write runs to).")
    if not fs.isdir(root):
        raise UserError(f"{uri}: a file, not a results location (expected the output.uri that jobs write runs to).")


def refuse_inner_directory(fs: Any, root: str, uri: str) -> None:
    """Raise :class:`UserError` where ``uri``, whose listing holds no run, is a job's directory or one run's rather
    than the results location above them (``output.uri``)."""
    parent, name = uri.rstrip("/").rsplit("/", 1) if "/" in uri.rstrip("/") else (".", uri.rstrip("/"))
    if fs.exists(join(root, COMMIT_MARKER)):
        grand, job = parent.rsplit("/", 1) if "/" in parent else (".", parent)
        raise UserError(
            f"{uri}: this is one committed run (of job {job!r}), not a results location; list its job's runs with "
            f"the location above it ({grand!r}, job {job!r}), or read this run by its URI (`evalpipe show {uri}`)."
        )
    if fs.glob(join(glob.escape(root), "*", COMMIT_MARKER)):
        raise UserError(
            f"{uri}: this is the directory of job {name!r}, not a results location (the job spec's output.uri, "
            f"which holds a directory per job); give the location above it: {parent!r} (with job {name!r})."
        )


def check_results_location(uri: str, job: str | None, storage_options: dict[str, Any] | None = None) -> None:
    """Raise :class:`UserError` when ``uri`` is no results location (missing, or a file) or ``job`` has no
    directory there (naming the jobs that have), as ``evalpipe runs`` does: a misspelt name would otherwise
    list, and delete, nothing."""
    try:
        fs, root = url_to_fs(uri, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise UserError(f"{uri}: cannot open this location: {opening_problem(exc)}.") from None
    root = root.rstrip("/")
    check_location(fs, root, uri)
    if job is not None and not fs.isdir(join(root, job)):
        _, _, _, jobs = job_directories(uri, None, storage_options)
        raise UserError(unknown_message(f"{uri}: job", job, [j for j in jobs if fs.isdir(join(root, j))]))


def list_leftover_checkpoints(
    uri: str, job: str | None = None, storage_options: dict[str, Any] | None = None
) -> list[LeftoverCheckpoints]:
    """Checkpoint directories under a results URI (the jobs' ``output.uri``), oldest first."""
    fs, root, protocol, jobs = job_directories(uri, job, storage_options)
    found = []
    for name in jobs:
        try:
            directories = fs.ls(join(root, name, CHECKPOINTS_DIR), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in directories:
            if entry.get("type") != "directory":
                continue
            files = [f for f in fs.ls(entry["name"], detail=True) if f.get("type") == "file"]
            times = [t for t in (modified_time(f) for f in files) if t is not None]
            found.append(
                LeftoverCheckpoints(
                    name,
                    protocol + entry["name"].rstrip("/"),
                    sum(1 for f in files if str(f["name"]).endswith(".npz")),  # (a write cut short: .part)
                    sum(int(f.get("size") or 0) for f in files),
                    max(times) if times else None,
                )
            )
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda c: (c.last_written or oldest, c.uri))


def remove_checkpoints(leftover: LeftoverCheckpoints, storage_options: dict[str, Any] | None = None) -> None:
    """Delete one checkpoint directory (a later run of its job computes those units again)."""
    fs, path = url_to_fs(leftover.uri, **(storage_options or {}))
    fs.rm(path, recursive=True)
