"""One job from spec to committed run: plan, check, evaluate, merge, record, write."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import functools
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, TextIO

import pyarrow as pa
import pyarrow.parquet as pq

from evaluators.adapters import adapter_for
from pipelines import planning, timing
from pipelines.bootstrap import DIGEST_MODULUS, key_role
from pipelines.checkpoints import CheckpointStore
from pipelines.errors import DataError, JobFailed, UserError, is_storage_access_error
from pipelines.finite import check_rows_left, check_states, check_values, check_weight_total, statistic_keys
from pipelines.host_memory import keep_freed_memory
from pipelines.idf import resolve_idf
from pipelines.job_statistics import job_statistics
from pipelines.outputprobe import probe_output
from pipelines.progress import Progress
from pipelines.quantiles import resolve_quantiles
from pipelines.reading import check_label_types, check_schema, schema_type
from pipelines.records import Regression, Run, selects, unknown_message
from pipelines.reduce import build_points, metric_defs, refuse_distinct_slices, reported_rows
from pipelines.reference import is_reference_job, load_reference, weights_digest, with_reference
from pipelines.runners import ExecutionReport, execute
from pipelines.slicing import check_columns
from pipelines.spec import JobSpec, build_metric
from pipelines.stopping import StopControl, committing
from pipelines.storage import new_run_id, read_manifest, read_run, run_location, write_run
from pipelines.storage_budget import bound_storage_calls
from pipelines.templating import as_of
from pipelines.unit_result import TOTAL_DROPPED, OrderedMerger, UnitResult

if TYPE_CHECKING:
    from pipelines.window import WindowOutcome

LIBRARIES = ("evalpipe", "ray", "jax", "jaxlib", "numpy", "pyarrow", "polars", "fsspec", "pyyaml")


@dataclass(frozen=True)
class RunOutcome:
    run: Run
    uri: str
    regressions: tuple[Regression, ...] = ()
    """Metrics worse than the ``baseline:`` run beyond tolerance (empty without a baseline)."""
    stopped: bool = False
    """SIGTERM came after the run committed (the run is complete all the same)."""
    window: WindowOutcome | None = None
    """The ``window:`` run committed after this one (None without ``window:``)."""


SCORES_FILE = "scores.parquet"
LAST_UNIT_CHECKPOINT_S = 10.0
"""The last unit to finish is checkpointed only when it took at least this many seconds. The run reduces and
commits right after it, so that checkpoint serves only a failure within those seconds, and a quick unit costs less
to compute again than to store (a unit of 1,000 slices takes 0.15 s of the driver's CPU to encode)."""
"""Per-row scores of user functions with ``scores: true``: file, row (position in the file), row_id, scores."""


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def instance_key(spec: JobSpec) -> str:
    """What makes two runs "the same run again": the job and its resolved input paths (e.g. one night's), a local
    path relative to the working directory taken as the absolute path it names (``data/x`` and ``$PWD/data/x`` are
    the same inputs; absolute paths and URLs as written, so their earlier runs keep their keys: a run made from a
    relative path before keys took the absolute one is another key, once)."""
    paths = [p if "://" in p or os.path.isabs(p) else os.path.abspath(p) for p in spec.data.paths]
    text = json.dumps([spec.name, sorted(paths)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _refuse_existing(spec: JobSpec, instance: str) -> None:
    from pipelines.results import list_runs  # polars: only for jobs that read earlier runs

    for info in list_runs(spec.output.uri, spec.name, storage_options=spec.output.storage_options):
        if info.instance == instance:
            raise UserError(
                f"output.on_existing is 'refuse' and job {spec.name!r} already has a committed run for these inputs "
                f"({', '.join(spec.data.paths)}): {info.uri}. Use output.on_existing: new to add another run."
            )


def metric_backends(spec: JobSpec) -> dict[str, object]:
    """Run metadata for metrics written as torchmetrics classes: which backend computed each key
    (``metric_backends``), and the keys whose torchmetrics state grows with the rows (``unbounded_metrics``)."""
    backends = {m.key: m.backend for m in spec.metrics if m.backend != "evalpipe"}
    unbounded = [
        m.key
        for m in spec.metrics
        if m.backend == "torchmetrics" and not getattr(build_metric(m, spec.task).statistic, "bounded", True)
    ]
    return {
        **({"metric_backends": backends} if backends else {}),
        **({"unbounded_metrics": unbounded} if unbounded else {}),
    }


def _baseline_run(spec: JobSpec, before: dt.datetime) -> Run | None:
    """The run the ``baseline:`` gate compares with (the newest committed run of the job standing for a time before
    ``before``, or the run it names), read before any row is, with the tolerance names checked against it: a name
    the gate would not find (``roc_auc.eror_bound``) is refused now, not after the whole job has run. A part of a
    metric the baseline lacks (added since) is known only once computed: the gate checks it."""
    from pipelines.metric_names import listed_names, metric_names
    from pipelines.results import latest_run  # polars: only for jobs that read earlier runs

    baseline = spec.baseline
    assert baseline is not None
    options = spec.output.storage_options
    if baseline.run == "latest":
        base = latest_run(spec.output.uri, spec.name, storage_options=options, before=before)
    else:
        base = read_run(baseline.run, options)
    if base is not None and isinstance(baseline.tolerance, Mapping):
        known = metric_names(base)
        for name in baseline.tolerance:
            added = any(selects(m.key, name) and m.key not in known for m in spec.metrics)
            if name != "*" and name not in known and not added:
                listed = listed_names(base, known) | {n for n in known if "[" not in n} | {m.key for m in spec.metrics}
                raise UserError(
                    f"{spec.source}: baseline.tolerance: a tolerance for a value that neither the baseline run "
                    f"{base.id} nor this job's metrics have: {unknown_message('metric', name, listed)} Nothing was read."
                )
    return base


def _compare_with_baseline(spec: JobSpec, run: Run, base: Run | None) -> tuple[Run, tuple[Regression, ...]]:
    """Attach the baseline comparison with ``base`` (:func:`_baseline_run`) to the run's metadata; return the
    regressions."""
    from pipelines.results import compare  # polars: only for jobs that read earlier runs

    baseline = spec.baseline
    assert baseline is not None
    if base is None:
        note = {"run": baseline.run, "found": None, "regressions": []}
        return dataclasses.replace(run, metadata={**run.metadata, "baseline": note}), ()
    regressions = tuple(compare(base, run, baseline.tolerance, alpha=baseline.alpha))
    note = {
        "run": baseline.run,
        "found": base.id,
        "tolerance": baseline.tolerance,
        "regressions": [r.to_dict() for r in regressions],
    }
    return dataclasses.replace(run, metadata={**run.metadata, "baseline": note}), regressions


def check_dataset(spec: JobSpec) -> planning.Plan:
    """List the files, read their footers, check every file's schema, plan the units.

    Raises:
        DataError: no files, unreadable files, a missing or mistyped column (of a role or a slice), or no rows at
            all.
    """
    per_worker = planning.BACKBONE_UNITS_PER_WORKER if spec.backbone else 1
    plan = planning.plan(
        spec.data.paths,
        spec.data.storage_options,
        spec.execution.unit_rows,
        spec.execution.actors or 1,
        per_worker,
        whole_files=adapter_for(spec.task).whole_files,  # a ranking query's rows are ranked together, in one unit
    )
    roles = spec.data.columns.roles()
    for info in plan.files:
        if info.rows:
            check_schema(info, roles, spec.task)
        else:  # (a 0-row file: its columns present, of any type)
            for role, column in roles.items():
                schema_type(info, column, f"data.columns.{role}")
    check_label_types(plan.files_with_rows, roles)
    check_columns(spec.slices, plan.files_with_rows)
    for i, function in enumerate(spec.functions):  # (each column a function reads: present once in every file)
        for keyword, column in function.columns.items():
            for info in plan.files:
                schema_type(info, column, f"functions[{i}].columns.{keyword}")
    if plan.rows == 0:
        files = "its one file has" if len(plan.files) == 1 else f"all {len(plan.files)} files have"
        raise DataError(f"data.path {', '.join(spec.data.paths)}: {files} 0 rows; nothing to evaluate.")
    return plan


def installed_version(name: str) -> str:
    """``importlib.metadata.version(name)``, read from the headers at the top of the package's metadata file
    instead of parsing all of it as an e-mail (numpy's and jax's run to thousands of lines of licences).

    Raises:
        importlib.metadata.PackageNotFoundError: ``name`` is not installed.
    """
    dist = metadata.distribution(name)
    for line in (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").splitlines():
        if line.startswith("Version:"):
            return line.partition(":")[2].strip()
        if not line:  # the end of the headers
            break
    return dist.version


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    found = []
    for name in LIBRARIES:
        try:
            found.append((name, installed_version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(found)


def library_versions() -> dict[str, str]:
    """Python's and the main libraries' versions (read once per process: parsing package metadata is slow)."""
    return {"python": platform.python_version(), **dict(_installed_versions())}


def git_revision(spec: JobSpec) -> tuple[str | None, str | None]:
    """``(commit, branch)``: from the spec (or ``evalpipe run --commit/--branch``), else from the environment
    variables ``EVALPIPE_COMMIT`` / ``EVALPIPE_BRANCH`` (set by a scheduler that shipped the code without its
    ``.git``, as ``ray job submit --working-dir`` does), else from the git checkout holding the job file."""
    if spec.commit or spec.branch:
        return spec.commit, spec.branch
    if os.environ.get("EVALPIPE_COMMIT"):
        return os.environ["EVALPIPE_COMMIT"], os.environ.get("EVALPIPE_BRANCH") or None
    directory = os.path.dirname(os.path.abspath(spec.source)) if "://" not in spec.source else os.getcwd()

    try:  # one git process answers both
        out = subprocess.run(
            ["git", "-C", directory, "rev-parse", "HEAD", "--abbrev-ref", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    commit, _, branch = out.stdout.strip().partition("\n")
    return commit.strip() or None, branch.strip() or None


def bootstrap_settings(spec: JobSpec) -> dict[str, object]:
    """What pairs the replicates of two runs (see :mod:`pipelines.significance`)."""
    conf = spec.confidence
    assert conf is not None
    key_column = spec.data.columns.roles().get(key_role(spec.task))
    return {
        "seed": conf.seed,
        "buckets": conf.buckets,
        "replicates": conf.replicates,
        "level": conf.level,
        "row_key": f"column:{key_column}" if key_column else "file+position",
    }


def run_job(
    spec: JobSpec,
    *,
    progress_stream: TextIO | None = None,
    show_progress: bool = True,
    stop: StopControl | None = None,
) -> RunOutcome:
    """Evaluate ``spec`` and commit the run. Returns the run and its URI. ``stop``: the process's SIGTERM
    handling, told when the run is committed (so that a SIGTERM from then on does not undo the cleanup)."""
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    bound_storage_calls()
    keep_freed_memory()  # (the reduce's temporaries too: see pipelines.host_memory)
    import_seconds = timing.process_age_seconds()
    timing.watch_compiles()
    driver_compile = timing.compile_seconds()
    instance = instance_key(spec)
    if spec.output.on_existing == "refuse":
        _refuse_existing(spec, instance)
    timestamp = as_of(spec.recorded.get("vars") or {}, started)  # (a backfill: the night it evaluates)
    base = _baseline_run(spec, timestamp) if spec.baseline is not None else None
    plan = check_dataset(spec)
    probe_output(spec.output, spec.name)
    spec, quantile_boundaries = resolve_quantiles(spec, plan.files_with_rows)
    spec, idf_counts = resolve_idf(spec, plan.files_with_rows)
    reference = load_reference(spec)
    weights = weights_digest(spec)
    plan_seconds = time.perf_counter() - t0
    driver_compile = timing.compile_seconds() - driver_compile

    statistics = job_statistics(spec)
    metrics, accumulator, replicate_accumulator = statistics.metrics, statistics.accumulator, statistics.replicates
    merger = OrderedMerger(accumulator, replicate_accumulator)
    progress = Progress(len(plan.units), plan.rows, stream=progress_stream or sys.stderr, enabled=show_progress)
    rows_done = 0
    backbone_loads: dict[str, int] = {}
    scores: dict[int, pa.Table] = {}
    dropped: dict[str, int] = {}
    read_retries = 0
    worker_cpu_seconds = worker_compile_seconds = 0.0
    weight_total: float | None = 0.0
    digest: int | None = 0 if spec.confidence else None
    store = CheckpointStore(spec, instance, accumulator, replicate_accumulator) if spec.execution.checkpoints else None

    computed: set[int] = set()  # the units computed by this run (a retried unit may finish twice)

    def on_result(result: UnitResult, *, resumed: bool = False) -> None:
        nonlocal rows_done, read_retries, worker_cpu_seconds, worker_compile_seconds, weight_total, digest
        if store is not None and not resumed:
            computed.add(result.index)
            if len(computed) < len(todo) or result.seconds >= LAST_UNIT_CHECKPOINT_S:
                store.save(result)
        merger.add(result.index, result.partial)
        if result.scores is not None:
            scores[result.index] = result.scores
        if result.backbone_loads:
            backbone_loads[result.worker] = max(backbone_loads.get(result.worker, 0), result.backbone_loads)
        for reason, count in result.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        read_retries += result.read_retries
        if not resumed:
            worker_cpu_seconds += result.cpu_seconds
            worker_compile_seconds += result.compile_seconds
        rows_done += result.rows
        weight_total = None if weight_total is None or result.weight is None else weight_total + result.weight
        digest = None if digest is None or result.key_digest is None else (digest + result.key_digest) % DIGEST_MODULUS
        progress.advance(result.rows, resumed=resumed)

    with _checkpoint_writes(store):
        resumed = store.load(plan.units) if store is not None else {}
        for index in sorted(resumed):
            on_result(resumed[index], resumed=True)
        todo = [u for u in plan.units if u.index not in resumed]
        report = execute(spec, todo, on_result, progress.restart_clock) if todo else _nothing_to_run(spec)
        t_reduce = time.perf_counter()
        reduce_compile = timing.compile_seconds()
        merged = report.merged if report.merged is not None else merger.result()
        merged = with_reference(merged, accumulator.statistics, reference)
        check_weight_total(spec.data.columns.weights, weight_total, rows_done, spec.task.ignore_index)
        check_rows_left(
            rows_done, dropped.get(TOTAL_DROPPED, 0), {k: v for k, v in dropped.items() if k != TOTAL_DROPPED}
        )
        refuse_distinct_slices(merged.rows, spec.slices)
        reported = reported_rows(merged.rows, spec.slices)  # (weights too light: checked where metrics are reported)
        check_states(
            accumulator.statistics, merged.states, statistic_keys(metrics), spec.data.columns.weights, reported
        )
        points, slice_report = build_points(
            spec.redact(", ".join(spec.data.paths)),
            accumulator,
            [] if is_reference_job(spec) else metrics,  # a reference job stores statistics, no values
            merged,
            spec.slices,
            spec.confidence,
            replicate_accumulator,
        )
        check_values(points)
        reduce_seconds = time.perf_counter() - t_reduce
        driver_compile += timing.compile_seconds() - reduce_compile
        commit, branch = git_revision(spec)
        keys = {k for p in points for k in p.metrics}
        run = Run(
            points=tuple(points),
            id=new_run_id(started),
            timestamp=timestamp,
            commit=commit,
            branch=branch,
            environment={
                "libraries": library_versions(),
                "platform": platform.platform(),
                "runner": report.runner,
                "workers": report.workers,
                "cluster": report.cluster,
            },
            metadata={
                "job": spec.name,
                "description": spec.description,
                "spec_source": spec.source,
                "spec": spec.recorded,
                "inputs": [
                    {"path": spec.redact(f.path), "size": f.size, "rows": f.rows, "version": f.version}
                    for f in plan.files
                ],
                **({"started": started.isoformat()} if timestamp != started else {}),
                "rows": rows_done,
                "units": len(plan.units),
                "attempts": report.attempts,
                "retried_units": list(report.retried_units),
                **({"worker_failures": list(report.worker_failures)} if report.worker_failures else {}),
                "resumed_units": sorted(resumed),
                "read_retries": read_retries,
                **metric_backends(spec),
                **({"dropped_rows": _dropped_summary(dropped)} if spec.data.on_bad_rows == "drop" else {}),
                **slice_report,
                **({"quantile_boundaries": quantile_boundaries} if quantile_boundaries else {}),
                **({"bertscore_idf": idf_counts} if idf_counts else {}),
                **({"reference": reference.describe()} if reference is not None else {}),
                **({"bootstrap": bootstrap_settings(spec)} if spec.confidence else {}),
                **({"rows_digest": f"{digest:016x}"} if digest is not None else {}),
                **({"backbone": {"loads_per_worker": backbone_loads, **weights}} if spec.backbone else {}),
                "timings": {
                    **({"import_seconds": round(import_seconds, 6)} if import_seconds is not None else {}),
                    "plan_seconds": round(plan_seconds, 6),
                    "startup_seconds": round(report.startup_seconds, 6),
                    "compile_seconds": round(worker_compile_seconds + driver_compile, 6),
                    "compute_seconds": round(report.compute_seconds, 6),
                    "worker_cpu_seconds": round(worker_cpu_seconds, 6),
                    "reduce_seconds": round(reduce_seconds, 6),
                },
            },
            metric_defs=metric_defs(metrics, sorted(keys)),
        )
        location = run_location(spec.output.uri, spec.name, run.id, spec.output.storage_options)
        regressions: tuple[Regression, ...] = ()
        if spec.baseline is not None:
            run, regressions = _compare_with_baseline(spec, run, base)
        t_commit = time.perf_counter()
        try:
            with committing(stop, location.uri, lambda: read_manifest(location) is not None) as on_commit:
                write_run(
                    location,
                    run,
                    spec.name,
                    accumulator.statistics,
                    merged.states,
                    bucket_states=merged.bucket_states,
                    slice_rows=merged.rows,
                    instance=instance,
                    exclusive_instance=spec.output.on_existing == "refuse",
                    extra_files={SCORES_FILE: _parquet_bytes(pa.concat_tables([scores[i] for i in sorted(scores)]))}
                    if scores
                    else None,
                    on_commit=on_commit,
                    finish=lambda written: timing.with_process_timings(written, time.perf_counter() - t_commit),
                )
        except Exception as exc:
            if isinstance(exc, UserError) or not is_storage_access_error(exc):
                raise
            raise JobFailed(spec.redact(_write_failed(location.uri, exc, store))) from None
        if store is not None:
            try:
                store.clear()
            except OSError as exc:  # the run is committed; leftover checkpoints only take space
                sys.stderr.write(
                    spec.redact(
                        f"evalpipe: warning: run committed, but its checkpoints in {store.directory} could not be "
                        f"removed ({exc}); `evalpipe checkpoints {spec.output.uri} --delete` removes them later\n"
                    )
                )
        window = commit_window(spec, run, location.uri) if spec.window is not None else None
        return RunOutcome(run, location.uri, regressions, stopped=stop is not None and stop.received, window=window)


@contextlib.contextmanager
def _checkpoint_writes(store: CheckpointStore | None) -> Iterator[None]:
    """Around a run: a job stopped (SIGTERM, Ctrl-C) drops the checkpoint uploads still queued, so it ends within
    seconds keeping those written; one that failed otherwise writes them all first, for the run of the fixed job."""
    try:
        yield
    except KeyboardInterrupt:  # (a stop signal, or Ctrl-C in a caller without evalpipe's signal handling)
        if store is not None:
            store.abandon()
        raise
    except BaseException:
        if store is not None:
            pending = store.pending_writes()
            if pending and sys.stderr.isatty():  # (the error follows once they are written)
                sys.stderr.write(f"evalpipe: the job failed; writing the checkpoints of {pending} finished units\n")
            store.finish_writes()
        raise


def commit_window(spec: JobSpec, run: Run, uri: str) -> WindowOutcome:
    """The ``window:`` run after ``run`` (see :mod:`pipelines.window`; polars is imported only for it)."""
    from pipelines.window import commit_window as commit

    return commit(spec, run, uri)


def _write_failed(uri: str, exc: BaseException, store: CheckpointStore | None) -> str:
    """The one paragraph for a run whose files could not be written (nothing was committed). On a full disk
    the checkpoints this run wrote are removed as well, to give the space back."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        removed = store.discard_written() if store is not None else 0
        return (
            f"writing run {uri} failed: no space left on the device (ENOSPC). Nothing was committed; this run's "
            f"files and the {removed} unit checkpoints it had written were removed. Free some space and run the "
            "job again."
        )
    return (
        f"writing run {uri} failed: {type(exc).__name__}: {exc}. Nothing was committed (readers never see a "
        "partial run); finished units are kept as checkpoints where the storage allowed, so running the job "
        "again recomputes only what is missing."
    )


def _nothing_to_run(spec: JobSpec) -> ExecutionReport:
    """Every unit came from checkpoints: no workers were started."""
    return ExecutionReport(spec.execution.runner, 0, 0.0, 0.0, attempts=0)


def _dropped_summary(dropped: dict[str, int]) -> dict[str, object]:
    """``{"rows": total left out, "by_reason": {reason: rows}}`` (a row with two problems counts once in
    ``rows`` and under each of its reasons)."""
    return {
        "rows": dropped.get(TOTAL_DROPPED, 0),
        "by_reason": {k: v for k, v in dropped.items() if k != TOTAL_DROPPED},
    }
