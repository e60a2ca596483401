"""Algebraic laws of every statistic type, checked with hypothesis.

For each statistic: ``merge(zero, s) == s == merge(s, zero)``; merge is
commutative and associative; and any partition of the rows into shards,
updated separately and merged in any order (or folded shard after shard),
gives the state of one update over all rows, hence the same metrics.

Count-based states (confusion counts, top-k hits, subset matches, score
histograms, exact score counts) and the fixed-point sums of bounded values
(losses, squared errors, calibration confidences) must be *exactly* equal:
weights are drawn from {0, 0.5, 1, 2, 3}, so every partial count is exact in
float64 and fixed-point sums are integers. Centred moments (regression) must
agree within 1e-12 relative.

States come from :class:`~evaluators.accumulate.Accumulator` (one per
statistic, built once: the jit-compiled update is compiled once per padded
shape, and every batch here pads to 1,024 rows).
"""

import functools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.calibration import BrierSum, CalibrationBins, LogLossSum
from evaluators.classification import ConfusionCounts, SubsetMatch, TopKHits
from evaluators.ranking import ExactScoreCounts, ScoreHistogram
from evaluators.regression import RegressionMoments
from evaluators.statistic import DerivedMetric
from evaluators.task import Task
from tests._data import merge_randomly

# balanced_accuracy(adjusted=True) divides by zero when one class has support (as scikit-learn does)
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")

LAWS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WEIGHTS = st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 3.0])
SCORES = st.one_of(st.sampled_from([0.0, 0.125, 0.3, 0.5, 0.7, 0.875, 1.0]), st.floats(0.0, 1.0))
GRID = st.integers(-64, 64).map(lambda k: k / 8)  # exact values; moments still round


@dataclass(frozen=True)
class Config:
    """A statistic, the metrics that read it, and the data it takes."""

    task: Task
    metrics: tuple[tuple[str, tuple], ...]
    data: str
    exact: bool  # every leaf of the state is an exact sum (else see assert_same_state)
    max_rows: int = 40  # rows per drawn batch (host-side statistics compile eager ops once per shape)


BIN, MC, ML = Task("binary"), Task("multiclass", 4), Task("multilabel", 3)
MC_IGNORE = Task("multiclass", 4, prediction="labels", ignore_index=-1)

