"""Text and retrieval statistics sum weight x a value in ``[-1, 1]`` in fixed point (units of ``2**-32`` in int64):
weights adding up to ``2**31`` or more are refused, in one batch and where states merge, never summed into a wrapped
int64; weights below the limit give the weighted mean of the per-row (per-query) values."""

from __future__ import annotations

import numpy as np
import pytest

from evaluators.accumulate import Accumulator
from evaluators.catalog import build
from evaluators.kernels import FIXED_SUM_LIMIT, WeightRangeError
from evaluators.retrieval import QUERY
from evaluators.task import Task

LIMIT = FIXED_SUM_LIMIT


def _embedding_rows(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    # (the statistic computes the cosine in float32, as the backbone's embeddings come: within 1e-6 of float64's)
    candidate, reference = (rng.normal(size=(n, 8)).astype(np.float32) for _ in range(2))
    c, r = candidate.astype(np.float64), reference.astype(np.float64)
    cosine = np.sum(c * r, 1) / np.linalg.norm(c, axis=1) / np.linalg.norm(r, axis=1)
    return {"candidate": candidate, "reference": reference}, cosine


def _rouge_rows(n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    # candidate "a b" against reference "a c": unigram overlap 1 of 2 each way, so F1 = 0.5 on every row
    return {"predictions": np.array(["a b"] * n, object), "targets": np.array(["a c"] * n, object)}, np.full(n, 0.5)


def _query_rows(n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    # n queries of two items, the relevant one ranked second: reciprocal rank 1/2 each
    return {
        QUERY: np.repeat(np.arange(n), 2),
        "predictions": np.tile([0.9, 0.1], n),
        "targets": np.tile([0, 1], n),
    }, np.full(n, 0.5)


RTOL = {"embedding_similarity": 1e-6}
CASES = {
    "embedding_similarity": (Task("text"), lambda n: _embedding_rows(np.random.default_rng(n), n)),
    "rouge_n": (Task("text"), _rouge_rows),
    "mean_reciprocal_rank": (Task("ranking"), _query_rows),
}


def _weighted(columns: dict[str, np.ndarray], per_unit: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """The columns with a weight per row (per query: each of its rows)."""
    weights = np.repeat(per_unit, 2) if name == "mean_reciprocal_rank" else per_unit
    return {**columns, "weights": weights}


@pytest.mark.parametrize("name", list(CASES))
def test_weights_below_the_limit_give_the_weighted_mean_and_beyond_are_refused(name):
    task, rows = CASES[name]
    metric = build(name, task)
    acc = Accumulator([metric.statistic])
    columns, values = rows(6)
    weights = np.array([0.3, 0.1, 0.2, 0.1, 0.2, 0.1]) * LIMIT  # 0.99999... of the limit in all
    weights[-1] -= 1.0
    (state,) = acc.update(acc.zero(), _weighted(columns, weights, name))
    expected = np.average(values, weights=weights)
    assert metric.compute(state)[""] == pytest.approx(expected, rel=RTOL.get(name, 1e-12))
    with pytest.raises(WeightRangeError, match=r"add up to 2\.14748e\+09.*less than 2\^31.*divide them"):
        acc.update(acc.zero(), _weighted(columns, weights + 1.0, name))


@pytest.mark.parametrize("name", list(CASES))
def test_states_whose_weights_add_up_beyond_the_limit_are_refused_where_they_merge(name):
    task, rows = CASES[name]
    metric = build(name, task)
    stat = metric.statistic
    acc = Accumulator([stat])
    columns, values = rows(2)
    # a second batch of the same rows (other query ids: a query lies in one state)
    shifted = {k: v + v.max() + 1 if k == QUERY else v for k, v in columns.items()}
    fine = [acc.update(acc.zero(), _weighted(c, np.full(2, 0.2 * LIMIT), name))[0] for c in (columns, shifted)]
    merged = stat.merge(*fine)
    assert metric.compute(merged)[""] == pytest.approx(np.mean(values), rel=RTOL.get(name, 1e-12))
    twice = {k: np.concatenate([v, shifted[k]]) for k, v in columns.items()}
    (both,) = acc.update(acc.zero(), _weighted(twice, np.full(4, 0.2 * LIMIT), name))
    assert metric.compute(merged)[""] == metric.compute(both)[""]
    heavy = [acc.update(acc.zero(), _weighted(c, np.full(2, 0.3 * LIMIT), name))[0] for c in (columns, shifted)]
    with pytest.raises(WeightRangeError):
        stat.merge(*heavy)
    replicates = stat.for_replicates() if hasattr(stat, "for_replicates") else None
    if replicates is not None and replicates is not stat:  # the bucketed retrieval state checks its merges too
        racc = Accumulator([replicates])
        bucketed = [
            racc.update(racc.zero(), _weighted(c, np.full(2, 0.3 * LIMIT), name))[0] for c in (columns, shifted)
        ]
        with pytest.raises(WeightRangeError):
            replicates.merge(*bucketed)
