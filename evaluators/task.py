"""What the prediction and target columns mean, and the conversions between forms.

A :class:`Task` says how to read a batch:

=============  =========================================  ==========================
kind           predictions                                targets
=============  =========================================  ==========================
binary         ``[n]`` probability / logit of class 1,     ``[n]`` int in {0, 1}
               or ``[n]`` int label
multiclass     ``[n, C]`` probabilities / logits,          ``[n]`` int in [0, C)
               or ``[n]`` int label
multilabel     ``[n, L]`` probabilities / logits / 0-1     ``[n, L]`` int in {0, 1}
regression     ``[n]`` float                               ``[n]`` float
text           ``[n]`` candidate strings                   ``[n]`` reference strings
segmentation   ``[n]`` class-id masks (PNG or pixel lists)  ``[n]`` class-id masks
detection      ``[n]`` per-image box lists (+ scores, labels) ``[n]`` per-image box lists (+ labels)
image          ``[n]`` generated images: encoded PNG/JPEG   ``[n]`` real images, same forms
               bytes, or ``[n, S*S*3]`` pixels (uint8 in
               [0, 255] or float in [0, 1], row-major
               height x width x RGB)
=============  =========================================  ==========================

The conversion helpers below are pure ``jax.numpy`` functions used inside
statistic updates; XLA shares their work when several statistics of one job
are fused into one compiled update.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


class TaskKind(enum.StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"
    REGRESSION = "regression"
    TEXT = "text"
    IMAGE = "image"
    SEGMENTATION = "segmentation"
    DETECTION = "detection"


class PredictionKind(enum.StrEnum):
    PROBABILITIES = "probabilities"
    LOGITS = "logits"
    LABELS = "labels"


@dataclass(frozen=True)
class Task:
    """How to interpret the prediction and target columns.

    Attributes:
        kind: binary, multiclass, multilabel or regression.
        num_classes: C for multiclass, L (number of labels) for multilabel;
            2 for binary; unused for regression.
        prediction: whether predictions are probabilities, logits or labels.
        threshold: probability above which a binary / multilabel score counts
            as a positive prediction (``p > threshold``, as torchmetrics).
        ignore_index: target value whose rows (elements, for multilabel) are
            left out of every statistic.
    """

    kind: TaskKind = TaskKind.BINARY
    num_classes: int | None = None
    prediction: PredictionKind = PredictionKind.PROBABILITIES
    threshold: float = 0.5
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TaskKind(self.kind))
        object.__setattr__(self, "prediction", PredictionKind(self.prediction))
        if self.kind is TaskKind.BINARY:
            object.__setattr__(self, "num_classes", 2)
        if self.kind in (TaskKind.MULTICLASS, TaskKind.MULTILABEL, TaskKind.SEGMENTATION):
            if self.num_classes is None or int(self.num_classes) < 2:
                raise ValueError(f"a {self.kind} task needs num_classes >= 2, got {self.num_classes!r}")
            object.__setattr__(self, "num_classes", int(self.num_classes))

    @property
    def classes(self) -> int:
        """Number of classes (binary: 2) or labels (multilabel)."""
        return int(self.num_classes or 0)

    @property
    def has_scores(self) -> bool:
        """True when predictions carry scores (not hard labels)."""
        return self.prediction is not PredictionKind.LABELS


# --- pure conversions used inside updates ---------------------------------


def valid_weights(task: Task, targets: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Apply ``ignore_index``: zero the weight of ignored targets.

    Returns ``(targets, weights)`` where ignored targets are replaced by 0 and
    weights have the shape of ``targets`` (``[n]``, or ``[n, L]`` for
    multilabel).
    """
    w = weights if targets.ndim == 1 else jnp.broadcast_to(weights[:, None], targets.shape)
    if task.ignore_index is None:
        return targets, w
    keep = targets != task.ignore_index
    return jnp.where(keep, targets, 0), jnp.where(keep, w, 0.0)


def positive_scores(task: Task, predictions: jax.Array) -> jax.Array:
    """Probabilities of the positive class: ``[n]`` (binary) or ``[n, L]`` (multilabel)."""
    if task.prediction is PredictionKind.LOGITS:
        return jax.nn.sigmoid(predictions.astype(jnp.float64))
    return predictions


def class_probabilities(task: Task, predictions: jax.Array) -> jax.Array:
    """``[n, C]`` class probabilities of a multiclass task."""
    if task.prediction is PredictionKind.LOGITS:
        return jax.nn.softmax(predictions.astype(jnp.float64), axis=-1)
    return predictions


def predicted_labels(task: Task, predictions: jax.Array) -> jax.Array:
    """Hard predicted labels: ``[n]`` int (binary, multiclass) or ``[n, L]`` (multilabel)."""
    if task.prediction is PredictionKind.LABELS:
        return predictions.astype(jnp.int32)
    if task.kind is TaskKind.MULTICLASS:
        return jnp.argmax(predictions, axis=-1).astype(jnp.int32)
    return (positive_scores(task, predictions) > task.threshold).astype(jnp.int32)