CONFIGS = {
    "ConfusionCounts-binary": Config(
        BIN,
        (
            ("accuracy", ()),
            ("f1_score", (("average", "macro"),)),
            ("specificity", ()),
            ("balanced_accuracy", ()),
            ("matthews_corrcoef", ()),
            ("cohen_kappa", ()),
            ("confusion_matrix", ()),
        ),
        "binary",
        True,
    ),
    "ConfusionCounts-multiclass": Config(
        MC,
        (
            ("accuracy", (("average", "macro"),)),
            ("precision", (("average", "weighted"),)),
            ("recall", (("average", "none"),)),
            ("fbeta_score", (("beta", 2.0),)),
            ("matthews_corrcoef", ()),
            ("cohen_kappa", (("weights", "quadratic"),)),
            ("confusion_matrix", (("normalize", "true"),)),
        ),
        "multiclass",
        True,
    ),
    "ConfusionCounts-multiclass-labels-ignore": Config(
        MC_IGNORE,
        (("accuracy", ()), ("f1_score", (("average", "none"),)), ("balanced_accuracy", (("adjusted", True),))),
        "multiclass-labels",
        True,
    ),
    "ConfusionCounts-multilabel": Config(
        ML,
        (
            ("precision", (("average", "micro"),)),
            ("f1_score", (("average", "none"),)),
            ("accuracy", (("average", "macro"),)),
            ("confusion_matrix", ()),
        ),
        "multilabel",
        True,
    ),
    "TopKHits": Config(
        MC, (("accuracy", (("top_k", 2),)), ("accuracy", (("average", "macro"), ("top_k", 2)))), "multiclass", True
    ),
    "SubsetMatch": Config(ML, (("accuracy", ()),), "multilabel", True),
    "ScoreHistogram-binary": Config(
        BIN, (("roc_auc", (("precision_bits", 6),)), ("average_precision", (("precision_bits", 6),))), "binary", True
    ),
    "ScoreHistogram-multiclass": Config(
        MC,
        (("roc_auc", (("precision_bits", 5),)), ("average_precision", (("average", "none"), ("precision_bits", 5)))),
        "multiclass",
        True,
    ),
    "ExactScoreCounts-binary": Config(
        BIN, (("roc_auc", (("mode", "exact"),)), ("average_precision", (("mode", "exact"),))), "binary", True, 16
    ),
    "ExactScoreCounts-multilabel": Config(
        ML,
        (("roc_auc", (("average", "micro"), ("mode", "exact"))), ("average_precision", (("mode", "exact"),))),
        "multilabel",
        True,
        16,
    ),
    "LogLossSum-binary": Config(BIN, (("log_loss", ()),), "binary", True),
    "LogLossSum-multiclass": Config(MC, (("log_loss", ()),), "multiclass", True),
    "BrierSum-binary": Config(BIN, (("brier_score", ()),), "binary", True),
    "BrierSum-multiclass": Config(MC, (("brier_score", ()),), "multiclass", True),
    "CalibrationBins-binary": Config(
        BIN,
        (
            ("expected_calibration_error", (("n_bins", 10),)),
            ("maximum_calibration_error", (("n_bins", 10),)),
            ("reliability_diagram", (("n_bins", 10),)),
        ),
        "binary",
        True,
    ),
    "CalibrationBins-multiclass": Config(
        MC,
        (("expected_calibration_error", (("n_bins", 7),)), ("reliability_diagram", (("n_bins", 7),))),
        "multiclass",
        True,
    ),
    "RegressionMoments": Config(
        Task("regression"),
        tuple((m, ()) for m in ("mse", "rmse", "mae", "r2", "explained_variance", "pearson_corrcoef")),
        "regression",
        False,
    ),
}

STATISTIC_TYPES = {
    ConfusionCounts,
    TopKHits,
    SubsetMatch,
    ScoreHistogram,
    ExactScoreCounts,
    LogLossSum,
    BrierSum,
    CalibrationBins,
    RegressionMoments,
}


@functools.cache
def setup(name: str) -> tuple[Accumulator, list[DerivedMetric]]:
    config = CONFIGS[name]
    metrics = [catalog.build(m, config.task, dict(params)) for m, params in config.metrics]
    assert len({m.statistic for m in metrics}) == 1, name
    return Accumulator([metrics[0].statistic]), metrics


def test_every_statistic_type_is_covered():
    assert {type(setup(name)[0].statistics[0]) for name in CONFIGS} == STATISTIC_TYPES


# --- data -------------------------------------------------------------------------------------------


@st.composite
def batches(draw, kind: str, max_rows: int = 40):
    """A batch of ``n`` rows (0 to ``max_rows``) as the accumulator takes it."""
    n = draw(st.integers(0, max_rows))
    w = draw(arrays(np.float64, n, elements=WEIGHTS))
    if kind == "binary":
        preds = draw(arrays(np.float64, n, elements=SCORES))
        targets = draw(arrays(np.int64, n, elements=st.integers(0, 1)))
    elif kind in ("multiclass", "multiclass-labels"):
        raw = draw(arrays(np.int64, (n, 4), elements=st.integers(0, 4))).astype(np.float64)
        raw[raw.sum(axis=1) == 0, 0] = 1.0
        preds = raw / raw.sum(axis=1, keepdims=True)
        low = -1 if kind == "multiclass-labels" else 0
        targets = draw(arrays(np.int64, n, elements=st.integers(low, 3)))
        if kind == "multiclass-labels":
            preds = draw(arrays(np.int64, n, elements=st.integers(0, 3)))
    elif kind == "multilabel":
        preds = draw(arrays(np.float64, (n, 3), elements=SCORES))
        targets = draw(arrays(np.int64, (n, 3), elements=st.integers(0, 1)))
    else:
        preds = draw(arrays(np.float64, n, elements=GRID))
        targets = draw(arrays(np.float64, n, elements=GRID))
    return {"predictions": preds, "targets": targets, "weights": w}


