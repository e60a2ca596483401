"""Catalogue coverage against a NumPy computation of the items in each query's top ``k`` (ties in row order, string
and integer item ids, zero-weight queries, ``k`` beyond the list); exact under any batching and unit merge order;
split queries refused; a job without ``item_id`` refused; the ranking example job with coverage on the local
runner and Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import evaluators.functional as F
from evaluators import retrieval
from evaluators.accumulate import Accumulator
from evaluators.catalog import build
from evaluators.coverage import ITEM, ShownItems
from evaluators.retrieval import QUERY, QueryRowsError
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.synthetic import ranking_table
from tests._data import merge_randomly
from tests.conftest import write_job
from tests.test_retrieval import groups, queries, unit_states

RANKING = Task("ranking")


def with_items(rng: np.random.Generator, data: dict, *, strings: bool) -> dict:
    """``data`` with an item id per row from a catalogue of 60 (popular items more often)."""
    items = np.minimum(rng.zipf(1.5, len(data[QUERY])), 60)
    return {**data, ITEM: np.array([f"item-{i}" for i in items], object) if strings else items.astype(np.int64)}


def reference(data: dict, weights: np.ndarray | None, k: int, catalog_size: int | None) -> float:
    """Distinct items among each positive-weight query's top ``k`` (stable sort by descending score) over the
    catalogue: ``catalog_size``, else the distinct items of the positive-weight rows."""
    shown, every = set(), set()
    for rows in groups(data[QUERY]):
        if weights is not None and weights[rows[0]] <= 0:
            continue
        ranked = rows[np.argsort(-data["predictions"][rows], kind="stable")]
        shown.update(data[ITEM][ranked[:k]].tolist())
        every.update(data[ITEM][rows].tolist())
    return len(shown) / (catalog_size if catalog_size is not None else len(every))


def query_weights(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    """One weight per query, a quarter of them 0, repeated over its rows."""
    rows = groups(ids)
    per_query = rng.choice([0.0, 1.0, 2.0, 0.5], len(rows))
    return np.concatenate([np.full(len(r), w) for r, w in zip(rows, per_query, strict=True)])


@pytest.mark.parametrize(
    ("seed", "strings", "k", "catalog_size"), [(0, True, 1, None), (1, False, 3, 80), (2, True, 50, 60)]
)
def test_coverage_equals_the_items_of_each_top_k(seed, strings, k, catalog_size):
    rng = np.random.default_rng(seed)
    data = with_items(rng, queries(rng, 120, ties=True), strings=strings)
    weights = query_weights(rng, data[QUERY])
    metric = build("coverage", RANKING, {"k": k, "catalog_size": catalog_size})
    acc = Accumulator([metric.statistic])
    (state,) = acc.to_host(acc.update(acc.zero(), {**data, "weights": weights}))
    values = metric.compute(state)
    expected = reference(data, weights, k, catalog_size)
    assert values[""] == expected
    assert values[".queries"] == np.count_nonzero(weights[retrieval.runs(data[QUERY])[0]] > 0)
    got = F.coverage(
        data["predictions"], data["targets"], data[QUERY], data[ITEM], k=k, catalog_size=catalog_size, weights=weights
    )
    assert got == expected


def test_small_cases_by_hand():
    scores, queries_ = [0.5, 0.5, 0.1, 0.9, 0.2], ["a", "a", "a", "b", "b"]
    assert (
        F.coverage(scores, np.zeros(5), queries_, [1, 2, 3, 4, 1], k=1) == 2 / 4
    )  # tie: the earlier row (item 1) ranks first
    assert F.coverage(scores, np.zeros(5), queries_, [1, 2, 3, 4, 1], k=2) == 3 / 4
    assert F.coverage(scores, np.ones(5), queries_, ["x", "y", "x", "y", "x"], k=1, catalog_size=10) == 2 / 10
    with pytest.raises(ValueError, match="parameter 'catalog_size' of metric 'coverage' must be"):
        build("coverage", RANKING, {"catalog_size": 0})
    with pytest.raises(ValueError, match="metric 'coverage' serves ranking tasks, not binary"):
        build("coverage", Task("binary"))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 6), st.booleans())
def test_states_are_exactly_equal_for_any_batches_and_unit_merge_order(seed, units, strings):
    """Batches cut anywhere (inside queries too) within a unit, units cut at query boundaries and merged in a random
    tree order: the same sets as one pass."""
    rng = np.random.default_rng(seed)
    data = with_items(rng, queries(rng, int(rng.integers(1, 40)), ties=bool(seed % 2)), strings=strings)
    data["weights"] = query_weights(rng, data[QUERY])
    stat = ShownItems(int(rng.integers(1, 5)))
    acc = Accumulator([stat])
    (whole,) = acc.to_host(acc.update(acc.zero(), data))
    (merged,) = merge_randomly(acc, unit_states(acc, data, units, rng), rng)
    for leaf in ("keys", "shown", "items"):
        assert np.array_equal(merged[leaf], whole[leaf]), leaf
    assert len(whole["shown"]) <= len(whole["items"]) <= 60  # bounded by the catalogue, not the rows


def test_split_queries_are_refused():
    stat = ShownItems(2)
    batch = {"predictions": np.array([0.3, 0.2, 0.5, 0.1]), "weights": np.ones(4), ITEM: np.arange(4)}
    with pytest.raises(QueryRowsError, match="query 'a': its rows are not contiguous"):
        stat.update(stat.zero(), {**batch, QUERY: np.array(["a", "b", "c", "a"], object)})
    halves = [{k: v[i : i + 2] for k, v in {**batch, QUERY: np.array([7, 7, 7, 8])}.items()} for i in (0, 2)]
    a, b = (stat.stored(stat.update(stat.zero(), half)) for half in halves)
    with pytest.raises(QueryRowsError, match="1 queries have rows in two work units or two slices"):
        stat.merge(a, b)


def _example_job(tmp_path, runner: str) -> dict:
    """configs/ranking.yaml on a small synthetic data set, with bootstrap intervals."""
    job = yaml.safe_load((Path(__file__).parent.parent / "configs" / "ranking.yaml").read_text())
    job["data"]["path"] = str(tmp_path / "data")
    job["execution"] = {"runner": runner, "actors": 2, "unit_rows": 400}
    job["output"] = {"uri": str(tmp_path / f"out-{runner}")}
    job["confidence"] = {"replicates": 40, "buckets": 16}
    return job


def _write_example_data(tmp_path) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    for i in range(3):
        table = ranking_table(np.random.default_rng(i), 600, start_id=600 * i)
        pq.write_table(table, tmp_path / "data" / f"part-{i}.parquet", row_group_size=170)


def test_a_coverage_job_without_item_ids_is_refused(tmp_path):
    job = _example_job(tmp_path, "local")
    del job["data"]["columns"]["item_id"]
    path = write_job(tmp_path / "job.yaml", job)
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "data.columns" in result.stderr and "reads the column role item_id" in result.stderr
    with pytest.raises(spec_module.SpecError, match=r"data.columns.*metric 'coverage@3' reads the column role item_id"):
        spec_module.load(str(write_job(tmp_path / "job.yaml", job)))


def _values(run) -> dict:
    return {(point.name, key): (m.value, m.lower, m.upper) for point in run.points for key, m in point.metrics.items()}


def test_the_example_job_with_coverage_and_intervals(tmp_path):
    _write_example_data(tmp_path)
    run = run_job(
        spec_module.load(str(write_job(tmp_path / "job.yaml", _example_job(tmp_path, "local")))), show_progress=False
    ).run
    table = pq.read_table(tmp_path / "data").to_pydict()
    data = {
        "predictions": np.array(table["score"], np.float64),
        QUERY: np.array(table["query_id"]),
        ITEM: np.array(table["item_id"]),
    }
    overall = run.point("overall").metrics
    assert overall["coverage@3"].value == reference(data, None, 3, None)
    assert overall["coverage@3"].lower is None  # a set: no bootstrap interval
    for key in ("ndcg", "ndcg@10", "map@10", "precision@5", "recall@5", "mean_reciprocal_rank", "hit@3"):
        assert overall[key].lower < overall[key].value < overall[key].upper, key
    assert run.metadata["bootstrap"]["row_key"] == "column:query_id"


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_local_and_ray_records_are_equal(tmp_path):
    _write_example_data(tmp_path)
    runs = [
        run_job(
            spec_module.load(str(write_job(tmp_path / f"{r}.yaml", _example_job(tmp_path, r)))), show_progress=False
        ).run
        for r in ("local", "ray")
    ]
    assert _values(runs[0]) == _values(runs[1])
