"""Probability-quality and regression metrics against scikit-learn, scipy and hand derivations.

As in the other reference files, values are computed shard by shard (random
sizes with empty, one-row and single-class shards) and merged in a random
order; the references see the concatenated rows.

* ``log_loss``: ``sklearn.metrics.log_loss`` (float64, which clips at float64's
  machine epsilon, as ``evaluators`` does);
* ``brier_score``: ``sklearn.metrics.brier_score_loss``; for multiclass with
  ``scale_by_half=False``, i.e. the unscaled mean of ``sum_c (p_c - onehot_c)^2``
  (also derived by hand);
* ECE / MCE / reliability diagram: derived by a plain loop over rows from the
  definition (binary: confidence p, "accuracy" the target; multiclass: top-1
  probability and whether the top-1 class is the target; ``n_bins`` equal-width
  bins ``[edges[i], edges[i+1])``, the diagram's last closed, while ECE and MCE
  give a confidence of exactly 1 a bin of its own, as torchmetrics does; also
  checked against torchmetrics itself). The edges are torchmetrics', ``torch.linspace(0, 1,
  n_bins + 1)`` in the predictions' dtype (computed by PyTorch in the tests): a score exactly on
  an edge (0.7 of 10 bins) starts its bin there, where NumPy's linspace edge is one unit above it;
* regression: scikit-learn's ``mean_squared_error``, ``root_mean_squared_error``,
  ``mean_absolute_error``, ``r2_score``, ``explained_variance_score`` (all with
  ``sample_weight``), ``scipy.stats.pearsonr`` (weighted: ``np.cov`` with
  ``aweights``).
"""

import functools

import numpy as np
import pytest
import scipy.stats
from scipy.special import softmax
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

import evaluators.functional as F
from evaluators.accumulate import Accumulator, evaluate
from evaluators.calibration import bin_edges, bin_index, calibration_slot, fold_ones
from evaluators.catalog import build
from evaluators.lazyjax import jax
from evaluators.task import Task, TaskKind
from tests._data import (
    Case,
    binary_data,
    binary_probs_case,
    binary_rare_weighted_case,
    calibration_by_hand,
    case_values,
    ece_mce_by_hand,
    make_case,
    make_shards,
    multiclass_data,
    sharded_values,
    spec_id,
    spec_key,
    torch_edges,
    weights_for,
)

RTOL = 1e-9
ATOL = 1e-12


# --- calibration ---------------------------------------------------------------------------------


def _binary_probs(rng):
    return binary_probs_case(rng)


def _binary_rare_weighted(rng):
    return binary_rare_weighted_case(rng, 5000)


def _binary_logits_ignore_weighted(rng):
    d = binary_data(rng, 2000, positive_rate=0.2)
    targets = d["targets"].copy()
    targets[rng.random(2000) < 0.1] = -100
    task = Task("binary", prediction="logits", ignore_index=-100)
    return make_case(rng, task, d["logits"], targets, weights_for(rng, 2000))


def _multiclass_probs_absent_weighted(rng):
    # includes one-hot rows (log loss of a 0 probability: clipped) and uniform rows (on a bin edge)
    d = multiclass_data(rng, 3000, 5, absent=(3,))
    return make_case(rng, Task("multiclass", 5), d["probabilities"], d["targets"], weights_for(rng, 3000))


def _multiclass_logits_ignore(rng):
    d = multiclass_data(rng, 2000, 4)
    targets = d["targets"].copy()
    targets[rng.random(2000) < 0.1] = -1
    return make_case(rng, Task("multiclass", 4, prediction="logits", ignore_index=-1), d["logits"], targets)


CALIBRATION = {
    "binary-probs": _binary_probs,
    "binary-1pct-weighted": _binary_rare_weighted,
    "binary-logits-ignore-weighted": _binary_logits_ignore_weighted,
    "multiclass-probs-absent-weighted": _multiclass_probs_absent_weighted,
    "multiclass-logits-ignore": _multiclass_logits_ignore,
}

CALIBRATION_SPECS = [
    ("log_loss", {}),
    ("brier_score", {}),
    ("expected_calibration_error", {}),
    ("expected_calibration_error", {"n_bins": 10}),
    ("expected_calibration_error", {"n_bins": 7}),
    ("expected_calibration_error", {"n_bins": 1}),
    ("maximum_calibration_error", {}),
    ("maximum_calibration_error", {"n_bins": 10}),
    ("reliability_diagram", {}),
    ("reliability_diagram", {"n_bins": 10}),
]


@functools.cache
def calibration_case(name: str) -> Case:
    return CALIBRATION[name](np.random.default_rng(sum(map(ord, name)) + 2))


@functools.cache
def calibration_values(name: str) -> dict:
    return case_values(calibration_case(name), CALIBRATION_SPECS, np.random.default_rng(len(name) + 2))


def confidence_and_correct(c: Case) -> tuple[np.ndarray, np.ndarray]:
    if c.task.kind is TaskKind.BINARY:
        return c.scores, c.y.astype(np.float64)
    return c.scores.max(axis=1), (c.scores.argmax(axis=1) == c.y).astype(np.float64)


def calibration_reference(name: str, params: dict, c: Case):
    labels = list(range(c.task.classes))
    if name == "log_loss":
        return skm.log_loss(c.y, y_proba=c.scores, labels=labels, sample_weight=c.w)
    if name == "brier_score":
        if c.task.kind is TaskKind.BINARY:
            return skm.brier_score_loss(c.y, c.scores, sample_weight=c.w, pos_label=1)
        sk = skm.brier_score_loss(c.y, c.scores, labels=labels, sample_weight=c.w, scale_by_half=False)
        onehot = np.eye(c.task.classes)[c.y]
        by_hand = np.average(((c.scores - onehot) ** 2).sum(axis=1), weights=c.w)
        assert sk == pytest.approx(by_hand, rel=1e-12)
        return sk
    n_bins = params.get("n_bins", 15)
    if name in ("expected_calibration_error", "maximum_calibration_error"):
        count, conf_sum, correct_sum = calibration_by_hand(*confidence_and_correct(c), c.w, n_bins, ones_apart=True)
        ece, mce = ece_mce_by_hand(count, conf_sum, correct_sum)
        return ece if name == "expected_calibration_error" else mce
    count, conf_sum, correct_sum = calibration_by_hand(*confidence_and_correct(c), c.w, n_bins, closed="right")
    with np.errstate(invalid="ignore"):
        return {".count": count, ".confidence": conf_sum / count, ".accuracy": correct_sum / count}