def take(batch: dict, rows: np.ndarray) -> dict:
    return {k: v[rows] for k, v in batch.items()}


# --- comparisons ------------------------------------------------------------------------------------


def leaves(state) -> list[np.ndarray]:
    """The arrays of a state pytree (tuples and dicts), in a fixed order."""
    if isinstance(state, tuple | list):
        return [leaf for part in state for leaf in leaves(part)]
    if isinstance(state, dict):
        return [leaf for key in sorted(state) for leaf in leaves(state[key])]
    return [np.asarray(state)]


def close(a, b) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    magnitudes = np.abs(np.concatenate([a.ravel(), b.ravel()]))
    scale = max(1.0, float(magnitudes[np.isfinite(magnitudes)].max(initial=0.0)))
    return bool(np.allclose(a, b, rtol=1e-12, atol=1e-12 * scale, equal_nan=True))


def assert_same_state(name: str, a, b) -> None:
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb)
    for i, (x, y) in enumerate(zip(la, lb, strict=True)):
        assert x.shape == y.shape, (name, i)
        if CONFIGS[name].exact:
            np.testing.assert_array_equal(x, y, err_msg=f"{name} leaf {i}")
        else:
            assert close(x, y), (name, i, x, y)


def assert_same_metrics(name: str, a, b) -> None:
    _, metrics = setup(name)
    for metric in metrics:
        va, vb = metric.compute(a[0]), metric.compute(b[0])
        assert set(va) == set(vb)
        for key in va:
            if CONFIGS[name].exact:
                np.testing.assert_array_equal(va[key], vb[key], err_msg=f"{name} {metric.name}{key}")
            else:
                assert close(va[key], vb[key]), (name, metric.name, key, va[key], vb[key])


# --- the laws ---------------------------------------------------------------------------------------

NAMES = list(CONFIGS)


@pytest.mark.parametrize("name", NAMES)
@LAWS
@given(data=st.data())
def test_merge_has_identity_zero_and_is_commutative_and_associative(name, data):
    acc, _ = setup(name)
    kind = CONFIGS[name].data
    a, b, c = (acc.update(acc.zero(), data.draw(batches(kind, CONFIGS[name].max_rows))) for _ in range(3))
    # zero is the identity, exactly, on either side; an empty batch changes nothing
    empty = take(data.draw(batches(kind, max_rows=1)), np.zeros(0, np.int64))
    for same in (acc.merge(acc.zero(), a), acc.merge(a, acc.zero()), acc.update(a, empty)):
        for x, y in zip(leaves(same), leaves(a), strict=True):
            np.testing.assert_array_equal(x, y)
    assert_same_state(name, acc.merge(a, b), acc.merge(b, a))
    left = acc.merge(acc.merge(a, b), c)
    right = acc.merge(a, acc.merge(b, c))
    assert_same_state(name, left, right)
    assert_same_metrics(name, left, right)


@pytest.mark.parametrize("name", NAMES)
@LAWS
@given(data=st.data())
def test_any_partition_and_merge_order_give_the_same_result(name, data):
    acc, _ = setup(name)
    batch = data.draw(batches(CONFIGS[name].data, max_rows=CONFIGS[name].max_rows + 10))
    n = len(batch["targets"])
    order = np.array(data.draw(st.permutations(range(n))), np.int64)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=5)))
    shards = np.split(order, cuts)
    whole = acc.update(acc.zero(), batch)

    states = [acc.update(acc.zero(), take(batch, rows)) for rows in shards]
    seed = data.draw(st.integers(0, 2**32 - 1))
    merged = merge_randomly(acc, states, np.random.default_rng(seed))
    assert_same_state(name, merged, whole)
    assert_same_metrics(name, merged, whole)

    folded = acc.zero()
    for rows in shards:  # the other way a worker accumulates: one state, batch after batch
        folded = acc.update(folded, take(batch, rows))
    assert_same_state(name, folded, whole)
    assert_same_metrics(name, folded, whole)
