"""Bootstrap intervals of ranking and corpus text metrics: every replicate equals the reference computed on the
resampled data (ranking: scikit-learn / hand-derived per-query values with each query weighted by its bucket's
Poisson count; text: sacrebleu, jiwer and rouge-score on the rows repeated that many times), the statistics keep
the laws of :class:`~evaluators.conformance.StatisticTester` (resample equals explicit merges of bucket states, the
grouped update equals one update per bucket), and jobs report the intervals."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import ndcg_score

from evaluators.accumulate import Accumulator
from evaluators.catalog import build
from evaluators.conformance import StatisticTester
from evaluators.corpus_text import BleuCounts, ChrfCounts, EditCounts, RougeSums
from evaluators.retrieval import QUERY, QuerySums, runs
from evaluators.statistic import DerivedMetric
from pipelines import spec as spec_module
from pipelines.bootstrap import buckets, poisson_weights, row_keys
from pipelines.execute import run_job
from tests import test_corpus_text as text_refs
from tests import test_retrieval as ranking_refs
from tests.conftest import write_job

BUCKETS, SEED, REPLICATES = 16, 7, 6


def bucket_states(metrics: list[DerivedMetric], data: dict, group: np.ndarray, units: list[tuple[int, int]], rng):
    """The replicate accumulator and its merged bucket states: each unit ``[lo, hi)`` folded in batches cut at
    random rows (inside queries too), as a worker does, then the units merged."""
    racc = Accumulator.for_metrics(metrics).replicates()
    states = []
    for lo, hi in units:
        state = racc.zero_grouped(BUCKETS)
        cuts = np.unique(np.concatenate([[lo, hi], rng.integers(lo, hi + 1, 3)]))
        for a, b in itertools.pairwise(cuts):
            state = racc.update_grouped(state, {k: v[a:b] for k, v in data.items()}, group[a:b], to_host=False)
        states.append(racc.to_host(state))
    return racc, functools.reduce(racc.merge, states)


def replicate_values(racc: Accumulator, merged, metrics: dict[str, DerivedMetric], weights: np.ndarray):
    """``{key: [B] headline values}`` of each metric's replicates."""
    out: dict[str, list[float]] = {}
    for stat, state in zip(racc.statistics, merged, strict=True):
        replicates = stat.resample(state, weights)
        for key, metric in metrics.items():
            if metric.statistic.for_replicates() == stat:
                out[key] = [metric.compute(r)[""] for r in replicates]
    return out


# --- ranking ---------------------------------------------------------------------------------------------------------


def test_ranking_replicates_equal_the_references_on_the_weighted_queries():
    rng = np.random.default_rng(3)
    data = ranking_refs.queries(rng, 90, ties=True)
    starts, _ = runs(data[QUERY])
    n = len(data[QUERY])
    sizes = np.diff(np.append(starts, n))
    data["weights"] = np.repeat(rng.choice([1.0, 2.0, 0.5], len(starts)), sizes)
    group = buckets(row_keys(data[QUERY], "unused", 0, n), BUCKETS, SEED)
    assert all(len(set(group[rows])) == 1 for rows in ranking_refs.groups(data[QUERY]))  # a query in one bucket
    metrics = {key: build(name, ranking_refs.RANKING, params) for key, (name, params) in ranking_refs.METRICS.items()}
    mid = int(starts[len(starts) // 2])
    racc, merged = bucket_states(list(metrics.values()), data, group, [(0, mid), (mid, n)], rng)
    weights = poisson_weights(4, BUCKETS, SEED)
    values = replicate_values(racc, merged, metrics, weights)
    assert set(values) == set(metrics)
    for b in range(4):
        expected = ranking_refs.references(data, data["weights"] * weights[b, group], ties=True)
        for key in metrics:
            assert values[key][b] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), (b, key)


def test_ranking_replicates_equal_scikit_learns_sample_weight():
    """Queries of equal length: replicate ``b`` of nDCG@3 is scikit-learn's ``ndcg_score`` with the queries'
    replicate counts as ``sample_weight``."""
    rng = np.random.default_rng(4)
    scores, relevance = rng.random((60, 5)).round(1), rng.integers(0, 3, (60, 5)).astype(np.float64)
    ids = np.repeat(np.arange(60) * 7 + 1, 5)
    data = {"predictions": scores.ravel(), "targets": relevance.ravel(), QUERY: ids, "weights": np.ones(300)}
    group = buckets(row_keys(ids, "unused", 0, 300), BUCKETS, SEED)
    metric = build("ndcg_at_k", ranking_refs.RANKING, {"k": 3})
    racc, merged = bucket_states([metric], data, group, [(0, 300)], rng)
    weights = poisson_weights(REPLICATES, BUCKETS, SEED)
    values = replicate_values(racc, merged, {"ndcg@3": metric}, weights)["ndcg@3"]
    for b in range(REPLICATES):
        expected = ndcg_score(relevance, scores, k=3, sample_weight=weights[b, group[::5]])
        assert values[b] == pytest.approx(expected, rel=1e-12), b


@pytest.mark.parametrize("k", [None, 3])
def test_ranking_statistics_keep_the_laws(k):
    rng = np.random.default_rng(5)
    data = ranking_refs.queries(rng, 60, ties=True)
    data["weights"] = np.ones(len(data[QUERY]))
    starts = runs(data[QUERY])[0]
    cuts = [0, int(starts[5]), int(starts[5]), int(starts[30]), int(starts[31]), len(data[QUERY])]
    batches = [{key: v[a:b] for key, v in data.items()} for a, b in itertools.pairwise(cuts)]  # whole queries each
    tester = StatisticTester(QuerySums(k))
    for a, b, c in zip(batches, batches[1:] + batches[:1], batches[2:] + batches[:2], strict=True):
        tester.check_identity(a)
        tester.check_commutative(a, b)
        tester.check_associative(a, b, c)
    whole = {key: np.concatenate([b[key] for b in batches]) for key in data}
    parts = np.split(np.arange(len(whole[QUERY])), [int(starts[3]), int(starts[20]), int(starts[40])])
    tester.check_partition(whole, parts, rng)  # parts of whole queries (a query split across states is refused)
    tester.check_resample(batches, rng.integers(0, 3, (4, len(batches))))
    metric = build("ndcg" if k is None else "ndcg_at_k", ranking_refs.RANKING, {} if k is None else {"k": k})
    key = "ndcg" if k is None else f"ndcg@{k}"
    tester.check_reference(
        batches, lambda s: metric.compute(s)[""], lambda rows: ranking_refs.references(rows, ties=True)[key]
    )


# --- corpus text -----------------------------------------------------------------------------------------------------

TEXT_KEYS = ("bleu", "chrf", "wer", "cer", "rouge_n", "rouge_n2", "rouge_l")


def repeated(texts: list[str], times: np.ndarray) -> list[str]:
    return [t for t, m in zip(texts, times.astype(np.int64), strict=True) for _ in range(m)]


def test_text_replicates_equal_the_references_on_the_resampled_rows():
    rng = np.random.default_rng(6)
    hyps, refs = text_refs.pairs(rng, 160)
    data = {
        "predictions": np.asarray(hyps, object),
        "targets": np.asarray(refs, object),
        "weights": rng.choice([1.0, 2.0], 160),
    }
    group = buckets(row_keys(None, "part-0.parquet", 0, 160), BUCKETS, SEED)
    metrics = {key: build(name, text_refs.TEXT, params) for key, (name, params) in text_refs.METRICS.items()}
    racc, merged = bucket_states(list(metrics.values()), data, group, [(0, 70), (70, 160)], rng)
    weights = poisson_weights(REPLICATES, BUCKETS, SEED)
    values = replicate_values(racc, merged, metrics, weights)
    assert set(values) == set(TEXT_KEYS)  # distinct_n: a set, no interval
    for b in range(REPLICATES):
        times = data["weights"] * weights[b, group]
        expected = text_refs.references(repeated(hyps, times), repeated(refs, times))
        for key in TEXT_KEYS:
            assert values[key][b] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), (b, key)


