"""Slices and bootstrap intervals: sliced = filtered = scikit-learn; intervals independent of sharding and
runner; nominal coverage on simulated data with a known true value."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import norm
from sklearn import metrics as skm

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.bootstrap import buckets
from pipelines.errors import DataError
from pipelines.execute import run_job
from pipelines.reduce import build_points
from pipelines.results import merge_runs
from pipelines.spec import ConfidenceSpec, MetricSpec
from pipelines.synthetic import binary_table
from pipelines.unit_result import Partial
from tests._data import torch_edges
from tests.conftest import write_job

METRICS = [
    "accuracy",
    "f1_score",
    {"name": "roc_auc", "mode": "exact", "as": "auc"},
    "log_loss",
    "brier_score",
    {"name": "expected_calibration_error", "n_bins": 10, "as": "ece"},
]


def _table(rows: int, seed: int) -> pa.Table:
    table = binary_table(np.random.default_rng(seed), rows)
    age = np.random.default_rng(seed + 1).integers(10, 90, rows).astype(np.float64)
    return table.append_column("age", pa.array(age))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    table = _table(24_000, 11)
    root = tmp_path_factory.mktemp("sliced")
    layouts = {}
    one = root / "one"
    one.mkdir()
    pq.write_table(table, one / "all.parquet", row_group_size=24_000)
    layouts["one-shard"] = one
    many = root / "many"
    many.mkdir()
    edges = np.linspace(0, len(table), 38).astype(int)
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        pq.write_table(table.slice(a, b - a), many / f"part-{i:03d}.parquet", row_group_size=200)
    layouts["37-shards"] = many
    groups = root / "groups"
    groups.mkdir()
    pq.write_table(table, groups / "all.parquet", row_group_size=1_000)
    layouts["row-groups"] = groups
    return table, layouts


def job(tmp_path, directory, runner="local", actors=1, confidence=True, unit_rows=3_000, metrics=METRICS):
    spec = {
        "name": "sliced",
        "data": {"path": str(directory), "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"}},
        "task": "binary",
        "metrics": metrics,
        "slices": [
            {"column": "country"},
            {"columns": ["country", "device"], "min_count": 600},
            {"column": "age", "boundaries": [30, 60]},
            {"name": "us_or_de_adults", "filter": {"country": {"in": ["US", "DE"]}, "age": {"ge": 18}}},
            {"column": "device", "max_slices": 2},
            {"column": "score", "quantiles": 4},
        ],
        "execution": {"runner": runner, "actors": actors, "unit_rows": unit_rows},
        "output": {"uri": str(tmp_path / "out")},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    if confidence:
        spec["confidence"] = {"replicates": 60, "level": 0.9, "seed": 3, "buckets": 32}
    return spec_module.load(str(write_job(tmp_path / f"job-{runner}-{actors}.yaml", spec)))


def reference(table: pa.Table, mask: np.ndarray) -> dict[str, float]:
    p = table.column("score").to_numpy().astype(np.float64)[mask]
    y = table.column("label").to_numpy().astype(np.int64)[mask]
    hard = (p > 0.5).astype(int)
    edges = torch_edges(10, table.schema.field("score").type.to_pandas_dtype())  # (the column's dtype)
    bins = np.minimum(np.searchsorted(edges, p, side="right") - 1, 9)
    ece = sum(abs(y[bins == b].mean() - p[bins == b].mean()) * (bins == b).sum() for b in set(bins)) / len(p)
    return {
        "accuracy": skm.accuracy_score(y, hard),
        "f1_score": skm.f1_score(y, hard),
        "auc": skm.roc_auc_score(y, p),
        "log_loss": skm.log_loss(y, p, labels=[0, 1]),
        "brier_score": skm.brier_score_loss(y, p),
        "ece": ece,
        "rows": float(mask.sum()),
    }


@pytest.mark.slow
def test_sliced_values_equal_sklearn_on_the_filtered_rows(tmp_path, dataset):
    table, layouts = dataset
    outcome = run_job(job(tmp_path, layouts["row-groups"], confidence=False), show_progress=False)
    points = {p.name: p for p in outcome.run.points}
    country = table.column("country").to_numpy(zero_copy_only=False).astype(str)
    device = table.column("device").to_numpy(zero_copy_only=False).astype(str)
    age = table.column("age").to_numpy()
    expected_masks = {
        "overall": np.ones(len(table), bool),
        "country=JP": country == "JP",
        "country=US,device=android": (country == "US") & (device == "android"),
        "age=[30, 60)": (age >= 30) & (age < 60),
        "age=[-inf, 30)": age < 30,
        "filter=us_or_de_adults": np.isin(country, ["US", "DE"]) & (age >= 18),
    }
    # quantiles: 4 -> buckets at the quartiles of every row's score (numpy's linear interpolation)
    score = table.column("score").to_numpy().astype(np.float64)
    q1, q2, q3 = np.quantile(score, [0.25, 0.5, 0.75])
    assert outcome.run.metadata["quantile_boundaries"] == {"score": [q1, q2, q3]}
    expected_masks[f"score=[{q1:g}, {q2:g})"] = (score >= q1) & (score < q2)
    expected_masks[f"score=[{q3:g}, inf)"] = score >= q3
    for name, mask in expected_masks.items():
        got = {k: m.value for k, m in points[name].metrics.items()}
        for key, value in reference(table, mask).items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, key)
    assert points["country=US,device=android"].tags == {"country": "US", "device": "android"}
    # The same rows through an unsliced job over a filtered file give the same values.
    mask = expected_masks["country=JP"]
    only = tmp_path / "jp"
    only.mkdir()
    pq.write_table(table.filter(pa.array(mask)), only / "jp.parquet")
    unsliced = run_job(job(tmp_path, only, confidence=False, metrics=METRICS), show_progress=False)
    jp = {k: m.value for k, m in unsliced.run.point("overall").metrics.items()}
    assert jp == pytest.approx({k: m.value for k, m in points["country=JP"].metrics.items()}, rel=1e-12)


def test_min_count_and_max_slices_are_recorded(tmp_path, dataset):
    table, layouts = dataset
    run = run_job(job(tmp_path, layouts["one-shard"], confidence=False), show_progress=False).run
    names = {p.name for p in run.points}
    # device has 3 values and max_slices 2: the smallest ("web", 20%) is dropped and recorded.
    assert {"device=ios", "device=android"} <= names and "device=web" not in names
    assert run.metadata["dropped_slices"]["device"]["slices"] == 1
    web = (table.column("device").to_numpy(zero_copy_only=False) == "web").sum()
    assert run.metadata["dropped_slices"]["device"]["rows"] == web
    # crosses below min_count 600 keep only their row count
    for name in run.metadata["below_min_count"]:
        point = next(p for p in run.points if p.name == name)
        assert set(point.metrics) == {"rows"} and point.metrics["rows"].value < 600


def _values_and_intervals(run):
    return {(p.name, k): (m.value, m.lower, m.upper) for p in run.points for k, m in p.metrics.items()}


COUNT_METRICS = [
    "accuracy",
    "f1_score",
    "matthews_corrcoef",
    {"name": "roc_auc", "as": "auc"},
    "average_precision",
    "log_loss",
    "brier_score",
    {"name": "expected_calibration_error", "n_bins": 10, "as": "ece"},
]


@pytest.mark.slow
@pytest.mark.ray
def test_values_and_intervals_do_not_depend_on_sharding_runner_or_actors(tmp_path, dataset, ray_cluster):
    _, layouts = dataset
    runs = {
        name: run_job(job(tmp_path / name, d, metrics=COUNT_METRICS), show_progress=False).run
        for name, d in layouts.items()
    }
    runs["ray-1"] = run_job(
        job(tmp_path / "r1", layouts["37-shards"], "ray", 1, metrics=COUNT_METRICS), show_progress=False
    ).run
    runs["ray-2"] = run_job(
        job(tmp_path / "r2", layouts["37-shards"], "ray", 2, metrics=COUNT_METRICS), show_progress=False
    ).run
    baseline = _values_and_intervals(runs["one-shard"])
    assert any(v[1] is not None for v in baseline.values())
    for name, run in runs.items():
        assert _values_and_intervals(run) == baseline, name  # bit for bit


def _interval(metric, state, bucket_states, confidence):
    acc = Accumulator([metric.statistic])
    racc = Accumulator([metric.statistic.for_replicates()])
    partial = Partial({(): (state,)}, {(): bucket_states}, {(): 1})
    points, _ = build_points("sim", acc, [(MetricSpec(metric.name, "m"), metric)], partial, (), confidence, racc)
    m = points[0].metrics["m"]
    return m.lower, m.upper


@functools.cache
def simulated_coverage() -> dict[str, float]:
    """200 datasets of 1,500 rows: latent score N(mu, 1) for positives, N(0, 1) for negatives,
    probability sigmoid(s - c). True AUC = Phi(mu / sqrt 2); true accuracy and binned ECE from
    the model's law (ECE by a 4M-row Monte Carlo)."""
    mu, c, prior, n, datasets = 1.2, 0.9, 0.35, 1_500, 200
    rng = np.random.default_rng(2026)
    big = 4_000_000
    yb = rng.random(big) < prior
    pb = 1 / (1 + np.exp(-(rng.normal(0, 1, big) + mu * yb - c)))
    bins_b = np.minimum((pb * 10).astype(int), 9)
    true = {
        "auc": norm.cdf(mu / np.sqrt(2)),
        "accuracy": prior * (1 - norm.cdf(c - mu)) + (1 - prior) * norm.cdf(c),
        "ece": sum(abs(yb[bins_b == b].mean() - pb[bins_b == b].mean()) * (bins_b == b).mean() for b in range(10)),
    }
    task = Task("binary")
    metrics = {
        "auc": catalog.build("roc_auc", task),
        "accuracy": catalog.build("accuracy", task),
        "ece": catalog.build("expected_calibration_error", task, {"n_bins": 10}),
    }
    confidence = ConfidenceSpec(replicates=200, level=0.95, seed=0, buckets=64)
    acc = Accumulator(m.statistic for m in metrics.values())
    racc = Accumulator(s.for_replicates() for s in acc.statistics)
    covered = dict.fromkeys(metrics, 0)
    for d in range(datasets):
        y = (rng.random(n) < prior).astype(np.int64)
        p = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + mu * y - c)))
        cols = {"predictions": p, "targets": y}
        state = acc.update(acc.zero(), cols)
        g = buckets(np.arange(d * n, (d + 1) * n, dtype=np.uint64), confidence.buckets, 0)
        bucket_states = racc.update_grouped(racc.zero_grouped(confidence.buckets), cols, g)
        for name, metric in metrics.items():
            i = acc.index(metric.statistic)
            lower, upper = _interval(metric, state[i], (bucket_states[i],), confidence)
            covered[name] += lower <= true[name] <= upper
    return {name: hits / datasets for name, hits in covered.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["accuracy", "auc", "ece"])
