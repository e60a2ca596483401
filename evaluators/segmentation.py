"""Semantic segmentation: one pixel confusion matrix and the overlap metrics read off it.

A segmentation batch has one image per row:

* ``predictions``: predicted class ids ``[n, H, W]`` (any integer dtype), or class scores ``[n, H, W, C]``
  (probabilities or logits; the predicted class is the argmax over the last axis, the first on a tie),
  or, for a binary task, foreground scores ``[n, H, W]`` (float) thresholded as ``p > threshold``;
* ``targets``: true class ids ``[n, H, W]``; pixels equal to ``ignore_index`` (commonly 255) are left out;
* ``weights``: float64 ``[n]``, one weight per image (0 for padding rows).

Any pixel layout works as long as predictions and targets share it: ``[n, P]`` flattened masks,
``[n]`` single pixels, or the pixel rows of :func:`pixel_rows`, which split images of any sizes into
fixed-width rows (so that a compiled update never pads a batch to a thousand full images).

:class:`PixelConfusion` counts weighted pixels in a float64 ``[C, C]`` matrix (rows: true class, columns:
predicted class). Its merge is addition, so any sharding of the images gives the same matrix, bit for bit
while the weights are integers (pixel counts stay exact in float64 up to 2**53).

Every metric reads that one matrix (a job computes it once), with ``tp``, ``fp``, ``fn`` per class:

=======================  ======================================  =========================================
metric                   per class                               default average
=======================  ======================================  =========================================
``mean_iou``             tp / (tp + fp + fn)   (Jaccard index)   ``macro`` (mIoU)
``dice_score``           2 tp / (2 tp + fp + fn)   (F1)          ``macro``
``pixel_accuracy``       tp / (tp + fn)   (recall)               ``micro``: correct pixels / valid pixels
``mean_pixel_accuracy``  tp / (tp + fn)                          ``macro`` (mean class accuracy)
=======================  ======================================  =========================================

Averaging, over the *pooled* pixels of all images (scikit-learn and torchmetrics' ``Multiclass*`` metrics on
the flattened valid pixels give the same numbers):

* ``macro``: unweighted mean over the classes that occur in the targets or the predictions (tp + fp + fn > 0),
  as scikit-learn's default ``labels`` and torchmetrics' ``MulticlassJaccardIndex`` / ``MulticlassF1Score`` /
  ``MulticlassAccuracy``; a class absent from both neither counts as 0 nor as 1;
* ``micro``: one ratio of the counts summed over classes (micro Dice equals pixel accuracy);
* ``weighted``: mean weighted by each class's support (true pixels), the frequency-weighted IoU for IoU;
* ``none``: one value per class, all ``C`` classes, keys ``"[i]"``; an absent class takes ``zero_division``;
* ``binary``: the value of class 1 (two classes), calibrax's ``iou(pred_mask, gt_mask)``.

A ratio with a zero denominator takes ``zero_division`` (default 0.0, as both references); a state without a
counted pixel (every one ignored, or images of weight 0: a slice's) has every average NaN, undefined (torchmetrics'
JaccardIndex gives NaN, scikit-learn refuses empty input), and ``none`` gives ``zero_division`` per class; the
functions refuse such masks with ``ValueError``, as a job exits 2.

``ignore_index``: target pixels with that value are dropped. When it is also a class id in ``[0, C)``, IoU leaves
that class out of its ``macro``, ``micro`` and ``weighted`` reductions too (as torchmetrics' JaccardIndex does, and
scikit-learn's ``jaccard_score`` given ``labels`` without it); Dice and the per-class accuracy keep it as a class
predicted on counted pixels, wrongly every time (as torchmetrics' F1 score and accuracy do, and scikit-learn over the
counted pixels): it lowers their ``macro`` mean, and micro Dice stays equal to pixel accuracy.

These are dataset-level metrics: torchmetrics' ``segmentation.MeanIoU`` and ``segmentation.DiceScore`` (default
``aggregation_level="samplewise"``) instead average per-image scores; on a single image, or with
``DiceScore(aggregation_level="global")``, they agree with the values here.

Example (calibrax's functions, in :mod:`evaluators.functional.segmentation`)::

    >>> import numpy as np
    >>> from evaluators.functional.segmentation import dice_coefficient, iou, mean_iou, pixel_accuracy
    >>> pred = np.array([1, 1, 0, 1, 0, 0, 1, 1])
    >>> gt = np.array([1, 0, 0, 1, 0, 1, 1, 1])
    >>> round(iou(pred, gt), 6), round(dice_coefficient(pred, gt), 6), pixel_accuracy(pred, gt)
    (0.666667, 0.8, 0.75)
    >>> round(mean_iou(np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 1, 0, 2, 2]), num_classes=3), 6)
    0.555556
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from evaluators.classification import normalized_confusion, per_class_values
from evaluators.kernels import add_at, safe_divide
from evaluators.lazyjax import jax, jnp
from evaluators.mask_png import MASK_MODES as MASK_MODES
from evaluators.mask_png import decode_mask as decode_mask
from evaluators.mask_png import decode_masks as decode_masks
from evaluators.mask_png import encode_mask as encode_mask
from evaluators.statistic import RATIO, Batch, DerivedMetric, Direction, State, Statistic
from evaluators.task import BadRows, PredictionKind, Task, TaskKind

AVERAGES = ("binary", "micro", "macro", "weighted", "none")
SEGMENTATION_KINDS = ("binary", "multiclass", "segmentation")
"""Task kinds whose ``num_classes`` / ``ignore_index`` the factories read (``segmentation`` once it exists)."""
ROW_WIDTH = 1024
"""Pixels per row in :func:`pixel_rows`."""
FILL = -1
"""Target value of the pixels that pad an image's last row; outside ``[0, C)``, so it counts nowhere."""


