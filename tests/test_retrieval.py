"""Ranking metrics against scikit-learn's ``ndcg_score`` and torchmetrics' retrieval functions run per query,
with ties, queries without a relevant item, single-item queries and ``k`` beyond the list; exact sharding
invariance (batches cut inside queries, units merged in any order); refusal of a query whose rows are split;
and a YAML ranking job on the local and Ray runners."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score
from torchmetrics.functional import retrieval as tm

from evaluators import retrieval
from evaluators.accumulate import Accumulator
from evaluators.catalog import build
from evaluators.functional import retrieval as FR
from evaluators.retrieval import QUERY, QueryRowsError
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from tests._data import merge_randomly
from tests.conftest import write_job

RANKING = Task("ranking")
KS = (None, 1, 3, 50)
METRICS = {
    "ndcg": ("ndcg", {}),
    **{f"ndcg@{k}": ("ndcg_at_k", {"k": k}) for k in KS if k},
    **{f"map@{k}": ("mean_average_precision", {"k": k}) for k in KS},
    **{f"precision@{k}": ("precision_at_k", {"k": k}) for k in KS if k},
    **{f"recall@{k}": ("recall_at_k", {"k": k}) for k in KS if k},
    **{f"mrr@{k}": ("mean_reciprocal_rank", {"k": k}) for k in KS},
    **{f"hit@{k}": ("hit_rate", {"k": k}) for k in KS if k},
}


def queries(rng: np.random.Generator, count: int, *, ties: bool) -> dict[str, np.ndarray]:
    """Rows of ``count`` queries, contiguous: 1 to 12 items each, graded relevance 0..3 (a fifth of the queries
    without a relevant item), positive scores (on a coarse grid with ``ties``); string query ids."""
    sizes = rng.integers(1, 13, count)
    ids = np.repeat(np.array([f"q{i:04d}" for i in rng.permutation(count)], object), sizes)
    relevance = rng.integers(0, 4, sizes.sum()) * (rng.random(sizes.sum()) < 0.4)
    empty = np.repeat(rng.random(count) < 0.2, sizes)
    relevance[empty] = 0
    scores = rng.uniform(0.01, 1.0, sizes.sum())
    if ties:
        scores = np.round(scores * 4) / 4 + 0.25
    return {"predictions": scores, "targets": relevance.astype(np.float64), QUERY: ids}


def groups(ids: np.ndarray) -> list[np.ndarray]:
    starts, _ = retrieval.runs(ids)
    return np.split(np.arange(len(ids)), starts[1:])


def stable_reference(scores: np.ndarray, relevance: np.ndarray, k: int | None) -> dict[str, float]:
    """Binary-relevance metrics of one query, ties broken by row order (hand-derived, float64; equal to
    torchmetrics' where no scores tie)."""
    ranked = relevance[np.argsort(-scores, kind="stable")] > 0
    shown = min(k or len(ranked), len(ranked))
    top = ranked[:shown]
    hits, relevant = int(top.sum()), int(ranked.sum())
    positions = np.flatnonzero(top) + 1
    return {
        "map": float(np.mean(np.arange(1, hits + 1) / positions)) if hits else 0.0,
        "precision": hits / shown,
        "recall": hits / relevant if relevant else 0.0,
        "mrr": 1.0 / positions[0] if hits else 0.0,
        "hit": float(hits > 0),
    }


def torchmetrics_reference(scores: np.ndarray, relevance: np.ndarray, k: int | None) -> dict[str, float]:
    preds, target = torch.tensor(scores), torch.tensor(relevance > 0)
    n = len(scores)
    return {
        "map": float(tm.retrieval_average_precision(preds, target, top_k=k)),
        "precision": float(tm.retrieval_precision(preds, target, top_k=k or n, adaptive_k=True)),
        "recall": float(tm.retrieval_recall(preds, target, top_k=k)),
        "mrr": float(tm.retrieval_reciprocal_rank(preds, target, top_k=k)),
        "hit": float(tm.retrieval_hit_rate(preds, target, top_k=k)),
    }


def ndcg_reference(scores: np.ndarray, relevance: np.ndarray, k: int | None) -> float:
    if len(scores) == 1:  # scikit-learn refuses one-item lists: nDCG of one item is 1 if relevant, else 0
        return float(relevance[0] > 0)
    return float(ndcg_score(relevance[None], scores[None], k=k))


def references(data: dict[str, np.ndarray], weights: np.ndarray | None = None, *, ties: bool) -> dict[str, float]:
    per_query: dict[str, list[float]] = {key: [] for key in METRICS}
    query_weights = []
    for rows in groups(data[QUERY]):
        s, r = data["predictions"][rows], data["targets"][rows]
        query_weights.append(1.0 if weights is None else weights[rows[0]])
        for k in KS:
            ref = stable_reference(s, r, k)
            if not ties:  # torchmetrics ranks tied scores in no set order; it computes in float32
                for name, value in torchmetrics_reference(s, r, k).items():
                    assert value == pytest.approx(ref[name], rel=1e-6, abs=1e-7), (name, k)
            per_query[f"ndcg@{k}" if k else "ndcg"].append(ndcg_reference(s, r, k))
            for name in ("map", "precision", "recall", "mrr", "hit"):
                if f"{name}@{k}" in per_query:
                    per_query[f"{name}@{k}"].append(ref[name])
    return {key: float(np.average(values, weights=query_weights)) for key, values in per_query.items()}


def one_pass(data: dict[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, float]:
    metrics = {key: build(name, RANKING, params) for key, (name, params) in METRICS.items()}
    acc = Accumulator.for_metrics(metrics.values())
    states = acc.to_host(acc.update(acc.zero(), {**data, "weights": weights}))
    return {key: m.compute(states[acc.index(m.statistic)])[""] for key, m in metrics.items()}


@pytest.mark.parametrize(("seed", "ties"), [(0, False), (1, False), (2, True), (3, True)])
def test_per_query_values_equal_the_references(seed, ties):
    data = queries(np.random.default_rng(seed), 80, ties=ties)
    values = one_pass(data)
    for key, expected in references(data, ties=ties).items():
        assert values[key] == pytest.approx(expected, rel=1e-9, abs=1e-12), key


def test_query_weights_equal_scikit_learns_sample_weight():
    rng = np.random.default_rng(5)
    data = queries(rng, 40, ties=True)
    rows = groups(data[QUERY])
    per_query = rng.integers(1, 4, len(rows)).astype(np.float64)
    weights = np.concatenate([np.full(len(r), w) for r, w in zip(rows, per_query, strict=True)])
    values = one_pass(data, weights)
    for key, expected in references(data, weights, ties=True).items():
        assert values[key] == pytest.approx(expected, rel=1e-9), key
    # the same queries of equal length through scikit-learn's own sample_weight
    size = 5
    scores, relevance = rng.random((30, size)), rng.integers(0, 3, (30, size)).astype(np.float64)
    w = rng.integers(1, 4, 30).astype(np.float64)
    ids = np.repeat(np.arange(30), size)
    got = FR.ndcg_at_k(scores.ravel(), relevance.ravel(), ids, k=3, weights=np.repeat(w, size))
    assert got == pytest.approx(ndcg_score(relevance, scores, k=3, sample_weight=w), rel=1e-12)


def unit_states(acc: Accumulator, data: dict[str, np.ndarray], units: int, rng: np.random.Generator) -> list:
    """Stored states of up to ``units`` work units cut at query boundaries, each fed in batches cut at random rows
    (inside queries too)."""
    starts = retrieval.runs(data[QUERY])[0]
    n = len(data[QUERY])
    bounds = np.unique(np.concatenate([[0, n], rng.choice(starts, min(units, len(starts)), replace=False)]))
    states = []
    for lo, hi in itertools.pairwise(bounds):
        cuts = np.unique(np.concatenate([[lo, hi], rng.integers(lo, hi + 1, 3)]))
        state = acc.zero()
        for a, b in itertools.pairwise(cuts):
            state = acc.update(state, {k: v[a:b] for k, v in data.items()})
        states.append(acc.to_host(state))
    return states


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 6))
def test_states_are_exactly_equal_for_any_batches_and_unit_merge_order(seed, units):
    """Batches cut anywhere (inside queries too) within a unit; units cut at query boundaries, merged in a
    random tree order: the values are bit-identical to one pass (fixed-point sums)."""
    rng = np.random.default_rng(seed)
    data = queries(rng, int(rng.integers(1, 40)), ties=bool(seed % 2))
    expected = one_pass(data)
    metrics = {key: build(name, RANKING, params) for key, (name, params) in METRICS.items()}
    acc = Accumulator.for_metrics(metrics.values())
    merged = merge_randomly(acc, unit_states(acc, data, units, rng), rng)
    for key, metric in metrics.items():
        assert metric.compute(merged[acc.index(metric.statistic)])[""] == expected[key], key


