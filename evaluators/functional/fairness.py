"""Group fairness of binary predictions as functions of predictions, targets and group labels.

>>> demographic_parity_difference([1, 1, 0, 0, 1, 1], [1, 0, 0, 1, 1, 0], ["a", "a", "a", "b", "b", "b"])
0.0
>>> equalized_odds_difference([1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 0, 0], [0, 0, 0, 1, 1, 1])
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evaluators.fairness import SENSITIVE
from evaluators.functional._common import infer_task, with_columns


def _fairness(
    name: str,
    predictions: Any,
    targets: Any,
    sensitive_features: Sequence[Any],
    prediction: str | None,
    threshold: float,
    weights: Any,
) -> float:
    task = infer_task(predictions, targets, task="binary", prediction=prediction, threshold=threshold)
    columns = {"predictions": predictions, "targets": targets, SENSITIVE: sensitive_features, "weights": weights}
    return float(with_columns(name, task, columns)[""])


def demographic_parity_difference(
    predictions: Any,
    targets: Any,
    sensitive_features: Sequence[Any],
    *,
    prediction: str | None = None,
    threshold: float = 0.5,
    weights: Any = None,
) -> float:
    """fairlearn's ``demographic_parity_difference(targets, predictions, sensitive_features=...)``."""
    args = (predictions, targets, sensitive_features, prediction, threshold, weights)
    return _fairness("demographic_parity_difference", *args)


def demographic_parity_ratio(
    predictions: Any,
    targets: Any,
    sensitive_features: Sequence[Any],
    *,
    prediction: str | None = None,
    threshold: float = 0.5,
    weights: Any = None,
) -> float:
    """fairlearn's ``demographic_parity_ratio``."""
    return _fairness(
        "demographic_parity_ratio", predictions, targets, sensitive_features, prediction, threshold, weights
    )


def disparate_impact_ratio(
    predictions: Any,
    targets: Any,
    sensitive_features: Sequence[Any],
    *,
    prediction: str | None = None,
    threshold: float = 0.5,
    weights: Any = None,
) -> float:
    """calibrax's name of :func:`demographic_parity_ratio`."""
    return _fairness("disparate_impact_ratio", predictions, targets, sensitive_features, prediction, threshold, weights)


def equalized_odds_difference(
    predictions: Any,
    targets: Any,
    sensitive_features: Sequence[Any],
    *,
    prediction: str | None = None,
    threshold: float = 0.5,
    weights: Any = None,
) -> float:
    """fairlearn's ``equalized_odds_difference`` (the worse of the TPR and FPR differences)."""
    args = (predictions, targets, sensitive_features, prediction, threshold, weights)
    return _fairness("equalized_odds_difference", *args)


def equal_opportunity_difference(
    predictions: Any,
    targets: Any,
    sensitive_features: Sequence[Any],
    *,
    prediction: str | None = None,
    threshold: float = 0.5,
    weights: Any = None,
) -> float:
    """fairlearn's ``equal_opportunity_difference`` (the TPR difference)."""
    args = (predictions, targets, sensitive_features, prediction, threshold, weights)
    return _fairness("equal_opportunity_difference", *args)
