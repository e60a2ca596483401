"""Average precision within a binned cell reads each label's mean position in the bin.

* :func:`~evaluators.ranking_positions.positioned_precision_sum` (closed form, digamma) equals the model it
  states, summed one positive at a time: each label's rows evenly fill an interval around its mean position, a
  single row sits at its position (hypothesis);
* the estimate lies between the cell's best and worst orders, so the reported bound still holds;
* cells of one positive and one negative are ordered by their positions: binned average precision then equals
  scikit-learn's;
* on 0.2% positives crowded near 0, beyond exact cells, the value moved 5-10x closer to scikit-learn's than
  spreading the negatives evenly between the positives (the model without positions).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

from evaluators import catalog
from evaluators.accumulate import evaluate
from evaluators.functional import average_precision, roc_auc
from evaluators.ranking_positions import harmonic_sum, positioned_precision_sum, precision_integral, spread
from evaluators.score_grid import bin_positions, score_bins
from evaluators.task import Task


def _one_positive_at_a_time(tp0: float, fp0: float, p: int, n: int, mp: float, mn: float) -> float:
    """The model of :func:`positioned_precision_sum`, positive by positive."""
    hp, hn = float(spread(np.float64(mp), np.float64(p))), float(spread(np.float64(mn), np.float64(n)))
    total = 0.0
    for i in range(1, p + 1):
        above_mn = (mp - mn) + hp * (1 - (2 * i - 1) / p)  # x_i - mn, with x_i = mp + hp - (2i - 1) hp / p
        if n == 0:
            before = 0.0
        elif hn > 0:
            before = n * min(max((hn - above_mn) / (2 * hn), 0.0), 1.0)
        else:
            before = n * (0.0 if above_mn > 0 else 0.5 if above_mn == 0 else 1.0)
        total += (tp0 + i) / (tp0 + fp0 + i + before)
    return total


_position = st.integers(0, 1 << 13).map(lambda k: k / (1 << 13))  # a float32 score's position: 13 bits


@settings(max_examples=300, deadline=None)
@given(
    tp0=st.integers(0, 500),
    fp0=st.integers(0, 5000),
    p=st.integers(1, 40),
    n=st.integers(0, 60),
    mp=_position,
    mn=_position,
)
def test_the_closed_form_is_the_model_summed_positive_by_positive(tp0, fp0, p, n, mp, mn):
    hp = min(mp, 1 - mp) if p > 1 else 0.0
    above_mn = [(mp - mn) + hp * (1 - (2 * i - 1) / p) for i in range(1, p + 1)]
    negatives_at_one_point = n <= 1 or min(mn, 1 - mn) == 0
    if negatives_at_one_point and any(0 < abs(d) < 1e-9 for d in above_mn):  # within rounding: either side
        return
    arrays = (np.array([v], np.float64) for v in (tp0, fp0, p, n, mp, mn))
    closed = positioned_precision_sum(*arrays)[0]
    expected = _one_positive_at_a_time(tp0, fp0, p, n, mp, mn)
    assert closed == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # between the cell's best order (every positive first) and its worst (every negative first)
    best = p * (tp0 + p) / (tp0 + fp0 + p)
    worst = precision_integral(np.float64(tp0), np.float64(tp0 + fp0 + n), np.float64(p))
    assert worst - 1e-9 <= closed <= best + 1e-9


def test_without_negatives_every_positive_adds_its_own_precision():
    tp0, fp0, p = np.array([3.0, 0.0]), np.array([7.0, 0.0]), np.array([5.0, 2.0])
    expected = [sum((3 + i) / (10 + i) for i in range(1, 6)), 2.0]
    got = positioned_precision_sum(tp0, fp0, p, np.zeros(2), np.array([0.3, 0.9]), np.full(2, np.nan))
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    np.testing.assert_allclose(harmonic_sum(tp0, tp0 + fp0, p), expected, rtol=1e-13)


def _one_of_each_label_per_bin(rng: np.random.Generator, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``bins`` distinct 10-bit bins, each holding one positive and one negative at distinct scores (some
    bins only one of them), in float32."""
    u = np.sort(rng.choice(np.arange(200, 900), bins, replace=False)) / 1000.0
    lo = u * (1 - 2e-4)
    hi = u * (1 + 2e-4)
    positive_higher = rng.random(bins) < 0.6
    pos = np.where(positive_higher, hi, lo).astype(np.float32)
    neg = np.where(positive_higher, lo, hi).astype(np.float32)
    keep_neg = rng.random(bins) < 0.9
    scores = np.concatenate([pos, neg[keep_neg]])
    labels = np.concatenate([np.ones(bins, np.int8), np.zeros(int(keep_neg.sum()), np.int8)])
    return scores, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_row_of_each_label_in_a_bin_is_ordered_by_position(seed):
    scores, labels = _one_of_each_label_per_bin(np.random.default_rng(seed), 300)
    bins = score_bins(scores, 10)
    positions = bin_positions(scores, 10)
    order = np.lexsort((positions, bins))
    distinct_positions = (np.diff(bins[order]) != 0) | (np.diff(positions[order]) != 0)
    assert distinct_positions.all() and len(np.unique(bins)) < len(scores)  # shared bins, told apart by position
    value = average_precision(scores, labels, exact_cells=0)  # one cell per bin: no exact scores kept
    assert float(value) == pytest.approx(average_precision_score(labels, scores.astype(np.float64)), abs=1e-12)