def test_a_collection_updated_batch_by_batch_equals_one_pass():
    from evaluators.stateful import MetricCollection

    data = queries(np.random.default_rng(13), 30, ties=True)
    collection = MetricCollection([{"name": n, **p, "as": key} for key, (n, p) in METRICS.items()], task="ranking")
    for rows in np.array_split(np.arange(len(data[QUERY])), 4):  # cuts through queries
        collection.update(**{k: v[rows] for k, v in data.items()})
    values = collection.compute()
    assert {key: values[key] for key in METRICS} == pytest.approx(one_pass(data), rel=1e-12)


def test_state_size_follows_queries_not_items():
    stat = retrieval.QuerySums(10)
    small = queries(np.random.default_rng(6), 50, ties=False)
    state = stat.stored(stat.update(stat.zero(), {**small, "weights": np.ones(len(small[QUERY]))}))
    assert state["keys"].shape == (50,) and state["sums"].shape == (6, 2) and state["open_rows"].shape == (0, 3)


def test_split_queries_are_refused():
    stat = retrieval.QuerySums(None)
    ones = np.ones(4)
    batch = {"predictions": np.array([0.3, 0.2, 0.5, 0.1]), "targets": np.array([1.0, 0, 1, 0]), "weights": ones}
    with pytest.raises(QueryRowsError, match="query 'a': its rows are not contiguous"):
        stat.update(stat.zero(), {**batch, QUERY: np.array(["a", "b", "c", "a"], object)})
    with pytest.raises(QueryRowsError, match="not contiguous"):
        stat.update(stat.zero(), {**batch, QUERY: np.array(["a", "b", "a", "c"], object)})
    halves = [{k: v[i : i + 2] for k, v in {**batch, QUERY: np.array([7, 7, 7, 8])}.items()} for i in (0, 2)]
    a, b = (stat.stored(stat.update(stat.zero(), half)) for half in halves)
    with pytest.raises(QueryRowsError, match="1 queries have rows in two work units or two slices"):
        stat.merge(a, b)
    with pytest.raises(QueryRowsError, match="different weights"):
        stat.update(stat.zero(), {**batch, QUERY: np.array([1, 1, 2, 2]), "weights": np.array([1.0, 2, 1, 1])})