# --- the statistic --------------------------------------------------------------


@dataclass(frozen=True)
class PixelConfusion(Statistic):
    """Weighted pixel confusion counts of a segmentation task.

    State: float64 ``[C, C]``, ``state[true, predicted]`` = summed weight of the pixels with that pair.

    Attributes:
        num_classes: C.
        ignore_index: target value whose pixels are left out (``None``: none).
        threshold: for two classes only: float predictions with the shape of the targets are foreground
            scores, predicted class ``score > threshold``. ``None``: such predictions are class ids.
        logits: foreground scores are logits (``sigmoid(score) > threshold``).

    A pixel counts only when its target is in ``[0, C)`` and not ``ignore_index`` and its predicted class is in
    ``[0, C)``; :func:`check_masks` reports out-of-range values before they reach the update.
    """

    num_classes: int
    ignore_index: int | None = None
    threshold: float | None = None
    logits: bool = False

    def __post_init__(self) -> None:
        if int(self.num_classes) < 2:
            raise ValueError(f"segmentation needs num_classes >= 2, got {self.num_classes!r}")
        object.__setattr__(self, "num_classes", int(self.num_classes))
        if self.threshold is not None and self.num_classes != 2:
            raise ValueError("a foreground threshold needs num_classes == 2")

    def zero(self) -> State:
        return np.zeros((self.num_classes, self.num_classes), np.float64)

    def predicted_classes(self, predictions: jax.Array, target_ndim: int) -> jax.Array:
        """Predicted class ids with the targets' shape, int32: argmax of class scores, or thresholded
        foreground scores, or the class ids themselves."""
        if predictions.ndim == target_ndim + 1:
            return jnp.argmax(predictions, axis=-1).astype(jnp.int32)
        if self.threshold is not None and jnp.issubdtype(predictions.dtype, jnp.floating):
            scores = jax.nn.sigmoid(predictions.astype(jnp.float64)) if self.logits else predictions
            return (scores > self.threshold).astype(jnp.int32)
        return predictions.astype(jnp.int32)

    def update(self, state: State, batch: Batch) -> State:
        c = self.num_classes
        targets = jnp.asarray(batch["targets"]).astype(jnp.int32)
        preds = self.predicted_classes(jnp.asarray(batch["predictions"]), targets.ndim)
        weights = jnp.asarray(batch["weights"]).astype(jnp.float64)
        w = jnp.broadcast_to(weights.reshape(weights.shape + (1,) * (targets.ndim - 1)), targets.shape)
        valid = (targets >= 0) & (targets < c) & (preds >= 0) & (preds < c)
        if self.ignore_index is not None:
            valid &= targets != self.ignore_index
        index = jnp.where(valid, targets * c + preds, 0)
        return add_at(state, index, jnp.where(valid, w, 0.0))


