"""Reading results back: committed runs as polars DataFrames, trends and run comparison.

Everything here sees only *committed* runs: a run directory counts once its ``_COMMITTED``
manifest exists and every file it lists is there with the listed size. A run still being
written, or whose driver died before committing, is invisible.

    >>> import polars as pl  # doctest: +SKIP
    >>> df = load_runs("s3://evals/results", job="nightly-ctr", since="2026-11-01")  # doctest: +SKIP
    >>> df.filter(pl.col("metric") == "roc_auc")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import glob
import io
import math
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from evaluators.statistic import State
from pipelines.errors import UserError, opening_problem
from pipelines.metric_names import listed_names, metric_names
from pipelines.records import (
    MetricDirection,
    Regression,
    Run,
    SignificanceResult,
    TrendPoint,
    TrendSeries,
    recorded_spec,
    selects,
    slice_name,
    unknown_message,
    utc,
)
from pipelines.significance import bootstrap_difference_test, over_other_rows, unreachable_alpha
from pipelines.storage import (
    COMMIT_MARKER,
    METRICS_FILE,
    METRICS_SCHEMA,
    STATISTICS_FILE,
    STATISTICS_INDEX,
    committed_manifest,
    decode_statistics,
    join,
    open_run,
    read_run,
)

if TYPE_CHECKING:  # the spec module imports the metric catalogue, hence JAX: not needed to read runs
    from evaluators.statistic import DerivedMetric
    from pipelines.spec import MetricSpec
    from pipelines.unit_result import SliceKey


@dataclass(frozen=True)
class RunInfo:
    """One committed run, as listed from its manifest."""

    job: str
    run_id: str
    uri: str
    timestamp: dt.datetime
    files: Mapping[str, int]
    instance: str | None = None


MAX_CONCURRENT_READS = 16
"""Requests in flight at once when listing and reading runs (object stores answer each in tens of ms)."""


def concurrently(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(item) for item in items]``, up to ``MAX_CONCURRENT_READS`` at a time, in order."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(MAX_CONCURRENT_READS, len(items))) as pool:
        return list(pool.map(fn, items))


def _unknown(what: str, name: str, valid: Iterable[str]) -> UserError:
    """``what 'name' not found (did you mean ...?); the ones there are: ...``."""
    return UserError(unknown_message(what, name, valid))


def _since(value: dt.datetime | dt.date | str | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise UserError(
                f"since {value!r}: expected an ISO date or date and time (UTC), e.g. 2026-11-01 or 2026-11-01T06:00."
            ) from None
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return utc(value)


def list_runs(
    uri: str,
    job: str | None = None,
    since: dt.datetime | dt.date | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    must_exist: bool = False,
    skip: Container[str] = (),
) -> list[RunInfo]:
    """Committed runs under ``uri`` (the job spec's ``output.uri``), oldest first.

    Args:
        uri: any fsspec URL holding ``{job}/{run id}/`` directories.
        job: only this job's runs (the name as it is: ``*``, ``?`` and ``[`` match themselves).
        since: only runs started at or after this time (ISO string, date or datetime; UTC if naive).
        must_exist: raise :class:`UserError` when ``uri`` does not exist, or ``job`` has no committed run
            there (naming the jobs that have), rather than return an empty list (a misspelt name).
        skip: ``{job}/{run id}`` names of runs already known: listed, but their manifests are not read and they
            are left out (an incremental reader then reads only what is new).
    """
    try:
        fs, root = url_to_fs(uri, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise UserError(f"{uri}: cannot open this location: {opening_problem(exc)}.") from None
    root = root.rstrip("/")
    fs.invalidate_cache()  # object stores: list what is there now, not a cached listing
    start = _since(since)
    if must_exist:
        _check_exists(fs, root, uri, job)
    pattern = join(glob.escape(root), glob.escape(job) if job else "*", "*", COMMIT_MARKER)

    def complete(marker: str) -> tuple[str, dict[str, Any]] | None:
        run_path = marker.rsplit("/", 1)[0]
        manifest = committed_manifest(fs, run_path)
        return None if manifest is None else (run_path, manifest)

    found: list[RunInfo] = []
    listed = sorted(fs.glob(pattern))
    if must_exist and job is None and not listed:  # (a job's or a run's directory given for the location above)
        from pipelines.checkpoints import refuse_inner_directory

        refuse_inner_directory(fs, root, uri)
    markers = [m for m in listed if "/".join(m.rsplit("/", 3)[-3:-1]) not in skip]
    for listed in concurrently(complete, markers):
        if listed is None:
            continue  # no valid manifest, or listed files missing or of another size: not a complete run
        run_path, manifest = listed
        files = manifest["files"]
        timestamp = utc(dt.datetime.fromisoformat(manifest["timestamp"]))
        if start is not None and timestamp < start:
            continue
        relative = run_path[len(root) :].strip("/")
        found.append(
            RunInfo(
                manifest["job"], manifest["run_id"], join(uri, relative), timestamp, files, manifest.get("instance")
            )
        )
    found.sort(key=lambda r: (r.timestamp, r.run_id))
    return found


def _check_exists(fs: Any, root: str, uri: str, job: str | None) -> None:
    from pipelines.checkpoints import check_location  # (one message for every command that reads a location)

    check_location(fs, root, uri)
    if job is None or fs.glob(join(glob.escape(root), glob.escape(job), "*", COMMIT_MARKER)):
        return
    jobs = [m.rsplit("/", 3)[-3] for m in fs.glob(join(glob.escape(root), "*", "*", COMMIT_MARKER))]
    raise _unknown(f"{uri}: job", job, jobs)


def load_runs(
    uri: str,
    job: str | None = None,
    since: dt.datetime | dt.date | str | None = None,
    *,
    lazy: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> pl.DataFrame | pl.LazyFrame:
    """Every value of the committed runs under ``uri`` in long format, oldest run first.

    Columns: ``run_id, timestamp (UTC), job, commit, point, tags (the point's slice tags: Arrow's
    ``map<string, string>``, which polars 2 reads as a dict and polars 1 as a list of ``{key, value}``),
    metric, value, lower, upper, direction``. Only each run's ``metrics.parquet`` is read. With
    ``lazy=True`` a :class:`polars.LazyFrame` is returned: for local results a lazy Parquet scan
    (filters and projections pushed into the reads); for object stores the files are read through
    fsspec (so the same credentials apply) and the frame is then lazy.

    Raises:
        UserError: ``uri`` or ``job`` not found, or a ``metrics.parquet`` that does not read as Parquet
            (damaged after its run committed), naming the file.
    """
    runs = list_runs(uri, job, since, storage_options, must_exist=True)
    if not runs:
        empty = pl.from_arrow(METRICS_SCHEMA.empty_table())  # the dtypes of a non-empty result
        assert isinstance(empty, pl.DataFrame)
        return empty.lazy() if lazy else empty
    locations = [open_run(info.uri, storage_options) for info in runs]
    if lazy and all("file" in _protocols(loc.fs) for loc in locations):
        # Local files: a real lazy scan, so filters and projections are pushed into the Parquet reads (each
        # file's footer is read first, so that a damaged file is named here rather than by polars later).
        concurrently(lambda loc: _metrics_file(loc, lambda f: pq.read_schema(f)), locations)
        return pl.scan_parquet([loc.file(METRICS_FILE) for loc in locations], glob=False)  # (paths as they are)
    tables = concurrently(lambda loc: _metrics_file(loc, lambda f: pq.read_table(io.BytesIO(f.read()))), locations)
    frame = pl.from_arrow(pa.concat_tables(tables))
    assert isinstance(frame, pl.DataFrame)
    return frame.lazy() if lazy else frame


def _metrics_file(loc: Any, read: Callable[[Any], Any]) -> Any:
    """``read`` of the run's open ``metrics.parquet``; one that does not read as Parquet is a UserError naming it."""
    try:
        with loc.fs.open(loc.file(METRICS_FILE), "rb") as handle:
            return read(handle)
    except (pa.ArrowException, ValueError) as exc:
        if isinstance(exc, OSError):  # (a storage failure, not the file's content)
            raise
        raise UserError(
            f"{join(loc.uri, METRICS_FILE)}: not a readable Parquet file ({type(exc).__name__}: {exc}); "
            f"the file was damaged after its run committed. Remove the run directory or restore the file."
        ) from None


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def load_run(run_uri: str, storage_options: Mapping[str, Any] | None = None) -> Run:
    """The committed :class:`Run` at ``run_uri`` (``{output.uri}/{job}/{run id}``, or ``{output.uri}/{job}/latest``
    for the job's newest committed run, as on the command line)."""
    return read_run(resolve_run_uri(run_uri, storage_options), storage_options)


def latest_run(
    uri: str,
    job: str,
    exclude: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    before: dt.datetime | None = None,
) -> Run | None:
    """The newest committed run of ``job`` (other than run id ``exclude``; with ``before``, of those that stand for
    an earlier time: a backfilled night's previous night), or None."""
    runs = [r for r in list_runs(uri, job, storage_options=storage_options) if r.run_id != exclude]
    runs = [r for r in runs if before is None or r.timestamp < utc(before)]
    return read_run(runs[-1].uri, storage_options) if runs else None


def trend(
    uri: str,
    job: str,
    metric: str,
    point: str = "overall",
    since: dt.datetime | dt.date | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> TrendSeries:
    """``metric`` of ``point`` across the committed runs of ``job``, oldest first (runs without it are skipped)."""
    frame = load_runs(uri, job, since, lazy=True, storage_options=storage_options)
    assert isinstance(frame, pl.LazyFrame)
    try:
        rows = frame.filter((pl.col("metric") == metric) & (pl.col("point") == point)).sort("timestamp", "run_id")
        rows = rows.collect()
    except pl.exceptions.PolarsError:  # a file damaged past its footer: name it
        load_runs(uri, job, since, storage_options=storage_options)
        raise
    if rows.is_empty():
        names = frame.select("metric", "point").unique().collect()
        if not names.is_empty() and point not in set(names["point"]):
            raise _unknown(f"job {job!r}: point", point, names["point"])
        at_point = names.filter(pl.col("point") == point)["metric"]
        if not names.is_empty() and set(at_point) == {"rows"}:
            raise UserError(
                f"job {job!r}: point {point!r} reports only its row count in these runs (a slice below its min_count "
                f"gets no metric values), so it has no {metric!r} to trend"
            )
        if not names.is_empty() and metric not in set(at_point):
            raise _unknown(f"job {job!r}: metric", metric, at_point)
    tags: dict[str, str] = {}
    points = []
    for row in rows.iter_rows(named=True):
        tags = _tags(row["tags"])
        points.append(
            TrendPoint(row["run_id"], row["timestamp"], row["value"], row["commit"], row["lower"], row["upper"])
        )
    return TrendSeries(metric, point, tags, tuple(points))


def _tags(value: Any) -> dict[str, str]:
    """A ``tags`` cell as a dict: polars 2 reads Arrow's map as a dict, polars 1 as a list of ``{key, value}``."""
    if isinstance(value, Mapping):
        return dict(value)
    return {t["key"]: t["value"] for t in value or []}


# --- comparison ------------------------------------------------------------------------


def _as_run(run: Run | str, storage_options: Mapping[str, Any] | None) -> Run:
    return run if isinstance(run, Run) else read_run(resolve_run_uri(run, storage_options), storage_options)


def _tolerance_for(tolerance: float | Mapping[str, float], metric: str) -> float:
    if isinstance(tolerance, Mapping):
        base = metric.split("[", 1)[0].split(".", 1)[0]
        return float(tolerance.get(metric, tolerance.get(base, tolerance.get("*", 0.0))))
    return float(tolerance)


@dataclass(frozen=True)
class Comparison:
    """One metric of one point in two runs."""

    point: str
    metric: str
    baseline: float
    current: float
    direction: MetricDirection
    worse_by: float  # how much worse (in the metric's units; negative: better)
    significance: SignificanceResult | None
    regressed: bool


def compare_all(
    baseline: Run | str,
    current: Run | str,
    tolerance: float | Mapping[str, float] = 0.0,
    *,
    metrics: Iterable[str] | None = None,
    points: Iterable[str] | None = None,
    alpha: float = 0.05,
    storage_options: Mapping[str, Any] | None = None,
    force: bool = False,
) -> list[Comparison]:
    """Every ranked metric (direction higher or lower) of every point present in both runs.

    A metric *regressed* when it is worse than the baseline by more than its tolerance (absolute,
    in the metric's units; a mapping gives one per metric name, ``"*"`` the default; default 0: any
    worsening) and, when both runs stored bootstrap replicates, the paired bootstrap test finds the
    difference significant at ``alpha`` (where it cannot test it, a point of one resampled unit, the tolerance
    alone decides: ``significance`` None). A value defined in one run only is compared too (``worse_by`` NaN):
    one that became undefined (NaN: e.g. ROC-AUC of a slice left with one class) *regressed*, whatever the
    tolerance; one that became defined did not. A value undefined in both runs is left out, and so are the
    metrics and points of one run only (:func:`pipelines.run_text.not_compared` names them).

    Raises:
        UserError: a name in ``metrics`` or ``points`` that one of the runs lacks (naming the run), a name in the
            tolerance mapping that neither run has (a typo would otherwise compare nothing and pass), ``alpha``
            not between 0 and 1, or runs of two different jobs unless ``force``.
    """
    base, cur = _as_run(baseline, storage_options), _as_run(current, storage_options)
    _check_comparable(base, cur, tolerance, metrics, points, force, alpha)
    wanted_metrics = set(metrics) if metrics is not None else None
    wanted_points = set(points) if points is not None else None
    paired = _paired(base, cur)
    out: list[Comparison] = []
    current_points = {p.name: p for p in cur.points}
    for old in base.points:
        if old.name not in current_points or (wanted_points is not None and old.name not in wanted_points):
            continue
        new = current_points[old.name]
        same_rows = _rows_of(old) == _rows_of(new)  # (a slice whose rows moved is not paired, as compare_runs says)
        for name, before in old.metrics.items():
            definition = cur.metric_defs.get(name) or base.metric_defs.get(name)
            if name not in new.metrics or definition is None or definition.direction is MetricDirection.INFO:
                continue
            if wanted_metrics is not None and not any(selects(w, name) for w in wanted_metrics):
                continue
            after = new.metrics[name]
            defined = (bool(np.isfinite(before.value)), bool(np.isfinite(after.value)))
            if not any(defined):
                continue  # undefined in both: nothing changed
            sign = 1.0 if definition.direction is MetricDirection.HIGHER else -1.0
            worse_by = sign * (before.value - after.value) if all(defined) else float("nan")
            significance = None
            if all(defined) and paired and same_rows and before.samples is not None and after.samples is not None:
                significance = bootstrap_difference_test(after, before, alpha)
                if math.isnan(significance.p_value):  # no test (a slice of one row): the tolerance decides
                    significance = None
            regressed = not defined[1] or (
                worse_by > _tolerance_for(tolerance, name) and (significance is None or significance.significant)
            )
            out.append(
                Comparison(
                    old.name, name, before.value, after.value, definition.direction, worse_by, significance, regressed
                )
            )
    return out


def _rows_of(point: Any) -> float | None:
    rows = point.metrics.get("rows")
    return None if rows is None else rows.value


def _paired(base: Run, cur: Run) -> bool:
    """Whether the bootstrap replicates of two runs are paired: the same settings over the same rows."""
    bootstrap = base.metadata.get("bootstrap")
    return bootstrap is not None and bootstrap == cur.metadata.get("bootstrap") and not over_other_rows(base, cur)


def _has_samples(run: Run) -> bool:
    """Whether ``run`` stored bootstrap replicates (``confidence.samples``), so that a comparison tests them."""
    return any(m.samples is not None for p in run.points for m in p.metrics.values())


def resolve_run_uri(uri: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """``uri`` itself, or for ``{output}/{job}/latest`` the newest committed run of that job."""
    if uri.rstrip("/").rsplit("/", 1)[-1] != "latest":
        return uri
    job_dir = uri.rstrip("/").rsplit("/", 1)[0]
    if "/" not in job_dir:
        raise UserError(f"{uri}: expected {{output}}/{{job}}/latest, e.g. example-output/churn-binary/latest.")
    output, job = job_dir.rsplit("/", 1)
    runs = list_runs(output, job, storage_options=storage_options, must_exist=True)
    return runs[-1].uri


def _check_comparable(
    base: Run,
    cur: Run,
    tolerance: float | Mapping[str, float],
    metrics: Iterable[str] | None,
    points: Iterable[str] | None,
    force: bool,
    alpha: float = 0.05,
) -> None:
    jobs = (base.metadata.get("job"), cur.metadata.get("job"))
    if jobs[0] != jobs[1] and not force:
        raise UserError(
            f"the baseline is a run of job {jobs[0]!r} and the current run of job {jobs[1]!r}: comparing runs of "
            "different jobs is refused unless forced (evalpipe compare or report --force, compare(..., force=True))."
        )
    sides = ((base, "the baseline", "the current run"), (cur, "the current run", "the baseline"))
    for what, wanted, names_of in (
        ("metric", metrics, metric_names),
        ("point", points, lambda run: {p.name for p in run.points}),
    ):
        for name in wanted or ():
            found = [name in names_of(run) for run, _, _ in sides]
            if not any(found):
                names = names_of(base) | names_of(cur)
                listed_all = listed_names(base, names) | listed_names(cur, names) if what == "metric" else names
                raise _unknown(what, name, listed_all)
            if not all(found):
                (has, side, other), lacks = sides[found.index(True)], sides[found.index(False)][0]
                lacking = names_of(lacks)
                listed = ", ".join(sorted(listed_names(lacks, lacking) if what == "metric" else lacking)) or "none"
                raise UserError(
                    f"{what} {name!r} is only in {side} (run {has.id}), not in {other} (run {lacks.id}, whose "
                    f"{what}s are: {listed}): nothing to compare it with."
                )
    names = metric_names(base) | metric_names(cur)
    if isinstance(tolerance, Mapping):
        for name in tolerance:
            if name != "*" and name not in names:
                raise _unknown("tolerance for metric", name, {n for n in names if "[" not in n} | {"*"})
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise UserError(f"alpha {alpha!r}: expected a significance level between 0 and 1 (exclusive), e.g. 0.05.")
    bootstrap = base.metadata.get("bootstrap")
    if _paired(base, cur) and _has_samples(base) and _has_samples(cur):  # (unpaired runs test no p-value)
        why = unreachable_alpha(alpha, int(bootstrap.get("replicates", 0)))
        if why is not None:
            raise UserError(f"alpha {why}.")
    for name, value in tolerance.items() if isinstance(tolerance, Mapping) else [("", tolerance)]:
        if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
            raise UserError(
                f"tolerance{f' for {name!r}' if name else ''} {value!r}: expected a finite number of at least 0 "
                "(the worsening allowed, in the metric's units)."
            )


def check_shared_metrics(base: Run, cur: Run) -> None:
    """Raise :class:`UserError` naming both runs' ranked metrics (direction higher or lower) when they have none in
    common (runs of two jobs compared with ``force``, or a job whose metrics changed): a comparison of them would
    compare nothing and pass."""

    def ranked(run: Run) -> set[str]:
        keys = {k for p in run.points for k in p.metrics}
        return {k for k in keys if (d := run.metric_defs.get(k)) is None or d.direction is not MetricDirection.INFO}

    keys = (ranked(base), ranked(cur))
    if keys[0] & keys[1]:
        return
    shown = [", ".join(sorted({k.split("[", 1)[0] for k in side})) or "none" for side in keys]
    raise UserError(
        f"the baseline (run {base.id} of job {base.metadata.get('job')!r}) has metrics {shown[0]} and the current run "
        f"(run {cur.id} of job {cur.metadata.get('job')!r}) has metrics {shown[1]}: no metric in common, nothing "
        "to compare."
    )


def compare(
    baseline: Run | str,
    current: Run | str,
    tolerance: float | Mapping[str, float] = 0.0,
    *,
    metrics: Iterable[str] | None = None,
    points: Iterable[str] | None = None,
    alpha: float = 0.05,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Regression]:
    """The metrics that regressed from ``baseline`` to ``current`` (see :func:`compare_all`)."""
    return [
        Regression(
            metric=c.metric,
            point_name=c.point,
            baseline_value=c.baseline,
            current_value=c.current,
            delta_pct=_delta_pct(c.baseline, c.current),
            direction=c.direction,
        )
        for c in compare_all(
            baseline,
            current,
            tolerance,
            metrics=metrics,
            points=points,
            alpha=alpha,
            storage_options=storage_options,
        )
        if c.regressed
    ]


def _delta_pct(before: float, after: float) -> float:
    """The change in percent of ``before``; NaN where that is undefined (either value NaN, or a change from 0,
    which run.json records as null)."""
    if np.isnan(before) or np.isnan(after) or (before == 0 and after != 0):
        return float("nan")
    return 0.0 if before == after else 100.0 * (after - before) / abs(before)


def merge_runs(run_uris: Sequence[str], name: str, **options: Any) -> Any:
    """Commit a run named ``name`` merged from the stored statistics of the committed runs ``run_uris``;
    returns its :class:`~pipelines.merge.MergeOutcome` (``run``, ``uri``). Options and refusals: see
    :func:`pipelines.merge.merge_runs`."""
    from pipelines.merge import merge_runs as merge  # the metric catalogue (JAX): only when merging

    return merge(run_uris, name, **options)


# --- statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatistics:
    """A run's merged sufficient statistics, with the metrics that read them."""

    metrics: Sequence[tuple[MetricSpec, DerivedMetric]]
    states: Mapping[SliceKey, Mapping[str, State]]  # slice key -> metric output key -> state

    def state(self, metric_key: str, point: str = "overall") -> State:
        """The merged state of ``metric_key`` at ``point``; :class:`UserError` naming the points there are."""
        for key, states in self.states.items():
            if slice_name(key) == point:
                return states[metric_key]
        raise _unknown("point", point, {slice_name(key) for key in self.states})

    def metric(self, metric_key: str) -> DerivedMetric:
        return next(m for spec, m in self.metrics if spec.key == metric_key)


def load_statistics(run_uri: str, storage_options: Mapping[str, Any] | None = None) -> RunStatistics:
    """The merged statistics a run stored (``statistics.npz``), keyed by slice and metric output key.

    Curves (ROC, precision-recall, reliability) are drawn from these: no pass over the data. ``run_uri`` may end in
    ``latest``, as for :func:`load_run`.
    """
    from pipelines.spec import metrics_of_recorded

    run_uri = resolve_run_uri(run_uri, storage_options)
    run = read_run(run_uri, storage_options)
    loc = open_run(run_uri, storage_options)
    metrics = metrics_of_recorded(recorded_spec(run, run_uri), f"{run_uri}/run.json")
    statistics = tuple(dict.fromkeys(m.statistic for _, m in metrics))
    with loc.fs.open(loc.file(STATISTICS_FILE), "rb") as handle:
        npz = handle.read()
    with loc.fs.open(loc.file(STATISTICS_INDEX), "rb") as handle:
        index = handle.read()
    decoded = decode_statistics(statistics, npz, index, approximately=True, uri=run_uri)  # (older runs' too)
    states = {
        key: {spec.key: per_stat[statistics.index(m.statistic)] for spec, m in metrics}
        for key, per_stat in decoded.items()
    }
    return RunStatistics(metrics, states)
