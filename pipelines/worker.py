"""The unit evaluator: built once per worker (actor or process), then fed work units.

It holds the compiled statistic update (and, for backbone metrics, the loaded
backbone), reads a unit's row groups and returns the unit's states. A unit
is a pure function of its rows, so running it twice (a retry) gives the same
states.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import socket
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from evaluators.adapters import InputError, TaskAdapter, adapter_for
from evaluators.backbones import BACKBONE_KINDS
from evaluators.backbones.cnn import UndecodableImage
from evaluators.lazyjax import jax
from evaluators.retrieval import QUERY, QueryRowsError
from pipelines import arrow_columns, compile_cache, timing
from pipelines.backbone_files import load_job_backbone
from pipelines.bootstrap import DIGEST_MODULUS, buckets, key_digest, key_role, row_keys
from pipelines.errors import DataError, SpecError, UserCodeError, is_transient_error
from pipelines.functions import USER_CODE_EXITS, call_function, load_function
from pipelines.host_memory import keep_freed_memory
from pipelines.job_statistics import BATCH_ROWS, job_statistics
from pipelines.planning import WorkUnit
from pipelines.query_runs import UnitQueries
from pipelines.reading import RAGGED_PREFIX, TEXT_PREFIX, VARYING_PREFIX, per_row, read_part, role_of
from pipelines.sides import feature_columns
from pipelines.slicing import assign
from pipelines.spec import JobSpec
from pipelines.stopping import STOP_SIGNALS
from pipelines.storage_budget import bound_storage_calls
from pipelines.unit_result import OVERALL, TOTAL_DROPPED, Partial, SliceKey, UnitResult

_T = TypeVar("_T")


_BUCKET = "bootstrap:bucket"
_KEY = "bootstrap:key"
READ_ATTEMPTS = 4
"""Attempts at reading a unit when storage fails transiently (connection reset, timeout, throttling)."""
READ_BACKOFF_S = 0.5
"""Wait before the first re-read; doubled before each further one (0.5 s, 1 s, 2 s)."""
FOLD_BYTES = 1 << 24
"""Pending row groups this large are folded in at once: wide rows (class scores, masks) are not copied
into one large array first."""
backoff_sleep = time.sleep
"""How the worker waits between reads (a module attribute, so a test can record the waits)."""


_FILE = "score:file"
_ROW = "score:row"


def _scores_table(records: list[dict[str, np.ndarray]], files: list[str]) -> pa.Table:
    """Per-row user-function scores of one unit; rows in file order, ``file`` as a path."""
    merged: dict[str, list[np.ndarray]] = {}
    for record in records:
        for k, v in record.items():
            merged.setdefault(k, []).append(v)
    columns = {k: np.concatenate(v) for k, v in merged.items()}
    paths = np.asarray(files, dtype=object)[columns.pop("file")]
    arrays = [arrow_columns.strings(paths.tolist()), *map(arrow_columns.from_numpy, columns.values())]
    return pa.Table.from_arrays(arrays, names=["file", *columns])


def _adapted(step: Callable[..., _T], *args: Any) -> _T:
    """One step of the task adapter; its :class:`~evaluators.adapters.InputError` (bad data, the message
    naming file, column and row) becomes a :class:`DataError`."""
    try:
        return step(*args)
    except InputError as exc:
        raise DataError(str(exc)) from None


def _nbytes(values: Any) -> int:
    """Bytes held by a column, counting the arrays inside an object array of decoded masks."""
    if isinstance(values, np.ndarray) and values.dtype == object and len(values) and isinstance(values[0], np.ndarray):
        return sum(v.nbytes for v in values)
    return int(values.nbytes)


def check_finite_features(features: Mapping[str, np.ndarray], where: str) -> None:
    """Raise :class:`DataError` when a backbone feature or user score (``[n, ...]`` float) holds NaN or inf:
    such a value would reach the statistics' fixed-point sums."""
    for name, values in features.items():
        array = np.asarray(values)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            rows = int((~np.isfinite(array.reshape(len(array), -1))).any(axis=1).sum())
            raise DataError(
                f"{where}: the feature {name!r} computed from the batch has {rows} rows with NaN or inf "
                "(check the backbone's weights and the rows' inputs); no value is computed from them."
            )


