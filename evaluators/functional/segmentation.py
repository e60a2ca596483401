"""Segmentation metrics with calibrax's names: ``(pred_mask, gt_mask, num_classes=None, average=...)``.

``iou(pred_mask, gt_mask)`` on two-class id masks is the foreground (class 1) IoU, as calibrax;
``iou(pred, gt, num_classes=3, average="macro")`` the mean over classes.

>>> import numpy as np
>>> pred_mask = np.array([1, 1, 0, 1, 0, 0, 1, 1])
>>> gt_mask = np.array([1, 0, 0, 1, 0, 1, 1, 1])
>>> round(iou(pred_mask, gt_mask), 6), round(dice_coefficient(pred_mask, gt_mask), 6), pixel_accuracy(pred_mask, gt_mask)
(0.666667, 0.8, 0.75)
"""

from __future__ import annotations

import inspect
import math
from functools import lru_cache
from typing import Any

import numpy as np

from evaluators import statistic as statistic_checks
from evaluators.accumulate import Accumulator
from evaluators.catalog import PARAMETERS
from evaluators.functional._common import TASK_DEFAULT, Average, averaging, check_threshold
from evaluators.segmentation import (
    PixelConfusion,
    check_ids,
    check_masks,
    dice_score_metric,
    is_scores,
    mean_iou_metric,
    mean_pixel_accuracy_metric,
    pixel_accuracy_metric,
    pixel_confusion_matrix_metric,
    pixel_rows,
)
from evaluators.task import Task, TaskKind, check_weights


@lru_cache(maxsize=64)
def _accumulator(stat: PixelConfusion) -> Accumulator:
    """One accumulator (one set of compiled updates) per statistic, reused across calls."""
    return Accumulator([stat])


INFERRED_CLASSES_LIMIT = 1 << 16
"""Without ``num_classes``, the class count is read from the largest id, up to this many classes."""


def _infer_classes(preds: np.ndarray, tgts: np.ndarray, ignore_index: int | None) -> int:
    if is_scores(preds, tgts):
        return int(preds.shape[-1])
    valid = tgts[tgts != ignore_index] if ignore_index is not None else tgts
    tops = []
    for role, values in (("predictions", preds), ("targets", valid)):
        if values.size and values.dtype.kind == "f" and not np.isfinite(values).all():
            raise ValueError(f"{role}: {int((~np.isfinite(values)).sum())} pixels with NaN or inf values")
        tops.append(int(values.max()) if values.size else 0)
    if max(tops) >= INFERRED_CLASSES_LIMIT:
        raise ValueError(
            f"class ids up to {max(tops)}: pass num_classes (the class count is read from the ids up to "
            f"{INFERRED_CLASSES_LIMIT:,} classes)"
        )
    return max(2, max(tops) + 1)


