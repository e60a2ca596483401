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

import numpy as np

from evaluators.kernels import array_namespace
from evaluators.lazyjax import jax, jnp


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
            if self.num_classes not in (None, 2):
                raise ValueError(
                    f"num_classes={self.num_classes!r}: a binary task has 2 classes; for more, a multiclass task (one "
                    "label per row) or a multilabel one (several)"
                )
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

    @property
    def converts_on_host(self) -> bool:
        """Whether the conversions below (:func:`positive_scores`, :func:`class_probabilities`,
        :func:`predicted_labels`) give NumPy the compiled update's bits: probabilities and labels pass through,
        logits take JAX's sigmoid or softmax, whose last bits differ from any NumPy formula."""
        return self.prediction is not PredictionKind.LOGITS


# --- pure conversions used inside updates ---------------------------------


def valid_weights(task: Task, targets: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Apply ``ignore_index``: zero the weight of ignored targets.

    Returns ``(targets, weights)`` where ignored targets are replaced by 0 and
    weights have the shape of ``targets`` (``[n]``, or ``[n, L]`` for
    multilabel).
    """
    xp = array_namespace(targets, weights)
    w = weights if targets.ndim == 1 else xp.broadcast_to(weights[:, None], targets.shape)
    if task.ignore_index is None:
        return targets, w
    keep = targets != task.ignore_index
    return xp.where(keep, targets, 0), xp.where(keep, w, 0.0)


def positive_scores(task: Task, predictions: jax.Array) -> jax.Array:
    """Probabilities of the positive class: ``[n]`` (binary) or ``[n, L]`` (multilabel)."""
    if task.prediction is PredictionKind.LOGITS:
        if isinstance(predictions, np.ndarray):  # a host update: NumPy throughout
            x = predictions.astype(np.float64)
            e = np.exp(-np.abs(x))
            return np.where(x >= 0, 1.0, e) / (1.0 + e)
        return jax.nn.sigmoid(predictions.astype(jnp.float64))
    return predictions


def class_probabilities(task: Task, predictions: jax.Array) -> jax.Array:
    """``[n, C]`` class probabilities of a multiclass task."""
    if task.prediction is PredictionKind.LOGITS:
        if isinstance(predictions, np.ndarray):  # a host update: NumPy throughout
            with np.errstate(over="ignore"):  # (logits 1e308 apart: -inf, whose exp is 0, as XLA's softmax gives)
                e = np.exp(predictions.astype(np.float64) - predictions.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        return jax.nn.softmax(predictions.astype(jnp.float64), axis=-1)
    return predictions


def predicted_labels(task: Task, predictions: jax.Array) -> jax.Array:
    """Hard predicted labels: ``[n]`` int (binary, multiclass) or ``[n, L]`` (multilabel)."""
    if task.prediction is PredictionKind.LABELS:
        return predictions.astype(np.int32)
    if task.kind is TaskKind.MULTICLASS:
        return top_class(task, predictions)[1]
    return (positive_scores(task, predictions) > task.threshold).astype(np.int32)


def top_class(task: Task, predictions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(highest score as float64, its class as int32)`` per row of ``[n, C]`` multiclass scores (the first
    class on a tie). Statistics that need the top class call this on the raw predictions, so that XLA computes
    one ``argmax`` for all of them (widening to float64 after the ``max`` is exact).

    The class is the smallest index holding the row's maximum: a max and a min reduction, which XLA's CPU
    backend vectorizes, where ``jnp.argmax`` (a reduction over (value, index) pairs) ran about 2x slower on
    ``[8192, 100]``. Rows with NaN are refused before any update; the index is clipped into range regardless."""
    if array_namespace(predictions) is np:
        return np.max(predictions, axis=-1).astype(np.float64), np.argmax(predictions, axis=-1).astype(np.int32)
    best = jnp.max(predictions, axis=-1)
    classes = predictions.shape[-1]
    index = jax.lax.broadcasted_iota(jnp.int32, predictions.shape, predictions.ndim - 1)
    first = jnp.min(jnp.where(predictions == best[..., None], index, classes), axis=-1)
    return best.astype(jnp.float64), jnp.minimum(first, classes - 1)


# --- host-side checks ------------------------------------------------------


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 file``, ``2 files`` (``plural``: where it is not the noun and an s)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


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
        return (
            f"{self.role}: {self.what}"
            if self.rows is None
            else f"{self.role}: {counted(self.count, 'row')} {self.what}"
        )


def check_batch(task: Task, columns: dict[str, np.ndarray]) -> list[str]:
    """Problems with a batch's values, each with the count of offending rows.

    Returns an empty list for a clean batch. Used by the pipeline before any
    statistic sees the rows, so that bad data fails with a clear message.
    """
    return [problem.message() for problem in find_bad_rows(task, columns)]


def find_bad_rows(task: Task, columns: dict[str, np.ndarray]) -> list[BadRows]:
    """Every problem of a batch of ``predictions`` / ``targets`` (``[n]`` or ``[n, C]`` arrays), with the
    offending rows of each; empty for a clean batch: the task adapter's
    :meth:`~evaluators.adapters.base.TaskAdapter.bad_rows`. Image and text tasks may hold one side only (a
    reference job, or a job against a stored reference) and precomputed feature columns (checked where they
    are read)."""
    from evaluators.adapters import adapter_for  # the adapters build on this module

    return adapter_for(task).bad_rows(columns)


def check_weights(weights: np.ndarray, n: int) -> list[BadRows]:
    """Rows whose weight (``[n]`` numbers) is NaN, infinite or negative: such a weight would turn every weighted
    sum into NaN or a sign-flipped value. Zero weights are fine (the row counts nowhere)."""
    values = np.asarray(weights)
    if values.dtype.kind not in "biuf":
        return [BadRows("weights", f"expected numeric weights, got {values.dtype}")]
    bad = ~np.isfinite(values) | (values < 0) if values.dtype.kind == "f" else values < 0
    problems = flagged_rows("weights", "with a NaN, infinite or negative weight", bad, n)
    if values.dtype.kind == "f":
        subnormal = (values > 0) & (values < np.finfo(np.float64).tiny)
        problems += flagged_rows("weights", SUBNORMAL_WEIGHT, subnormal, n)
    return problems


SUBNORMAL_WEIGHT = (
    "with a weight between 0 and 2.2e-308 (float64's smallest normal number), which compiled updates read as 0 (every "
    "metric of rows so light is NaN); scale the weights up: a weighted mean is unchanged when all weights are "
    "multiplied by the same number"
)


def flagged_rows(role: str, what: str, bad: np.ndarray, n: int) -> list[BadRows]:
    """``[BadRows]`` for the rows with any flagged element (``bad``: ``[n]`` or ``[n, ...]``), or ``[]``."""
    rows = bad.any(axis=tuple(range(1, bad.ndim))) if bad.ndim > 1 else bad  # also for n = 0
    return [BadRows(role, what, rows)] if rows.any() else []