# --- metrics read off the matrix -------------------------------------------------


@dataclass(frozen=True)
class PixelCounts:
    """Per-class counts of a pixel confusion matrix, float64 ``[C]`` each, and the classes that averages use."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    used: np.ndarray
    """bool ``[C]``: every class except an in-range ``ignore_index``."""

    @property
    def support(self) -> np.ndarray:
        return self.tp + self.fn

    @property
    def present(self) -> np.ndarray:
        """Used classes that occur in the targets or the predictions."""
        return self.used & ((self.tp + self.fp + self.fn) > 0)


def pixel_counts(cm: np.ndarray, ignore_index: int | None = None) -> PixelCounts:
    """Per-class ``tp``, ``fp``, ``fn`` of a :class:`PixelConfusion` state ``[C, C]``."""
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm).copy()
    used = np.ones(len(tp), bool)
    if ignore_index is not None and 0 <= ignore_index < len(tp):
        used[ignore_index] = False
    return PixelCounts(tp=tp, fp=cm.sum(axis=0) - tp, fn=cm.sum(axis=1) - tp, used=used)


def reduce_ratio(
    counts: PixelCounts, num: np.ndarray, den: np.ndarray, average: str, zero_division: float
) -> dict[str, float]:
    """Average the per-class ratio ``num / den`` (float64 ``[C]``) as the module docstring describes."""
    values = safe_divide(num, den, zero_division)
    if average == "none":
        return per_class_values(values)
    if not counts.support.sum() > 0:  # no counted pixel
        return {"": float("nan")}
    if average == "binary":
        return {"": float(values[1])}
    used = counts.used
    if average == "micro":
        return {"": float(safe_divide(num[used].sum(), den[used].sum(), zero_division))}
    if average == "weighted":
        support = counts.support[used]
        return {"": float(safe_divide((values[used] * support).sum(), support.sum(), zero_division))}
    if average == "macro":
        keep = counts.present
        return {"": float(values[keep].mean()) if keep.any() else float(zero_division)}
    raise ValueError(f"unknown average {average!r}; expected one of {', '.join(AVERAGES)}")


def _iou(ignore_index: int | None, average: str, zero_division: float, cm: np.ndarray) -> dict[str, float]:
    c = pixel_counts(cm, ignore_index)
    return reduce_ratio(c, c.tp, c.tp + c.fp + c.fn, average, zero_division)


def _dice(ignore_index: int | None, average: str, zero_division: float, cm: np.ndarray) -> dict[str, float]:
    c = pixel_counts(cm)  # (an in-range ignore_index predicted on a counted pixel stays a class: see the module doc)
    return reduce_ratio(c, 2 * c.tp, 2 * c.tp + c.fp + c.fn, average, zero_division)


def _class_accuracy(ignore_index: int | None, average: str, zero_division: float, cm: np.ndarray) -> dict[str, float]:
    c = pixel_counts(cm)
    return reduce_ratio(c, c.tp, c.support, average, zero_division)


# --- catalogue factories ------------------------------------------------------------


def pixel_confusion(
    task: Task | None, num_classes: int | None = None, ignore_index: int | None = None
) -> PixelConfusion:
    """The statistic of a task: C from ``num_classes`` or ``task.num_classes``; ``ignore_index`` from the argument
    or the task; a binary task with scores thresholds foreground scores at ``task.threshold``."""
    if task is not None and str(task.kind) not in SEGMENTATION_KINDS:
        raise ValueError(f"segmentation metrics are defined for {', '.join(SEGMENTATION_KINDS)} tasks, not {task.kind}")
    task_classes = task.classes if task is not None else 0
    if num_classes is not None and task_classes and int(num_classes) != task_classes:
        raise ValueError(f"num_classes={num_classes} disagrees with the task's num_classes={task_classes}")
    c = int(num_classes) if num_classes is not None else task_classes
    if c < 2:
        raise ValueError("segmentation metrics need num_classes >= 2 (from the task or the num_classes parameter)")
    ignore = ignore_index if ignore_index is not None else (task.ignore_index if task is not None else None)
    binary_scores = task is not None and task.kind is TaskKind.BINARY and task.has_scores
    return PixelConfusion(
        c,
        None if ignore is None else int(ignore),
        float(task.threshold) if binary_scores else None,
        binary_scores and task.prediction is PredictionKind.LOGITS,
    )


def check_average(average: str, stat: PixelConfusion, allowed: tuple[str, ...] = AVERAGES) -> str:
    if average not in allowed:
        raise ValueError(f"average must be one of {', '.join(allowed)}; got {average!r}")
    if average == "binary" and stat.num_classes != 2:
        raise ValueError(f"average 'binary' needs two classes; this task has {stat.num_classes}")
    return average


def _ratio_metric(
    name: str, ratio: Any, stat: PixelConfusion, average: str, zero_division: float, description: str
) -> DerivedMetric:
    """A metric reducing per-class ratios (``_iou``, ``_dice``, ``_class_accuracy``) of one pixel confusion matrix."""
    finalize = partial(ratio, stat.ignore_index, check_average(average, stat), float(zero_division))
    return DerivedMetric(name, stat, finalize, description=description, value_range=RATIO)


def mean_iou_metric(
    task: Task | None = None,
    *,
    num_classes: int | None = None,
    average: str = "macro",
    ignore_index: int | None = None,
    zero_division: float = 0.0,
) -> DerivedMetric:
    """Intersection over union tp / (tp + fp + fn) of the pooled pixels; ``macro`` is the mIoU."""
    stat = pixel_confusion(task, num_classes, ignore_index)
    return _ratio_metric("mean_iou", _iou, stat, average, zero_division, "intersection over union of the pooled pixels")


def task_average(task: Task | None, average: str | None) -> str:
    """``average`` as given, else the task's default: ``binary`` (the positive class, as scikit-learn's
    ``jaccard_score`` and the job's ``f1_score``) for a binary task, ``macro`` for classes and segmentation masks."""
    if average is not None:
        return average
    return "binary" if task is not None and str(task.kind) == "binary" else "macro"