def _class_count(num_classes: Any) -> int:
    """``num_classes`` as given: a whole number of at least 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be a whole number of at least 1, got {num_classes!r}")
    return int(num_classes)


def _evaluate(
    factory: Any,
    predictions: Any,
    targets: Any,
    num_classes: int | None,
    weights: Any,
    threshold: float | None,
    average: str | Average | None = TASK_DEFAULT,
    **params: Any,
) -> Any:
    """Run ``factory``'s statistic over the masks through the accumulator and compute the metric.

    ``average`` left at :data:`TASK_DEFAULT`: ``binary`` for class-id masks of two classes given without
    ``num_classes`` (calibrax's ``iou(pred_mask, gt_mask)``), else ``macro``; ``None``: ``none`` (one value per
    class, as scikit-learn's); factories without an ``average`` get none.
    """
    if threshold is not None:
        check_threshold(threshold)
    preds = np.asarray(predictions)
    tgts = np.asarray(targets)
    if tgts.ndim == 0:
        raise ValueError("targets must be masks [n, ...], not a scalar")
    scores = is_scores(preds, tgts)
    c = (
        _class_count(num_classes)
        if num_classes is not None
        else _infer_classes(preds, tgts, params.get("ignore_index"))
    )
    foreground = threshold is not None and not scores and np.issubdtype(preds.dtype, np.floating)
    if foreground and c != 2:
        raise ValueError(f"thresholded foreground scores need two classes, got num_classes={c}")
    task = Task(TaskKind.BINARY, threshold=threshold) if foreground else Task(TaskKind.MULTICLASS, c)
    if "average" in inspect.signature(factory).parameters:
        if average is TASK_DEFAULT:
            average = "binary" if num_classes is None and not scores and c == 2 else "macro"
        params["average"] = averaging(average)
    metric = factory(task, **params)
    zero_division = params.get("zero_division")  # (NaN too, as scikit-learn's; a YAML job takes [0, 1])
    if zero_division is not None and not math.isnan(zero_division):
        PARAMETERS["zero_division"].check(metric.name, "zero_division", zero_division)
    stat = metric.statistic
    if foreground:
        problems = [] if preds.shape == tgts.shape else [f"predictions {preds.shape} do not match targets {tgts.shape}"]
        if not problems and not np.isfinite(preds).all():
            problems.append(f"predictions: {int((~np.isfinite(preds)).sum())} pixels with NaN or inf scores")
        problems.extend(check_ids("targets", tgts, c, stat.ignore_index))
    else:
        problems = check_masks(preds, tgts, c, stat.ignore_index)
    if problems:
        raise ValueError("; ".join(problems))
    if weights is not None and np.size(weights) != len(tgts):
        raise ValueError(f"{np.size(weights)} weights for {len(tgts)} images (weights are per image)")
    if weights is not None:
        problems = [bad.message() for bad in check_weights(np.asarray(weights).reshape(-1), len(tgts))]
        if problems:
            raise ValueError("; ".join(problems))
    statistic_checks.check_weights(weights)
    acc = _accumulator(stat)
    (state,) = acc.update(acc.zero(), pixel_rows(preds, tgts, weights))
    statistic_checks.check_merged(stat, state, len(tgts))  # (a job's checks of the merged state)
    if not np.asarray(state).sum() > 0:  # as a job (exit 2) and scikit-learn (empty input): refused
        why = (
            "the masks hold no pixel"
            if tgts.size == 0
            else "every target pixel is ignore_index, or every image weighs 0"
        )
        raise ValueError(f"targets: no counted pixel ({why}), so every metric is undefined")
    values = metric.compute(state)
    if "" in values:
        return values[""]
    return np.array([values[f"[{i}]"] for i in range(c)])


def iou(
    predictions: Any,
    targets: Any,
    num_classes: int | None = None,
    *,
    average: str | Average | None = TASK_DEFAULT,
    ignore_index: int | None = None,
    zero_division: float = 0.0,
    weights: Any = None,
    threshold: float | None = None,
) -> Any:
    """Intersection over union of masks (calibrax's ``iou``).

    Args:
        predictions: class ids ``[n, ...]`` (e.g. ``[n, H, W]``; a 1-D array is a list of pixels), class scores
            ``[n, ..., C]``, or with ``threshold`` foreground scores ``[n, ...]``.
        targets: class ids ``[n, ...]``.
        num_classes: C; default: the score width, or the largest class id + 1 (at least 2).
        average: ``binary`` (class 1), ``micro``, ``macro``, ``weighted`` or ``none`` (or None: one value per
            class, as scikit-learn's); default ``binary`` for class-id masks given without ``num_classes``
            (calibrax), else ``macro``.
        ignore_index: target value whose pixels are left out.
        zero_division: value of a ratio whose denominator is 0.
        weights: ``[n]`` per-image weights.
        threshold: foreground scores ``[n, ...]`` (two classes) are class 1 where ``score > threshold``.

    Returns:
        a float, or float64 ``[C]`` for ``average="none"``.
    """
    return _evaluate(
        mean_iou_metric,
        predictions,
        targets,
        num_classes,
        weights,
        threshold,
        average=average,
        ignore_index=ignore_index,
        zero_division=zero_division,
    )


jaccard_index = iou


def mean_iou(
    predictions: Any,
    targets: Any,
    num_classes: int | None = None,
    *,
    average: str | None = "macro",
    ignore_index: int | None = None,
    zero_division: float = 0.0,
    weights: Any = None,
    threshold: float | None = None,
) -> Any:
    """Mean intersection over union (mIoU): :func:`iou` with ``average="macro"`` by default."""
    return iou(
        predictions,
        targets,
        num_classes,
        average=average,
        ignore_index=ignore_index,
        zero_division=zero_division,
        weights=weights,
        threshold=threshold,
    )


def dice_coefficient(
    predictions: Any,
    targets: Any,
    num_classes: int | None = None,
    *,
    average: str | Average | None = TASK_DEFAULT,
    ignore_index: int | None = None,
    zero_division: float = 0.0,
    weights: Any = None,
    threshold: float | None = None,
) -> Any:
    """Dice coefficient 2 |A ∩ B| / (|A| + |B|) of masks (calibrax's ``dice_coefficient``); arguments as :func:`iou`."""
    return _evaluate(
        dice_score_metric,
        predictions,
        targets,
        num_classes,
        weights,
        threshold,
        average=average,
        ignore_index=ignore_index,
        zero_division=zero_division,
    )


def dice_score(
    predictions: Any,
    targets: Any,
    num_classes: int | None = None,
    *,
    average: str | None = "macro",
    ignore_index: int | None = None,
    zero_division: float = 0.0,
    weights: Any = None,
    threshold: float | None = None,
) -> Any:
    """Dice score of the pooled pixels with ``average="macro"`` by default (torchmetrics' ``DiceScore`` with
    ``aggregation_level="global"``); arguments as :func:`iou`."""
    return dice_coefficient(
        predictions,
        targets,
        num_classes,
        average=average,
        ignore_index=ignore_index,
        zero_division=zero_division,
        weights=weights,
        threshold=threshold,
    )


def pixel_accuracy(
    predictions: Any,
    targets: Any,
    num_classes: int | None = None,
    *,
    average: str | None = "micro",
    ignore_index: int | None = None,
    zero_division: float = 0.0,
    weights: Any = None,
    threshold: float | None = None,
) -> Any:
    """Correct pixels / valid pixels (``micro``); ``macro`` / ``weighted`` / ``none`` reduce per-class accuracy
    tp / (tp + fn). Arguments as :func:`iou`."""
    return _evaluate(
        pixel_accuracy_metric,
        predictions,
        targets,
        num_classes,
        weights,
        threshold,
        average=average,
        ignore_index=ignore_index,
        zero_division=zero_division,
    )


def mean_pixel_accuracy(
    predictions: Any,
    targets: Any,
    num_classes: int | None = None,
    *,
    ignore_index: int | None = None,
    zero_division: float = 0.0,
    weights: Any = None,
    threshold: float | None = None,
) -> float:
    """Mean per-class pixel accuracy (macro recall over the classes present). Arguments as :func:`iou`."""
    return _evaluate(
        mean_pixel_accuracy_metric,
        predictions,
        targets,
        num_classes,
        weights,
        threshold,
        ignore_index=ignore_index,
        zero_division=zero_division,
    )


def pixel_confusion_matrix(
    predictions: Any,
    targets: Any,
    num_classes: int | None = None,
    *,
    ignore_index: int | None = None,
    normalize: str | None = None,
    weights: Any = None,
    threshold: float | None = None,
) -> np.ndarray:
    """float64 ``[C, C]`` weighted pixel counts (rows: true class, columns: predicted). Arguments as :func:`iou`."""
    return _evaluate(
        pixel_confusion_matrix_metric,
        predictions,
        targets,
        num_classes,
        weights,
        threshold,
        ignore_index=ignore_index,
        normalize=normalize,
    )
