"""Classification metrics: ``(predictions, targets, **params) -> value``.

Predictions are hard labels, probabilities or logits; the task (binary,
multiclass, multilabel) is inferred from shapes and dtypes unless ``task``
is given (see :func:`evaluators.functional._common.infer_task`). Every
function evaluates the same statistic the distributed pipeline uses.

>>> import numpy as np
>>> targets = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
>>> preds = np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0])
>>> accuracy(preds, targets)
0.8
>>> round(f1_score(preds, targets), 6)
0.8
"""

from __future__ import annotations

from typing import Any

from evaluators.functional._common import TASK_DEFAULT, Average, compute


def accuracy(
    predictions: Any, targets: Any, *, average: str | Average | None = TASK_DEFAULT, top_k: int = 1, **kw: Any
) -> Any:
    """Fraction of correct predictions; multilabel default is the exact-match ratio."""
    return compute("accuracy", predictions, targets, average=average, top_k=top_k, **kw)


def balanced_accuracy(predictions: Any, targets: Any, *, adjusted: bool = False, **kw: Any) -> Any:
    """Mean per-class recall over classes present in the targets."""
    return compute("balanced_accuracy", predictions, targets, adjusted=adjusted, **kw)


def precision(
    predictions: Any,
    targets: Any,
    *,
    average: str | Average | None = TASK_DEFAULT,
    zero_division: float = 0.0,
    **kw: Any,
) -> Any:
    """tp / (tp + fp)."""
    return compute("precision", predictions, targets, average=average, zero_division=zero_division, **kw)


def recall(
    predictions: Any,
    targets: Any,
    *,
    average: str | Average | None = TASK_DEFAULT,
    zero_division: float = 0.0,
    **kw: Any,
) -> Any:
    """tp / (tp + fn)."""
    return compute("recall", predictions, targets, average=average, zero_division=zero_division, **kw)


def sensitivity(
    predictions: Any,
    targets: Any,
    *,
    average: str | Average | None = TASK_DEFAULT,
    zero_division: float = 0.0,
    **kw: Any,
) -> Any:
    """Recall: tp / (tp + fn)."""
    return compute("sensitivity", predictions, targets, average=average, zero_division=zero_division, **kw)


def specificity(
    predictions: Any,
    targets: Any,
    *,
    average: str | Average | None = TASK_DEFAULT,
    zero_division: float = 0.0,
    **kw: Any,
) -> Any:
    """tn / (tn + fp)."""
    return compute("specificity", predictions, targets, average=average, zero_division=zero_division, **kw)


def f1_score(
    predictions: Any,
    targets: Any,
    *,
    average: str | Average | None = TASK_DEFAULT,
    zero_division: float = 0.0,
    **kw: Any,
) -> Any:
    """Harmonic mean of precision and recall."""
    return compute("f1_score", predictions, targets, average=average, zero_division=zero_division, **kw)


def fbeta_score(
    predictions: Any,
    targets: Any,
    *,
    beta: float = 1.0,
    average: str | Average | None = TASK_DEFAULT,
    zero_division: float = 0.0,
    **kw: Any,
) -> Any:
    """Weighted harmonic mean of precision and recall (recall weighted ``beta`` times)."""
    return compute("fbeta_score", predictions, targets, beta=beta, average=average, zero_division=zero_division, **kw)


def matthews_corrcoef(predictions: Any, targets: Any, **kw: Any) -> Any:
    """Matthews correlation coefficient."""
    return compute("matthews_corrcoef", predictions, targets, **kw)


def cohen_kappa(
    predictions: Any, targets: Any, *, weights: str | None = None, sample_weight: Any = None, **kw: Any
) -> Any:
    """Cohen's kappa; ``weights``: None, ``"linear"`` or ``"quadratic"`` (kappa's weighting, as scikit-learn's
    ``cohen_kappa_score``); ``sample_weight``: per-row weights ``[n]`` (the ``weights`` of the other functions)."""
    return compute("cohen_kappa", predictions, targets, weights=sample_weight, metric_params={"weights": weights}, **kw)


def confusion_matrix(predictions: Any, targets: Any, *, normalize: str | None = None, **kw: Any) -> Any:
    """``[C, C]`` array, rows true class, columns predicted (``cm[1, 1]`` = TP for binary)."""
    return compute("confusion_matrix", predictions, targets, normalize=normalize, **kw)


def roc_auc(
    predictions: Any,
    targets: Any,
    *,
    average: str | Average | None = TASK_DEFAULT,
    mode: str = "binned",
    precision_bits: int | None = None,
    **kw: Any,
) -> Any:
    """Area under the ROC curve; ``mode="exact"`` for scikit-learn's exact value."""
    return compute("roc_auc", predictions, targets, average=average, mode=mode, precision_bits=precision_bits, **kw)


def average_precision(
    predictions: Any,
    targets: Any,
    *,
    average: str | Average | None = TASK_DEFAULT,
    mode: str = "binned",
    precision_bits: int | None = None,
    **kw: Any,
) -> Any:
    """Average precision (step-wise area under the precision-recall curve)."""
    return compute(
        "average_precision", predictions, targets, average=average, mode=mode, precision_bits=precision_bits, **kw
    )


def log_loss(predictions: Any, targets: Any, **kw: Any) -> Any:
    """Mean negative log-likelihood."""
    return compute("log_loss", predictions, targets, **kw)