# --- host-side checks ------------------------------------------------------


def check_batch(task: Task, columns: dict[str, np.ndarray]) -> list[str]:
    """Problems with a batch's values, each with the count of offending rows.

    Returns an empty list for a clean batch. Used by the pipeline before any
    statistic sees the rows, so that bad data fails with a clear message.
    """
    problems: list[str] = []
    preds = columns["predictions"]
    targets = columns["targets"]
    n = len(targets)
    if len(preds) != n:
        problems.append(f"predictions have {len(preds)} rows but targets have {n}")
        return problems
    if task.kind is TaskKind.TEXT:
        return problems  # strings: nulls are refused when the column is read
    if task.kind is TaskKind.IMAGE:
        return _check_images("predictions", preds, n) + _check_images("targets", targets, n)
    if task.kind is TaskKind.SEGMENTATION:
        return problems  # masks are decoded and checked per image by the pipeline
    if task.kind is TaskKind.DETECTION:
        return problems  # per-image box lists are checked by the detection statistic
    if np.issubdtype(preds.dtype, np.floating):
        bad = ~np.isfinite(preds)
        if bad.any():
            problems.append(f"predictions: {int(bad.reshape(n, -1).any(axis=1).sum())} rows with NaN or inf")
        elif task.kind is not TaskKind.REGRESSION and task.prediction is PredictionKind.PROBABILITIES:
            outside = (preds < 0) | (preds > 1)
            if outside.any():
                problems.append(
                    f"predictions: {int(outside.reshape(n, -1).any(axis=1).sum())} rows with probabilities "
                    "outside [0, 1] (declare `prediction: logits` if these are logits)"
                )
            elif task.kind is TaskKind.MULTICLASS and preds.ndim == 2:
                off = np.abs(preds.sum(axis=1, dtype=np.float64) - 1.0) > 1e-3
                if off.any():
                    problems.append(
                        f"predictions: {int(off.sum())} rows whose class probabilities do not sum to 1 "
                        "(declare `prediction: logits` if these are logits)"
                    )
    if task.kind is TaskKind.REGRESSION:
        if np.issubdtype(targets.dtype, np.floating) and not np.isfinite(targets).all():
            problems.append(f"targets: {int((~np.isfinite(targets)).sum())} rows with NaN or inf")
        return problems
    problems.extend(_check_labels(task, "targets", targets, n))
    if task.prediction is PredictionKind.LABELS:
        problems.extend(_check_labels(task, "predictions", preds, n))
    if task.kind is TaskKind.MULTICLASS and task.has_scores and (preds.ndim != 2 or preds.shape[1] != task.classes):
        problems.append(f"predictions: expected {task.classes} class scores per row, got shape {preds.shape[1:]}")
    if task.kind is TaskKind.MULTILABEL and (targets.ndim != 2 or targets.shape[1] != task.classes):
        problems.append(f"targets: expected {task.classes} labels per row, got shape {targets.shape[1:]}")
    return problems


def _check_images(role: str, values: np.ndarray, n: int) -> list[str]:
    """Encoded images (an object array of bytes) or ``[n, S*S*3]`` pixels: uint8-range integers or [0, 1] floats."""
    if values.dtype == object:
        bad = sum(not isinstance(v, bytes | bytearray | memoryview) or len(v) == 0 for v in values)
        return [f"{role}: {bad} rows that are not non-empty encoded image bytes"] if bad else []
    if values.ndim != 2:
        return [
            f"{role}: expected encoded image bytes or a list of S*S*3 pixel values per row, got shape {values.shape}"
        ]
    side = int(np.sqrt(values.shape[1] / 3))
    if side < 1 or 3 * side * side != values.shape[1]:
        return [f"{role}: {values.shape[1]} pixel values per row is not S*S*3 for a square RGB image"]
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        what = "pixel values outside [0, 1] or NaN (float pixels are read as [0, 1] intensities)"
    elif np.issubdtype(values.dtype, np.integer):
        bad = (values < 0) | (values > 255)
        what = "pixel values outside [0, 255]"
    else:
        return [f"{role}: expected numeric pixel values, got {values.dtype}"]
    count = int(bad.any(axis=1).sum())
    return [f"{role}: {count} rows with {what}"] if count else []


def _check_labels(task: Task, role: str, values: np.ndarray, n: int) -> list[str]:
    if np.issubdtype(values.dtype, np.floating):
        nonint = ~np.isfinite(values) | (values != np.round(values))
        if nonint.any():
            return [f"{role}: {int(nonint.reshape(n, -1).any(axis=1).sum())} rows whose labels are not integers"]
    elif not np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_:
        return [f"{role}: expected integer labels, got {values.dtype}"]
    upper = 2 if task.kind in (TaskKind.BINARY, TaskKind.MULTILABEL) else task.classes
    bad = (values < 0) | (values >= upper)
    if task.ignore_index is not None and role == "targets":
        bad &= values != task.ignore_index
    if bad.any():
        return [f"{role}: {int(bad.reshape(n, -1).any(axis=1).sum())} rows with labels outside [0, {upper - 1}]"]
    return []
