"""Input checks of the functional API (``evaluators.functional``): non-numeric arrays and bad thresholds are
refused with one clear ``ValueError``; valid inputs at the edges still match scikit-learn.

The threshold rule is the one :class:`evaluators.task.Task` documents: a score counts as positive when
``p > threshold``; a threshold must be a number in [0, 1], as in the YAML job path."""

import re

import numpy as np
import pytest
from sklearn import metrics as skm

import evaluators.functional as F
from evaluators.functional import (
    accuracy,
    cohen_kappa,
    demographic_parity_difference,
    f1_score,
    mse,
    precision,
    r2,
    recall,
    roc_auc,
)
from evaluators.functional import segmentation as seg

NUMBERS = r"expected numbers \(integer class ids, booleans or floating scores\)"


# --- non-numeric predictions, targets and weights ------------------------------------------------------------


@pytest.mark.parametrize(
    ("predictions", "targets", "role", "dtype"),
    [
        (np.array(["a", "b"]), np.array(["a", "a"]), "predictions", "<U1"),
        (np.array(["a", "b"]), np.array([0, 1]), "predictions", "<U1"),
        (["a", "b"], [0, 1], "predictions", "<U1"),
        (np.array([0, 1]), np.array(["a", "b"]), "targets", "<U1"),
        (np.array([0.1, 0.9]), np.array(["a", "b"]), "targets", "<U1"),
        (np.array([1j, 0]), np.array([1, 0]), "predictions", "complex128"),
        (np.array([b"x", b"y"]), np.array([1, 0]), "predictions", "|S1"),
    ],
)
def test_non_numeric_arrays_are_refused_naming_argument_and_dtype(predictions, targets, role, dtype):
    with pytest.raises(ValueError, match=rf"^{role}: {NUMBERS}, got dtype {re.escape(dtype)}\.$"):
        accuracy(predictions, targets)


@pytest.mark.parametrize("function", [accuracy, f1_score, recall, precision, roc_auc])
def test_string_predictions_refused_by_every_classification_function(function):
    with pytest.raises(ValueError, match=rf"predictions: {NUMBERS}, got dtype <U"):
        function(np.array(["cat", "dog", "cat"]), np.array([0, 1, 0]))


@pytest.mark.parametrize("role", ["predictions", "targets"])
def test_none_inside_object_array_is_refused(role):
    columns = {"predictions": np.array([0.1, 0.9, 0.4]), "targets": np.array([0, 1, 1])}
    columns[role] = np.array([*columns[role][:2], None])
    assert columns[role].dtype == object
    with pytest.raises(ValueError, match=rf"{role}: {NUMBERS}, got dtype object holding None \(missing values"):
        accuracy(columns["predictions"], columns["targets"])


def test_object_array_of_numbers_is_refused_with_a_conversion_hint():
    # the documented choice: object arrays are refused even when they hold only numbers
    with pytest.raises(ValueError, match=r"predictions: .*got dtype object \(convert an object array of numbers"):
        recall(np.array([0.1, 0.9], dtype=object), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"targets: .*got dtype object \(convert"):
        recall(np.array([0.1, 0.9]), np.array([0, 1], dtype=object))


def test_converted_object_array_gives_sklearn_value():
    raw = np.array([0.1, 0.9, 0.7, 0.3], dtype=object)
    y = np.array([0, 1, 0, 1])
    p = np.asarray(raw, dtype=float)  # the conversion the message suggests
    assert recall(p, y) == pytest.approx(skm.recall_score(y, p > 0.5))


@pytest.mark.parametrize(
    ("weights", "detail"),
    [
        (np.array(["1", "2", "1"]), r"<U1\."),
        (np.array([1.0, None, 2.0]), r"object holding None"),
        (np.array([1.0, 2.0, 3.0], dtype=object), r"object \(convert"),
    ],
)
def test_non_numeric_weights_are_refused(weights, detail):
    p, y = np.array([0, 1, 1]), np.array([0, 1, 0])
    with pytest.raises(
        ValueError, match=rf"weights: expected numbers \(non-negative sample weights\), got dtype {detail}"
    ):
        accuracy(p, y, weights=weights)
    with pytest.raises(ValueError, match=r"weights: expected numbers"):
        cohen_kappa(p, y, sample_weight=weights)