def test_functions_catalogue_and_edges():
    # k beyond the list: the whole list; one item; no relevant item counts 0
    assert FR.precision_at_k([0.2, 0.9], [1, 0], [1, 1], k=50) == 0.5
    assert FR.ndcg([0.5], [2.0], ["only"]) == 1.0
    assert FR.hit_rate([0.5, 0.4], [0, 0], [1, 1], k=1) == 0.0
    assert FR.mean_average_precision([0.9, 0.8, 0.7], [0, 1, 1], [3, 3, 3]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="metric 'ndcg' serves ranking tasks, not binary"):
        build("ndcg", Task("binary"))
    with pytest.raises(ValueError, match="takes only k, not iou_type"):
        build("mean_average_precision", RANKING, {"iou_type": "segm"})
    with pytest.raises(ValueError, match="parameter 'k' of metric 'hit_rate' must be an integer >= 1"):
        build("hit_rate", RANKING, {"k": 0})


def test_scores_at_or_below_0_rank_like_any_others_where_torchmetrics_drops_their_relevance():
    """Logits or other signed scores: items are ranked by score whatever its sign (the definitions, and scikit-learn's
    nDCG). torchmetrics' average precision, reciprocal rank, precision and recall take an item of score <= 0 as not
    relevant (``target = where(preds > 0, target, 0)``), so there they give 0 here; derived by hand instead."""
    scores, relevance, query = [-0.2, -0.5, -0.9], [1, 0, 1], ["q"] * 3
    assert FR.mean_average_precision(scores, relevance, query) == pytest.approx((1 / 1 + 2 / 3) / 2, rel=1e-12)
    assert FR.mean_reciprocal_rank(scores, relevance, query) == 1.0
    assert FR.precision_at_k(scores, relevance, query, k=2) == 0.5
    assert FR.recall_at_k(scores, relevance, query, k=2) == 0.5
    assert FR.ndcg(scores, relevance, query) == pytest.approx(ndcg_score([relevance], [scores]), rel=1e-12)
    shifted = [s + 1.0 for s in scores]  # the same order, all positive: torchmetrics agrees there
    torch_ap = tm.retrieval_average_precision(torch.tensor(shifted), torch.tensor(relevance, dtype=torch.bool))
    assert FR.mean_average_precision(shifted, relevance, query) == pytest.approx(float(torch_ap), rel=1e-6)
    assert FR.mean_average_precision(scores, relevance, query) == FR.mean_average_precision(shifted, relevance, query)