CALIBRATION_CASES = [
    pytest.param(s, m, p, id=f"{s}-{spec_id(m, p)}") for s in CALIBRATION for m, p in CALIBRATION_SPECS
]


@pytest.mark.parametrize(("scenario_name", "name", "params"), CALIBRATION_CASES)
def test_calibration_matches_reference(scenario_name, name, params):
    c = calibration_case(scenario_name)
    got = calibration_values(scenario_name)[spec_key(name, params)]
    expected = calibration_reference(name, params, c)
    if name == "reliability_diagram":
        assert set(got) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=key)
    else:
        np.testing.assert_allclose(got[""], expected, rtol=RTOL, atol=ATOL)


def test_reliability_diagram_matches_sklearn_calibration_curve():
    """scikit-learn's calibration_curve (unweighted, binary) as a second reference, on scores off the edges.

    calibration_curve's bins are ``(edges[i], edges[i+1]]`` (first closed), ours (as torchmetrics')
    ``[edges[i], edges[i+1])`` (last closed): the two differ only for scores exactly on an inner edge,
    which :func:`test_scores_on_bin_edges` covers against the hand derivation.
    """
    rng = np.random.default_rng(5)
    y = (rng.random(3000) < 0.4).astype(int)
    p = np.clip(rng.beta(2, 3, 3000) + 0.2 * y, 0, 1)
    for n_bins in (10, 15):
        [diagram] = evaluate([build("reliability_diagram", Task("binary"), {"n_bins": n_bins})], p, y)
        prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        nonempty = diagram[".count"] > 0
        np.testing.assert_allclose(diagram[".accuracy"][nonempty], prob_true, rtol=1e-12)
        np.testing.assert_allclose(diagram[".confidence"][nonempty], prob_pred, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reliability_diagram_equals_calibration_curve_on_scores_on_the_edges(dtype):
    """Scores rounded to two decimals (0.5 and 0.7 among them) sit on inner edges: the diagram closes its bins on the
    right, with NumPy's edges, as calibration_curve, so each bin holds the same rows (p = 0.5 with 2 bins: the first
    bin, which the calibration error's left-closed bins put in the second)."""
    p = np.array([0.25, 0.5, 0.5, 0.75])
    y = np.array([0, 1, 0, 1])
    diagram = F.reliability_diagram(p.astype(dtype), y, n_bins=2)
    prob_true, prob_pred = calibration_curve(y, p.astype(dtype), n_bins=2)
    np.testing.assert_array_equal(diagram["count"], [3, 1])
    np.testing.assert_allclose(diagram["accuracy"], prob_true, rtol=1e-12)
    np.testing.assert_allclose(diagram["confidence"], prob_pred, rtol=1e-6 if dtype == "float32" else 1e-12)
    rng = np.random.default_rng(9)
    p = np.round(rng.random(3000), 2).astype(dtype)
    y = (rng.random(3000) < p).astype(int)
    for n_bins in (2, 5, 10, 15, 20):
        diagram = F.reliability_diagram(p, y, n_bins=n_bins)
        prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins)
        filled = diagram["count"] > 0
        np.testing.assert_allclose(diagram["accuracy"][filled], prob_true, rtol=1e-12)
        np.testing.assert_allclose(diagram["confidence"][filled], prob_pred, rtol=1e-6 if dtype == "float32" else 1e-12)


def test_scores_on_bin_edges():
    """Scores on the 1/100 grid sit on 10-bin edges, including 0.3 (whose float64 edge is one unit above it, in
    PyTorch as in NumPy: the bin below) and 0.7 (whose edge is the float 0.7 in PyTorch, one unit below NumPy's: its
    own bin), and on 0, 0.5 and 1."""
    rng = np.random.default_rng(6)
    y = (rng.random(2000) < 0.4).astype(int)
    p = np.round(np.clip(rng.beta(2, 3, 2000) + 0.2 * y, 0, 1), 2)
    p[:6] = [0.0, 0.3, 0.5, 0.7, 1.0, 1.0]
    w = weights_for(rng, 2000)
    metrics = [build(m, Task("binary"), {"n_bins": 10}) for m in ("reliability_diagram", "expected_calibration_error")]
    diagram, ece = evaluate(metrics, p, y, w)
    count, conf, correct = calibration_by_hand(p, y, w, 10, closed="right")
    np.testing.assert_allclose(diagram[".count"], count, rtol=1e-12)
    np.testing.assert_allclose(diagram[".confidence"], conf / count, rtol=1e-12)
    np.testing.assert_allclose(diagram[".accuracy"], correct / count, rtol=1e-12)
    count, conf, correct = calibration_by_hand(p, y, w, 10, ones_apart=True)
    assert ece[""] == pytest.approx(ece_mce_by_hand(count, conf, correct)[0], rel=RTOL)


def _confidences_at_the_edges(n_bins: int, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """``(edges, confidences)``: torchmetrics' edges in ``dtype`` (computed by PyTorch), and random confidences with
    every edge, the floats either side of it, the 1/100 grid, outside [0, 1] (far outside too), signed zeros and the
    smallest subnormals."""
    edges = torch_edges(n_bins, np.dtype(dtype))
    extremes = [-0.5, -0.0, 1.5, 5e-324, -5e-324, -1e300, 1e300, np.nextafter(1.0, 0.0), 1.0]
    rows = np.random.default_rng(n_bins).random(5_000)
    return edges, np.concatenate(
        [rows, edges, np.nextafter(edges, 2.0), np.nextafter(edges, -1.0), np.arange(101) / 100, extremes]
    )


@pytest.mark.parametrize("n_bins", [1, 2, 3, 7, 10, 15, 33, 64, 65, 100, 1000])
def test_bin_edges_are_torch_linspace_in_either_dtype(n_bins):
    for dtype in ("float32", "float64"):
        np.testing.assert_array_equal(bin_edges(n_bins, dtype), torch_edges(n_bins, np.dtype(dtype)))
    if n_bins == 10:  # the float 0.7 starts the bin [0.7, 0.8), where NumPy's linspace edge (0.7000000000000001)
        assert bin_edges(10)[7] == 0.7 != np.linspace(0, 1, 11)[7]  # would put it one bin lower


@pytest.mark.parametrize("n_bins", [1, 2, 3, 7, 10, 15, 33, 64, 65, 100, 1000])
def test_bin_of_a_confidence_is_the_search_of_the_edges_on_host_and_compiled(n_bins):
    """The host bin (floor of c * n, moved one bin where the edge says otherwise) and the compiled one (edge
    compares, or a search) are ``searchsorted(edges, c, side="right") - 1`` clipped, on every edge and the floats
    either side of it, outside [0, 1], and on the smallest subnormals."""
    edges, c = _confidences_at_the_edges(n_bins)
    expected = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, n_bins - 1)
    np.testing.assert_array_equal(bin_index(c, n_bins), expected)
    with jax.enable_x64(True):
        np.testing.assert_array_equal(np.asarray(jax.jit(bin_index, static_argnums=1)(c, n_bins)), expected)


