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
ranking        ``[n]`` item scores, beside a ``query_id``  ``[n]`` relevance >= 0 (graded
               column of query ids                        or 0 / 1)
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
    RANKING = "ranking"


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
        return top_class(task, predictions)[1]
    return (positive_scores(task, predictions) > task.threshold).astype(jnp.int32)


def top_class(task: Task, predictions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(highest score as float64, its class as int32)`` per row of ``[n, C]`` multiclass scores (the first
    class on a tie). Statistics that need the top class call this on the raw predictions, so that XLA computes
    one ``argmax`` for all of them (widening to float64 after the ``max`` is exact).

    The class is the smallest index holding the row's maximum: a max and a min reduction, which XLA's CPU
    backend vectorizes, where ``jnp.argmax`` (a reduction over (value, index) pairs) ran about 2x slower on
    ``[8192, 100]``. Rows with NaN are refused before any update; the index is clipped into range regardless."""
    best = jnp.max(predictions, axis=-1)
    classes = predictions.shape[-1]
    index = jax.lax.broadcasted_iota(jnp.int32, predictions.shape, predictions.ndim - 1)
    first = jnp.min(jnp.where(predictions == best[..., None], index, classes), axis=-1)
    return best.astype(jnp.float64), jnp.minimum(first, classes - 1)


# --- host-side checks ------------------------------------------------------


@dataclass(frozen=True)
class BadRows:
    """One problem found in a batch: ``rows`` marks the offending rows (bool ``[n]``), or is None for a
    problem of the whole batch (a shape or dtype) that leaving rows out cannot fix."""

    role: str
    what: str
    """What is wrong, as it reads after "N rows" (e.g. ``"with NaN or inf"``); or the whole message
    when ``rows`` is None."""
    rows: np.ndarray | None = None

    @property
    def count(self) -> int:
        return 0 if self.rows is None else int(self.rows.sum())

    @property
    def reason(self) -> str:
        """``"predictions: with NaN or inf"``: the key under which dropped rows are counted."""
        return f"{self.role}: {self.what}"

    def message(self) -> str:
        return f"{self.role}: {self.what}" if self.rows is None else f"{self.role}: {self.count} rows {self.what}"


def check_batch(task: Task, columns: dict[str, np.ndarray]) -> list[str]:
    """Problems with a batch's values, each with the count of offending rows.

    Returns an empty list for a clean batch. Used by the pipeline before any
    statistic sees the rows, so that bad data fails with a clear message.
    """
    return [problem.message() for problem in find_bad_rows(task, columns)]


def find_bad_rows(task: Task, columns: dict[str, np.ndarray]) -> list[BadRows]:
    """Every problem of a batch of ``predictions`` / ``targets`` (``[n]`` or ``[n, C]`` arrays), with the
    offending rows of each; empty for a clean batch. Image and text tasks may hold one side only (a reference
    job, or a job against a stored reference) and precomputed feature columns (checked where they are read)."""
    if task.kind in (TaskKind.IMAGE, TaskKind.TEXT):
        return _side_problems(task, columns)
    preds = columns["predictions"]
    targets = columns["targets"]
    n = len(targets)
    if len(preds) != n:
        return [BadRows("predictions", f"have {len(preds)} rows but targets have {n}")]
    problems = check_weights(columns["weights"], n) if columns.get("weights") is not None else []
    if task.kind is TaskKind.SEGMENTATION:
        from evaluators.segmentation import bad_mask_rows  # segmentation builds on this module

        return problems + bad_mask_rows(preds, targets, task.classes, task.ignore_index)
    if task.kind is TaskKind.DETECTION:
        # per-image lists (boxes, scores, labels, areas): numbers must be finite; their layout is checked downstream
        for role, values in columns.items():
            if role != "weights" and isinstance(values, np.ndarray) and values.dtype == object:
                problems += _rows(role, "with NaN or inf in their lists", _ragged_nonfinite(values), n)
        return problems
    if task.kind is TaskKind.RANKING:
        return problems + _check_ranking(preds, targets, n)
    if np.issubdtype(preds.dtype, np.floating):
        # Two reductions clear a clean batch (NaN propagates through both); masks only when they do not.
        lo, hi = (float(np.min(preds)), float(np.max(preds))) if preds.size else (0.0, 0.0)
        all_finite = bool(np.isfinite(lo) and np.isfinite(hi))
        finite = None if all_finite else np.isfinite(preds)
        if finite is not None:
            problems += _rows("predictions", "with NaN or inf", ~finite, n)
        if task.kind is not TaskKind.REGRESSION and task.prediction is PredictionKind.PROBABILITIES:
            logits = "(declare `prediction: logits` if these are logits)"
            if not (lo >= 0 and hi <= 1):
                outside = (preds < 0) | (preds > 1)
                if finite is not None and outside.any():
                    outside &= finite  # +-inf is counted once, as NaN or inf
                problems += _rows("predictions", f"with probabilities outside [0, 1] {logits}", outside, n)
            if task.kind is TaskKind.MULTICLASS and preds.ndim == 2:
                off = _off_one(preds, SUM_TOLERANCE)
                problems += _rows("predictions", f"whose class probabilities do not sum to 1 {logits}", off, n)
    if task.kind is TaskKind.REGRESSION:
        if np.issubdtype(targets.dtype, np.floating):
            problems += _rows("targets", "with NaN or inf", ~np.isfinite(targets), n)
        return problems
    problems.extend(_check_labels(task, "targets", targets, n))
    if task.prediction is PredictionKind.LABELS:
        problems.extend(_check_labels(task, "predictions", preds, n))
    if task.kind is TaskKind.MULTICLASS and task.has_scores and (preds.ndim != 2 or preds.shape[1] != task.classes):
        problems.append(
            BadRows("predictions", f"expected {task.classes} class scores per row, got shape {preds.shape[1:]}")
        )
    if task.kind is TaskKind.MULTILABEL and (targets.ndim != 2 or targets.shape[1] != task.classes):
        problems.append(BadRows("targets", f"expected {task.classes} labels per row, got shape {targets.shape[1:]}"))
    return problems


def _ragged_nonfinite(values: np.ndarray) -> np.ndarray:
    """bool ``[n]``: rows of an object array of per-row number arrays that hold a NaN or inf (other rows, such
    as decoded instance masks, are not numbers and pass)."""
    return np.fromiter(
        (isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.isfinite(v).all() for v in values),
        bool,
        count=len(values),
    )


def check_weights(weights: np.ndarray, n: int) -> list[BadRows]:
    """Rows whose weight (``[n]`` numbers) is NaN, infinite or negative: such a weight would turn every weighted
    sum into NaN or a sign-flipped value. Zero weights are fine (the row counts nowhere)."""
    values = np.asarray(weights)
    if values.dtype.kind not in "biuf":
        return [BadRows("weights", f"expected numeric weights, got {values.dtype}")]
    bad = ~np.isfinite(values) | (values < 0) if values.dtype.kind == "f" else values < 0
    return _rows("weights", "with a NaN, infinite or negative weight", bad, n)


SUM_TOLERANCE = 1e-3
"""Class probabilities of a row may sum to 1 within this (in float64)."""


def _off_one(preds: np.ndarray, tolerance: float) -> np.ndarray:
    """Rows whose float64 sum is further than ``tolerance`` from 1. Rows are summed in their own dtype
    first (no float64 copy of the batch); only rows within rounding of the tolerance are summed again in
    float64, so the answer is the float64 one."""
    if preds.dtype == np.float64 or preds.shape[1] == 0:
        return np.abs(preds.sum(axis=1, dtype=np.float64) - 1.0) > tolerance
    sums = preds.sum(axis=1)
    slack = preds.shape[1] * float(np.finfo(preds.dtype).eps) * 4.0  # bound on the own-dtype rounding
    distance = np.abs(sums.astype(np.float64) - 1.0)
    off = distance > tolerance
    near = np.flatnonzero(np.abs(distance - tolerance) <= slack)
    if len(near):
        off[near] = np.abs(preds[near].sum(axis=1, dtype=np.float64) - 1.0) > tolerance
    return off


def _rows(role: str, what: str, bad: np.ndarray, n: int) -> list[BadRows]:
    """``[BadRows]`` for the rows with any flagged element (``bad``: ``[n]`` or ``[n, ...]``), or ``[]``."""
    rows = bad.reshape(n, -1).any(axis=1) if bad.ndim > 1 else bad
    return [BadRows(role, what, rows)] if rows.any() else []


def _side_problems(task: Task, columns: dict[str, np.ndarray]) -> list[BadRows]:
    """Problems of an image or text batch whose sides (``predictions`` / ``targets``) may be absent."""
    n = len(next(iter(columns.values())))
    if "predictions" in columns and "targets" in columns and len(columns["predictions"]) != len(columns["targets"]):
        return [
            BadRows(
                "predictions", f"have {len(columns['predictions'])} rows but targets have {len(columns['targets'])}"
            )
        ]
    problems = check_weights(columns["weights"], n) if columns.get("weights") is not None else []
    if task.kind is TaskKind.TEXT:
        return problems  # strings: nulls are refused when read
    for role in ("predictions", "targets"):
        if role in columns:
            problems += _check_images(role, columns[role], n)
    return problems


def _check_images(role: str, values: np.ndarray, n: int) -> list[BadRows]:
    """Encoded images (an object array of bytes) or ``[n, S*S*3]`` pixels: uint8-range integers or [0, 1] floats."""
    if values.dtype == object:
        bad = np.fromiter(
            (not isinstance(v, bytes | bytearray | memoryview) or len(v) == 0 for v in values), bool, count=n
        )
        return _rows(role, "that are not non-empty encoded image bytes", bad, n)
    if values.ndim != 2:
        return [
            BadRows(
                role, f"expected encoded image bytes or a list of S*S*3 pixel values per row, got shape {values.shape}"
            )
        ]
    side = int(np.sqrt(values.shape[1] / 3))
    if side < 1 or 3 * side * side != values.shape[1]:
        return [BadRows(role, f"{values.shape[1]} pixel values per row is not S*S*3 for a square RGB image")]
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        what = "with pixel values outside [0, 1] or NaN (float pixels are read as [0, 1] intensities)"
    elif np.issubdtype(values.dtype, np.integer):
        bad = (values < 0) | (values > 255)
        what = "with pixel values outside [0, 255]"
    else:
        return [BadRows(role, f"expected numeric pixel values, got {values.dtype}")]
    return _rows(role, what, bad, n)


def _check_ranking(scores: np.ndarray, relevance: np.ndarray, n: int) -> list[BadRows]:
    """Item scores: finite numbers; relevance: finite numbers >= 0."""
    problems: list[BadRows] = []
    for role, values in (("predictions", scores), ("targets", relevance)):
        if values.ndim != 1 or values.dtype.kind not in "biuf":
            return [BadRows(role, f"expected one number per row, got {values.dtype} of shape {values.shape[1:]}")]
    if scores.dtype.kind == "f":
        problems += _rows("predictions", "with NaN or inf", ~np.isfinite(scores), n)
    bad = ~np.isfinite(relevance) | (relevance < 0) if relevance.dtype.kind == "f" else relevance < 0
    return problems + _rows("targets", "with a relevance that is negative, NaN or inf", bad, n)


def _check_labels(task: Task, role: str, values: np.ndarray, n: int) -> list[BadRows]:
    problems: list[BadRows] = []
    if np.issubdtype(values.dtype, np.floating):
        problems += _rows(role, "whose labels are not integers", ~np.isfinite(values) | (values != np.round(values)), n)
    elif not np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_:
        return [BadRows(role, f"expected integer labels, got {values.dtype}")]
    upper = 2 if task.kind in (TaskKind.BINARY, TaskKind.MULTILABEL) else task.classes
    bad = (values < 0) | (values >= upper)
    if task.ignore_index is not None and role == "targets":
        bad &= values != task.ignore_index
    return problems + _rows(role, f"with labels outside [0, {upper - 1}]", bad, n)