def test_a_query_weighs_0_in_all_its_rows_or_in_none():
    """A weight is the query's: weights of 0 on some of its rows (which would drop those items and rank the rest)
    are refused as weights that differ; 0 on all of them leaves the query out."""
    scores, relevance, query = [0.9, 0.1, 0.8, 0.3], [1, 0, 0, 1], ["a", "a", "b", "b"]
    with pytest.raises(QueryRowsError, match="different weights"):
        FR.ndcg(scores, relevance, query, weights=[0, 1, 1, 1])
    alone = FR.ndcg(scores[2:], relevance[2:], query[2:])
    assert FR.ndcg(scores, relevance, query, weights=[0, 0, 1, 1]) == alone == pytest.approx(1 / np.log2(3))


def test_k_may_be_a_numpy_integer_or_beyond_any_list():
    scores, relevance, query = [0.1, 0.5], [1, 0], ["a", "a"]
    assert FR.precision_at_k(scores, relevance, query, k=np.int64(1)) == 0.0
    whole = FR.ndcg(scores, relevance, query)
    assert FR.ndcg_at_k(scores, relevance, query, k=10**30) == FR.ndcg_at_k(scores, relevance, query, k=2) == whole


def _write_queries(path, data, files, row_group_size=7) -> None:
    """Queries in ``files`` files (whole queries each), row groups cutting through queries."""
    starts = retrieval.runs(data[QUERY])[0]
    bounds = [*(int(starts[len(starts) * i // files]) for i in range(files)), len(data[QUERY])]
    path.mkdir()
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        table = pa.table(
            {"score": data["predictions"][lo:hi], "rel": data["targets"][lo:hi], "qid": list(data[QUERY][lo:hi])}
        )
        pq.write_table(table, path / f"part-{i}.parquet", row_group_size=row_group_size)


def _job(tmp_path, runner: str, data_dir) -> dict:
    return {
        "name": "ranking",
        "data": {
            "path": f"{data_dir}/*.parquet",
            "columns": {"predictions": "score", "targets": "rel", "query_id": "qid"},
        },
        "task": "ranking",
        "metrics": [{"name": name, **params, "as": key} for key, (name, params) in METRICS.items()],
        "execution": {"runner": runner, "actors": 2, "unit_rows": 64},
        "output": {"uri": str(tmp_path / "out")},
    }


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_ranking_job_equals_the_references(tmp_path, runner, request):
    if runner == "ray":
        request.getfixturevalue("ray_cluster")
    data = queries(np.random.default_rng(8), 120, ties=True)
    _write_queries(tmp_path / "data", data, files=3)
    job = write_job(tmp_path / "job.yaml", _job(tmp_path, runner, tmp_path / "data"))
    result = run_job(spec_module.load(str(job)), show_progress=False)
    values = {k: m.value for k, m in result.run.point("overall").metrics.items()}
    for key, expected in references(data, ties=True).items():
        assert values[key] == pytest.approx(expected, rel=1e-9), key
    assert result.run.metadata["units"] == 3  # files are never split between units


def test_a_query_in_two_files_is_refused(tmp_path):
    data = queries(np.random.default_rng(9), 20, ties=False)
    data[QUERY][-1] = data[QUERY][0]  # the last row belongs to the first query, in another file
    _write_queries(tmp_path / "data", data, files=2)
    job = write_job(tmp_path / "job.yaml", _job(tmp_path, "local", tmp_path / "data"))
    with pytest.raises(DataError, match=r"data.columns.query_id: 1 queries have rows in two work units"):
        run_job(spec_module.load(str(job)), show_progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("run.json"))


def test_a_query_at_the_end_of_one_file_and_the_start_of_the_next_is_refused_in_one_unit(tmp_path):
    """Two small files batched into one work unit: the query ending the first and beginning the second was ranked
    as one list (exit 0) by default, and refused only when a smaller ``unit_rows`` put the files in two units."""
    (tmp_path / "data").mkdir()
    for name, ids in (("a", [0, 0, 1, 1]), ("b", [1, 1, 2, 2])):
        table = pa.table({"score": [0.9, 0.1, 0.8, 0.2], "relevance": [1, 0, 0, 1], "query": ids})
        pq.write_table(table, tmp_path / "data" / f"{name}.parquet")
    for unit_rows, message in (
        (
            None,
            r"column 'query' \(data.columns.query_id\): query 1 has rows at the end of .*a\.parquet and at the start of .*b\.parquet",
        ),
        (1, r"1 queries have rows in two work units"),
    ):
        job = _job(tmp_path, "local", tmp_path / "data")
        job["data"]["columns"] = {"predictions": "score", "targets": "relevance", "query_id": "query"}
        job["execution"] = {"runner": "local", **({"unit_rows": unit_rows} if unit_rows else {})}
        with pytest.raises(DataError, match=message):
            run_job(spec_module.load(str(write_job(tmp_path / f"job{unit_rows}.yaml", job))), show_progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("run.json"))


def test_a_ranking_spec_needs_the_query_column(tmp_path):
    job = _job(tmp_path, "local", tmp_path)
    del job["data"]["columns"]["query_id"]
    with pytest.raises(spec_module.SpecError, match=r"data.columns.*a ranking task needs `query_id`"):
        spec_module.load(str(write_job(tmp_path / "job.yaml", job)))


def test_query_ids_of_uint64_and_int64_files_in_one_unit_stay_integers(tmp_path):
    """A unit joins its files' columns: uint64 ids beside int64 ones (which NumPy would join as float64) keep their
    integer keys, and the values are the single files' ones."""
    data = queries(np.random.default_rng(12), 30, ties=False)
    ids = np.unique(data[QUERY], return_inverse=True)[1]
    half = int(retrieval.runs(ids)[0][15])
    (tmp_path / "data").mkdir()
    for i, (lo, hi, dtype) in enumerate(((0, half, pa.int64()), (half, len(ids), pa.uint64()))):
        table = pa.table(
            {"score": data["predictions"][lo:hi], "rel": data["targets"][lo:hi], "qid": pa.array(ids[lo:hi], dtype)}
        )
        pq.write_table(table, tmp_path / "data" / f"part-{i}.parquet")
    job = _job(tmp_path, "local", tmp_path / "data")
    job["execution"]["unit_rows"] = 10**6  # both files in one unit
    result = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False)
    assert result.run.metadata["units"] == 1
    values = {k: m.value for k, m in result.run.point("overall").metrics.items()}
    for key, expected in references({**data, QUERY: ids}, ties=False).items():
        assert values[key] == pytest.approx(expected, rel=1e-9), key


@pytest.mark.parametrize("unit_rows", [1, 10**6], ids=["a-unit-a-file", "one-unit"])
def test_a_negative_int64_id_and_a_uint64_id_of_the_same_bits_are_two_queries(tmp_path, unit_rows):
    """-1 in an int64 file and 2**64 - 1 in a uint64 file: two queries (before: one query of 4 rows, keyed by the same
    64 bits; or a refusal saying a query had rows in two units)."""
    (tmp_path / "data").mkdir()
    shards = (
        ([0.9, 0.1], [1, 0], pa.array([-1, -1], pa.int64())),
        ([0.8, 0.3], [0, 1], pa.array([2**64 - 1] * 2, pa.uint64())),
    )
    for i, (score, rel, qid) in enumerate(shards):
        pq.write_table(pa.table({"score": score, "rel": rel, "qid": qid}), tmp_path / "data" / f"part-{i}.parquet")
    job = _job(tmp_path, "local", tmp_path / "data")
    job["metrics"] = ["ndcg", "mean_reciprocal_rank"]
    job["execution"]["unit_rows"] = unit_rows
    result = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False)
    metrics = result.run.point("overall").metrics
    expected = np.mean([ndcg_score([[1, 0]], [[0.9, 0.1]]), ndcg_score([[0, 1]], [[0.8, 0.3]])])
    assert metrics["ndcg"].value == pytest.approx(expected, rel=1e-12)
    assert metrics["mean_reciprocal_rank"].value == pytest.approx(0.75, rel=1e-12)


def test_the_functional_api_keeps_query_ids_of_one_type_and_refuses_mixed_ones():
    scores, relevance = [0.1, 0.2, 0.3, 0.4], [1, 0, 0, 1]
    with pytest.raises(ValueError, match="mixed types"):  # (before: 1 and "1" read as one query of 4 rows)
        FR.ndcg(scores, relevance, [1, 1, "1", "1"])
    with pytest.raises(ValueError, match="no query id"):
        FR.ndcg(scores, relevance, ["a", "a", None, None])
    # item ids of coverage likewise (None was an item, and 1 and "1" two items: 0.667 where a job refuses the rows)
    with pytest.raises(ValueError, match="item_ids: 2 rows have no item id"):
        FR.coverage(scores, relevance, [1, 1, 2, 2], [None, None, 3, 4], k=1)
    with pytest.raises(ValueError, match="item_ids: ids of mixed types"):
        FR.coverage(scores, relevance, [1, 1, 2, 2], [1, "1", 3, 4], k=1)
    with pytest.raises(ValueError, match="item_ids: ids of type float; give every row an id of one type"):
        FR.coverage(scores, relevance, [1, 1, 2, 2], [1.0, 2.0, 3.0, 4.0], k=1)  # (said "mixed types")
    shown = FR.coverage(scores, relevance, [1, 1, 2, 2], ["x", "y", "x", "z"], k=1)
    assert shown == pytest.approx(2 / 3)  # (y and z of x, y, z)
    two = np.mean([ndcg_score([[1, 0]], [[0.1, 0.2]]), ndcg_score([[0, 1]], [[0.3, 0.4]])])
    for ids in (
        [1, 1, 2, 2],
        ["1", "1", "2", "2"],
        [-1, -1, 2**64 - 1, 2**64 - 1],
        np.array([3, 3, 2**64 - 1, 2**64 - 1], np.uint64),
    ):
        assert FR.ndcg(scores, relevance, ids) == pytest.approx(two, rel=1e-12)


def test_a_query_split_by_a_query_of_weight_0_is_refused():
    """Rows of weight 0 count nowhere, but they still lie between a query's rows: ``a, b, a`` with ``b`` at weight
    0 is a query in two runs of rows."""
    scores, relevance, query = [0.9, 0.1, 0.8], [1, 0, 0], ["a", "b", "a"]
    with pytest.raises(QueryRowsError, match="not contiguous"):
        FR.ndcg(scores, relevance, query, weights=[1, 0, 1])
    assert FR.ndcg(scores, relevance, ["a", "b", "b"], weights=[1, 0, 0]) == 1.0


def _outcome(stat, batches: list[dict[str, np.ndarray]]):
    """The stored state of ``batches`` fed in turn, or the error's type."""
    state = stat.zero()
    try:
        for batch in batches:
            state = stat.update(state, batch)
        return stat.stored(state)
    except QueryRowsError:
        return QueryRowsError


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31))
def test_rows_of_weight_0_at_a_batch_boundary_are_judged_as_in_one_batch(seed):
    """A query of weight 0 between two runs of another query, or a query of weight 0 in some rows only, is refused
    wherever the batches are cut (also where the weight-0 rows open or close a batch); batches cut anywhere give the
    state of one pass otherwise, for every statistic that follows queries across batches."""
    from evaluators.coverage import ITEM, ShownItems

    rng = np.random.default_rng(seed)
    ids, weights = [], []
    for _ in range(rng.integers(1, 7)):
        size = int(rng.integers(1, 4))
        ids += [int(rng.integers(0, 4))] * size
        weights += [float(rng.choice([0.0, 1.0, 2.0]))] * size
    weights = np.array(weights)
    if rng.random() < 0.2:  # one row's weight set apart from its query's
        weights[rng.integers(0, len(weights))] = float(rng.choice([0.0, 3.0]))
    n = len(ids)
    data = {
        QUERY: np.array(ids),
        ITEM: rng.integers(0, 6, n),
        "predictions": rng.random(n),
        "targets": rng.integers(0, 2, n).astype(np.float64),
        "weights": weights,
    }
    refused = _outcome(retrieval.QuerySums(None), [data]) is QueryRowsError
    for stat in (retrieval.QuerySums(None), retrieval.QueryBucketSums(2), ShownItems(k=2)):
        if refused and isinstance(stat, retrieval.QueryBucketSums):
            continue  # (it keeps no query keys: the job's QuerySums refuses a split query)
        whole = _outcome(stat, [data])
        for cuts in itertools.chain(itertools.combinations(range(1, n), 1), itertools.combinations(range(1, n), 2)):
            bounds = (0, *cuts, n)
            batches = [{k: v[a:b] for k, v in data.items()} for a, b in itertools.pairwise(bounds)]
            cut = _outcome(stat, batches)
            if whole is QueryRowsError or cut is QueryRowsError:
                assert cut is whole, (stat, ids, weights.tolist(), cuts)
                continue
            assert set(cut) == set(whole), (stat, cuts)
            for name in whole:
                np.testing.assert_array_equal(cut[name], whole[name], err_msg=f"{stat} {name} {cuts}")


