"""Binary ROC-AUC and average precision of many stored states at once (a run's slices) are, state by state, the
bits of reading each state alone, and equal scikit-learn: exact, binned, tied, one-class, weighted and empty
states, of lengths that split into several padded batches."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.ranking_many import BATCH_CELLS, PADDING, size_batches
from evaluators.task import Task

KINDS = ("continuous", "rounded", "one_class", "weighted", "empty")


def _rows(rng: np.random.Generator, kind: str, n: int) -> dict[str, np.ndarray]:
    y = (rng.random(n) < 0.3).astype(np.int8)
    if kind == "one_class":
        y[:] = rng.integers(0, 2)
    score = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y)))
    if kind == "rounded":
        score = np.round(score, 2)
    columns = {"predictions": score.astype(np.float32), "targets": y}
    if kind == "weighted":
        columns["weights"] = rng.choice([0.5, 1.0, 2.0, 0.1], n)
    return columns


def _bits(values: list[dict[str, float]]) -> list[dict[str, bytes]]:
    return [{k: np.float64(v).tobytes() for k, v in d.items()} for d in values]


def _states(seed: int, count: int, exact_cells: int) -> tuple[list, list[dict[str, np.ndarray]], list]:
    rng = np.random.default_rng(seed)
    metrics = [
        catalog.build(name, Task("binary"), {"exact_cells": exact_cells}) for name in ("roc_auc", "average_precision")
    ]
    acc = Accumulator([metrics[0].statistic])
    states, rows = [], []
    for _ in range(count):
        kind = KINDS[rng.integers(len(KINDS))]
        n = 0 if kind == "empty" else int(rng.choice([1, 3, 40, 300, 2500]))
        columns = _rows(rng, kind, n)
        rows.append(columns)
        states.append(acc.update(acc.zero(), columns)[0] if n else acc.zero()[0])
    return metrics, rows, [acc.statistics[0].stored(s) for s in states]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 60), exact_cells=st.sampled_from([0, 100, 250_000]))
def test_values_of_many_states_are_the_bits_of_each_alone(seed: int, count: int, exact_cells: int) -> None:
    metrics, _, states = _states(seed, count, exact_cells)
    for metric in metrics:
        together = metric.compute_many(states)
        alone = [metric.compute(s) for s in states]
        assert _bits(together) == _bits(alone)
        assert _bits(metric.compute_many(states[::-1])) == _bits(alone[::-1])  # nor on the other states


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_of_many_states_equal_sklearn(seed: int) -> None:
    metrics, rows, states = _states(seed, 80, 250_000)
    references = {"roc_auc": skm.roc_auc_score, "average_precision": skm.average_precision_score}
    for metric in metrics:
        for columns, got in zip(rows, metric.compute_many(states), strict=True):
            y, w = columns["targets"], columns.get("weights")
            undefined = len(y) == 0 or (y.min() == y.max() if metric.name == "roc_auc" else y.max() == 0)
            if undefined:  # no (positive, negative) pair; no positive
                assert np.isnan(got[""]), (metric.name, y)
                continue
            expected = references[metric.name](y, columns["predictions"], sample_weight=w)
            assert abs(got[""] - expected) <= got[".error_bound"] + 1e-12, (metric.name, len(y))
            assert abs(got[""] - expected) <= 1e-9  # exact states: float64 evaluation, fixed-point weights


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3 * BATCH_CELLS), max_size=200))
def test_size_batches_cover_every_state_once_with_little_padding(sizes: list[int]) -> None:
    sizes_array = np.array(sizes, np.int64)
    batches = size_batches(sizes_array)
    assert sorted(i for b in batches for i in b.tolist()) == list(range(len(sizes)))
    for batch in batches:
        lengths = sizes_array[batch]
        if len(batch) > 1:
            assert lengths.max() <= PADDING * lengths.min() + 64
            assert len(batch) * max(int(lengths.max()), 1) <= BATCH_CELLS