@pytest.mark.parametrize("n_bins", [1, 2, 3, 7, 10, 15, 33, 64, 65, 100, 1000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_slot_of_a_confidence_is_its_bin_or_the_slot_of_ones_on_host_and_compiled(n_bins, dtype):
    """:func:`calibration_slot` (the host's one pass) is the search of the edges of the confidences' dtype, clipped,
    with ``n_bins`` for confidences of 1 and above."""
    edges, c = _confidences_at_the_edges(n_bins, dtype)
    with np.errstate(over="ignore"):
        values = c.astype(dtype)  # (float32: +-1e300 are +-inf)
    expected = np.where(values >= 1.0, n_bins, np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n_bins - 1))
    np.testing.assert_array_equal(calibration_slot(values, n_bins, dtype), expected)
    with jax.enable_x64(True):
        compiled = jax.jit(calibration_slot, static_argnums=(1, 2))(values, n_bins, dtype)
    np.testing.assert_array_equal(np.asarray(compiled), expected)


@pytest.mark.parametrize("n_bins", [5, 10, 15, 20])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_calibration_error_equals_torchmetrics_on_confidences_rounded_onto_the_edges(n_bins, dtype):
    """Predictions rounded to two decimals sit on bin edges (0.6 of 5 bins, 0.7 and 0.9 of 10, 0.2 and 0.4 of 15 in
    float32): binned as torchmetrics bins them (its edges in the predictions' dtype), binary in both dtypes and
    multiclass in float32 (torchmetrics rounds multiclass confidences to float32)."""
    torch = pytest.importorskip("torch")
    tmc = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(n_bins)
    p = np.round(rng.random(3000), 2).astype(dtype)
    p[:4] = [0.7, 0.65, 0.6, 0.9]
    y = (rng.random(3000) < p).astype(int)
    probs = np.round(softmax(rng.normal(size=(3000, 3)) * 2, axis=1), 2)
    # (rows of two decimals summing to 1; a float rounding below 0 clipped: such a value read as a logit would softmax
    # the whole batch, torchmetrics' rule, and move the confidences off the edges)
    probs[:, 2] = np.clip(1.0 - probs[:, 0] - probs[:, 1], 0.0, 1.0)
    probs = probs.astype(np.float32)
    yc = rng.integers(0, 3, 3000)
    for norm, fn in (("l1", F.expected_calibration_error), ("max", F.maximum_calibration_error)):
        binary = tmc.binary_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=n_bins, norm=norm)
        assert fn(p, y, n_bins=n_bins) == pytest.approx(float(binary), rel=1e-5, abs=1e-7), norm
        if dtype == "float32":
            multi = tmc.multiclass_calibration_error(torch.tensor(probs), torch.tensor(yc), 3, n_bins=n_bins, norm=norm)
            assert fn(probs, yc, n_bins=n_bins) == pytest.approx(float(multi), rel=1e-5, abs=1e-7), norm


@pytest.mark.parametrize("n_bins", [1, 2, 10, 15])
def test_calibration_error_equals_torchmetrics_with_confidences_of_exactly_1(n_bins):
    """torchmetrics bins a confidence of exactly 1 on its own (``bucketize(right=True)`` past the last edge): one-hot
    and saturated softmax rows, and binary scores of 0 and 1. Multiclass in float32, as torchmetrics rounds
    confidences to float32 first (a float64 confidence within float32 rounding of 1 is 1 there, not here)."""
    torch = pytest.importorskip("torch")
    tmc = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(n_bins)
    p = rng.random(600)
    p[rng.random(600) < 0.2], p[rng.random(600) < 0.1] = 1.0, 0.0
    y = (rng.random(600) < 0.9 * p).astype(int)
    probs = softmax(rng.normal(size=(600, 4)) * rng.choice([1.0, 60.0], size=(600, 1)), axis=1).astype(np.float32)
    yc = rng.integers(0, 4, 600)
    assert (p == 1).sum() > 50 and (probs.max(axis=1) == 1).sum() > 50
    for norm, fn in (("l1", F.expected_calibration_error), ("max", F.maximum_calibration_error)):
        binary = tmc.binary_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=n_bins, norm=norm)
        assert fn(p, y, n_bins=n_bins) == pytest.approx(float(binary), rel=1e-12, abs=1e-15)
        multi = tmc.multiclass_calibration_error(torch.tensor(probs), torch.tensor(yc), 4, n_bins=n_bins, norm=norm)
        assert fn(probs, yc, n_bins=n_bins) == pytest.approx(float(multi), abs=1e-6)
    # the reliability diagram keeps n_bins bins, confidences of 1 in the last (scikit-learn's calibration_curve)
    diagram = F.reliability_diagram(p, y, n_bins=n_bins)
    count, _, correct = calibration_by_hand(p, y.astype(float), None, n_bins, closed="right")
    np.testing.assert_array_equal(diagram["count"], count)
    prob_true, _ = calibration_curve(y, p, n_bins=n_bins)
    np.testing.assert_allclose(diagram["accuracy"][count > 0], (correct / count)[count > 0], rtol=1e-12)
    np.testing.assert_allclose(diagram["accuracy"][count > 0], prob_true, rtol=1e-12)