def test_a_query_split_by_a_query_of_weight_0_at_a_batch_start_is_refused():
    """``a | b a`` with ``b`` at weight 0: the second batch's first kept row is ``a`` again, but ``b`` lies between."""
    stat = retrieval.QuerySums(None)
    batch = {
        QUERY: np.array(["a", "b", "a"], object),
        "predictions": np.array([0.9, 0.1, 0.8]),
        "targets": np.array([1.0, 0, 0]),
        "weights": np.array([1.0, 0, 1]),
    }
    first, second = ({k: v[s] for k, v in batch.items()} for s in (slice(0, 1), slice(1, 3)))
    with pytest.raises(QueryRowsError, match="not contiguous"):
        stat.stored(stat.update(stat.update(stat.zero(), first), second))
    trailing = {k: v[[0, 0, 1]] for k, v in batch.items()}  # `a a b` then `a`: b weighs 0 at the batch's end
    with pytest.raises(QueryRowsError, match="not contiguous"):
        stat.stored(stat.update(stat.update(stat.zero(), trailing), {k: v[2:] for k, v in batch.items()}))
    zero_then_one = {k: v[[1]] for k, v in batch.items()}  # `b` at weight 0, then `b` at weight 1
    with pytest.raises(QueryRowsError, match="different weights"):
        stat.update(stat.update(stat.zero(), zero_then_one), {**zero_then_one, "weights": np.array([1.0])})


