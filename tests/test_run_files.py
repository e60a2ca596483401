"""``run.json`` (indented, one point per line) and ``metrics.parquet`` (one row per point and metric) hold the
run's record exactly: every field back, NaN as the record's own null, no points at all."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from pipelines.records import Metric, MetricDef, MetricDirection, Point, Run
from pipelines.storage import metrics_table, run_json


def _run(points: int) -> Run:
    return Run(
        points=tuple(
            Point(
                name="overall" if i == 0 else f"group=g{i}",
                scenario="data/*.parquet",
                tags={} if i == 0 else {"group": f"g{i}", "device": "ios"},
                metrics={
                    "accuracy": Metric(0.5 + i / 1000, lower=0.4, upper=0.6),
                    "roc_auc": Metric(float("nan")),
                    "log_loss": Metric(1e300, samples=(1.0, -0.0)),
                    "rows": Metric(float(10 * i)),
                },
            )
            for i in range(points)
        ),
        id="20261204T000000000Z-abcdef",
        timestamp=dt.datetime(2026, 12, 4, tzinfo=dt.UTC),
        commit="0" * 40,
        metadata={"job": "files", "spec": {"task": "binary"}},
        metric_defs={
            "accuracy": MetricDef("accuracy"),
            "log_loss": MetricDef("log_loss", direction=MetricDirection.LOWER),
            "rows": MetricDef("rows", direction=MetricDirection.INFO),
        },
    )


@pytest.mark.parametrize("points", [0, 1, 7])
def test_run_json_holds_the_record_with_one_point_per_line(points: int) -> None:
    run = _run(points)
    text = run_json(run).decode()
    assert json.loads(text) == json.loads(json.dumps(run.to_dict()))
    assert Run.from_dict(json.loads(text)).to_dict() == run.to_dict()
    point_lines = [line for line in text.splitlines() if line.startswith('  {"name": ')]
    assert len(point_lines) == points


def test_metrics_table_has_a_row_per_point_and_metric() -> None:
    run = _run(5)
    table = metrics_table(run, "files").to_pylist()
    expected = [
        (p.name, dict(p.tags), name, m.value, m.lower, m.upper, str(run.metric_defs[name].direction))
        if name in run.metric_defs
        else (p.name, dict(p.tags), name, m.value, m.lower, m.upper, "higher")
        for p in run.points
        for name, m in p.metrics.items()
    ]
    got = [
        (r["point"], dict(r["tags"]), r["metric"], r["value"], r["lower"], r["upper"], r["direction"]) for r in table
    ]
    assert len(got) == len(expected) == 20
    for row, want in zip(got, expected, strict=True):
        assert row[:3] == want[:3] and row[4:] == want[4:]
        assert row[3] == want[3] or (math.isnan(row[3]) and math.isnan(want[3]))
    assert {r["run_id"] for r in table} == {run.id} and {r["job"] for r in table} == {"files"}
    assert {r["commit"] for r in table} == {run.commit}
    assert {r["timestamp"] for r in table} == {run.timestamp}
