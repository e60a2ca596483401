"""Ranking metrics read every bootstrap replicate at once (``interval_rows`` on ``resample_stacked``), with each
replicate's value and bound equal to reading that replicate's state alone: the intervals do not change."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.task import Task


@pytest.mark.parametrize("name", ["roc_auc", "average_precision"])
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 400), buckets=st.integers(1, 12))
def test_every_replicate_at_once_equals_one_replicate_at_a_time(name, seed, rows, buckets):
    rng = np.random.default_rng(seed)
    metric = catalog.build(name, Task("binary"))
    racc = Accumulator([metric.statistic]).replicates()
    stat = racc.statistics[0]
    labels = rng.integers(0, 2, rows) if rng.random() < 0.8 else np.ones(rows, np.int64)  # some: one class only
    scores = np.where(rng.random(rows) < 0.3, rng.choice([0.0, 0.5, 1.0], rows), rng.random(rows))
    group = rng.integers(0, buckets, rows)
    (stacked,) = racc.update_grouped(racc.zero_grouped(buckets), {"predictions": scores, "targets": labels}, group)
    weights = rng.poisson(1.0, (20, buckets)).astype(np.float64)
    rows_at_once = metric.interval_rows(stat.resample_stacked(stacked, weights))
    assert rows_at_once is not None
    one_at_a_time = [metric.compute_for_interval(state) for state in stat.resample(stacked, weights)]
    assert set(rows_at_once) == set(one_at_a_time[0])
    for suffix, column in rows_at_once.items():
        expected = np.array([values[suffix] for values in one_at_a_time])
        np.testing.assert_array_equal(column, expected)  # NaN where a replicate lacks a class, as alone


def test_other_states_are_read_one_replicate_at_a_time():
    multiclass = catalog.build("roc_auc", Task("multiclass", num_classes=3))
    stat = Accumulator([multiclass.statistic]).replicates().statistics[0]
    stacked = stat.resample_stacked(stat.zero_grouped(2), np.ones((3, 2)))
    assert multiclass.interval_rows(stacked) is None  # a per-class average: the reducer's row-by-row path
    tracked = catalog.build("roc_auc", Task("binary")).statistic
    assert tracked.resample_stacked(tracked.zero(), np.ones((3, 2))) is None