def test_query_ids_beyond_int32_stay_apart():
    """Query ids 1 and 2**32 + 1 were cut to int32 on the host update: one query of four items, not two of two."""
    ids = np.array([1, 1, 2**32 + 1, 2**32 + 1], np.int64)
    scores, relevance = [0.9, 0.1, 0.2, 0.8], [0, 1, 1, 0]
    expected = np.mean([ndcg_score([[0, 1]], [[0.9, 0.1]]), ndcg_score([[1, 0]], [[0.2, 0.8]])])
    assert FR.ndcg(scores, relevance, ids) == pytest.approx(expected, rel=1e-12)
    assert FR.ndcg(scores, relevance, ids) == pytest.approx(FR.ndcg(scores, relevance, [1, 1, 2, 2]), rel=1e-15)


def test_functions_refuse_rows_that_leave_every_metric_undefined():
    """No rows, or every query of weight 0: a job exits 2 and scikit-learn's ``ndcg_score`` raises; so do the
    functions (they returned NaN)."""
    with pytest.raises(ValueError, match="weights: all 2 rows have weight 0"):
        FR.ndcg([0.5, 0.2], [1.0, 0.0], [1, 1], weights=[0.0, 0.0])
    for function in (FR.ndcg, FR.mean_reciprocal_rank):
        with pytest.raises(ValueError, match="no rows"):
            function([], [], [])