def test_a_state_stored_without_the_slot_of_ones_still_merges_and_reads():
    """Runs stored before confidences of 1 had a slot of their own kept ``n_bins`` bins, those in the last: such a
    state (and a stack of bucket states) merges with a new one, the old rows of 1 staying in the last bin, and
    reads as its own bins; the hand derivation counts them the same way."""
    rng = np.random.default_rng(3)
    p = np.where(rng.random(400) < 0.25, 1.0, rng.random(400))
    y = (rng.random(400) < p).astype(int)
    old_rows, new_rows = slice(0, 150), slice(150, 400)
    metrics = [build(m, Task("binary"), {"n_bins": 10}) for m in ("expected_calibration_error", "reliability_diagram")]
    stat = metrics[0].statistic  # (runs of that layout kept one state for both: the diagram reads it as it was)
    acc = Accumulator([stat])
    (old,) = acc.to_host(acc.update(acc.zero(), {"predictions": p[old_rows], "targets": y[old_rows]}))
    (new,) = acc.to_host(acc.update(acc.zero(), {"predictions": p[new_rows], "targets": y[new_rows]}))
    stored = fold_ones(old, 10)[:3]  # the older layout (and without the squared weights, kept since)
    assert stored[0].shape == (10,) and old[0].shape == (11,) and len(old) == 4
    old_bins = [np.append(x, 0.0) for x in calibration_by_hand(p[old_rows], y[old_rows], None, 10)]
    new_bins = calibration_by_hand(p[new_rows], y[new_rows], None, 10, ones_apart=True)
    expected = ece_mce_by_hand(*(a + b for a, b in zip(old_bins, new_bins, strict=True)))[0]
    for merged in (stat.merge(stored, new), stat.merge(new, stored)):
        assert metrics[0].compute(merged)[""] == pytest.approx(expected, rel=RTOL)
    count, _, correct = calibration_by_hand(p[old_rows], y[old_rows], None, 10)
    np.testing.assert_array_equal(metrics[1].compute(stored)[".count"], count)
    np.testing.assert_allclose(metrics[1].compute(stored)[".accuracy"], correct / count, rtol=1e-12)
    stacked = tuple(np.stack([leaf, leaf]) for leaf in stored)
    assert [leaf.shape for leaf in stat.merge(stacked, tuple(np.stack([leaf, leaf]) for leaf in new))] == [
        (2, 11),
        (2, 11, 2),
        (2, 11),
        (2, 11),
    ]


def test_runs_stored_with_one_state_for_the_calibration_error_and_the_diagram_still_load():
    """Before the diagram closed its bins on the right, one left-closed state (stored under a repr without
    ``closed``) served the calibration errors and the diagram: reading such a run for display gives both that state;
    reading it to merge runs refuses it (its diagram's rows on inner edges lie one bin higher), naming why."""
    import json

    from pipelines.storage import StoredLayoutError, decode_statistics, decode_stored, encode_statistics
    from pipelines.unit_result import OVERALL

    ece, diagram = (
        build(m, Task("binary"), {"n_bins": 10}) for m in ("expected_calibration_error", "reliability_diagram")
    )
    assert ece.statistic != diagram.statistic
    rng = np.random.default_rng(4)
    p, y = np.round(rng.random(500), 2), rng.integers(0, 2, 500)
    acc = Accumulator([ece.statistic])
    (state,) = acc.to_host(acc.update(acc.zero(), {"predictions": p, "targets": y}))
    npz, index = encode_statistics(acc.statistics, {OVERALL: (state,)}, slice_rows={OVERALL: 500})
    meta = json.loads(index)
    meta["statistics"][0]["repr"] = (  # the repr that evalpipe stored then (printed by that version)
        "CalibrationBins(task=Task(kind=<TaskKind.BINARY: 'binary'>, num_classes=2, prediction=<PredictionKind."
        "PROBABILITIES: 'probabilities'>, threshold=0.5, ignore_index=None), n_bins=10)"
    )
    assert meta["statistics"][0]["repr"] == ece.statistic.stored_reprs()[1]  # (the repr such runs stored)
    old = json.dumps(meta).encode()
    both = decode_statistics([ece.statistic, diagram.statistic], npz, old, approximately=True)[OVERALL]
    for leaf_a, leaf_b, leaf in zip(*both, state, strict=True):
        np.testing.assert_array_equal(leaf_a, leaf)
        np.testing.assert_array_equal(leaf_b, leaf)
    assert ece.compute(both[0])[""] == ece.compute(state)[""]
    with pytest.raises(ValueError, match="do not hold those of this run's metrics"):
        decode_statistics([ece.statistic, diagram.statistic], npz, old)
    with pytest.raises(StoredLayoutError, match="close on the right"):
        decode_stored([ece.statistic, diagram.statistic], [], npz, old)
    (alone,) = decode_stored([ece.statistic], [], npz, old).states[OVERALL]  # the calibration error's own
    np.testing.assert_array_equal(alone[0], state[0])
    # a run whose one calibration metric was the diagram: read for display, refused for a merge
    (shown,) = decode_statistics([diagram.statistic], npz, old, approximately=True)[OVERALL]
    np.testing.assert_array_equal(shown[0], state[0])
    with pytest.raises(StoredLayoutError, match="close on the right"):
        decode_stored([diagram.statistic], [], npz, old)
    with pytest.raises(ValueError, match="do not hold those of this run's metrics"):
        decode_statistics([diagram.statistic], npz, old)


def test_calibration_error_of_a_perfectly_calibrated_binary_model_is_zero():
    # confidence equals the frequency of positives in every bin: ECE = MCE = 0 by definition
    p = np.repeat([0.1, 0.5, 0.8], 10)
    y = np.concatenate([[1] + [0] * 9, [1] * 5 + [0] * 5, [1] * 8 + [0] * 2])
    assert F.expected_calibration_error(p, y) == pytest.approx(0.0, abs=1e-15)
    assert F.maximum_calibration_error(p, y, n_bins=10) == pytest.approx(0.0, abs=1e-15)