def test_regression_refuses_strings_with_its_own_expectation():
    with pytest.raises(ValueError, match=r"predictions: expected numbers \(floating or integer values\), got dtype <U"):
        mse(np.array(["1.0", "2.0"]), np.array([1.0, 2.0]))


# --- threshold ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [float("nan"), -1, -0.01, 1.5, float("inf"), -float("inf"), "0.5", None, True])
def test_bad_threshold_is_refused(threshold):
    with pytest.raises(ValueError, match=r"threshold: expected a probability threshold in \[0, 1\], got"):
        recall(np.array([1.0, 0.2]), np.array([1, 0]), threshold=threshold)


@pytest.mark.parametrize("function", [precision, f1_score, accuracy])
def test_nan_threshold_refused_by_other_functions(function):
    with pytest.raises(ValueError, match=r"threshold: expected a probability threshold in \[0, 1\], got nan"):
        function(np.array([0.8, 0.2]), np.array([1, 0]), threshold=float("nan"))


def test_fairness_functions_refuse_bad_threshold():
    with pytest.raises(ValueError, match=r"threshold: expected a probability threshold in \[0, 1\]"):
        demographic_parity_difference(np.array([0.8, 0.2]), np.array([1, 0]), ["a", "b"], threshold=-1)


# Scores at exactly 0 and 1 tell ``p > t`` from ``p >= t`` at both edges.
SCORES = np.array([0.0, 0.0, 0.2, 0.5, 0.7, 1.0, 1.0, 0.3, 0.0, 0.9])
LABELS = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1])


@pytest.mark.parametrize("threshold", [float("nan"), 1.5, -0.2, "0.5", True])
def test_segmentation_refuses_bad_threshold_of_foreground_scores(threshold):
    scores = np.array([[[0.9, 0.2], [0.6, 0.1]]], np.float32)
    with pytest.raises(ValueError, match=r"threshold: expected a probability threshold in \[0, 1\], got"):
        seg.iou(scores, np.array([[[1, 0], [0, 0]]]), threshold=threshold)


def test_segmentation_foreground_scores_at_a_threshold_match_sklearn():
    rng = np.random.default_rng(5)
    scores, masks = rng.random((3, 6, 5)).astype(np.float32), rng.integers(0, 2, (3, 6, 5))
    for threshold in (0.0, 0.35, np.float32(0.5), 1):
        hard = (scores > float(threshold)).astype(int).reshape(-1)
        want = skm.jaccard_score(masks.reshape(-1), hard, zero_division=0.0)
        assert seg.iou(scores, masks, threshold=threshold) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("threshold", [0.0, 1.0, 0, 1, 0.5, np.float32(0.5), np.float64(0.25)])
def test_edge_thresholds_match_sklearn_on_thresholded_scores(threshold):
    hard = np.greater(SCORES, float(threshold)).astype(int)
    kw = {"threshold": threshold}
    assert recall(SCORES, LABELS, **kw) == pytest.approx(skm.recall_score(LABELS, hard, zero_division=0))
    assert precision(SCORES, LABELS, **kw) == pytest.approx(skm.precision_score(LABELS, hard, zero_division=0))
    assert accuracy(SCORES, LABELS, **kw) == pytest.approx(skm.accuracy_score(LABELS, hard))


def test_edge_thresholds_hand_values():
    # threshold 1.0: no score exceeds it, nothing is predicted positive; threshold 0.0: every nonzero score is.
    assert recall(SCORES, LABELS, threshold=1.0) == 0.0
    positives = int(LABELS.sum())  # 7
    caught = int(((SCORES > 0) & (LABELS == 1)).sum())  # 0.2, 0.5, 1.0, 0.3, 0.9 -> 5
    assert recall(SCORES, LABELS, threshold=0.0) == pytest.approx(caught / positives)


# --- other valid edges ------------------------------------------------------------------------------------------


def test_boolean_targets_match_sklearn():
    rng = np.random.default_rng(0)
    p = rng.random(50)
    y = rng.random(50) < 0.4
    assert y.dtype == np.bool_
    hard = (p > 0.5).astype(int)
    assert f1_score(p, y) == pytest.approx(skm.f1_score(y, hard))
    assert recall(p, y) == pytest.approx(skm.recall_score(y, hard))
    assert roc_auc(p, y, mode="exact") == pytest.approx(skm.roc_auc_score(y, p))


