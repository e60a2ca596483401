"""Functional metrics with calibrax's names and ``(predictions, targets, **params)`` signatures.

Each function runs the statistic that the distributed pipeline runs: one
update over the whole batch, then the same compute.
"""

from evaluators.functional.calibration import (
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    reliability_diagram,
)
from evaluators.functional.classification import (
    accuracy,
    average_precision,
    balanced_accuracy,
    cohen_kappa,
    confusion_matrix,
    f1_score,
    fbeta_score,
    log_loss,
    matthews_corrcoef,
    precision,
    recall,
    roc_auc,
    sensitivity,
    specificity,
)
from evaluators.functional.regression import explained_variance, mae, mse, pearson_corrcoef, r2, rmse

__all__ = [
    "accuracy",
    "average_precision",
    "balanced_accuracy",
    "brier_score",
    "cohen_kappa",
    "confusion_matrix",
    "expected_calibration_error",
    "explained_variance",
    "f1_score",
    "fbeta_score",
    "log_loss",
    "mae",
    "matthews_corrcoef",
    "maximum_calibration_error",
    "mse",
    "pearson_corrcoef",
    "precision",
    "r2",
    "recall",
    "reliability_diagram",
    "rmse",
    "roc_auc",
    "sensitivity",
    "specificity",
]