def test_debiased_ece_subtracts_the_folded_normal_bias_of_each_bin():
    """The interval estimator of ECE: per bin ``2|g| - E|N(g, s^2)|`` with ``s^2 = a(1-a)/(n-1)``,
    the folded-normal mean taken from SciPy, weighted by the bin's share of rows."""
    rng = np.random.default_rng(11)
    y = (rng.random(3000) < 0.3).astype(int)
    p = np.clip(rng.beta(2, 4, 3000) + 0.1 * y, 0, 1)
    metric = build("expected_calibration_error", Task("binary"), {"n_bins": 10})
    count, conf, correct = calibration_by_hand(p, y, np.ones(3000), 10, ones_apart=True)
    expected = 0.0
    for n, c, a in zip(count, conf, correct, strict=True):
        if n == 0:
            continue
        gap, rate = a / n - c / n, a / n
        s = np.sqrt(rate * (1 - rate) / (n - 1))
        folded = scipy.stats.foldnorm(abs(gap) / s, scale=s).mean() if s > 0 else abs(gap)
        expected += n * (2 * abs(gap) - folded)
    expected /= count.sum()
    acc = Accumulator([metric.statistic])
    state = acc.update(acc.zero(), {"predictions": p, "targets": y})
    assert metric.compute_for_interval(state[0])[""] == pytest.approx(expected, rel=1e-12)
    assert expected < metric.compute(state[0])[""]  # the plug-in value overshoots


def test_debiased_ece_counts_a_bin_by_its_effective_rows_at_any_scale_of_the_weights():
    """With weights, a bin's standard error takes Kish's effective count ``(sum w)**2 / sum w**2`` (its rows where
    every weight is 1): it took the summed weight, so weights of 0.01 gave bins of "0.3 rows" and an interval below
    0. Derived by hand with SciPy's folded normal; the same at weights of 0.01, 1 and 300; a state stored before the
    squared weights reads them as rows of weight 1, as it did."""
    rng = np.random.default_rng(12)
    y = (rng.random(3000) < 0.3).astype(int)
    p = np.clip(rng.beta(2, 4, 3000) + 0.1 * y, 0, 1)
    w = rng.uniform(0.2, 3.0, 3000)
    metric = build("expected_calibration_error", Task("binary"), {"n_bins": 10})
    acc = Accumulator([metric.statistic])
    slot = np.minimum(np.searchsorted(bin_edges(10), p, side="right") - 1, 9)
    slot[p >= 1.0] = 10
    total = w.sum()
    expected = 0.0
    for b in range(11):
        rows = slot == b
        if not rows.any():
            continue
        n, c, a = w[rows].sum(), (w * p)[rows].sum(), (w * y)[rows].sum()
        effective = n**2 / (w[rows] ** 2).sum()
        gap, rate = a / n - c / n, a / n
        s = np.sqrt(rate * (1 - rate) / (effective - 1))
        folded = scipy.stats.foldnorm(abs(gap) / s, scale=s).mean() if s > 0 else abs(gap)
        expected += n * (2 * abs(gap) - folded)
    expected /= total
    for scale in (0.01, 1.0, 300.0):
        state = acc.update(acc.zero(), {"predictions": p, "targets": y, "weights": w * scale})[0]
        assert metric.compute_for_interval(state)[""] == pytest.approx(expected, rel=1e-9), scale
    ones = acc.update(acc.zero(), {"predictions": p, "targets": y})[0]
    legacy = tuple(np.asarray(leaf) for leaf in ones)[:3]  # (a run stored before the squared weights)
    assert metric.compute_for_interval(legacy) == metric.compute_for_interval(ones)


# --- regression --------------------------------------------------------------------------------------


def _regression(rng, n, *, loc=0.0, weighted=False, integer_targets=False):
    y = loc + rng.normal(size=n) * 2.0
    if integer_targets:
        y = np.round(y).astype(np.int64)
    p = y + rng.normal(size=n) * 0.7 + 0.1
    p = np.where(rng.random(n) < 0.05, y, p)  # some exact hits (zero residuals)
    return y, p, (weights_for(rng, n) if weighted else None)


REGRESSION = {
    "plain": {},
    "weighted": {"weighted": True},
    "integer-targets": {"integer_targets": True},
    "large-mean-1e6": {"loc": 1e6},
    "large-mean-1e6-weighted": {"loc": 1e6, "weighted": True},
    "large-mean-1e9": {"loc": 1e9},
}
REGRESSION_METRICS = ("mse", "rmse", "mae", "r2", "explained_variance", "pearson_corrcoef")


@functools.cache
def regression_data(name: str):
    rng = np.random.default_rng(sum(map(ord, name)))
    n = 3000
    y, p, w = _regression(rng, n, **REGRESSION[name])
    shards = make_shards(rng, n, pieces=5)
    metrics = [build(m, Task("regression")) for m in REGRESSION_METRICS]
    values = sharded_values(metrics, {"predictions": p, "targets": y, "weights": w}, shards, rng)
    return y, p, w, {m: v[""] for m, v in zip(REGRESSION_METRICS, values, strict=True)}


def regression_reference(name: str, y, p, w) -> float:
    if name == "mse":
        return skm.mean_squared_error(y, p, sample_weight=w)
    if name == "rmse":
        return skm.root_mean_squared_error(y, p, sample_weight=w)
    if name == "mae":
        return skm.mean_absolute_error(y, p, sample_weight=w)
    if name == "r2":
        return skm.r2_score(y, p, sample_weight=w)
    if name == "explained_variance":
        return skm.explained_variance_score(y, p, sample_weight=w)
    if w is None:
        return scipy.stats.pearsonr(y, p).statistic
    cov = np.cov(np.stack([y, p]).astype(np.float64), aweights=w)
    return cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])


@pytest.mark.parametrize("metric", REGRESSION_METRICS)
@pytest.mark.parametrize("scenario_name", list(REGRESSION))
def test_regression_matches_sklearn(scenario_name, metric):
    y, p, w, got = regression_data(scenario_name)
    assert got[metric] == pytest.approx(regression_reference(metric, y, p, w), rel=RTOL, abs=ATOL)


def test_large_mean_case_is_actually_hard():
    """The large-mean data defeat raw power sums: the textbook one-pass variance is far off there."""
    y, _, _, got = regression_data("large-mean-1e9")
    n = len(y)
    naive = (np.sum(y * y) - np.sum(y) ** 2 / n) / n
    assert abs(naive - np.var(y)) > 1e-3 * np.var(y)
    assert got["r2"] == pytest.approx(regression_reference("r2", *regression_data("large-mean-1e9")[:3]), rel=RTOL)