def test_boolean_predictions_and_targets_match_sklearn():
    p = np.array([True, False, True, True, False, False])
    y = np.array([True, True, False, True, False, True])
    assert accuracy(p, y) == pytest.approx(skm.accuracy_score(y, p))
    assert f1_score(p, y) == pytest.approx(skm.f1_score(y, p))


def test_float16_scores_match_sklearn():
    rng = np.random.default_rng(1)
    p = rng.random(200).astype(np.float16)
    y = (rng.random(200) < 0.5).astype(int)
    wide = p.astype(np.float64)  # float16 -> float64 is exact
    assert roc_auc(p, y, mode="exact") == pytest.approx(skm.roc_auc_score(y, wide))
    assert recall(p, y) == pytest.approx(skm.recall_score(y, wide > 0.5))
    assert accuracy(p, y, threshold=0.0) == pytest.approx(skm.accuracy_score(y, wide > 0.0))


def test_numeric_weights_still_work():
    p = np.array([0, 1, 1, 0, 1])
    y = np.array([0, 1, 0, 0, 1])
    w = np.array([1.0, 2.0, 0.5, 1.5, 3.0])
    assert accuracy(p, y, weights=w) == pytest.approx(skm.accuracy_score(y, p, sample_weight=w))
    assert accuracy(p, y, weights=w.astype(np.int64) + 1) == pytest.approx(
        skm.accuracy_score(y, p, sample_weight=w.astype(np.int64) + 1)
    )


@pytest.mark.parametrize("seed", range(5))
def test_an_ignored_label_does_not_make_a_binary_task_multiclass(seed):
    """``ignore_index=255`` beside labels 0 and 1, no ``task=``: the rows of 255 name no class, so the task is
    binary (it was read as 256 classes, and F1 was the macro average of 0.583 where scikit-learn gives 0.667)."""
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    y[rng.choice(40, 6, replace=False)] = 255
    keep = y != 255
    assert f1_score(p, y, ignore_index=255) == pytest.approx(skm.f1_score(y[keep], p[keep]), abs=1e-12)
    assert precision(p, y, ignore_index=255) == pytest.approx(skm.precision_score(y[keep], p[keep]), abs=1e-12)
    assert accuracy(p, y, ignore_index=255) == pytest.approx(skm.accuracy_score(y[keep], p[keep]), abs=1e-12)


def test_an_ignored_label_does_not_count_as_a_class():
    y = np.array([0, 1, 2, 255, 1, 0])
    p = np.array([0, 2, 2, 1, 1, 0])
    keep = y != 255
    want = skm.f1_score(y[keep], p[keep], average="macro")
    assert f1_score(p, y, ignore_index=255, average="macro") == pytest.approx(want, abs=1e-12)


def test_multilabel_predictions_of_another_width_are_refused_in_a_sentence():
    with pytest.raises(ValueError, match=r"predictions: expected 3 labels per row, got shape \(2,\)"):
        f1_score(np.zeros((3, 2), int), np.zeros((3, 3), int))


def test_a_binary_task_of_three_classes_is_refused_by_functions_and_collections():
    """`task="binary", num_classes=3` returned 1.0 (the 3 ignored), as the YAML path refuses it."""
    from evaluators.stateful import MetricCollection

    with pytest.raises(ValueError, match=r"num_classes=3: a binary task has 2 classes"):
        accuracy(np.array([0, 1, 1]), np.array([0, 1, 1]), task="binary", num_classes=3)
    with pytest.raises(ValueError, match=r"num_classes=3: a binary task has 2 classes"):
        MetricCollection(["accuracy"], task="binary", num_classes=3)
    assert accuracy(np.array([0, 1, 1]), np.array([0, 1, 0]), task="binary", num_classes=2) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("weights", "needle"),
    [
        (np.ones(99), r"weights: expected one weight per row, shape \(100,\); got shape \(99,\)"),
        (np.ones((100, 2)), r"got shape \(100, 2\)"),  # (read as 200 weights, or an IndexError)
        (2.0, r"got shape \(\)"),
    ],
    ids=["short", "two columns", "a scalar"],
)
def test_weights_of_another_shape_are_refused(weights, needle):
    rng = np.random.default_rng(5)
    p, y = rng.random(100), rng.integers(0, 2, 100)
    for function in (accuracy, roc_auc):
        with pytest.raises(ValueError, match=needle):
            function(p, y, weights=weights)
    with pytest.raises(ValueError, match=needle):
        mse(p, y.astype(float), weights=weights)
    assert accuracy(p, y, weights=np.ones(100)) == skm.accuracy_score(y, p > 0.5)