def test_bootstrap_coverage_on_simulated_data_with_known_truth(name):
    coverage = simulated_coverage()[name]
    assert 0.91 <= coverage <= 0.99, (name, coverage)


@pytest.mark.slow
def test_intervals_when_statistics_share_a_replicate_statistic(tmp_path, dataset):
    """Exact and binned ROC-AUC both resample the same coarse histogram: each still gets its own interval, and
    both intervals equal those of jobs computing each metric alone."""
    _, layouts = dataset
    both = [
        {"name": "roc_auc", "mode": "exact", "as": "exact"},
        {"name": "roc_auc", "as": "binned"},
        "average_precision",
    ]
    run = run_job(job(tmp_path / "both", layouts["one-shard"], metrics=both), show_progress=False).run
    for name, metric in (("exact", both[0]), ("binned", both[1])):
        alone = run_job(job(tmp_path / name, layouts["one-shard"], metrics=[metric]), show_progress=False).run
        for point in alone.points:
            got, want = run.point(point.name).metrics.get(name), point.metrics.get(name)
            if want is None:
                continue
            assert want.lower is not None
            assert (got.value, got.lower, got.upper) == (want.value, want.lower, want.upper), (point.name, name)


def test_a_slice_of_one_row_has_no_interval_and_an_undefined_metric_none_either(tmp_path):
    """A slice whose rows sit in one bootstrap bucket (one row) is one resampled unit: every replicate is the
    same state scaled, so its interval is NaN (scipy's bootstrap refuses a sample of one) where it was
    ``[value, value]``. A metric undefined in every replicate (ROC-AUC of a slice of positives only) is NaN with
    a NaN interval; the other slices keep the basic interval of their replicates."""
    rng = np.random.default_rng(5)
    n = 3000
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    group = np.array(["big"] * n, object)
    group[0] = "one"
    group[1:41] = "positives"
    y[1:41] = 1
    (tmp_path / "data").mkdir()
    table = pa.table({"score": p, "label": y, "group": list(group), "row_id": np.arange(n)})
    pq.write_table(table, tmp_path / "data" / "part.parquet")
    spec = {
        "name": "edge-slices",
        "data": {
            "path": str(tmp_path / "data"),
            "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"},
        },
        "task": "binary",
        "metrics": ["accuracy", "roc_auc", "log_loss"],
        "slices": [{"column": "group"}],
        "confidence": {"replicates": 200, "level": 0.9, "seed": 3, "buckets": 64, "samples": True},
        "output": {"uri": str(tmp_path / "out")},
    }
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).run
    one = run.point("group=one").metrics
    assert one["accuracy"].value == float((p[0] > 0.5) == y[0])
    assert one["log_loss"].value == pytest.approx(skm.log_loss(y[:1], p[:1], labels=[0, 1]), rel=1e-12)
    for name in ("accuracy", "log_loss"):
        samples = np.asarray(one[name].samples)
        assert np.isfinite(samples).sum() > 100 and len(np.unique(samples[np.isfinite(samples)])) == 1
        assert np.isnan(one[name].lower) and np.isnan(one[name].upper), name
    positives = run.point("group=positives").metrics["roc_auc"]
    assert np.isnan(positives.value) and np.isnan(positives.lower) and np.isnan(positives.upper)
    big = run.point("group=big").metrics["accuracy"]
    finite = np.asarray(big.samples)
    lo, hi = np.quantile(finite - big.value, [0.05, 0.95])
    assert (big.lower, big.upper) == pytest.approx((big.value - hi, big.value - lo), abs=1e-15)