@pytest.mark.parametrize("exact", [True, False])
def test_regression_constant_target(exact):
    # scikit-learn's force_finite: a constant target scores r2 = explained variance = 1 if predicted
    # exactly, else 0; the correlation is undefined (NaN)
    y = np.full(50, 3.0)
    p = y.copy() if exact else y + np.linspace(-1, 1, 50)
    values = evaluate([build(m, Task("regression")) for m in REGRESSION_METRICS], p, y)
    got = {m: v[""] for m, v in zip(REGRESSION_METRICS, values, strict=True)}
    for metric in ("mse", "rmse", "mae", "r2", "explained_variance"):
        assert got[metric] == pytest.approx(regression_reference(metric, y, p, None), abs=ATOL), metric
    assert np.isnan(got["pearson_corrcoef"])


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("batches", [1, 4])
def test_a_weighted_constant_target_has_no_spread_in_any_number_of_batches(exact, batches):
    """Fractional weights (zeros first) on a constant target: its weighted mean is the constant itself, so r2 and
    explained variance read scikit-learn's unweighted force_finite values (1 if predicted exactly, else 0) and the
    correlation is undefined. (The mean as sum(w * y) / sum(w) once left a variance of 1e-30: R^2 -1e30, Pearson
    -0.02 in 4 batches; scikit-learn's weighted r2 is itself -1.3e30 on these rows.) A constant prediction leaves
    the correlation undefined too."""
    rng = np.random.default_rng(3)
    y = np.full(3001, 2.5)
    p = y.copy() if exact else y + rng.normal(0, 0.3, 3001)
    w = np.concatenate([np.zeros(3), rng.uniform(0.1, 3.0, 2998)])
    metrics = [build(m, Task("regression")) for m in REGRESSION_METRICS]
    acc = Accumulator.for_metrics(metrics)
    states = acc.zero()
    for rows in np.array_split(np.arange(3001), batches):
        states = acc.update(states, {"predictions": p[rows], "targets": y[rows], "weights": w[rows]})
    got = {m.name: m.compute(states[acc.index(m.statistic)])[""] for m in metrics}
    for metric in ("r2", "explained_variance"):
        assert got[metric] == regression_reference(metric, y, p, None), metric
    assert np.isnan(got["pearson_corrcoef"])
    (moments,) = acc.update(acc.zero(), {"predictions": y, "targets": p, "weights": w})  # (one shared statistic)
    assert np.isnan(metrics[-1].compute(moments)[""])  # pearson_corrcoef of a constant prediction


def test_a_batch_of_zero_weights_changes_nothing_whatever_its_values():
    """A batch whose rows all weigh 0 (huge values among them) adds nothing: the moments equal the other batch's."""
    metrics = [build(m, Task("regression")) for m in REGRESSION_METRICS]
    acc = Accumulator.for_metrics(metrics)
    y, p = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    empty = {"predictions": np.array([2.0, 1.0]), "targets": np.array([-1e300, 3.0]), "weights": np.zeros(2)}
    both = acc.update(acc.update(acc.zero(), empty), {"predictions": p, "targets": y, "weights": np.ones(3)})
    alone = acc.update(acc.zero(), {"predictions": p, "targets": y, "weights": np.ones(3)})
    for metric in metrics:
        assert metric.compute(both[0]) == metric.compute(alone[0]), metric.name


@pytest.mark.parametrize("weights", [None, "zeros"])
def test_regression_without_a_counted_row_is_undefined_for_every_metric(weights):
    # no row, or only rows of weight 0: scikit-learn refuses both, as the functional API does; every metric of the
    # moments' state is NaN (r2 and explained variance too, not force_finite's 0 or 1 of a constant target)
    n = 0 if weights is None else 3
    y, p = np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64) + 1.0
    w = None if weights is None else np.zeros(n)
    with pytest.raises(ValueError):
        skm.r2_score(y, p, sample_weight=w)
    values = evaluate([build(m, Task("regression")) for m in REGRESSION_METRICS], p, y, w)
    for metric, value in zip(REGRESSION_METRICS, values, strict=True):
        assert np.isnan(value[""]), metric
    refused = "no rows" if weights is None else "all 3 rows have weight 0"  # (the functional API: as a job, exit 2)
    for function in (F.r2, F.explained_variance):
        with pytest.raises(ValueError, match=refused):
            function(p, y, weights=w)


