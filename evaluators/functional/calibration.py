"""Calibration metrics with calibrax's names: ``(probabilities, targets, **params) -> value``.

Binned metrics take calibrax's ``num_bins`` (default 10, as calibrax); ``n_bins`` (torchmetrics' name) is
accepted as an alias. In a YAML job the default stays 15 bins, torchmetrics' default.

>>> import numpy as np
>>> probs = np.array([0.1, 0.9, 0.8, 0.3])
>>> targets = np.array([0, 1, 1, 0])
>>> round(brier_score(probs, targets), 6)
0.0375
"""

from __future__ import annotations

from typing import Any

from evaluators.functional._common import compute

CALIBRAX_BINS = 10
"""calibrax's default number of bins."""


def _binned(name: str, probabilities: Any, targets: Any, num_bins: int | None, n_bins: int | None, kw: Any) -> Any:
    bins = num_bins if num_bins is not None else n_bins if n_bins is not None else CALIBRAX_BINS
    return compute(name, probabilities, targets, num_bins=bins, **kw)


def brier_score(probabilities: Any, targets: Any, **kw: Any) -> Any:
    """Mean squared error of predicted probabilities."""
    return compute("brier_score", probabilities, targets, **kw)


def expected_calibration_error(
    probabilities: Any, targets: Any, *, num_bins: int | None = None, n_bins: int | None = None, **kw: Any
) -> Any:
    """Bin-weighted mean |accuracy - confidence| over ``num_bins`` equal-width bins."""
    return _binned("expected_calibration_error", probabilities, targets, num_bins, n_bins, kw)


def maximum_calibration_error(
    probabilities: Any, targets: Any, *, num_bins: int | None = None, n_bins: int | None = None, **kw: Any
) -> Any:
    """Largest |accuracy - confidence| over non-empty bins."""
    return _binned("maximum_calibration_error", probabilities, targets, num_bins, n_bins, kw)


def adaptive_calibration_error(
    probabilities: Any, targets: Any, *, num_bins: int | None = None, n_bins: int | None = None, **kw: Any
) -> Any:
    """Calibration error over ``num_bins`` bins of equal weight (equal mass) rather than equal width."""
    return _binned("adaptive_calibration_error", probabilities, targets, num_bins, n_bins, kw)


def classwise_ece(
    probabilities: Any, targets: Any, *, num_bins: int | None = None, n_bins: int | None = None, **kw: Any
) -> Any:
    """Mean over classes of each class's binned calibration error (Kull et al., 2019)."""
    return _binned("classwise_ece", probabilities, targets, num_bins, n_bins, kw)


def brier_decomposition(
    probabilities: Any, targets: Any, *, num_bins: int | None = None, n_bins: int | None = None, **kw: Any
) -> dict[str, float]:
    """``{"reliability", "resolution", "uncertainty"}`` of the Brier score over ``num_bins`` bins (Murphy)."""
    values = _binned("brier_decomposition", probabilities, targets, num_bins, n_bins, kw)
    return {k.lstrip("."): v for k, v in values.items()}


def reliability_diagram(
    probabilities: Any, targets: Any, *, num_bins: int | None = None, n_bins: int | None = None, **kw: Any
) -> dict[str, Any]:
    """Per-bin ``confidence``, ``accuracy`` (NaN for empty bins) and ``count`` arrays."""
    values = _binned("reliability_diagram", probabilities, targets, num_bins, n_bins, kw)
    return {k.lstrip("."): v for k, v in values.items()}