def test_float_slice_values_and_boundaries_that_differ_in_the_7th_digit_are_separate_slices(tmp_path):
    """Slice names of floats keep six significant digits only where those read back as the value: 0.1234567 and
    0.1234568 are two slices (once both one ``0.123457``, whose rows overwrote each other), and so are the buckets of
    boundaries that close."""
    rng = np.random.default_rng(8)
    n = 600
    p, y = rng.random(n), rng.integers(0, 2, n)
    version = np.where(np.arange(n) % 3 == 0, 0.1234567, np.where(np.arange(n) % 3 == 1, 0.1234568, 0.5))
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"score": p, "label": y, "version": version}), tmp_path / "data" / "part.parquet")
    spec = {
        "name": "close-floats",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "slices": [{"column": "version"}, {"column": "score", "boundaries": [0.3000001, 0.3000002, 0.5]}],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).run
    masks = {
        "version=0.1234567": version == 0.1234567,
        "version=0.1234568": version == 0.1234568,
        "version=0.5": version == 0.5,
        "score=[-inf, 0.3000001)": p < 0.3000001,
        "score=[0.3000002, 0.5)": (p >= 0.3000002) & (p < 0.5),
        "score=[0.5, inf)": p >= 0.5,
    }
    assert {pt.name for pt in run.points} >= set(masks)
    for name, mask in masks.items():
        point = run.point(name)
        assert point.metrics["rows"].value == mask.sum(), name
        assert point.metrics["accuracy"].value == pytest.approx(skm.accuracy_score(y[mask], p[mask] > 0.5), abs=1e-15)


