"""Weighted rows in a binned ranking cell: each cell keeps its positives' squared weights.

* a row's squared weight is two exact integer limbs in units of ``2**-48`` (derived here by hand);
* a cell's unit, ``sum w**2 / sum w``, is the weight of one of its rows where all weigh the same, and gives the
  effective number of rows ``(sum w)**2 / sum w**2`` (hand-made cells);
* binned average precision then reads weights as scikit-learn does: beyond ``exact_cells``, 1M weighted rows
  (uniform and exponential weights, continuous scores and a mixture with rounded ones) are within 1e-6 of
  scikit-learn (measured before the squares: 5.7e-6 to 8.7e-6 on continuous scores), and the value does not move
  when every weight is multiplied by the same number (it moved by 1.4e-5 at a factor of 2 when weights counted as
  rows).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn import metrics as skm

from evaluators import catalog
from evaluators.accumulate import Accumulator, evaluate
from evaluators.ranking_cells import SQUARE_BITS, SQUARED_WEIGHT_LIMIT, square_limbs
from evaluators.ranking_positions import positive_units
from evaluators.task import Task


def test_a_squared_weight_is_two_exact_limbs():
    w = np.array([0.0, 1e-6, 0.1, 1.0, 3.7, 1000.0, 2.0**16, 1e5])
    limbs = square_limbs(w, np.ones(len(w), bool))
    assert limbs.dtype == np.int64 and limbs.shape == (len(w), 2)
    assert limbs[3].tolist() == [1 << (SQUARE_BITS - 32), 0]  # a weight of 1: 2**16 in the high limb
    assert (limbs[:, 1] >= 0).all() and (limbs[:, 1] <= 1 << 32).all()
    value = (limbs[:, 0] + limbs[:, 1] * 2.0**-32) * 2.0 ** -(SQUARE_BITS - 32)  # w**2, in units of 2**-48
    capped = np.minimum(w, SQUARED_WEIGHT_LIMIT)  # (weights above 2**16 count as 2**16)
    np.testing.assert_allclose(value, capped**2, rtol=1e-12, atol=2.0**-49)
    assert (square_limbs(w, np.zeros(len(w), bool)) == 0).all()  # negatives keep none


def _cell(weights: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """One cell of positives of these weights: its counts ``[1, 2]`` (fixed point) and squares ``[1, 2]``."""
    w = np.array(weights)
    counts = np.array([[0, int(np.round(w * 2.0**32).sum())]], np.int64)
    return counts, square_limbs(w, np.ones(len(w), bool)).sum(axis=0, keepdims=True)


def test_a_cells_unit_is_its_squared_weights_over_its_weight():
    counts, squares = _cell([1.0, 3.0])
    assert positive_units(counts, squares)[0] == pytest.approx((1 + 9) / 4, rel=1e-12)  # 1.6 rows' worth
    counts, squares = _cell([1.0] * 7)
    assert positive_units(counts, squares)[0] == 1.0  # unit weights: one row each, exactly
    counts, squares = _cell([2.5])
    assert positive_units(counts, squares)[0] == pytest.approx(2.5, rel=1e-12)  # a single row: its weight
    assert positive_units(counts, None)[0] == 1.0  # a state stored before the squares: weights as rows


def _weighted(seed: int, kind: str, rows: int = 1_000_000):
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.05).astype(np.int8)
    s = expit(rng.normal(size=rows) + 1.5 * y - 1.0)
    w = rng.uniform(0.1, 3.0, rows) if kind.startswith("uniform") else rng.exponential(1.0, rows)
    if kind.endswith("mixed"):  # every other row rounded to 2 decimals
        s[::2] = np.round(s[::2], 2)
    return s, y, w


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", ["uniform", "exponential", "uniform-mixed"])
def test_a_million_weighted_rows_beyond_exact_cells_equal_sklearn(kind, seed):
    """Measured on these seeds: average precision within 2.6e-7 (uniform), 2.7e-7 (exponential) and 1.8e-7 (mixed;
    before: 5.9e-6, 8.7e-6 and 1.4e-3), ROC-AUC within 5e-8."""
    scores, y, w = _weighted(seed, kind)
    task = Task("binary")
    statistic = catalog.build("average_precision", task).statistic
    acc = Accumulator([statistic])
    (state,) = acc.to_host(acc.update(acc.zero(), {"predictions": scores, "targets": y, "weights": w}))
    assert np.isnan(state["ties"]).any()  # more distinct scores than exact_cells: binned
    auc, ap = evaluate([catalog.build("roc_auc", task), catalog.build("average_precision", task)], scores, y, w)
    for got, expected in (
        (auc, skm.roc_auc_score(y, scores, sample_weight=w)),
        (ap, skm.average_precision_score(y, scores, sample_weight=w)),
    ):
        assert abs(got[""] - expected) <= 1e-6
        assert abs(got[""] - expected) <= got[".error_bound"]


def test_binned_average_precision_does_not_depend_on_the_weights_scale():
    scores, y, w = _weighted(3, "exponential", 300_000)
    metric = catalog.build("average_precision", Task("binary"), {"exact_cells": 0})
    values = [evaluate([metric], scores, y, w * c)[0][""] for c in (1.0, 2.0, 0.5, 1000.0, 1e-3)]
    assert max(values) - min(values) <= 1e-9  # (measured 5e-10: the fixed point of the smallest weights)
    assert abs(values[0] - skm.average_precision_score(y, scores, sample_weight=w)) <= 1e-6


def test_squares_are_kept_only_where_a_weight_is_not_1_and_merge_either_way():
    rng = np.random.default_rng(8)
    n = 6_000
    y = (rng.random(n) < 0.3).astype(np.int8)
    s = np.round(rng.random(n), 4)
    w = np.where(np.arange(n) < n // 2, 1.0, rng.uniform(0.1, 3.0, n))  # the first half weighs 1
    statistic = catalog.build("average_precision", Task("binary"), {"exact_cells": 50}).statistic
    acc = Accumulator([statistic])

    def state(rows):
        return acc.update(acc.zero(), {"predictions": s[rows], "targets": y[rows], "weights": w[rows]})[0]

    unit, weighted, whole = state(np.arange(n // 2)), state(np.arange(n // 2, n)), state(np.arange(n))
    assert "squares" not in unit and "squares" in weighted and "squares" in whole  # (implied by unit counts)
    for merged in (
        statistic.merge(unit, weighted),
        statistic.merge(weighted, unit),
        statistic.merge_all([weighted, unit]),
    ):
        assert set(merged) == set(whole)
        for key in whole:
            np.testing.assert_array_equal(merged[key], whole[key])


def _weighted_state(statistic, rows, seed, weights=None):
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(np.int8)
    s = np.round(rng.random(rows), 4)
    w = rng.uniform(0.1, 3.0, rows) if weights is None else weights(rows)
    acc = Accumulator([statistic])
    return acc.to_host(acc.update(acc.zero(), {"predictions": s, "targets": y, "weights": w}))[0]


def test_stored_runs_and_checkpoints_keep_the_squares():
    # the squares are a leaf the zero state does not hold: storage reads them back where they were stored
    from types import SimpleNamespace

    from pipelines.checkpoints import decode_result, encode_result
    from pipelines.storage import decode_statistics, decode_stored, encode_statistics, stored_state
    from pipelines.unit_result import OVERALL, Partial, UnitResult

    metric = catalog.build("average_precision", Task("binary"), {"exact_cells": 100})
    state = _weighted_state(metric.statistic, 5_000, 1)
    assert "squares" in state
    npz, index = encode_statistics([metric.statistic], {OVERALL: (state,)}, slice_rows={OVERALL: 5_000})
    unit = UnitResult(0, "unit-0", Partial({OVERALL: (state,)}, {}, {OVERALL: 5_000}), 5_000, 0.1, "here")
    checkpoint = decode_result(
        encode_result(unit), SimpleNamespace(index=0, key="unit-0"), Accumulator([metric.statistic]), None, 0
    )
    for loaded in (
        decode_statistics([metric.statistic], npz, index)[OVERALL][0],
        decode_stored([metric.statistic], [], npz, index).states[OVERALL][0],
        checkpoint.partial.states[OVERALL][0],
    ):
        assert set(loaded) == set(state)
        np.testing.assert_array_equal(loaded["squares"], state["squares"])
        assert metric.compute(loaded) == metric.compute(state)
    unit = _weighted_state(metric.statistic, 5_000, 1, weights=np.ones)
    arrays = {"s0/t0/" + k: np.asarray(v) for k, v in unit.items()}
    assert set(stored_state(metric.statistic, "s0/t0", arrays)) == set(unit)  # (none stored: none read)


def test_weights_that_round_to_one_keep_their_squares_on_every_path():
    # 1 + 1e-12 is 2**32 in the fixed point of the counts, not in the squares: every path keeps the same squares
    rng = np.random.default_rng(2)
    n = 40_000
    batch = {
        "predictions": rng.random(n),
        "targets": (rng.random(n) < 0.3).astype(np.int8),
        "weights": np.full(n, 1 + 1e-12),
    }
    statistic = catalog.build("average_precision", Task("binary"), {"exact_cells": 1000}).statistic
    acc = Accumulator([statistic])
    (whole,) = acc.to_host(acc.update(acc.zero(), batch))
    state = acc.zero()
    for rows in np.array_split(np.arange(n), 40):  # small batches: sorted on the host
        state = acc.update(state, {k: v[rows] for k, v in batch.items()})
    (pieces,) = acc.to_host(state)
    assert "squares" in whole and set(pieces) == set(whole)
    for key in whole:
        np.testing.assert_array_equal(pieces[key], whole[key])


def test_states_stored_before_the_squares_merge_in_any_order():
    # a weighted state without squares (stored before them) is read with the squares its counts imply, exactly
    # additive, so every order of merges gives the same bits
    statistic = catalog.build("average_precision", Task("binary"), {"exact_cells": 0}).statistic
    old_a, old_b = ({k: v for k, v in _weighted_state(statistic, 3_000, s).items() if k != "squares"} for s in (3, 4))
    new = _weighted_state(statistic, 3_000, 5)
    first = statistic.merge(statistic.merge(old_a, old_b), new)
    for merged in (statistic.merge(old_a, statistic.merge(old_b, new)), statistic.merge_all([new, old_b, old_a])):
        assert set(merged) == set(first)
        for key in first:
            np.testing.assert_array_equal(merged[key], first[key])