def jaccard_index_metric(
    task: Task | None = None,
    *,
    num_classes: int | None = None,
    average: str | None = None,
    ignore_index: int | None = None,
    zero_division: float = 0.0,
) -> DerivedMetric:
    """Jaccard index of the pooled pixels: the values of ``mean_iou``, averaged by :func:`task_average`."""
    metric = mean_iou_metric(
        task,
        num_classes=num_classes,
        average=task_average(task, average),
        ignore_index=ignore_index,
        zero_division=zero_division,
    )
    return replace(metric, name="jaccard_index")


def dice_score_metric(
    task: Task | None = None,
    *,
    num_classes: int | None = None,
    average: str | None = None,
    ignore_index: int | None = None,
    zero_division: float = 0.0,
) -> DerivedMetric:
    """Dice coefficient 2 tp / (2 tp + fp + fn) of the pooled pixels (the pixel F1 score), averaged by
    :func:`task_average`."""
    stat = pixel_confusion(task, num_classes, ignore_index)
    average = task_average(task, average)
    return _ratio_metric("dice_score", _dice, stat, average, zero_division, "Dice coefficient of the pooled pixels")


def pixel_accuracy_metric(
    task: Task | None = None,
    *,
    num_classes: int | None = None,
    average: str = "micro",
    ignore_index: int | None = None,
    zero_division: float = 0.0,
) -> DerivedMetric:
    """Fraction of valid pixels predicted correctly (``micro``); other averages reduce per-class accuracy
    tp / (tp + fn), as torchmetrics' MulticlassAccuracy."""
    stat = pixel_confusion(task, num_classes, ignore_index)
    description = "fraction of valid pixels predicted correctly"
    return _ratio_metric("pixel_accuracy", _class_accuracy, stat, average, zero_division, description)