def test_a_whole_number_names_one_slice_in_int_float32_and_float64_files_and_filters_compare_as_numpy_does(tmp_path):
    """1234567 is one slice whether a file holds it as int64, float32 or float64 (it was `1234567` and
    `1.23457e+06`, then `1234567.0`); filters NumPy compares (text ids in an `in` list on integers, 0/1 beside
    booleans) are kept."""
    (tmp_path / "data").mkdir()
    rng = np.random.default_rng(2)
    for i, dtype in enumerate((np.int64, np.float32, np.float64)):
        n = 30
        table = pa.table(
            {
                "score": rng.random(n),
                "label": rng.integers(0, 2, n),
                "v": np.where(np.arange(n) % 2 == 0, 1234567, 3).astype(dtype),
                "k": np.arange(n) % 4,
                "b": np.arange(n) % 2 == 0,
            }
        )
        pq.write_table(table, tmp_path / "data" / f"part-{i}.parquet")
    spec = {
        "name": "whole",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "slices": [
            {"column": "v"},
            {"name": "ids", "filter": {"k": {"in": ["1", "3"]}}},
            {"name": "ones", "filter": {"b": {"eq": 1}}},
        ],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).run
    rows = {p.name: p.metrics["rows"].value for p in run.points}
    assert rows["v=1234567"] == rows["v=3"] == 45 and rows["filter=ids"] == 45 and rows["filter=ones"] == 45


