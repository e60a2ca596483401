"""The linear-time lower bound on distinct scores that decides, before any sort, whether a batch's rows are too
many distinct scores for an exact ranking state."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from evaluators import catalog
from evaluators.ranking_cells import distinct_lower_bound
from evaluators.ranking_statistics import PREFIX_SHARES
from evaluators.task import Task

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64, np.bool_]


def _distinct(values: np.ndarray) -> int:
    """Distinct values as a sort counts them (-0.0 equals 0.0)."""
    ordered = np.sort(values.reshape(-1))
    return int(len(ordered) > 0) + int(np.count_nonzero(ordered[1:] != ordered[:-1]))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), pool=st.integers(1, 40))
def test_the_bound_never_exceeds_the_distinct_values(data, dtype, pool):
    """Any values (a small pool drawn from, so that values repeat; signed zeros; extremes): at most as many as
    there are distinct values, and exactly as many for a handful of them (no collisions among so few)."""
    elements = hnp.from_dtype(np.dtype(dtype), allow_nan=False)
    choices = data.draw(hnp.arrays(dtype, pool, elements=elements))
    picks = data.draw(hnp.arrays(np.intp, st.integers(0, 300), elements=st.integers(0, pool - 1)))
    values = choices[picks]
    bound = distinct_lower_bound(values)
    assert bound <= _distinct(values)
    assert bound == _distinct(values)  # (at most 40 distinct values in 2**23 slots: a collision is ~1e-4 likely)


def test_negative_zero_is_zero():
    assert distinct_lower_bound(np.array([0.0, -0.0, 0.0], np.float32)) == 1
    assert distinct_lower_bound(np.array([[0.0, -0.0], [1.0, -1.0]])) == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mostly_distinct_scores_are_seen_to_exceed_the_exact_cells_without_a_sort(dtype, seed):
    """The purpose: a worker's 262,144-row batch of continuous scores (uniform, or a crowded sigmoid) is known to
    hold more than 250,000 distinct scores from the bound alone."""
    rng = np.random.default_rng(seed)
    for scores in (rng.random(1 << 18), 1 / (1 + np.exp(-rng.normal(-7.5, 1.0, 1 << 18)))):
        values = scores.astype(dtype)
        distinct = _distinct(values)
        bound = distinct_lower_bound(values)
        assert 250_000 < bound <= distinct
        assert bound >= 0.98 * distinct


def _exceeds_by_sorting(statistic, batch) -> bool:
    """Whether the live rows of the longest prefix the check reads hold more than ``exact_cells`` distinct
    predictions, counted by a sort of that whole prefix."""
    predictions = np.asarray(batch["predictions"])
    if predictions.size <= statistic.exact_cells:
        return False
    width = predictions.size // len(predictions)
    rows = min(len(predictions), -(-int(PREFIX_SHARES[-1] * statistic.exact_cells) // width))
    live = np.asarray(batch["weights"])[:rows] > 0
    return _distinct(predictions[:rows][live]) > statistic.exact_cells


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    distinct=st.integers(1, 3_000),
    rows=st.integers(1, 4_000),
    exact_cells=st.sampled_from([500, 1_000, 2_000]),
    zero_weights=st.booleans(),
    classes=st.sampled_from([1, 3]),
)
def test_the_check_answers_as_the_sort_of_the_whole_prefix(seed, distinct, rows, exact_cells, zero_weights, classes):
    """Batches around the limit (fewer, as many and more distinct scores than ``exact_cells``; rows of weight 0,
    which hold no cell; binary and three-class rows): the check gives the answer of the sort it replaces where it
    can, so a state's form (exact or binned), and every bit of the run, stays what it was."""
    rng = np.random.default_rng(seed)
    task = Task("binary") if classes == 1 else Task("multiclass", classes)
    statistic = catalog.build("roc_auc", task, {"exact_cells": exact_cells}).statistic
    pool = rng.random((distinct, classes)).astype(np.float32)
    predictions = pool[rng.integers(0, distinct, rows)]
    if classes == 1:
        predictions = predictions[:, 0]
    weights = rng.integers(0, 2, rows).astype(np.float64) if zero_weights else np.ones(rows)
    batch = {"predictions": predictions, "targets": rng.integers(0, max(classes, 2), rows), "weights": weights}
    assert statistic._exceeds_exact_cells(batch) == _exceeds_by_sorting(statistic, batch)
