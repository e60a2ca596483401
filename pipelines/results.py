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
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from evaluators.statistic import State
from pipelines.errors import UserError
from pipelines.records import (
    MetricDirection,
    Regression,
    Run,
    SignificanceResult,
    TrendPoint,
    TrendSeries,
    utc,
)
from pipelines.significance import bootstrap_difference_test
from pipelines.storage import (
    COMMIT_MARKER,
    METRICS_FILE,
    STATISTICS_FILE,
    STATISTICS_INDEX,
    decode_statistics,
    join,
    open_run,
    read_run,
)

if TYPE_CHECKING:  # the spec module imports the metric catalogue, hence JAX: not needed to read runs
    from evaluators.statistic import DerivedMetric
    from pipelines.slicing import SliceKey
    from pipelines.spec import MetricSpec


@dataclass(frozen=True)
class RunInfo:
    """One committed run, as listed from its manifest."""

    job: str
    run_id: str
    uri: str
    timestamp: dt.datetime
    files: Mapping[str, int]
    instance: str | None = None


def _since(value: dt.datetime | dt.date | str | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return utc(value)


def list_runs(
    uri: str,
    job: str | None = None,
    since: dt.datetime | dt.date | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[RunInfo]:
    """Committed runs under ``uri`` (the job spec's ``output.uri``), oldest first.

    Args:
        uri: any fsspec URL holding ``{job}/{run id}/`` directories.
        job: only this job's runs.
        since: only runs started at or after this time (ISO string, date or datetime; UTC if naive).
    """
    try:
        fs, root = url_to_fs(uri, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise UserError(f"{uri}: cannot open this location: {exc}.") from None
    root = root.rstrip("/")
    fs.invalidate_cache()  # object stores: list what is there now, not a cached listing
    pattern = join(root, job or "*", "*", COMMIT_MARKER)
    start = _since(since)
    found: list[RunInfo] = []
    for marker in sorted(fs.glob(pattern)):
        run_path = marker.rsplit("/", 1)[0]
        try:
            with fs.open(marker, "rb") as handle:
                manifest = json.loads(handle.read())
            sizes = {entry["name"].rsplit("/", 1)[-1]: entry["size"] for entry in fs.ls(run_path, detail=True)}
        except (FileNotFoundError, ValueError):
            continue
        files = manifest.get("files", {})
        if any(sizes.get(name) != size for name, size in files.items()):
            continue  # listed files missing or of another size: not a complete run
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


def load_runs(
    uri: str,
    job: str | None = None,
    since: dt.datetime | dt.date | str | None = None,
    *,
    lazy: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> pl.DataFrame | pl.LazyFrame:
    """Every value of the committed runs under ``uri`` in long format, oldest run first.

    Columns: ``run_id, timestamp (UTC), job, commit, point, tags (list of {key, value}), metric,
    value, lower, upper, direction``. Only each run's ``metrics.parquet`` is read. With
    ``lazy=True`` a :class:`polars.LazyFrame` is returned: for local results a lazy Parquet scan
    (filters and projections pushed into the reads); for object stores the files are read through
    fsspec (so the same credentials apply) and the frame is then lazy.
    """
    runs = list_runs(uri, job, since, storage_options)
    if not runs:
        empty = pl.DataFrame(schema=_EMPTY_SCHEMA)
        return empty.lazy() if lazy else empty
    locations = [open_run(info.uri, storage_options) for info in runs]
    if lazy and all("file" in _protocols(loc.fs) for loc in locations):
        # Local files: a real lazy scan, so filters and projections are pushed into the Parquet reads.
        return pl.scan_parquet([loc.file(METRICS_FILE) for loc in locations])
    tables = []
    for loc in locations:
        with loc.fs.open(loc.file(METRICS_FILE), "rb") as handle:
            tables.append(pq.read_table(io.BytesIO(handle.read())))
    frame = pl.from_arrow(pa.concat_tables(tables))
    assert isinstance(frame, pl.DataFrame)
    return frame.lazy() if lazy else frame


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


_EMPTY_SCHEMA = {
    "run_id": pl.String,
    "timestamp": pl.Datetime("us", "UTC"),
    "job": pl.String,
    "commit": pl.String,
    "point": pl.String,
    "tags": pl.List(pl.Struct({"key": pl.String, "value": pl.String})),
    "metric": pl.String,
    "value": pl.Float64,
    "lower": pl.Float64,
    "upper": pl.Float64,
    "direction": pl.String,
}


def load_run(run_uri: str, storage_options: Mapping[str, Any] | None = None) -> Run:
    """The committed :class:`Run` at ``run_uri`` (``{output.uri}/{job}/{run id}``)."""
    return read_run(run_uri, storage_options)


def latest_run(
    uri: str, job: str, exclude: str | None = None, storage_options: Mapping[str, Any] | None = None
) -> Run | None:
    """The newest committed run of ``job`` (other than run id ``exclude``), or None."""
    runs = [r for r in list_runs(uri, job, storage_options=storage_options) if r.run_id != exclude]
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
    rows = frame.filter((pl.col("metric") == metric) & (pl.col("point") == point)).sort("timestamp", "run_id").collect()
    tags: dict[str, str] = {}
    points = []
    for row in rows.iter_rows(named=True):
        tags = {t["key"]: t["value"] for t in row["tags"] or []}
        points.append(
            TrendPoint(row["run_id"], row["timestamp"], row["value"], row["commit"], row["lower"], row["upper"])
        )
    return TrendSeries(metric, point, tags, tuple(points))


# --- comparison ------------------------------------------------------------------------


def _as_run(run: Run | str, storage_options: Mapping[str, Any] | None) -> Run:
    return run if isinstance(run, Run) else read_run(run, storage_options)


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
) -> list[Comparison]:
    """Every ranked metric (direction higher or lower) of every point present in both runs.

    A metric *regressed* when it is worse than the baseline by more than its tolerance (absolute,
    in the metric's units; a mapping gives one per metric name, ``"*"`` the default) and, when both
    runs stored bootstrap replicates, the paired bootstrap test finds the difference significant at
    ``alpha``.
    """
    base, cur = _as_run(baseline, storage_options), _as_run(current, storage_options)
    wanted_metrics = set(metrics) if metrics is not None else None
    wanted_points = set(points) if points is not None else None
    paired = base.metadata.get("bootstrap") is not None and base.metadata.get("bootstrap") == cur.metadata.get(
        "bootstrap"
    )
    out: list[Comparison] = []
    current_points = {p.name: p for p in cur.points}
    for old in base.points:
        if old.name not in current_points or (wanted_points is not None and old.name not in wanted_points):
            continue
        new = current_points[old.name]
        for name, before in old.metrics.items():
            definition = cur.metric_defs.get(name) or base.metric_defs.get(name)
            if name not in new.metrics or definition is None or definition.direction is MetricDirection.INFO:
                continue
            if (
                wanted_metrics is not None
                and name not in wanted_metrics
                and name.split("[", 1)[0] not in wanted_metrics
            ):
                continue
            after = new.metrics[name]
            if not (np.isfinite(before.value) and np.isfinite(after.value)):
                continue
            sign = 1.0 if definition.direction is MetricDirection.HIGHER else -1.0
            worse_by = sign * (before.value - after.value)
            significance = None
            if paired and before.samples is not None and after.samples is not None:
                significance = bootstrap_difference_test(after, before, alpha)
            regressed = worse_by > _tolerance_for(tolerance, name) and (
                significance is None or significance.significant
            )
            out.append(
                Comparison(
                    old.name, name, before.value, after.value, definition.direction, worse_by, significance, regressed
                )
            )
    return out


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
    return (
        float("inf")
        if before == 0 and after != 0
        else (0.0 if before == after else 100.0 * (after - before) / abs(before))
    )


# --- statistics ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatistics:
    """A run's merged sufficient statistics, with the metrics that read them."""

    metrics: Sequence[tuple[MetricSpec, DerivedMetric]]
    states: Mapping[SliceKey, Mapping[str, State]]  # slice key -> metric output key -> state

    def state(self, metric_key: str, point: str = "overall") -> State:
        for key, states in self.states.items():
            if _point_name(key) == point:
                return states[metric_key]
        raise KeyError(f"no statistics for point {point!r}")

    def metric(self, metric_key: str) -> DerivedMetric:
        return next(m for spec, m in self.metrics if spec.key == metric_key)


def _point_name(key: SliceKey) -> str:
    return "overall" if not key else ",".join(f"{k}={v}" for k, v in key)


def load_statistics(run_uri: str, storage_options: Mapping[str, Any] | None = None) -> RunStatistics:
    """The merged statistics a run stored (``statistics.npz``), keyed by slice and metric output key.

    Curves (ROC, precision-recall, reliability) are drawn from these: no pass over the data.
    """
    from pipelines.spec import metrics_of_recorded

    run = read_run(run_uri, storage_options)
    loc = open_run(run_uri, storage_options)
    metrics = metrics_of_recorded(run.metadata["spec"], f"{run_uri}/run.json")
    statistics = tuple(dict.fromkeys(m.statistic for _, m in metrics))
    with loc.fs.open(loc.file(STATISTICS_FILE), "rb") as handle:
        npz = handle.read()
    with loc.fs.open(loc.file(STATISTICS_INDEX), "rb") as handle:
        index = handle.read()
    decoded = decode_statistics(statistics, npz, index)
    states = {
        key: {spec.key: per_stat[statistics.index(m.statistic)] for spec, m in metrics}
        for key, per_stat in decoded.items()
    }
    return RunStatistics(metrics, states)