def test_string_slices_stored_three_ways_date_filters_and_a_number_var_in_a_filter(tmp_path):
    """A string column as `string`, `dictionary<string>` (a pandas categorical) and `large_string` in three files of
    one work unit was Arrow's concatenation error (exit 1); a date or time compared with `eq` / `ge` was NumPy's
    (datetime64 against text); a number filled in from a var (text) was refused beside numbers."""
    import datetime as dt

    (tmp_path / "data").mkdir()
    rng = np.random.default_rng(5)
    frames = []
    for i, kind in enumerate(("string", "dictionary", "large_string")):
        n = 40
        names = rng.choice(["a", "b", "c"], n)
        column = {
            "string": pa.array(names),
            "dictionary": pa.array(names).dictionary_encode(),
            "large_string": pa.array(names, pa.large_string()),
        }[kind]
        days = np.datetime64("2026-11-01") + rng.integers(0, 5, n).astype("timedelta64[D]")
        score, label, age = rng.random(n), rng.integers(0, 2, n), rng.integers(10, 30, n)
        table = pa.table({"score": score, "label": label, "name": column, "day": days, "age": age})
        table = table.append_column("at", pa.array(days.astype("datetime64[us]"), pa.timestamp("us")))
        pq.write_table(table, tmp_path / "data" / f"part-{i}.parquet")
        frames.append((names, days, score, label, age))
    names, days, score, label, age = (np.concatenate(parts) for parts in zip(*frames, strict=True))
    spec = {
        "name": "stored-ways",
        "vars": {"adult": 18},
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "slices": [
            {"column": "name"},
            {"name": "on_day", "filter": {"day": {"eq": dt.date(2026, 11, 2)}}},
            {"name": "from_day", "filter": {"at": {"ge": "2026-11-03 00:00:00"}}},
            {"name": "adults", "filter": {"age": {"ge": "${adult}"}}},
        ],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).run
    masks = {
        **{f"name={v}": names == v for v in ("a", "b", "c")},
        "filter=on_day": days == np.datetime64("2026-11-02"),
        "filter=from_day": days >= np.datetime64("2026-11-03"),
        "filter=adults": age >= 18,
    }
    for point, mask in masks.items():
        metrics = run.point(point).metrics
        assert metrics["rows"].value == mask.sum(), point
        assert metrics["accuracy"].value == pytest.approx(skm.accuracy_score(label[mask], score[mask] > 0.5), abs=1e-15)