def test_regression_of_two_dimensional_arrays_is_refused_naming_the_shapes():
    with pytest.raises(ValueError, match=r"one number per row \(1-D\); got shapes \(10, 2\) and \(10,\)"):
        mse(np.ones((10, 2)), np.ones(10))  # (a JAX broadcasting error)
    with pytest.raises(ValueError, match=r"got shapes \(10, 2\) and \(10, 2\)"):
        r2(np.ones((10, 2)), np.ones((10, 2)))


def test_sample_weight_is_taken_as_scikit_learns_name_for_weights():
    """``f1_score(..., sample_weight=w)`` was refused ("its parameters: average, zero_division") without a word of
    ``weights=``; scikit-learn's name is taken as the same argument, once."""
    rng = np.random.default_rng(6)
    p, y, w = rng.random(200), rng.integers(0, 2, 200), rng.random(200)
    assert f1_score(p, y, sample_weight=w) == pytest.approx(skm.f1_score(y, p > 0.5, sample_weight=w), abs=1e-12)
    assert recall(p, y, sample_weight=w) == recall(p, y, weights=w)
    with pytest.raises(ValueError, match="give sample weights once"):
        accuracy(p, y, weights=w, sample_weight=w)


def test_an_average_of_another_library_names_the_tasks_averages():
    """``average='samples'`` (scikit-learn's multilabel per-row mean) listed ``binary`` among the choices of a
    multilabel task."""
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match=r"one of micro, macro, weighted, none for a multilabel task; got 'samples'"):
        f1_score(rng.random((20, 3)), rng.integers(0, 2, (20, 3)), average="samples")


def test_predictions_of_a_shape_the_task_does_not_take_are_refused_naming_the_shapes():
    """``task="binary"`` with predict_proba's ``[n, 2]`` output: ``[n]`` targets broadcast against it and log loss and
    the Brier score were summed over the whole grid (two rows: 1.6966 and 0.63 where scikit-learn gives 0.9831 on the
    probabilities and 0.365 on their column 1); larger inputs and other metrics failed with broadcast errors, as
    the fairness functions (always binary) did."""
    from sklearn.metrics import brier_score_loss
    from sklearn.metrics import log_loss as sk_log_loss

    proba = np.array([[0.3, 0.7], [0.8, 0.2]])
    y = np.array([1, 1])
    for call in (
        lambda: F.log_loss(proba, y, task="binary"),
        lambda: F.brier_score(proba, y, task="binary"),
        lambda: F.roc_auc(np.tile(proba, (5, 1)), np.tile([0, 1], 5), task="binary"),
        lambda: F.demographic_parity_difference(np.tile(proba, (5, 1)), np.tile(y, 5), list("ababababab")),
    ):
        with pytest.raises(ValueError, match=r"task 'binary' takes one score or label per row .*shape \((2|10), 2\)"):
            call()
    assert F.log_loss(proba, y) == pytest.approx(sk_log_loss(y, proba, labels=[0, 1]), rel=1e-12)  # (multiclass)
    assert F.brier_score(proba[:, 1], y, task="binary") == pytest.approx(brier_score_loss(y, proba[:, 1]), rel=1e-12)
    with pytest.raises(ValueError, match=r"task 'multilabel' takes .*shape \(2,\)"):
        F.f1_score(np.array([0.2, 0.8]), np.array([0, 1]), task="multilabel")
    for predictions, targets in ((np.zeros((2, 2, 2)), np.array([0, 1])), (1, 1)):
        with pytest.raises(ValueError, match="expected arrays of rows"):
            F.accuracy(predictions, targets)


def test_a_stray_large_label_is_refused_instead_of_sizing_the_task():
    """Without ``num_classes`` the classes are the labels ``0 .. max``: one label of 10**6 asked for a 7 TiB
    confusion matrix (MemoryError). Beyond 10,000 inferred classes: a ValueError; given explicitly, as asked."""
    with pytest.raises(ValueError, match="labels up to 1000000 make a 1000001-class task"):
        F.accuracy(np.array([0, 1, 10**6]), np.array([0, 1, 1]))
    assert F.accuracy(np.array([0, 1, 5]), np.array([0, 1, 1])) == pytest.approx(2 / 3)