@pytest.mark.parametrize("predictions", [[2.5], [1.0]])
def test_r2_of_one_row_is_undefined_as_in_sklearn_in_one_batch_or_merged(predictions):
    """One row: scikit-learn's R^2 is NaN ("not well-defined with less than two samples"), its explained variance
    force_finite's 1; the moments once gave R^2 0 (or 1). A zero-weight row beside it, or an empty batch merged in,
    leaves it one row; a second row makes it defined."""
    import warnings

    y, p = np.array([1.0]), np.array(predictions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {m: regression_reference(m, y, p, None) for m in ("r2", "explained_variance", "mse", "mae")}
    assert np.isnan(expected["r2"]) and expected["explained_variance"] == 1.0
    metrics = [build(m, Task("regression")) for m in expected]
    acc = Accumulator.for_metrics(metrics)
    one = {"predictions": p, "targets": y, "weights": np.ones(1)}
    with_zero = {"predictions": np.append(p, 9.0), "targets": np.append(y, -4.0), "weights": np.array([1.0, 0.0])}
    empty = {"predictions": np.zeros(0), "targets": np.zeros(0), "weights": np.zeros(0)}
    for states in (
        acc.update(acc.zero(), one),
        acc.update(acc.zero(), with_zero),
        acc.merge(acc.update(acc.zero(), empty), acc.update(acc.zero(), one)),
    ):
        got = {m.name: m.compute(states[acc.index(m.statistic)])[""] for m in metrics}
        np.testing.assert_equal(got, expected)
    two = {"predictions": np.append(p, 3.0), "targets": np.append(y, 2.0), "weights": np.ones(2)}
    merged = acc.merge(acc.update(acc.zero(), one), acc.update(acc.zero(), {k: v[1:] for k, v in two.items()}))
    r2 = metrics[0].compute(merged[acc.index(metrics[0].statistic)])[""]
    assert r2 == pytest.approx(skm.r2_score(two["targets"], two["predictions"]), rel=RTOL)


def test_regression_moments_stored_before_the_row_count_still_load_merge_and_compute():
    """Runs stored before the moments counted rows hold nine leaves: they decode, merge with new states and give the
    values they gave (R^2 as two or more rows)."""
    from pipelines.storage import decode_statistics, encode_statistics
    from pipelines.unit_result import OVERALL

    metrics = [build(m, Task("regression")) for m in REGRESSION_METRICS]
    acc = Accumulator.for_metrics(metrics)
    y, p = np.array([1.0, 2.0, 4.0, 7.0]), np.array([1.5, 2.0, 3.0, 6.0])
    (state,) = acc.update(acc.zero(), {"predictions": p, "targets": y, "weights": np.ones(4)})
    old = tuple(state[:9])
    npz, index = encode_statistics(acc.statistics, {OVERALL: (old,)})
    (loaded,) = decode_statistics(acc.statistics, npz, index)[OVERALL]
    assert len(loaded) == 9
    for metric in metrics:
        assert metric.compute(loaded) == pytest.approx(metric.compute(state)), metric.name
    assert metrics[3].compute(loaded)[""] == pytest.approx(skm.r2_score(y, p), rel=RTOL)
    (more,) = acc.update(acc.zero(), {"predictions": p[:1], "targets": y[:1] + 1.0, "weights": np.ones(1)})
    r2 = metrics[3].compute(acc.statistics[0].merge(loaded, more))[""]
    assert r2 == pytest.approx(skm.r2_score(np.append(y, 2.0), np.append(p, 1.5)), rel=RTOL)


# --- functional API ------------------------------------------------------------------------------------

TARGETS = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
PREDS_SOFT = np.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.6, 0.3, 0.1, 0.85, 0.15])


def test_functional_calibration_calibrax_example():
    assert F.brier_score(PREDS_SOFT, TARGETS) == pytest.approx(skm.brier_score_loss(TARGETS, PREDS_SOFT), rel=RTOL)
    assert F.log_loss(PREDS_SOFT, TARGETS) == pytest.approx(skm.log_loss(TARGETS, y_proba=PREDS_SOFT), rel=RTOL)
    # calibrax's default: 10 bins
    count, conf, correct = calibration_by_hand(PREDS_SOFT, TARGETS, None, 10)
    assert F.expected_calibration_error(PREDS_SOFT, TARGETS) == pytest.approx(
        ece_mce_by_hand(count, conf, correct)[0], rel=RTOL
    )
    count, conf, correct = calibration_by_hand(PREDS_SOFT, TARGETS, None, 5)
    ece, mce = ece_mce_by_hand(count, conf, correct)
    assert F.expected_calibration_error(PREDS_SOFT, TARGETS, n_bins=5) == pytest.approx(ece, rel=RTOL)
    assert F.maximum_calibration_error(PREDS_SOFT, TARGETS, n_bins=5) == pytest.approx(mce, rel=RTOL)
    diagram = F.reliability_diagram(PREDS_SOFT, TARGETS, n_bins=5)
    count, conf, correct = calibration_by_hand(PREDS_SOFT, TARGETS, None, 5, closed="right")
    assert set(diagram) == {"confidence", "accuracy", "count"}
    np.testing.assert_array_equal(diagram["count"], count)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(diagram["confidence"], conf / count, rtol=RTOL, equal_nan=True)
        np.testing.assert_allclose(diagram["accuracy"], correct / count, rtol=RTOL, equal_nan=True)


def test_functional_multiclass_calibration_and_weights():
    rng = np.random.default_rng(17)
    d = multiclass_data(rng, 500, 3)
    y, logits = d["targets"], d["logits"]
    probs = softmax(logits, axis=1)
    w = weights_for(rng, 500)
    assert F.log_loss(logits, y, weights=w) == pytest.approx(
        skm.log_loss(y, y_proba=probs, sample_weight=w, labels=[0, 1, 2]), rel=RTOL
    )
    assert F.brier_score(probs, y, weights=w) == pytest.approx(
        skm.brier_score_loss(y, probs, sample_weight=w, labels=[0, 1, 2], scale_by_half=False), rel=RTOL
    )
    count, conf, correct = calibration_by_hand(probs.max(axis=1), (probs.argmax(axis=1) == y) * 1.0, w, 10)
    assert F.expected_calibration_error(probs, y, weights=w) == pytest.approx(
        ece_mce_by_hand(count, conf, correct)[0], rel=RTOL
    )


def test_functional_regression():
    rng = np.random.default_rng(23)
    y, p, w = _regression(rng, 400, weighted=True)
    assert F.mse(p, y) == pytest.approx(skm.mean_squared_error(y, p), rel=RTOL)
    assert F.rmse(p, y, weights=w) == pytest.approx(skm.root_mean_squared_error(y, p, sample_weight=w), rel=RTOL)
    assert F.mae(p, y, weights=w) == pytest.approx(skm.mean_absolute_error(y, p, sample_weight=w), rel=RTOL)
    assert F.r2(p, y, weights=w) == pytest.approx(skm.r2_score(y, p, sample_weight=w), rel=RTOL)
    assert F.explained_variance(p, y) == pytest.approx(skm.explained_variance_score(y, p), rel=RTOL)
    assert F.pearson_corrcoef(p, y) == pytest.approx(scipy.stats.pearsonr(y, p).statistic, rel=RTOL)


@pytest.mark.parametrize("scale", [1e-100, 1e80, 1e150])
def test_pearson_at_extreme_scales_equals_scipy(scale):
    """The moments' product left float64's range (1e80-scale values gave 0, 1e-100 NaN); their square roots do not."""
    rng = np.random.default_rng(5)
    t = rng.normal(size=5000) * scale
    p = t + 0.5 * rng.normal(size=5000) * scale
    assert F.pearson_corrcoef(p, t) == pytest.approx(scipy.stats.pearsonr(p, t)[0], abs=1e-12)