def mean_pixel_accuracy_metric(
    task: Task | None = None,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    zero_division: float = 0.0,
) -> DerivedMetric:
    """Mean per-class pixel accuracy tp / (tp + fn) over the classes in the targets or the predictions (macro
    recall, as scikit-learn's ``recall_score`` and torchmetrics' MulticlassAccuracy; a class only predicted
    counts as 0, where mmsegmentation's mAcc would skip it)."""
    stat = pixel_confusion(task, num_classes, ignore_index)
    description = "mean per-class pixel accuracy"
    return _ratio_metric("mean_pixel_accuracy", _class_accuracy, stat, "macro", zero_division, description)


def pixel_confusion_matrix_metric(
    task: Task | None = None,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    normalize: str | None = None,
) -> DerivedMetric:
    """``[C, C]`` pixel counts (rows: true class, columns: predicted); ``normalize``: none, true, pred or all."""
    stat = pixel_confusion(task, num_classes, ignore_index)
    normalized_confusion(normalize, np.eye(2))  # validates ``normalize`` early
    return DerivedMetric(
        "pixel_confusion_matrix", stat, partial(normalized_confusion, normalize), direction=Direction.INFO
    )


# --- host-side checks and reshaping ------------------------------------------------


def is_scores(predictions: np.ndarray, targets: np.ndarray) -> bool:
    """Whether ``predictions`` are class scores (one axis more than the class-id ``targets``)."""
    return predictions.ndim == targets.ndim + 1


def check_masks(
    predictions: np.ndarray, targets: np.ndarray, num_classes: int, ignore_index: int | None = None
) -> list[str]:
    """Problems with a batch of masks (shapes, dtypes, class ids out of range), each with its pixel count.

    Args:
        predictions: ``[n, ...]`` class ids, or ``[n, ..., C]`` class scores.
        targets: ``[n, ...]`` class ids in ``[0, C)`` or ``ignore_index``.

    Returns an empty list for a clean batch.
    """
    preds = np.asarray(predictions)
    tgts = np.asarray(targets)
    problems: list[str] = []
    if is_scores(preds, tgts):
        if preds.shape[:-1] != tgts.shape or preds.shape[-1] != num_classes:
            return [
                f"predictions: class scores of shape {preds.shape} do not match targets {tgts.shape} + ({num_classes},)"
            ]
        if np.issubdtype(preds.dtype, np.floating) and not np.isfinite(preds).all():
            problems.append(
                f"predictions: {int((~np.isfinite(preds)).any(axis=-1).sum())} pixels with NaN or inf scores"
            )
    elif preds.shape != tgts.shape:
        return [f"predictions of shape {preds.shape} do not match targets of shape {tgts.shape}"]
    else:
        problems.extend(check_ids("predictions", preds, num_classes, None))
    problems.extend(check_ids("targets", tgts, num_classes, ignore_index))
    return problems


def check_ids(role: str, values: np.ndarray, num_classes: int, ignore_index: int | None) -> list[str]:
    """Problems of a class-id mask array: ids that are not integers, or outside ``[0, num_classes)`` (and not
    ``ignore_index``)."""
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            return [f"{role}: {int(bad.sum())} pixels whose class ids are not integers"]
    elif not np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_:
        return [f"{role}: expected integer class ids, got {values.dtype}"]
    bad = out_of_range(values, num_classes, ignore_index)
    if bad.any():
        return [f"{role}: {int(bad.sum())} pixels with {_range_text(num_classes, ignore_index)}"]
    return []


