"""Curve arithmetic read off merged statistics: ROC and precision-recall points from per-cell weights (the
cells of a ranking statistic, one per distinct score or histogram bin), and reliability bins of a
calibration state. Figures (:mod:`pipelines.plots`) draw these points; they compute none themselves.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evaluators.calibration import fold_ones
from evaluators.kernels import from_fixed, safe_divide


def _descending_cells(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-empty cells of ascending-score weights, highest score first."""
    neg = np.asarray(neg, np.float64)
    pos = np.asarray(pos, np.float64)
    if neg.ndim != 1 or neg.shape != pos.shape:
        raise ValueError(f"neg and pos must be 1-D arrays of one length, got shapes {neg.shape} and {pos.shape}")
    keep = (neg + pos) > 0
    return neg[keep][::-1], pos[keep][::-1]


def roc_points(neg: np.ndarray, pos: np.ndarray, *, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr)`` of per-cell weights, as :func:`sklearn.metrics.roc_curve`.

    Args:
        neg, pos: ``[m]`` negative and positive weights per score cell, cells in ascending score
            order (a distinct score, or a histogram bin); empty cells are skipped.
        drop_intermediate: drop points collinear with their neighbours (scikit-learn's rule).

    Returns:
        ``fpr``, ``tpr``: ``[p]`` rates in ``[0, 1]``, from ``(0, 0)`` (threshold above every score)
        to ``(1, 1)``, one point per threshold in decreasing order. A cell holding several distinct
        scores (a histogram bin) is one step, i.e. the straight segment expected over their
        unknown order. NaN rates where there are no negatives (``fpr``) or no positives (``tpr``).
    """
    n, p = _descending_cells(neg, pos)
    fps, tps = np.cumsum(n), np.cumsum(p)
    if drop_intermediate and len(fps) > 2:
        corner = np.logical_or(np.diff(fps, 2), np.diff(tps, 2))
        keep = np.concatenate([[True], corner, [True]])
        fps, tps = fps[keep], tps[keep]
    fps, tps = np.concatenate([[0.0], fps]), np.concatenate([[0.0], tps])
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr


def precision_recall_points(
    neg: np.ndarray, pos: np.ndarray, *, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall curve ``(recall, precision)`` of per-cell weights.

    Args:
        neg, pos: ``[m]`` negative and positive weights per score cell, cells in ascending score
            order; empty cells are skipped.
        drop_intermediate: keep only the first and last point of each run of equal recall
            (scikit-learn's rule).

    Returns:
        ``recall``, ``precision``: ``[p]`` arrays, one point per threshold in decreasing order,
        starting at ``(0, 1)``: scikit-learn's :func:`~sklearn.metrics.precision_recall_curve`
        read backwards. Precision is 0 where nothing is predicted positive; recall is 1
        everywhere when there are no positives (as scikit-learn). The step-wise average
        precision is ``sum(diff(recall) * precision[1:])``.
    """
    n, p = _descending_cells(neg, pos)
    fps, tps = np.cumsum(n), np.cumsum(p)
    if drop_intermediate and len(fps) > 2:
        keep = np.concatenate([[True], np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), [True]])
        fps, tps = fps[keep], tps[keep]
    precision = safe_divide(tps, tps + fps, 0.0)
    recall = tps / tps[-1] if len(tps) and tps[-1] > 0 else np.ones_like(tps)
    return np.concatenate([[0.0], recall]), np.concatenate([[1.0], precision])


def reliability_bins(
    state: Any, n_bins: int, *, ones_apart: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(edges [n + 1], confidence [n], accuracy [n], weight [n])`` of a ``CalibrationBins`` state of ``n_bins``.

    ``confidence`` and ``accuracy`` are the weighted means of each bin (NaN for an empty bin);
    ``weight`` the bin's total row weight; bins are equal-width over ``[0, 1]``, confidences of exactly 1 in the
    last, or with ``ones_apart`` in one more bin ``[1, 1]`` of their own (the calibration error's bins) where
    the state keeps them apart.
    """
    apart = ones_apart and np.shape(state[0])[-1] == n_bins + 1
    count, conf, acc = (state if apart else fold_ones(state, n_bins))[:3]
    count = np.asarray(count, np.float64)
    edges = np.concatenate([np.linspace(0.0, 1.0, n_bins + 1), [1.0] * apart])
    confidence = safe_divide(from_fixed(conf), count, float("nan"))
    accuracy = safe_divide(acc, count, float("nan"))
    return edges, confidence, accuracy, count


def binned_calibration_error(confidence: np.ndarray, accuracy: np.ndarray, weight: np.ndarray) -> float:
    """Expected calibration error of bins (``[n]`` each, from :func:`reliability_bins`): the weight-averaged
    ``|accuracy - confidence|`` over the non-empty bins; NaN without rows."""
    filled = weight > 0
    total = weight.sum()
    return float(np.sum(weight[filled] * np.abs(accuracy[filled] - confidence[filled])) / total) if total else math.nan