def test_regression_beyond_float64s_range_is_refused_in_a_sentence():
    """Squares past 1e308 left the moments inf or NaN (the functions raised Python's OverflowError, or gave NaN);
    a job refuses them before commit (exit 2), the functions with a ValueError that says why."""
    rng = np.random.default_rng(5)
    t = rng.normal(size=200) * 1e160
    for fn in (F.mse, F.rmse, F.r2, F.explained_variance, F.pearson_corrcoef):
        with pytest.raises(ValueError, match="left float64's range"):
            fn(t + rng.normal(size=200) * 1e160, t)


@pytest.mark.parametrize(
    "predictions, targets",
    [
        (np.array([2**62, 0, 5], np.int64), np.array([-(2**62), 0, 7], np.int64)),  # a difference beyond int64
        (np.array([-(2**63), 0, 1], np.int64), np.zeros(3, np.int64)),
        (np.zeros(3, np.int64), np.array([2**63 + 12345, 0, 3], np.uint64)),
        (np.array([2**31, -(2**31) - 1, 3], np.int64), np.array([0, 1, 2], np.uint32)),
    ],
)
def test_integer_columns_beyond_int32_are_the_numbers_they_hold(predictions, targets):
    """Integer predictions and targets were read as int32 (labels), so 2**62 counted as 0 and a uint64 of
    2**63 + 12345 as 12345: the values are now scikit-learn's on the same numbers in float64."""
    p, y = predictions.astype(np.float64), targets.astype(np.float64)
    assert F.mae(predictions, targets) == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-15)
    assert F.mse(predictions, targets) == pytest.approx(skm.mean_squared_error(y, p), rel=1e-15)
    weights = np.array([2**63 + 1, 1, 1], np.uint64)  # a weight beyond int64: one row counts all but alone
    assert F.mae(predictions, targets, weights=weights) == pytest.approx(
        skm.mean_absolute_error(y, p, sample_weight=weights.astype(np.float64)), rel=1e-15
    )


@pytest.mark.parametrize("scale", [1e-152, 1e-160, 1e-170, 1e-200])
def test_values_whose_squares_underflow_are_refused_not_read_as_a_constant_target(scale):
    """Targets 1, 2, 3, 4 times 1e-160: their squared deviations fall below float64's smallest normal number (flushed
    to 0 where the update is compiled), and r2 = explained variance = 1, MSE 0 and Pearson NaN were read off
    them, exit 0. Refused (``ValueError``: exit 2 in a job, nothing committed), as are deviations whose squares come
    near that number (1e-152: a mean square of 1.25e-304, below the floor of 7.7e-295); at 1e-140 the values are
    scikit-learn's and scipy's, as they are unscaled."""
    y, p = np.array([1, 2, 3, 4.0]), np.array([1.1, 1.9, 3.2, 3.8])
    for metric in (F.r2, F.mse, F.pearson_corrcoef, F.explained_variance):
        with pytest.raises(ValueError, match="come near or below float64's smallest normal number"):
            metric(p * scale, y * scale)
    assert F.r2(p * 1e-140, y * 1e-140) == pytest.approx(skm.r2_score(y, p), rel=1e-12)
    assert F.pearson_corrcoef(p * 1e-140, y * 1e-140) == pytest.approx(scipy.stats.pearsonr(y, p)[0], rel=1e-12)
    # a tiny value beside others: no precision lost, the values of float64 arithmetic as scikit-learn's
    tiny_y, tiny_p = np.array([0.0, 2.0, 1.1]), np.array([1e-200, 2.0, 1.0])
    assert F.r2(tiny_p, tiny_y) == pytest.approx(skm.r2_score(tiny_y, tiny_p), rel=1e-12)
    assert F.mse(np.array([1e-200, 2.0]), np.array([0.0, 2.0])) == skm.mean_squared_error([0.0, 2.0], [1e-200, 2.0])


def test_pearson_of_perfectly_correlated_rows_is_at_most_1_as_scipy_clips_it():
    """Rows on one line: the moments' ratio rounded to 1.0000000000000002 (or below -1), stored as is, where
    scipy clips r to [-1, 1]; a value outside its range also failed the reports' range checks."""
    from evaluators.regression import Moments

    statistic = build("pearson_corrcoef", Task(TaskKind.REGRESSION)).statistic
    acc = Accumulator([statistic])
    rng = np.random.default_rng(0)
    beyond = 0
    for _ in range(10):
        y = rng.normal(size=int(rng.integers(3, 6)))
        for p in (3.7 * y + 1.3, y.copy(), -2.1 * y + 0.4):
            r = F.pearson_corrcoef(p, y)
            assert -1.0 <= r <= 1.0 and r == pytest.approx(scipy.stats.pearsonr(y, p).statistic, abs=1e-15)
            m = Moments(*(float(x) for x in acc.update(acc.zero(), {"predictions": p, "targets": y})[0]))
            beyond += abs(m.c_target_pred / (np.sqrt(m.m2_target) * np.sqrt(m.m2_pred))) > 1
    assert beyond  # (the ratio itself leaves [-1, 1] on such rows: what the clip is for)


@pytest.mark.parametrize("scale", [3e-152, 3e-153, 1e-154])
def test_normal_deviations_near_the_smallest_normal_number_are_refused(scale):
    """Targets N(0, 1) and predictions off by N(0, 0.5), times ``scale``: many rows' squared deviations fall below
    float64's smallest normal number (flushed to 0 where the update is compiled) while the mean square stays above
    it, so the guard passed and MSE was committed 1.7e-7, 2.3e-4 and 97% off (r2 0.988 for 0.745 at 1e-154). Now
    refused; at 1e-140 MSE is exact arithmetic's to 1e-13 and r2 is scikit-learn's."""
    from fractions import Fraction

    rng = np.random.default_rng(1)
    y = rng.normal(size=2000)
    p = y + 0.5 * rng.normal(size=2000)
    with pytest.raises(ValueError, match="come near or below float64's smallest normal number"):
        F.mse(p * scale, y * scale)
    p, y = p * 1e-140, y * 1e-140
    exact = sum((Fraction(a) - Fraction(b)) ** 2 for a, b in zip(p, y, strict=True)) / len(y)
    assert F.mse(p, y) == pytest.approx(float(exact), rel=1e-13)
    assert F.r2(p, y) == pytest.approx(skm.r2_score(y / 1e-140, p / 1e-140), rel=1e-12)