def out_of_range(values: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """bool mask (shape of ``values``) of class ids that no confusion-matrix cell counts: outside
    ``[0, num_classes)`` and not ``ignore_index``. The one range check of the functional API and the pipeline."""
    bad = (values < 0) | (values >= num_classes)
    if ignore_index is not None:
        bad &= values != ignore_index
    return bad


def _range_text(num_classes: int, ignore_index: int | None) -> str:
    extra = f" or {ignore_index}" if ignore_index is not None else ""
    return f"class ids outside [0, {num_classes - 1}]{extra}"


def bad_mask_rows(predictions: Any, targets: Any, num_classes: int, ignore_index: int | None) -> list[BadRows]:
    """The images (rows) of a batch of class-id masks that cannot be counted, for the pipeline's checks.

    Args:
        predictions, targets: ``[n, P]`` class ids per pixel, or object arrays / sequences of ``n`` per-image
            arrays (decoded masks) of any sizes.

    Returns the problems (see :class:`~evaluators.task.BadRows`): rows whose masks differ in shape (:func:`_same_pixels`), whose ids
    are not integers, or hold ids that :func:`out_of_range` flags (predictions: any id outside ``[0, C)``,
    targets: besides ``ignore_index``).
    """
    n = len(targets)
    if _dense(predictions) and _dense(targets):
        if predictions.shape != np.shape(targets):
            shapes = f"{predictions.shape} do not match targets of shape {np.shape(targets)}"
            return [BadRows("predictions", f"pixel masks of shape {shapes}")]
        images = [(predictions.reshape(n, -1), np.asarray(targets).reshape(n, -1))]
        mismatched = np.zeros(n, bool)
    else:
        pairs = [(np.asarray(p), np.asarray(t)) for p, t in zip(predictions, targets, strict=True)]
        images = [(p.reshape(1, -1), t.reshape(1, -1)) for p, t in pairs]
        mismatched = np.array([not _same_pixels(p, t) for p, t in pairs], bool)
    problems = []
    if mismatched.any():
        problems.append(BadRows("predictions", "whose mask differs in shape from the target mask", mismatched))
    for role, index, ignore in (("predictions", 0, None), ("targets", 1, ignore_index)):
        dtypes = {image[index].dtype for image in images}
        if any(d.kind not in "biuf" for d in dtypes):
            return [BadRows(role, f"expected integer class ids, got {', '.join(sorted(map(str, dtypes)))}")]
        flags = [_id_flags(image[index], num_classes, ignore) for image in images]
        fractional = np.concatenate([f for f, _ in flags]) & ~mismatched
        outside = np.concatenate([o for _, o in flags]) & ~mismatched
        if fractional.any():
            problems.append(BadRows(role, "whose class ids are not integers", fractional))
        if outside.any():
            problems.append(BadRows(role, f"with {_range_text(num_classes, ignore)}", outside))
    return problems


def _dense(masks: Any) -> bool:
    """Whether ``masks`` is one ``[n, ...]`` array of ids (else per-image masks: an object array or a sequence)."""
    return isinstance(masks, np.ndarray) and masks.dtype != object


def _same_pixels(prediction: np.ndarray, target: np.ndarray) -> bool:
    """Whether one image's class-id masks cover the same pixels: the same count, and the same shape where both have
    one (an id list or ``fixed_size_binary`` mask is flat: it takes the other's shape)."""
    if prediction.size != target.size:
        return False
    return prediction.shape == target.shape or min(prediction.ndim, target.ndim) <= 1


def _id_flags(values: np.ndarray, num_classes: int, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``[m, P]`` class ids: (some id is not an integer, some id is out of range), bool ``[m]`` each."""
    if values.dtype.kind == "f":
        whole = np.isfinite(values) & (values == np.round(values))
        fractional = ~whole.all(axis=1)
        values = np.where(whole, values, 0)
    else:
        fractional = np.zeros(len(values), bool)
    return fractional, out_of_range(values, num_classes, ignore_index).any(axis=1)


def pixel_rows(
    predictions: np.ndarray | Sequence[np.ndarray],
    targets: np.ndarray | Sequence[np.ndarray],
    weights: np.ndarray | None = None,
    *,
    width: int | None = None,
) -> dict[str, np.ndarray]:
    """Masks -> a batch of fixed-width pixel rows for :class:`PixelConfusion`, each row inside one image.

    Args:
        predictions: ``[n, ...]`` class ids or ``[n, ..., C]`` scores, or a sequence of ``n`` per-image arrays of
            any sizes (``[H_i, W_i]`` / ``[H_i, W_i, C]``). With 1-D targets ``[n]`` the rows are pixels: one
            image without ``weights``, else one image (and weight) per pixel.
        targets: ``[n, ...]`` class ids, or a sequence of per-image ``[H_i, W_i]`` arrays.
        weights: ``[n]`` per-image weights (default ones).
        width: pixels per row; default ``ROW_WIDTH`` for class ids, ``ROW_WIDTH // C`` (at least 1) for scores,
            so that a row holds about ``ROW_WIDTH`` values either way.

    Returns:
        ``{"predictions": [m, width] (or [m, width, C]), "targets": int32 [m, width], "weights": float64 [m]}``:
        each image's pixels in row-major order, its last row padded with target ``FILL`` (counted nowhere).
        The confusion matrix of the rows equals the images' own. Equal-size integer masks ``[n, ...]`` whose
        pixel count is a multiple of ``width`` come back as reshaped views, in their own integer dtype.
    """
    pred_list = list(predictions) if not isinstance(predictions, np.ndarray) else None
    target_list = list(targets) if not isinstance(targets, np.ndarray) else None
    if pred_list is None and target_list is None:
        same_size = _whole_rows(np.asarray(predictions), np.asarray(targets), weights, width)
        if same_size is not None:
            return same_size
        tgts = np.asarray(targets)
        preds = np.asarray(predictions)
        if tgts.ndim == 1 and weights is None:  # a list of pixels: one image
            tgts, preds = tgts[None], preds[None]
        elif tgts.ndim == 1:  # weighted pixels: one image each, one pixel per row
            tgts, preds = tgts[:, None], preds[:, None]
            width = width or 1
        pred_list, target_list = [preds], [tgts]
        counts = [len(tgts)]
    else:
        pred_list = [np.asarray(p)[None] for p in (pred_list if pred_list is not None else predictions)]
        target_list = [np.asarray(t)[None] for t in (target_list if target_list is not None else targets)]
        if len(pred_list) != len(target_list):
            raise ValueError(f"{len(pred_list)} prediction masks but {len(target_list)} target masks")
        counts = [1] * len(target_list)
    n = sum(counts)
    w = np.ones(n, np.float64) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} images")
    out_p, out_t, out_w = [], [], []
    start = 0
    for preds, tgts, count in zip(pred_list, target_list, counts, strict=True):
        scores = is_scores(preds, tgts)
        if (preds.shape[:-1] if scores else preds.shape) != tgts.shape:
            raise ValueError(f"predictions of shape {preds.shape[1:]} do not match targets of shape {tgts.shape[1:]}")
        pixels = int(np.prod(tgts.shape[1:], dtype=np.int64))
        if width is None:
            width = max(1, ROW_WIDTH // preds.shape[-1]) if scores else ROW_WIDTH
        rows = max(1, -(-pixels // width))
        t = np.full((count, rows * width), FILL, np.int32)
        t[:, :pixels] = tgts.reshape(count, pixels)
        tail = (preds.shape[-1],) if scores else ()
        p = np.zeros((count, rows * width, *tail), preds.dtype)
        p[:, :pixels] = preds.reshape(count, pixels, *tail)
        out_t.append(t.reshape(count * rows, width))
        out_p.append(p.reshape(count * rows, width, *tail))
        out_w.append(np.repeat(w[start : start + count], rows))
        start += count
    return {
        "predictions": np.concatenate(out_p) if out_p else np.zeros((0, width or ROW_WIDTH), np.int32),
        "targets": np.concatenate(out_t) if out_t else np.zeros((0, width or ROW_WIDTH), np.int32),
        "weights": np.concatenate(out_w) if out_w else np.zeros(0, np.float64),
    }


def _whole_rows(
    preds: np.ndarray, tgts: np.ndarray, weights: np.ndarray | None, width: int | None
) -> dict[str, np.ndarray] | None:
    """:func:`pixel_rows` of ``[n, ...]`` class-id masks whose pixel count is a multiple of the row width:
    reshaped views of the inputs (no copy, no padding; class ids keep their integer dtype, the update
    widens them), or None for any other input."""
    if tgts.ndim < 2 or preds.shape != tgts.shape or len(tgts) == 0:
        return None
    if not (np.issubdtype(tgts.dtype, np.integer) and np.issubdtype(preds.dtype, np.integer)):
        return None
    width = width or ROW_WIDTH
    n = len(tgts)
    pixels = int(np.prod(tgts.shape[1:], dtype=np.int64))
    if pixels % width:
        return None
    rows = pixels // width
    w = np.ones(n, np.float64) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} images")
    return {
        "predictions": preds.reshape(n * rows, width),
        "targets": tgts.reshape(n * rows, width),
        "weights": np.repeat(w, rows),
    }