def _crowded(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.002).astype(np.int8)
    return expit(rng.normal(-7.5, 1.0, rows) + 2.0 * y).astype(np.float32), y


ONE_CELL_PER_BIN = {"precision_bits": 10, "bin_scores": 1}
"""The binned form without kept scores (several classes' default; a binary task's before ``bin_scores: 8``)."""


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("options", [ONE_CELL_PER_BIN, {}])
def test_crowded_rare_positives_beyond_exact_cells(seed, options):
    """300,000 rows, every row binned: one cell per bin at 10 bits within 2e-6 of scikit-learn (measured 7.8e-8,
    1.7e-6, 1.4e-6 for these seeds; 1.4e-5, 1.3e-5, 1.2e-5 when the negatives were spread evenly between the
    positives), the binary default (11 bits keeping up to 8 scores a bin) within 1e-6."""
    scores, labels = _crowded(seed, 300_000)
    metric = catalog.build("average_precision", Task("binary"), {"exact_cells": 0, **options})
    values = evaluate([metric], scores, labels)[0]
    reference = average_precision_score(labels, scores.astype(np.float64))
    assert abs(values[""] - reference) <= (2e-6 if options else 1e-6)
    assert abs(values[""] - reference) <= values[".error_bound"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 105])
def test_a_million_crowded_rows_at_the_defaults(seed):
    """1M rows of 0.2% positives crowded near 0 (more distinct scores than ``exact_cells``: binned) at the defaults,
    11 bits keeping up to 8 scores a bin: average precision within 1e-6 of scikit-learn on each seed (measured
    -3.3e-8, 7.8e-8, -9.5e-8, -3.6e-8, and -1.0e-7 on seed 105, the worst of 90 cases for 12 bits of one cell per
    bin, which gave -1.9e-6 there) and within the bound; ROC-AUC within 1e-6 through the functional API."""
    scores, labels = _crowded(seed, 1_000_000)
    metric = catalog.build("average_precision", Task("binary"))
    assert (metric.statistic.precision_bits, metric.statistic.bin_scores) == (11, 8)
    ap = evaluate([metric], scores, labels)[0]
    assert abs(ap[""] - average_precision(scores, labels)) == 0  # the functional API: the same code path
    reference = average_precision_score(labels, scores.astype(np.float64))
    assert abs(ap[""] - reference) <= 1e-6
    assert abs(ap[""] - reference) <= ap[".error_bound"]
    assert abs(roc_auc(scores, labels) - roc_auc_score(labels, scores.astype(np.float64))) <= 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(
    ("rows", "weights"), [(350_000, "exponential"), (1_000_000, "exponential"), (350_000, "uniform")]
)
def test_weighted_crowded_rows_at_the_defaults(seed, rows, weights):
    """Weighted crowded rows, every row binned, at the defaults: average precision and ROC-AUC within 1e-6 of
    scikit-learn's weighted values (measured within 1.2e-7 and 5.1e-7 on these seeds; 12 bits of one cell per bin
    gave average precision up to 2.7e-6 off)."""
    scores, labels = _crowded(seed, rows)
    rng = np.random.default_rng(seed + 1000)
    w = rng.exponential(1.0, rows) if weights == "exponential" else rng.uniform(0.1, 3.0, rows)
    options = {"exact_cells": 0}
    metrics = [catalog.build(name, Task("binary"), options) for name in ("average_precision", "roc_auc")]
    ap, auc = evaluate(metrics, scores, labels, w)
    reference = scores.astype(np.float64)
    assert abs(ap[""] - average_precision_score(labels, reference, sample_weight=w)) <= 1e-6
    assert abs(auc[""] - roc_auc_score(labels, reference, sample_weight=w)) <= 1e-6