def _describe(unit: WorkUnit) -> str:
    files = sorted({part.path for part in unit.parts})
    return f"work unit {unit.index} ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''})"


def _concatenate(
    batches: list[dict[str, np.ndarray]], roles: Mapping[str, str], where: str, varying: Collection[str] = ()
) -> dict[str, np.ndarray]:
    """The batches of a unit's files joined, column by column (``roles``: role -> column, to name one whose rows
    are of another width in one file than in another; ``varying``: roles whose rows may be, joined as per-row
    arrays where they are)."""
    if len(batches) == 1:
        return batches[0]
    for k in varying:
        if len({b[k].shape[1:] if b[k].dtype != object else None for b in batches}) > 1:
            batches = [{**b, k: per_row(b[k])} for b in batches]
    for k in batches[0]:
        widths = sorted({b[k].shape[1:] for b in batches if isinstance(b[k], np.ndarray)})
        if len(widths) > 1:
            raise DataError(
                f"{where}: column {roles.get(k, k)!r} (data.columns.{k}) holds rows of shape {widths[0]} in one file "
                f"and {widths[1]} in another; expected the same number of values per row in every file."
            )
    return {
        k: _joined_arrow([b[k] for b in batches])
        if any(isinstance(b[k], pa.Array) for b in batches)
        else _joined([b[k] for b in batches], ids=k == QUERY)
        for k in batches[0]
    }


def _joined_arrow(parts: list[Any]) -> pa.Array:
    """One Arrow column (strings: group labels, slice values) of a unit's files, joined where the files store it
    differently: a dictionary (a pandas categorical) decoded, ``large_string`` beside ``string``, a part NumPy
    holds made Arrow."""
    arrays = [p.dictionary_decode() if pa.types.is_dictionary(p.type) else p for p in map(_arrow, parts)]
    types = {a.type for a in arrays}
    if len(types) > 1:
        wide = pa.large_string() if any(pa.types.is_large_string(t) for t in types) else next(iter(types))
        arrays = [a.cast(wide) for a in arrays]
    return pa.concat_arrays(arrays)


def _arrow(part: Any) -> pa.Array:
    return part if isinstance(part, pa.Array) else pa.array(part)


def _joined(arrays: list[np.ndarray], ids: bool = False) -> np.ndarray:
    """One column of a unit's files, joined. Integers stay integers: ``uint64`` in one file beside signed integers in
    another (which NumPy would join as float64, rounding ids and labels) are joined as int64 (a label past int64's
    range reads as a negative, out-of-range id); query ``ids`` past int64's range as Python integers, so that such an
    id stays another query than the negative int64 id of the same bits (:func:`~evaluators.retrieval.id_key`)."""
    kinds = {a.dtype.kind for a in arrays}
    if kinds == {"i", "u"} and np.result_type(*(a.dtype for a in arrays)).kind == "f":
        beyond = ids and any(a.dtype.kind == "u" and len(a) and int(a.max()) >= 1 << 63 for a in arrays)
        if beyond:
            return np.concatenate([a.astype(object) for a in arrays])
        arrays = [a.astype(np.int64) for a in arrays]
    return np.concatenate(arrays)


def _counted_weight(batch: dict[str, np.ndarray], counted: np.ndarray | None) -> float:
    """The weight of a batch's rows that count: their weights (1 each without a weights column), less the rows the
    task leaves out (``counted``: the adapter's :meth:`~evaluators.adapters.TaskAdapter.counted_rows`). Weights beyond
    float64's range sum to inf (refused where it is counted)."""
    w = batch.get("weights")
    if counted is not None:
        w = counted.astype(np.float64) if w is None else np.where(counted, w, 0.0)
    if w is None:
        return float(_row_count(batch))
    with np.errstate(over="ignore"):
        return float(np.sum(w, dtype=np.float64))


def _row_count(columns: Mapping[str, Any]) -> int:
    """Rows of a batch (all its columns have as many; an image or text job may lack either side's column)."""
    return len(next(iter(columns.values())))


