"""The algebra every statistic promises: zero is the identity of merge, merge is commutative and
associative, and results do not depend on how rows are sharded or in which order shards merge."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.task import Task

C = 4
CASES = {
    "binary": (Task("binary"), ["accuracy", "f1_score", "roc_auc", "average_precision", "log_loss", "brier_score",
                                "expected_calibration_error", "matthews_corrcoef"]),
    "binary-exact": (Task("binary"), [("roc_auc", {"mode": "exact"}), ("average_precision", {"mode": "exact"})]),
    "multiclass": (Task("multiclass", C), [("accuracy", {"top_k": 2}), ("f1_score", {"average": "macro"}),
                                           "cohen_kappa", ("roc_auc", {"precision_bits": 6}), "log_loss",
                                           "brier_score", "maximum_calibration_error"]),
    "multiclass-labels": (Task("multiclass", C, "labels", ignore_index=3), ["accuracy", "balanced_accuracy"]),
    "multilabel": (Task("multilabel", C), ["accuracy", ("precision", {"average": "micro"}),
                                           ("roc_auc", {"precision_bits": 6})]),
    "regression": (Task("regression"), ["mse", "mae", "r2", "explained_variance", "pearson_corrcoef"]),
}


def _metrics(task, names):
    out = []
    for entry in names:
        name, params = (entry, {}) if isinstance(entry, str) else entry
        out.append(catalog.build(name, task, params))
    return out


PREPARED = {}


def prepared(case):
    if case not in PREPARED:
        task, names = CASES[case]
        metrics = _metrics(task, names)
        PREPARED[case] = (task, metrics, Accumulator.for_metrics(metrics))
    return PREPARED[case]


def make_rows(task, n, seed):
    rng = np.random.default_rng(seed)
    kind = str(task.kind)
    weights = rng.integers(1, 4, n).astype(np.float64)  # integer weights: count states stay exact
    if kind == "binary":
        # a coarse grid of scores makes ties common
        return {"predictions": rng.integers(0, 9, n) / 8.0, "targets": rng.integers(0, 2, n), "weights": weights}
    if kind == "multiclass":
        if task.prediction == "labels":
            return {"predictions": rng.integers(0, C, n), "targets": rng.integers(0, C, n), "weights": weights}
        p = rng.random((n, C)) + 0.05
        return {"predictions": p / p.sum(1, keepdims=True), "targets": rng.integers(0, C, n), "weights": weights}
    if kind == "multilabel":
        return {"predictions": rng.random((n, C)), "targets": rng.integers(0, 2, (n, C)), "weights": weights}
    return {"predictions": rng.normal(3, 2, n), "targets": rng.normal(3, 2, n), "weights": weights}


def take(rows, idx):
    return {k: v[idx] for k, v in rows.items()}


def flat(state):
    if isinstance(state, tuple | list):
        return [x for s in state for x in flat(s)]
    return [np.asarray(state)]


def assert_states_equal(a, b, exact):
    for x, y in zip(flat(a), flat(b), strict=True):
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-9)


def values(acc, metrics, states):
    out = {}
    for i, m in enumerate(metrics):
        for k, v in m.compute(states[acc.index(m.statistic)]).items():
            out[f"{i}{k}"] = np.asarray(v, dtype=np.float64)
    return out


def assert_values_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=k)


EXACT = {"binary-exact", "multiclass-labels", "multilabel"}
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("case", sorted(CASES))
@SETTINGS
@given(n=st.integers(0, 60), seed=st.integers(0, 2**16), cuts=st.lists(st.integers(0, 60), max_size=5),
       order=st.randoms(use_true_random=False))
def test_sharding_and_merge_order_do_not_change_results(case, n, seed, cuts, order):
    task, metrics, acc = prepared(case)
    rows = make_rows(task, n, seed)
    whole = acc.update(acc.zero(), rows)
    bounds = sorted({0, n, *(c % (n + 1) for c in cuts)})
    shards = [acc.update(acc.zero(), take(rows, np.arange(a, b))) for a, b in zip(bounds, bounds[1:], strict=False)]
    order.shuffle(shards)
    merged = acc.zero()
    for s in shards:
        merged = acc.merge(merged, s)
    assert_values_equal(values(acc, metrics, whole), values(acc, metrics, merged))
    assert_states_equal(whole, merged, exact=case in EXACT)


@pytest.mark.parametrize("case", sorted(CASES))
@SETTINGS
@given(sizes=st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)), seed=st.integers(0, 2**16))
def test_zero_identity_commutativity_associativity(case, sizes, seed):
    task, _, acc = prepared(case)
    rows = make_rows(task, sum(sizes), seed)
    edges = np.cumsum((0, *sizes))
    a, b, c = (acc.update(acc.zero(), take(rows, np.arange(edges[i], edges[i + 1]))) for i in range(3))
    zero = acc.zero()
    exact = case in EXACT
    assert_states_equal(acc.merge(zero, a), a, exact=True)
    assert_states_equal(acc.merge(a, zero), a, exact=True)
    assert_states_equal(acc.merge(a, b), acc.merge(b, a), exact=exact)
    assert_states_equal(acc.merge(acc.merge(a, b), c), acc.merge(a, acc.merge(b, c)), exact=exact)


def test_every_catalogue_statistic_compiles_under_jit_or_says_it_does_not():
    """calibrax-style promise check: a statistic that declares itself jittable runs under jax.jit."""
    import jax

    for name in catalog.METRICS:
        task = Task("regression") if name in ("mse", "rmse", "mae", "r2", "explained_variance",
                                              "pearson_corrcoef") else Task("binary")
        stat = catalog.build(name, task).statistic
        rows = make_rows(task, 16, 0)
        if not stat.jittable:
            continue
        with jax.enable_x64(True):
            eager = stat.update(stat.zero(), {k: np.asarray(v) for k, v in rows.items()})
            jitted = jax.jit(stat.update)(stat.zero(), rows)
        assert_states_equal(eager, jitted, exact=False)
