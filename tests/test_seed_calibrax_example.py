"""calibrax's classification example (14 classification, the calibration and 3 segmentation metrics), run as the
example writes it: only its ``calibrax...`` imports are mapped to ``evaluators.functional``. Values against
scikit-learn, or derived by hand in the comments."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

EXAMPLE = """
from evaluators.functional import (
accuracy, balanced_accuracy, precision, recall, f1_score,
sensitivity, specificity, matthews_corrcoef, cohen_kappa,
roc_auc, log_loss, confusion_matrix,
)
targets = jnp.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
preds_hard = jnp.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0])
preds_soft = jnp.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.6, 0.3, 0.1, 0.85, 0.15])
out["accuracy"] = accuracy(preds_hard, targets)
out["precision"] = precision(preds_hard, targets)
out["recall"] = recall(preds_hard, targets)
out["f1_score"] = f1_score(preds_hard, targets)
out["matthews_corrcoef"] = matthews_corrcoef(preds_hard, targets)
out["roc_auc"] = roc_auc(preds_soft, targets) # requires probabilities
out["log_loss"] = log_loss(preds_soft, targets) # requires probabilities
cm = confusion_matrix(preds_hard, targets, num_classes=2)
from evaluators.functional.calibration import brier_score, expected_calibration_error
probabilities = preds_soft # from the classification block above
out["brier_score"] = brier_score(probabilities, targets)
out["ece"] = expected_calibration_error(probabilities, targets)
from evaluators.functional.segmentation import iou, dice_coefficient, pixel_accuracy
pred_mask = jnp.array([1, 1, 0, 1, 0, 0, 1, 1])
gt_mask = jnp.array([1, 0, 0, 1, 0, 1, 1, 1])
out["iou"] = iou(pred_mask, gt_mask) # intersection / union
out["dice"] = dice_coefficient(pred_mask, gt_mask) # 2 * intersection / (|pred| + |gt|)
out["pixel_accuracy"] = pixel_accuracy(pred_mask, gt_mask) # correct pixels / total pixels
pred_multi = jnp.array([0, 1, 2, 0, 1, 2])
gt_multi = jnp.array([0, 1, 1, 0, 2, 2])
out["iou_macro"] = iou(pred_multi, gt_multi, num_classes=3, average="macro")
out["dice_macro"] = dice_coefficient(pred_multi, gt_multi, num_classes=3, average="macro")
well_calibrated_probs = jnp.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
overconfident_probs = jnp.array([0.05, 0.05, 0.1, 0.1, 0.9, 0.9, 0.95, 0.95, 0.9, 0.95])
calibration_targets = jnp.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
out["brier_well"] = brier_score(well_calibrated_probs, calibration_targets)
out["ece_well"] = expected_calibration_error(well_calibrated_probs, calibration_targets)
out["brier_over"] = brier_score(overconfident_probs, calibration_targets)
out["ece_over"] = expected_calibration_error(overconfident_probs, calibration_targets)
"""


@pytest.fixture(scope="module")
def values():
    out: dict = {}
    namespace = {"jnp": jnp, "out": out}
    exec(compile(EXAMPLE, "calibrax-example", "exec"), namespace)
    out["cm"] = namespace["cm"]
    return out


def test_classification_block_equals_sklearn(values):
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    hard = np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0])
    soft = np.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.6, 0.3, 0.1, 0.85, 0.15])
    assert values["accuracy"] == pytest.approx(skm.accuracy_score(y, hard))
    assert values["precision"] == pytest.approx(skm.precision_score(y, hard))
    assert values["recall"] == pytest.approx(skm.recall_score(y, hard))
    assert values["f1_score"] == pytest.approx(skm.f1_score(y, hard))
    assert values["matthews_corrcoef"] == pytest.approx(skm.matthews_corrcoef(y, hard))
    assert values["roc_auc"] == pytest.approx(skm.roc_auc_score(y, soft))
    assert values["log_loss"] == pytest.approx(skm.log_loss(y, soft))
    np.testing.assert_array_equal(values["cm"], skm.confusion_matrix(y, hard))  # [[TN, FP], [FN, TP]]


def test_calibration_block(values):
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    soft = np.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.6, 0.3, 0.1, 0.85, 0.15])
    assert values["brier_score"] == pytest.approx(skm.brier_score_loss(y, soft))
    # 10 bins (calibrax's default) over the example's float32 scores (jnp.array), with torchmetrics' float32 edges
    # (torch.linspace): each score starts or lies in its own decile, 0.7f (just below 0.7) on the edge 7 as torch
    # computes it, so the bins are 1 {0.1, 0.15}, 2 {0.2}, 3 {0.3}, 4 {0.4}, 6 {0.6}, 7 {0.7}, 8 {0.8, 0.85},
    # 9 {0.9}; |sum(target - confidence)| per bin, over 10 rows:
    gaps = [0.25, 0.2, 0.3, 0.6, 0.6, 0.3, abs(2 - 0.8 - 0.85), 0.1]
    assert values["ece"] == pytest.approx(sum(gaps) / 10)
    torch = pytest.importorskip("torch")
    tmc = pytest.importorskip("torchmetrics.functional.classification")
    reference = tmc.binary_calibration_error(torch.tensor(soft.astype(np.float32)), torch.tensor(y), n_bins=10)
    assert values["ece"] == pytest.approx(float(reference), rel=1e-6)
    cal_y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    well = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    over = np.array([0.05, 0.05, 0.1, 0.1, 0.9, 0.9, 0.95, 0.95, 0.9, 0.95])
    assert values["brier_well"] == pytest.approx(skm.brier_score_loss(cal_y, well))
    assert values["brier_over"] == pytest.approx(skm.brier_score_loss(cal_y, over))
    # the example's point: the overconfident model is better calibrated on this data by neither metric's standard
    # of "low" - both are computed, and ECE of the well-calibrated one is the mean gap of its ten one-row bins
    assert values["ece_well"] == pytest.approx(np.mean(np.abs(cal_y - well)))


def test_segmentation_block(values):
    # foreground: intersection 4 (positions 0, 3, 6, 7), union 6, |pred| = |gt| = 5; 6 of 8 pixels agree
    assert values["iou"] == pytest.approx(4 / 6)
    assert values["dice"] == pytest.approx(8 / 10)
    assert values["pixel_accuracy"] == pytest.approx(6 / 8)
    # classes 0, 1, 2: IoU 2/2, 1/3, 1/3; Dice 1, 2/4, 2/4
    assert values["iou_macro"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert values["dice_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