@pytest.mark.parametrize(
    ("statistic", "metric"),
    [
        (BleuCounts(), "bleu"),
        (ChrfCounts(), "chrf"),
        (EditCounts("word"), "wer"),
        (EditCounts("char"), "cer"),
        (RougeSums("1"), "rouge_n"),
        (RougeSums("L"), "rouge_l"),
    ],
)
def test_text_statistics_keep_the_laws(statistic, metric):
    rng = np.random.default_rng(7)
    batches = []
    for n in (0, 1, 9, 40):
        hyps, refs = text_refs.pairs(rng, n)
        batches.append(
            {
                "predictions": np.asarray(hyps, object),
                "targets": np.asarray(refs, object),
                "weights": rng.choice([1.0, 2.0, 3.0], n),
            }
        )
    derived = build(metric, text_refs.TEXT)
    assert derived.statistic == statistic

    def reference(rows: dict) -> float:
        times = rows["weights"]
        return text_refs.references(repeated(list(rows["predictions"]), times), repeated(list(rows["targets"]), times))[
            metric
        ]

    StatisticTester(statistic).check_all(batches, finalize=lambda s: derived.compute(s)[""], reference=reference)


def _text_job(tmp_path, runner: str) -> dict:
    """A text job over 400 pairs in two files, with bootstrap intervals."""
    if not (tmp_path / "text").exists():
        hyps, refs = text_refs.pairs(np.random.default_rng(8), 400)
        (tmp_path / "text").mkdir()
        for i in range(2):
            table = pa.table({"candidate": hyps[200 * i : 200 * (i + 1)], "reference": refs[200 * i : 200 * (i + 1)]})
            pq.write_table(table, tmp_path / "text" / f"part-{i}.parquet", row_group_size=90)
    return {
        "name": "corpus-text",
        "data": {"path": f"{tmp_path}/text", "columns": {"predictions": "candidate", "targets": "reference"}},
        "task": "text",
        "metrics": [{"name": name, **params, "as": key} for key, (name, params) in text_refs.METRICS.items()],
        "confidence": {"replicates": 50, "buckets": 16},
        "execution": {"runner": runner, "actors": 2, "unit_rows": 150},
        "output": {"uri": str(tmp_path / f"out-{runner}")},
    }


def test_a_text_job_reports_intervals(tmp_path):
    job = _text_job(tmp_path, "local")
    run = run_job(spec_module.load(str(write_job(tmp_path / "text.yaml", job))), show_progress=False).run
    overall = run.point("overall").metrics
    for key in TEXT_KEYS:
        assert overall[key].lower <= overall[key].value <= overall[key].upper, key
        assert overall[key].lower < overall[key].upper, key
    assert overall["distinct_n"].lower is None


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_text_intervals_are_the_same_on_ray(tmp_path):
    runs_ = [
        run_job(spec_module.load(str(write_job(tmp_path / f"{r}.yaml", _text_job(tmp_path, r)))), show_progress=False)
        for r in ("local", "ray")
    ]
    local, ray = ({k: (m.value, m.lower, m.upper) for k, m in r.run.point("overall").metrics.items()} for r in runs_)
    assert local == ray
