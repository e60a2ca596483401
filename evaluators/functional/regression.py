"""Regression metrics: ``(predictions, targets, **params) -> float``.

>>> import numpy as np
>>> mae(np.array([2.5, 0.0, 2.0, 8.0]), np.array([3.0, -0.5, 2.0, 7.0]))
0.5
"""

from __future__ import annotations

from typing import Any

from evaluators.functional._common import compute


def _regression(name: str, predictions: Any, targets: Any, weights: Any) -> float:
    return compute(name, predictions, targets, weights=weights, task="regression")


def mse(predictions: Any, targets: Any, *, weights: Any = None) -> float:
    """Mean squared error."""
    return _regression("mse", predictions, targets, weights)


def rmse(predictions: Any, targets: Any, *, weights: Any = None) -> float:
    """Root mean squared error."""
    return _regression("rmse", predictions, targets, weights)


def mae(predictions: Any, targets: Any, *, weights: Any = None) -> float:
    """Mean absolute error."""
    return _regression("mae", predictions, targets, weights)


def r2(predictions: Any, targets: Any, *, weights: Any = None) -> float:
    """Coefficient of determination."""
    return _regression("r2", predictions, targets, weights)


def explained_variance(predictions: Any, targets: Any, *, weights: Any = None) -> float:
    """1 - Var(residual) / Var(target)."""
    return _regression("explained_variance", predictions, targets, weights)


def pearson_corrcoef(predictions: Any, targets: Any, *, weights: Any = None) -> float:
    """Pearson correlation coefficient."""
    return _regression("pearson_corrcoef", predictions, targets, weights)