def test_a_filter_that_matches_no_row_is_named_in_the_run_and_on_stderr(tmp_path, capsys):
    """A filter entry whose conditions no row meets (a mistyped value) has no point; the run's metadata names it
    (``empty_filters``) and ``evalpipe run`` warns on stderr, exit 0; a filter that matches keeps its point."""
    from pipelines import cli

    (tmp_path / "data").mkdir()
    rng = np.random.default_rng(4)
    n = 200
    table = pa.table(
        {"score": rng.random(n), "label": rng.integers(0, 2, n), "country": np.array(["US", "DE"])[np.arange(n) % 2]}
    )
    pq.write_table(table, tmp_path / "data" / "part-0.parquet")
    spec = {
        "name": "filters",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "slices": [
            {"name": "germany", "filter": {"country": {"eq": "DE"}}},
            {"name": "typo", "filter": {"country": {"eq": "UK"}}},
        ],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    assert cli.main(["run", str(write_job(tmp_path / "job.yaml", spec)), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: filter=typo matched no row" in err and "germany" not in err, err
    from pipelines.results import list_runs, load_run

    (info,) = list_runs(str(tmp_path / "out"))
    loaded = load_run(info.uri)
    assert loaded.metadata["empty_filters"] == ["filter=typo"]
    points = {p.name: p.metrics["rows"].value for p in loaded.points}
    assert points == {"overall": 200.0, "filter=germany": 100.0}


def _slice_job(tmp_path, name: str, slices: list, unit_rows: int | None = None) -> dict:
    execution = {"runner": "local", **({"unit_rows": unit_rows} if unit_rows else {})}
    return {
        "name": name,
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "slices": slices,
        "execution": execution,
        "output": {"uri": str(tmp_path / f"out-{unit_rows}")},
    }


def _points(tmp_path, job: dict) -> dict[str, tuple[float, float]]:
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False).run
    return {p.name: (p.metrics["rows"].value, p.metrics["accuracy"].value) for p in run.points}


def test_a_number_has_one_slice_name_in_int_float32_and_float64_files_whatever_the_units(tmp_path):
    """``amt`` 1000000 in an int64 file and 1000000.0 in a float64 one were ``amt=1e+06`` in one unit but two slices
    (``1e+06`` and ``1000000``) in units of 1,000 rows; float32 0.1 beside float64 0.1 was ``x=0.1`` plus
    ``x=0.10000000149011612`` in one unit, one ``x=0.1`` in several. Now one name each, the same points and values
    for any unit size, equal to scikit-learn on the value's rows."""
    rng = np.random.default_rng(21)
    (tmp_path / "data").mkdir()
    parts = []
    for i, (amount_type, x_type) in enumerate(((pa.int64(), pa.float32()), (pa.float64(), pa.float64()))):
        n = 1500
        score, label = rng.random(n), rng.integers(0, 2, n)
        amount = np.where(rng.random(n) < 0.5, 1_000_000, 5)
        x = np.where(rng.random(n) < 0.5, 0.1, 0.25)
        table = pa.table(
            {
                "score": score,
                "label": label,
                "amt": pa.array(amount).cast(amount_type),
                "x": pa.array(x).cast(x_type),
            }
        )
        pq.write_table(table, tmp_path / "data" / f"part-{i}.parquet")
        parts.append((score, label, amount, x))
    score, label, amount, x = (np.concatenate(c) for c in zip(*parts, strict=True))
    slices = [{"column": "amt"}, {"column": "x"}]
    points = [_points(tmp_path, _slice_job(tmp_path, "names", slices, unit_rows)) for unit_rows in (None, 1000, 700)]
    assert points[0] == points[1] == points[2]
    masks = {"amt=1000000": amount == 1_000_000, "amt=5": amount == 5, "x=0.1": x == 0.1, "x=0.25": x == 0.25}
    assert set(points[0]) == {"overall", *masks}
    for name, mask in masks.items():
        assert points[0][name] == (mask.sum(), pytest.approx(skm.accuracy_score(label[mask], score[mask] > 0.5)))


def test_the_distinct_value_limit_is_the_jobs_not_a_units(tmp_path):
    """40 values with ``max_slices: 3`` failed in one unit ("more than 10 x max_slices") and passed in units of 500
    rows. The limit is now at least 1,000 values and checked on the job's merged slices too: 40 values keep the top
    3 for any unit size, and 1,200 values with ``max_slices: 10`` are refused (exit 2) whatever the units."""
    rng = np.random.default_rng(22)
    (tmp_path / "data").mkdir()
    n = 8000
    key = np.sort(rng.integers(0, 40, n))  # (sorted: a small unit sees few values)
    many = np.arange(n) % 1200
    score, label = rng.random(n), rng.integers(0, 2, n)
    table = pa.table({"score": score, "label": label, "k": np.char.add("k", key.astype(str)), "many": many})
    pq.write_table(table, tmp_path / "data" / "part.parquet")
    counts = np.bincount(key, minlength=40)
    top = sorted(range(40), key=lambda v: (-counts[v], f"k{v}"))[:3]
    for unit_rows in (None, 500):
        points = _points(tmp_path, _slice_job(tmp_path, "few", [{"column": "k", "max_slices": 3}], unit_rows))
        assert set(points) == {"overall", *(f"k=k{v}" for v in top)}
        for v in top:
            mask = key == v
            assert points[f"k=k{v}"] == (mask.sum(), pytest.approx(skm.accuracy_score(label[mask], score[mask] > 0.5)))
    for unit_rows in (None, 500):  # (units of 500 rows see 500 values each: refused on the merged slices)
        job = _slice_job(tmp_path, "many", [{"column": "many", "max_slices": 10}], unit_rows)
        with pytest.raises(DataError, match=r"slice 'many' has 1[02]00 distinct values, more than 1000"):
            run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False)
        assert not list((tmp_path / f"out-{unit_rows}").glob("many/2*/_COMMITTED"))
    # runs each within the limit merge whatever their values add up to (their states exist: a window of nights)
    halves = []
    for i, rows in enumerate((slice(0, 4000), slice(4000, n))):
        part = tmp_path / f"half-{i}"
        part.mkdir()
        pq.write_table(
            table.slice(rows.start, rows.stop - rows.start).set_column(
                3, "many", pa.array(np.arange(rows.stop - rows.start) % 600 + 600 * i)
            ),
            part / "part.parquet",
        )
        job = {
            **_slice_job(tmp_path, "halves", [{"column": "many", "max_slices": 10}]),
            "data": {"path": str(part), "columns": {"predictions": "score", "targets": "label"}},
        }
        halves.append(
            str(run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False).uri)
        )
    merged = merge_runs(halves, "halves-merged").run
    assert len(merged.points) == 11 and merged.metadata["dropped_slices"]["many"]["slices"] == 1190


