"""The results site's own state: one compact JSON index of per-run summary values, kept in the site directory.

Regenerating the site reads this index and only the runs it does not list yet, so a bucket with a thousand
nightly runs costs one new ``run.json`` (and its outcome record) per night, not a thousand reads. Layout::

    {site}/_site/index.json            every job: its metrics, points and one summary per run (oldest first)
    {site}/_site/{job}/last_run.json   the newest run of the job, whole (bootstrap replicates included): the
                                       baseline the next run is compared with

A summary holds, for every point and ranked metric, ``[value, lower, upper]`` (``null`` where absent), and the
comparison with the run before it (:func:`pipelines.results.compare_all`, see :func:`summarise`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pipelines.records import Metric, MetricDirection, MetricPriority, Run, utc
from pipelines.report import ranked_metrics
from pipelines.results import compare_all

INDEX_VERSION = 1
OVERALL = "overall"
STATE_DIR = "_site"
INDEX_FILE = f"{STATE_DIR}/index.json"


def last_run_file(job: str) -> str:
    """Where (relative to the site root) the newest run of ``job`` is kept whole."""
    return f"{STATE_DIR}/{job}/last_run.json"


@dataclass(frozen=True)
class Change:
    """One metric of one point against the previous run.

    ``worse_by`` is in the metric's units (negative: better); ``p_value`` is the paired bootstrap test's when
    both runs kept replicates (``confidence.samples``), else None; ``significant`` is that test's verdict, else
    whether the previous value lies outside this run's interval, else None (no interval either).
    """

    worse_by: float
    p_value: float | None
    significant: bool | None
    regressed: bool

    def to_list(self) -> list[Any]:
        return [self.worse_by, self.p_value, self.significant, self.regressed]

    @classmethod
    def from_list(cls, data: Sequence[Any]) -> Change:
        return cls(float(data[0]), data[1], data[2], bool(data[3]))


Triple = tuple[float, float | None, float | None]


@dataclass(frozen=True)
class RunSummary:
    """What the site shows of one committed run (its values are the run's own, unrounded).

    ``values`` and ``changes`` hold every ranked metric of the ``overall`` point and the primary metrics of every
    point (what the pages draw); ``regressions`` counts the regressed values of every point and metric.
    """

    run_id: str
    timestamp: str  # ISO 8601, UTC
    commit: str | None
    rows: float | None
    status: str  # the outcome record's status (committed, regressed), "committed" when none was written
    report: str | None  # the run's report, relative to the site root; None when reports are not written
    values: Mapping[str, Mapping[str, Triple]]  # point -> metric -> (value, lower, upper)
    changes: Mapping[str, Mapping[str, Change]] = field(default_factory=dict)  # point -> metric -> change
    regressions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "timestamp": self.timestamp,
            "commit": self.commit,
            "rows": self.rows,
            "status": self.status,
            "report": self.report,
            "values": {p: {m: list(v) for m, v in ms.items()} for p, ms in self.values.items()},
            "changes": {p: {m: c.to_list() for m, c in ms.items()} for p, ms in self.changes.items()},
            "regressions": self.regressions,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        return cls(
            data["run_id"],
            data["timestamp"],
            data.get("commit"),
            data.get("rows"),
            data.get("status", "committed"),
            data.get("report"),
            {p: {m: (v[0], v[1], v[2]) for m, v in ms.items()} for p, ms in data.get("values", {}).items()},
            {p: {m: Change.from_list(c) for m, c in ms.items()} for p, ms in data.get("changes", {}).items()},
            int(data.get("regressions", 0)),
        )

    def regressed(self, point: str, metric: str) -> bool:
        change = self.changes.get(point, {}).get(metric)
        return change is not None and change.regressed


@dataclass(frozen=True)
class Failure:
    """A run that started computing but committed nothing: its ``_outcomes`` record (:mod:`pipelines.outcome`)."""

    run_id: str
    status: str
    exit_code: int
    error: str | None

    def to_list(self) -> list[Any]:
        return [self.run_id, self.status, self.exit_code, self.error]

    @classmethod
    def from_list(cls, data: Sequence[Any]) -> Failure:
        return cls(str(data[0]), str(data[1]), int(data[2]), data[3])


@dataclass(frozen=True)
class MetricInfo:
    """How a metric ranks: its direction and whether the job marks it primary."""

    direction: str
    primary: bool


@dataclass(frozen=True)
class JobIndex:
    """One job's part of the index: its metrics (page order), points (page order), runs (oldest first) and the
    runs that failed before committing."""

    metrics: Mapping[str, MetricInfo]
    points: tuple[str, ...]
    runs: tuple[RunSummary, ...]
    failures: tuple[Failure, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {k: [m.direction, m.primary] for k, m in self.metrics.items()},
            "points": list(self.points),
            "runs": [r.to_dict() for r in self.runs],
            "failures": [f.to_list() for f in self.failures],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobIndex:
        return cls(
            {k: MetricInfo(v[0], bool(v[1])) for k, v in data["metrics"].items()},
            tuple(data["points"]),
            tuple(RunSummary.from_dict(r) for r in data["runs"]),
            tuple(Failure.from_list(f) for f in data.get("failures", [])),
        )

    def primary_metrics(self) -> list[str]:
        """The metrics the job marks primary, else its first ranked metric."""
        primary = [k for k, m in self.metrics.items() if m.primary]
        return primary or list(self.metrics)[:1]

    def with_run(self, run: Run, summary: RunSummary) -> JobIndex:
        """This index with ``summary`` appended and ``run``'s metrics and points merged in (order kept)."""
        metrics = dict(self.metrics)
        for key in ranked_metrics(run):
            definition = run.metric_defs.get(key)
            metrics.setdefault(
                key,
                MetricInfo(
                    str(definition.direction if definition else MetricDirection.HIGHER),
                    definition is not None and definition.priority is MetricPriority.PRIMARY,
                ),
            )
        points = tuple(dict.fromkeys((*self.points, *summary.values)))
        return replace(self, metrics=metrics, points=points, runs=(*self.runs, summary))


EMPTY_JOB = JobIndex({}, (), ())


@dataclass(frozen=True)
class SiteIndex:
    """Every job of one results location, as last written to the site."""

    results: str  # the results URI the site was built from
    jobs: Mapping[str, JobIndex]

    def to_json(self) -> str:
        body = {
            "version": INDEX_VERSION,
            "results": self.results,
            "jobs": {k: j.to_dict() for k, j in self.jobs.items()},
        }
        return json.dumps(body, separators=(",", ":"), allow_nan=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> SiteIndex | None:
        """The index, or None when it is of another version or unreadable (the site is then rebuilt)."""
        try:
            data = json.loads(text)
            if data.get("version") != INDEX_VERSION:
                return None
            return cls(data["results"], {k: JobIndex.from_dict(j) for k, j in data["jobs"].items()})
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return None


# --- summarising a run ------------------------------------------------------------------------


def _triple(metric: Metric) -> Triple:
    return (metric.value, metric.lower, metric.upper)


def _significant_by_interval(previous: float, metric: Metric) -> bool | None:
    """Whether ``previous`` lies outside ``metric``'s interval; None without a finite interval."""
    lower, upper = metric.lower, metric.upper
    if lower is None or upper is None or not (math.isfinite(lower) and math.isfinite(upper)):
        return None
    return not lower <= previous <= upper


def run_tolerance(run: Run) -> float | dict[str, float]:
    """The tolerance of the run's own ``baseline:`` gate (as recorded in its spec); 0 without one."""
    baseline = (run.metadata.get("spec") or {}).get("baseline")
    tolerance = baseline.get("tolerance", 0.0) if isinstance(baseline, Mapping) else 0.0
    return dict(tolerance) if isinstance(tolerance, Mapping) else float(tolerance)


def changes(previous: Run, run: Run) -> dict[str, dict[str, Change]]:
    """Every ranked metric of every point of ``run`` against ``previous``.

    :func:`pipelines.results.compare_all` with the run's own gate tolerance decides what got worse and, when
    both runs kept bootstrap replicates, whether that is significant (paired test, alpha 0.05). Without
    replicates a worsening counts as significant when the previous value lies outside this run's interval;
    without an interval either, compare_all's verdict stands alone. A change is *regressed* when it is worse
    beyond the tolerance and not found insignificant.
    """
    out: dict[str, dict[str, Change]] = {}
    points = {p.name: p for p in run.points}
    for c in compare_all(previous, run, run_tolerance(run), force=True):
        p_value = None if c.significance is None else c.significance.p_value
        significant = (
            c.significance.significant
            if c.significance is not None
            else _significant_by_interval(c.baseline, points[c.point].metrics[c.metric])
        )
        regressed = c.regressed and significant is not False
        out.setdefault(c.point, {})[c.metric] = Change(c.worse_by, p_value, significant, regressed)
    return out


def primary_metrics(run: Run) -> list[str]:
    """The ranked metrics ``run`` marks primary, else its first ranked metric."""
    ranked = ranked_metrics(run)
    primary = [k for k in ranked if k in run.metric_defs and run.metric_defs[k].priority is MetricPriority.PRIMARY]
    return primary or ranked[:1]


def _kept(point: str, keys: Sequence[str], primary: Sequence[str]) -> list[str]:
    return list(keys) if point == OVERALL else [k for k in keys if k in primary]


def summarise(run: Run, previous: Run | None, status: str | None, report: str | None) -> RunSummary:
    """The summary of ``run`` compared with ``previous`` (the run before it, if any)."""
    keys, primary = ranked_metrics(run), primary_metrics(run)
    values = {
        p.name: {k: _triple(p.metrics[k]) for k in _kept(p.name, keys, primary) if k in p.metrics} for p in run.points
    }
    compared = changes(previous, run) if previous is not None else {}
    kept = {p: {k: ms[k] for k in _kept(p, keys, primary) if k in ms} for p, ms in compared.items()}
    rows = run.metadata.get("rows")
    return RunSummary(
        run.id,
        utc(run.timestamp).isoformat(),
        run.commit,
        None if rows is None else float(rows),
        status or "committed",
        report,
        {p: ms for p, ms in values.items() if ms},
        {p: ms for p, ms in kept.items() if ms},
        sum(c.regressed for ms in compared.values() for c in ms.values()),
    )