def _take(columns: Mapping[str, np.ndarray], rows: np.ndarray | None) -> dict[str, np.ndarray]:
    return dict(columns) if rows is None else {k: v[rows] for k, v in columns.items()}


class UnitEvaluator:
    """Evaluates work units of one job. Construct once; call :meth:`process` per unit. ``ships``: the results go to
    another process (a Ray actor's to the driver), so their states are in the form that the driver merges fastest
    (:meth:`~evaluators.statistic.Statistic.transported`: a binned ranking state's window, whose making costs more
    than merging it as stored would, so in-process results keep the stored form)."""

    def __init__(self, spec: JobSpec, *, ships: bool = False) -> None:
        self.ships = ships
        compile_cache.enable_on_import()
        keep_freed_memory()  # (batch after batch, the same temporaries: see pipelines.host_memory)
        timing.watch_compiles()
        bound_storage_calls()  # a worker's reads get the driver's S3 timeouts (a Ray actor is another process)
        self.spec = spec
        statistics = job_statistics(spec)
        self.metrics = statistics.metrics
        self.accumulator = statistics.accumulator
        self.replicate_accumulator = statistics.replicates
        roles = spec.data.columns.roles()
        row_id = roles.pop("row_id", None)
        self.roles = roles
        self.adapter = adapter_for(spec.task)
        ragged, varying = self.adapter.ragged_roles(roles), self.adapter.varying_roles(roles)
        prefixes = {**{r: VARYING_PREFIX for r in varying}, **{r: RAGGED_PREFIX for r in ragged}}
        self.read_roles = {prefixes.get(r, "") + r: c for r, c in roles.items()}
        self.varying = varying
        for spec_entry in spec.slices:
            for column in spec_entry.needed_columns():
                self.read_roles[f"{TEXT_PREFIX}{column}"] = column
        if spec.confidence and row_id:
            self.read_roles["row_id"] = row_id
        # A column (or cross) entry without boundaries puts every row in exactly one of its slices
        # (nulls are refused), so the overall state is the merge of that entry's slice states: the
        # overall slice then costs one merge per unit instead of an update per batch.
        self.partition = next(
            (e.columns for e in spec.slices if not e.is_filter and e.boundaries is None and e.quantiles is None),
            None,
        )
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.features = self.accumulator.features()
        self.reads_columns = any(not s.features for s in self.accumulator.statistics)
        self.functions = [(f, load_function(f.path)) for f in spec.functions]
        for f in spec.functions:
            for keyword, column in f.columns.items():
                self.read_roles[f"fn:{f.key}:{keyword}"] = column
        if any(f.scores for f in spec.functions) and row_id:
            self.read_roles["row_id"] = row_id
        self._backbone: Any = None
        self._features: Any = None
        """The backbone's ``extract``, with the job's idf weights bound when it has them."""
        self.backbone_loads = 0
        self.memory_budget = int(spec.execution.memory_budget_mb * 2**20)

    def groups(self, columns: Mapping[str, np.ndarray], where: str) -> dict[SliceKey, np.ndarray | None]:
        """Rows of each slice in this batch (None: all rows)."""
        out: dict[SliceKey, np.ndarray | None] = {OVERALL: None}
        slice_columns = {k.removeprefix(TEXT_PREFIX): v for k, v in columns.items() if k.startswith(TEXT_PREFIX)}
        for entry in self.spec.slices:
            found = assign(entry, slice_columns)
            entry.refuse_distinct(len(found), f"{where} (one batch)")
            out.update(found)
        return out

    def process(self, unit: WorkUnit) -> UnitResult:
        """The unit's states. A transient storage error (see :func:`~pipelines.errors.is_transient_error`)
        makes it read the unit again from the start, after a doubling back-off, up to ``READ_ATTEMPTS``
        times; any other error is raised at once (it would fail the same way again)."""
        start, cpu_start, compile_start = time.perf_counter(), time.process_time(), timing.compile_seconds()
        for attempt in range(READ_ATTEMPTS):
            try:
                result = self._process(unit, start, cpu_start, attempt)
                return dataclasses.replace(result, compile_seconds=timing.compile_seconds() - compile_start)
            except Exception as exc:
                role = self.adapter.refused_role(exc)
                if role is not None:
                    column = self.roles.get(role)
                    raise DataError(f"{_describe(unit)}: column {column!r} (data.columns.{role}): {exc}.") from None
                if attempt + 1 == READ_ATTEMPTS or not is_transient_error(exc):
                    raise
                backoff_sleep(READ_BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")

    def _fold_read(self, partial: Partial, pending: list[dict[str, np.ndarray]], unit: WorkUnit, files: UnitQueries):
        """:meth:`_fold` of the batches read so far; a query whose rows the statistic finds in two runs is told by
        the files' own check where it can (the file of its second run) rather than by the statistic."""
        try:
            self._fold(partial, _concatenate(pending, self.roles, _describe(unit), self.varying), _describe(unit))
        except QueryRowsError:
            files.finish()
            raise

    def _process(self, unit: WorkUnit, start: float, cpu_start: float, retries: int) -> UnitResult:
        partial = Partial()
        dropped: dict[str, int] = {}
        pending: list[dict[str, np.ndarray]] = []
        pending_rows = pending_bytes = 0
        total = 0
        weight: float | None = 0.0 if "weights" in self.roles or self.spec.task.ignore_index is not None else None
        digest: int | None = 0 if self.replicate_accumulator is not None else None
        unit_files: dict[str, int] = {}
        self._scores: list[dict[str, np.ndarray]] = []
        self.accumulator.expect_rows(unit.rows)
        files = UnitQueries(self.roles.get(QUERY, QUERY), _describe(unit))
        for part in unit.parts:
            groups = read_part(part, self.read_roles, self.spec.data.storage_options, self.memory_budget)
            with contextlib.closing(groups):  # an error below closes the file and its readers at once
                for group, first_row, columns in groups:
                    where = f"{part.path} row group {group}"
                    columns = {role_of(k): v for k, v in columns.items()}
                    n = _row_count(columns)
                    if n == 0:
                        continue
                    if QUERY in columns:
                        files.check(part.path, columns[QUERY])
                    batch = dict(columns)
                    if self.functions:
                        batch[_FILE] = np.full(n, unit_files.setdefault(part.path, len(unit_files)), np.int32)
                        batch[_ROW] = np.arange(first_row, first_row + n, dtype=np.int64)
                    if self.replicate_accumulator is not None:
                        conf = self.spec.confidence
                        keys = row_keys(columns.get(key_role(self.spec.task)), part.path, first_row, n)
                        batch[_BUCKET] = buckets(keys, conf.buckets, conf.seed)
                        batch[_KEY] = keys
                    batch = self._checked(batch, where, dropped, first_row)
                    if digest is not None:
                        digest = (digest + key_digest(batch.pop(_KEY))) % DIGEST_MODULUS
                    n = _row_count(batch)
                    if n == 0:
                        continue
                    total += n
                    if weight is not None:
                        weight += _counted_weight(batch, self.adapter.counted_rows(batch))
                    pending.append(batch)
                    pending_rows += n
                    pending_bytes += sum(_nbytes(v) for v in batch.values())
                    if pending_rows >= BATCH_ROWS or pending_bytes >= min(FOLD_BYTES, self.memory_budget // 4):
                        self._fold_read(partial, pending, unit, files)
                        pending, pending_rows, pending_bytes = [], 0, 0
        files.finish()
        if pending:
            self._fold_read(partial, pending, unit, files)
        acc, racc = self.accumulator, self.replicate_accumulator
        partial.states = {key: acc.to_host(states) for key, states in partial.states.items()}
        if racc is not None:
            partial.bucket_states = {key: racc.to_host(states) for key, states in partial.bucket_states.items()}
        if self.partition is not None:
            self._overall_from_partition(partial)
        partial.states.setdefault(OVERALL, acc.zero())
        partial.rows.setdefault(OVERALL, 0)
        if self.ships:
            partial.states = {key: acc.transported(states) for key, states in partial.states.items()}
        scores = _scores_table(self._scores, list(unit_files)) if self._scores else None
        return UnitResult(
            unit.index,
            unit.key,
            partial,
            total,
            time.perf_counter() - start,
            self.worker,
            self.backbone_loads,
            scores,
            dropped,
            retries,
            time.process_time() - cpu_start,
            weight,
            key_digest=digest,
        )

    def _checked(
        self, batch: dict[str, Any], where: str, dropped: dict[str, int], first_row: int = 0
    ) -> dict[str, Any]:
        """The batch without bad rows (``on_bad_rows: drop``, counted in ``dropped``), or a
        :class:`DataError` naming the column, the problem and the count of offending rows. The task adapter
        decodes the read columns first (``first_row``: the batch's first row in its file, to name a bad row)."""
        batch = _adapted(self.adapter.decode, batch, self.roles, where, first_row)
        problems = self.adapter.bad_rows({r: batch[r] for r in self.roles})
        if self._reads_backbone():  # (what the backbone cannot read: encoded images Pillow does not)
            problems += getattr(self.backbone(), "bad_rows", lambda columns: [])({r: batch[r] for r in self.roles})
        if not problems:
            return batch
        fixable = all(p.rows is not None for p in problems)
        if self.spec.data.on_bad_rows != "drop" or not fixable:
            described = "; ".join(
                f"column {self.roles[p.role]!r} (data.columns.{p.role}): {p.message().split(': ', 1)[1]}"
                for p in problems
            )
            hint = " Set data.on_bad_rows: drop to leave such rows out and count them." if fixable else ""
            raise DataError(f"{where}: {described}.{hint}")
        bad = np.zeros(_row_count(batch), bool)
        for p in problems:
            dropped[p.reason] = dropped.get(p.reason, 0) + p.count
            bad |= p.rows
        dropped[TOTAL_DROPPED] = dropped.get(TOTAL_DROPPED, 0) + int(bad.sum())
        keep = np.flatnonzero(~bad)
        rows = arrow_columns.numeric(keep, pa.int64())
        return {k: v.take(rows) if isinstance(v, pa.Array) else v[keep] for k, v in batch.items()}

    def _fold(self, partial: Partial, columns: dict[str, np.ndarray], where: str) -> None:
        """Fold a batch of validated rows into every slice's state (device arrays until the unit ends)."""
        acc, racc = self.accumulator, self.replicate_accumulator
        metric_columns = {r: columns[r] for r in self.roles}
        n = _row_count(metric_columns)
        metric_columns = _adapted(self.adapter.batch, metric_columns, self.roles, where)
        if self.features:
            metric_columns = self._extract(metric_columns, columns, where)
        groups = self.groups(columns, where)
        if self._fold_groups(partial, metric_columns, groups, n):
            return
        for key, rows in groups.items():
            if key == OVERALL and self.partition is not None:
                partial.rows[key] = partial.rows.get(key, 0) + n
                continue
            subset = _take(metric_columns, rows)
            bucket = None
            if racc is not None:
                bucket = columns[_BUCKET] if rows is None else columns[_BUCKET][rows]
            subset, bucket = _adapted(self.adapter.expand, subset, bucket)
            try:
                partial.states[key] = acc.update(partial.states.get(key) or acc.zero(), subset, to_host=False)
                partial.rows[key] = partial.rows.get(key, 0) + (n if rows is None else len(rows))
                if racc is None:
                    continue
                previous = partial.bucket_states.get(key) or racc.zero_grouped(self.spec.confidence.buckets)
                partial.bucket_states[key] = racc.update_grouped(previous, subset, bucket, to_host=False)
            except STOP_SIGNALS:
                raise
            except USER_CODE_EXITS as exc:
                self._blame_user_statistic(subset, exc, where)
                raise

    def _fold_groups(
        self, partial: Partial, columns: dict[str, np.ndarray], groups: dict[SliceKey, np.ndarray | None], n: int
    ) -> bool:
        """A sliced batch folded into all its slices' states in one pass per statistic
        (:meth:`~evaluators.accumulate.Accumulator.update_groups`); False, with nothing folded, where that does not
        apply (no slices, bootstrap buckets, a task that expands rows, or statistics that fold no groups)."""
        if (
            self.replicate_accumulator is not None
            or len(groups) < 2
            or type(self.adapter).expand is not TaskAdapter.expand
        ):
            return False
        keyed = {key: rows for key, rows in groups.items() if not (key == OVERALL and self.partition is not None)}
        states = self.accumulator.update_groups(
            [partial.states.get(key) for key in keyed], columns, list(keyed.values())
        )
        if states is None:
            return False
        if OVERALL not in keyed:  # (its state is merged from the partition's at the end of the unit)
            partial.rows[OVERALL] = partial.rows.get(OVERALL, 0) + n
        for (key, rows), state in zip(keyed.items(), states, strict=True):
            partial.states[key] = state
            partial.rows[key] = partial.rows.get(key, 0) + (n if rows is None else len(rows))
        return True

    def _blame_user_statistic(self, columns: Mapping[str, Any], exc: BaseException, where: str) -> None:
        """When a statistic update fails and the job has user statistic classes, find the one that
        raises (each alone, eagerly, on the same rows) and raise a :class:`UserCodeError` naming it."""
        for spec_entry, metric in self.metrics:
            statistic = metric.statistic
            owner = statistic.code_owner()
            if owner is None:
                continue
            try:
                statistic.update(statistic.zero(), dict(columns))
            except USER_CODE_EXITS as own:
                read = ", ".join(f"{r}={c!r}" for r, c in self.roles.items())
                raise UserCodeError(
                    f"{where}: the statistic {owner} of metric {spec_entry.key!r} raised {type(own).__name__}: "
                    f"{' '.join(str(own).split())} (on columns {read}). Errors in user code are not retried: fix the "
                    "class or its params and run the job again."
                ) from exc

    def backbone(self) -> Any:
        """The job's backbone, loaded on first use and then kept for every unit this worker gets."""
        if self._backbone is None:
            assert self.spec.backbone is not None
            self._backbone = load_job_backbone(self.spec.backbone)
            self.backbone_loads += 1
            self._check_widths(self._backbone)
            self._features = self._backbone.extract
            if self.spec.idf is not None:  # the job's BERTScore idf weights: constant, put on the device once
                idf = jax.device_put(np.asarray(self.spec.idf, np.float32))
                self._features = functools.partial(self._backbone.extract, idf=idf)
        return self._backbone

    def _backbone_features(self, columns: dict[str, Any], n: int, where: str) -> dict[str, np.ndarray]:
        """The backbone's features of a batch of ``n`` rows, each checked to hold ``n`` rows. A user backbone that
        raises, or returns another number of rows, is a :class:`UserCodeError` (exit 2, not retried)."""
        kind = self.spec.backbone.kind
        try:
            features = self._features(columns)
        except UndecodableImage as exc:
            raise DataError(f"{where}: {exc}; expected PNG, JPEG or another format Pillow reads.") from None
        except STOP_SIGNALS:
            raise
        except USER_CODE_EXITS as exc:
            if kind in BACKBONE_KINDS:
                raise
            raise UserCodeError(
                f"{where}: the backbone {kind}'s extract raised {type(exc).__name__}: {exc}. Errors in user code are "
                "not retried: fix the class and run the job again."
            ) from None
        read = [name for name in features if name in self.features]  # (a feature no statistic reads: not checked)
        wrong = {name: np.shape(features[name])[:1] for name in read if np.shape(features[name])[:1] != (n,)}
        if wrong:
            name, shape = next(iter(wrong.items()))
            rows = shape[0] if shape else "no"
            raise UserCodeError(
                f"{where}: the backbone {kind} gave {rows} rows of {name!r} for a batch of {n} rows; extract must "
                "return one feature row per input row, in order."
            )
        return features

    def _reads_backbone(self) -> bool:
        """Whether the job's statistics read features of its backbone (not only user functions' scores)."""
        return self.spec.backbone is not None and any(not name.startswith("fn:") for name in self.features)

    def _check_widths(self, backbone: Any) -> None:
        """Refuse (:class:`SpecError`) a metric whose ``dimension`` (``classes``) is not the loaded backbone's
        feature width (number of classes): its update would fail on the first batch."""
        have = {"dimension": getattr(backbone, "dimension", None), "classes": getattr(backbone, "num_classes", None)}
        for spec_entry, metric in self.metrics:
            if not type(metric.statistic).__module__.startswith("evaluators."):
                continue  # (a user statistic's fields may mean something else)
            for field, width in have.items():
                wanted = getattr(metric.statistic, field, None)
                if isinstance(wanted, int) and isinstance(width, int) and wanted != width:
                    raise SpecError(
                        f"metric {spec_entry.key!r}: {field} {wanted}, but the backbone ({self.spec.backbone.kind}, "
                        f"{self.spec.backbone.weights}) gives {width}; set the metric's `{field}` to {width}."
                    )

    def _extract(
        self, columns: dict[str, np.ndarray], batch: dict[str, np.ndarray], where: str
    ) -> dict[str, np.ndarray]:
        """Raw columns -> the numeric features the statistics read: one backbone pass per batch (texts,
        images) and one call of each user function."""
        n = _row_count(columns)
        found: dict[str, np.ndarray] = feature_columns(columns, self.accumulator.statistics, where, self.roles)
        if self._reads_backbone():
            self.backbone()
            found.update(
                self._backbone_features({r: v for r, v in columns.items() if not r.endswith("_features")}, n, where)
            )
        for spec, fn in self.functions:
            prefix = f"fn:{spec.key}:"
            arguments = {k.removeprefix(prefix): v for k, v in batch.items() if k.startswith(prefix)}
            scores = call_function(spec, fn, arguments, n, where)
            found.update(scores)
            if spec.scores:
                record = {"file": batch[_FILE], "row": batch[_ROW]}
                if "row_id" in batch:
                    record["row_id"] = batch["row_id"]
                record.update({name.removeprefix("fn:"): v for name, v in scores.items()})
                self._scores.append(record)
        check_finite_features(found, where)
        # catalogue statistics of plain columns (beside user functions) read the task's own columns
        out = dict(columns) if self.reads_columns else {}
        out.update((name, found[name]) for name in self.features if name in found)  # one-sided jobs: one side
        if "weights" in columns:
            out["weights"] = columns["weights"]
        return out

    def _overall_from_partition(self, partial: Partial) -> None:
        """Overall states = merge of the partition entry's slice states, in sorted key order."""
        keys = sorted(k for k in partial.states if k and tuple(c for c, _ in k) == self.partition)
        if not keys:
            return
        acc, racc = self.accumulator, self.replicate_accumulator
        partial.states[OVERALL] = acc.merge_all([partial.states[key] for key in keys])
        if racc is not None:
            stacked = partial.bucket_states[keys[0]]
            for key in keys[1:]:
                stacked = racc.merge(stacked, partial.bucket_states[key])
            partial.bucket_states[OVERALL] = stacked

    def ready(self, warmup: WorkUnit | None = None) -> dict[str, Any]:
        """Called once after construction: proves the worker can start (imports). With ``warmup``, also
        traces and compiles the update for the job's column types by folding that unit's first row group
        into a throw-away state, so compilation counts as start-up rather than as the first unit's time."""
        if warmup is not None and warmup.parts and not self.features and self.replicate_accumulator is None:
            self.accumulator.expect_rows(warmup.rows)
            part = warmup.parts[0]
            first = dataclasses.replace(part, stop=min(part.stop, part.start + 1))
            with contextlib.closing(
                read_part(first, self.read_roles, self.spec.data.storage_options, self.memory_budget)
            ) as groups:
                for _, _, columns in groups:
                    where = f"{part.path} row group {part.start}"
                    batch = self._checked({role_of(k): v for k, v in columns.items()}, where, {})
                    if _row_count(batch):
                        self._fold(Partial(), batch, where)
                    break
        return {"worker": self.worker, "statistics": len(self.accumulator.statistics)}