def test_quantile_slices_of_a_column_with_infinities(tmp_path):
    """A quartile among infinite values was NaN (``inf - inf``) and the run an internal error. Such a quantile is no
    boundary: the remaining buckets are numpy's quantiles of the values, the infinities in the end buckets."""
    rng = np.random.default_rng(23)
    (tmp_path / "data").mkdir()
    n = 4000
    x = rng.normal(size=n)
    x[:1500], x[1500:1600] = np.inf, -np.inf
    score, label = rng.random(n), rng.integers(0, 2, n)
    pq.write_table(pa.table({"score": score, "label": label, "x": x}), tmp_path / "data" / "part.parquet")
    run = run_job(
        spec_module.load(
            str(write_job(tmp_path / "job.yaml", _slice_job(tmp_path, "inf", [{"column": "x", "quantiles": 4}])))
        ),
        show_progress=False,
    ).run
    from pipelines.quantiles import quantile_boundaries

    # a quantile on a value beside an inf is that value (numpy's 3 + 0 * inf is NaN)
    assert quantile_boundaries(np.array([1.0, 2.0, 3.0, np.inf, np.inf]), 2) == (3.0,)
    cuts = np.quantile(x, [0.25, 0.5])  # (the 0.75 quantile is among the infinities)
    assert run.metadata["quantile_boundaries"]["x"] == pytest.approx(list(cuts), abs=0)
    edges = [-np.inf, *cuts, np.inf]
    rows = {p.name: p.metrics["rows"].value for p in run.points if p.name != "overall"}
    assert sorted(rows.values()) == sorted(
        int(np.sum((x >= lo) & (x < hi))) + int(np.sum(x == np.inf) if hi == np.inf else 0)
        for lo, hi in itertools.pairwise(edges)
    )
