"""Calibration metrics: ``(probabilities, targets, **params) -> value``.

>>> import numpy as np
>>> probs = np.array([0.1, 0.9, 0.8, 0.3])
>>> targets = np.array([0, 1, 1, 0])
>>> round(brier_score(probs, targets), 6)
0.0375
"""

from __future__ import annotations

from typing import Any

from evaluators.functional._common import compute


def brier_score(probabilities: Any, targets: Any, **kw: Any) -> Any:
    """Mean squared error of predicted probabilities."""
    return compute("brier_score", probabilities, targets, **kw)


def expected_calibration_error(probabilities: Any, targets: Any, *, n_bins: int = 15, **kw: Any) -> Any:
    """Bin-weighted mean |accuracy - confidence| over ``n_bins`` equal-width bins."""
    return compute("expected_calibration_error", probabilities, targets, n_bins=n_bins, **kw)


def maximum_calibration_error(probabilities: Any, targets: Any, *, n_bins: int = 15, **kw: Any) -> Any:
    """Largest |accuracy - confidence| over non-empty bins."""
    return compute("maximum_calibration_error", probabilities, targets, n_bins=n_bins, **kw)


def reliability_diagram(probabilities: Any, targets: Any, *, n_bins: int = 15, **kw: Any) -> dict[str, Any]:
    """Per-bin ``confidence``, ``accuracy`` (NaN for empty bins) and ``count`` arrays."""
    values = compute("reliability_diagram", probabilities, targets, n_bins=n_bins, **kw)
    return {k.lstrip("."): v for k, v in values.items()}
