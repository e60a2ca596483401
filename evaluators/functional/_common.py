"""Shared plumbing of the functional API: task inference and one-shot evaluation."""

from __future__ import annotations

import enum
import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evaluators import catalog
from evaluators.accumulate import evaluate
from evaluators.adapters import adapter_for
from evaluators.statistic import check_merged, check_weights
from evaluators.task import PredictionKind, Task, TaskKind, check_batch, counted


class Average(enum.Enum):
    """The default of the functional API's ``average``, told apart from ``None``."""

    TASK_DEFAULT = "the task's default"
    """``binary`` (class 1) for binary tasks, else ``macro``; segmentation masks of two classes given without
    ``num_classes``: ``binary``."""


TASK_DEFAULT = Average.TASK_DEFAULT


def averaging(average: str | Average | None) -> str | None:
    """``average`` as a metric takes it: ``None`` is ``"none"``, one value per class, as scikit-learn's and
    torchmetrics' ``average=None``; :data:`TASK_DEFAULT` is None (the metric's default for the task)."""
    if average is TASK_DEFAULT:
        return None
    return "none" if average is None else str(average)


def infer_task(
    predictions: Any,
    targets: Any,
    *,
    task: str | None = None,
    num_classes: int | None = None,
    prediction: str | None = None,
    threshold: float = 0.5,
    ignore_index: int | None = None,
) -> Task:
    """The :class:`Task` implied by the arrays' shapes and dtypes, unless given.

    * 2-D targets: multilabel with ``L = targets.shape[1]``;
    * 2-D predictions: multiclass with ``C = predictions.shape[1]``;
    * 1-D integer predictions: labels (multiclass when ``num_classes > 2`` or
      a label above 1 occurs, else binary);
    * 1-D float predictions: binary probabilities, or logits when some value
      lies outside [0, 1] (by more than :data:`NEARLY_PROBABILITIES`, and more than :data:`FEW_OUTSIDE` of them:
      a value just outside it, or a few values outside it, beside the others within it, are refused as ambiguous).

    Predictions and targets must hold numbers (bool, integer or float dtypes): any other dtype, object arrays
    included (even those holding only numbers: convert them first, e.g. ``np.asarray(x, dtype=float)``), is
    refused with a ``ValueError`` (:func:`check_numeric`); so is a ``threshold`` outside [0, 1] or NaN
    (:func:`check_threshold`).
    """
    preds = np.asarray(predictions)
    tgts = np.asarray(targets)
    regression = task is not None and TaskKind(task) is TaskKind.REGRESSION
    expected = "numbers (floating or integer values)" if regression else None
    check_numeric("predictions", preds, expected)
    check_numeric("targets", tgts, expected)
    check_threshold(threshold)
    if not (1 <= preds.ndim <= 2 and 1 <= tgts.ndim <= 2):
        raise ValueError(
            "predictions and targets: expected arrays of rows (1-D, or 2-D with a column per class or label); got "
            f"shapes {preds.shape} and {tgts.shape}"
        )
    labelled_preds, labelled_tgts = preds, tgts  # (rows whose target is ignore_index name no class)
    if ignore_index is not None and preds.ndim == tgts.ndim == 1 and len(preds) == len(tgts):
        labelled = tgts != ignore_index
        if labelled.any():
            labelled_preds, labelled_tgts = preds[labelled], tgts[labelled]
    if task is None:
        if tgts.ndim == 2:
            task = TaskKind.MULTILABEL
        elif (
            preds.ndim == 2
            or (num_classes is not None and num_classes > 2)
            or (
                np.issubdtype(preds.dtype, np.integer)
                and len(labelled_preds)
                and max(labelled_preds.max(), labelled_tgts.max()) > 1
            )
        ):
            task = TaskKind.MULTICLASS
        else:
            task = TaskKind.BINARY
    kind = TaskKind(task)
    _check_shapes(kind, preds, tgts)
    if kind is TaskKind.REGRESSION:
        if preds.ndim != 1 or tgts.ndim != 1:
            raise ValueError(
                f"regression: predictions and targets must hold one number per row (1-D); got shapes {preds.shape} "
                f"and {tgts.shape}"
            )
        return Task(kind)
    if prediction is None:
        if np.issubdtype(preds.dtype, np.integer) or preds.dtype == np.bool_:
            prediction = PredictionKind.LABELS
        elif preds.size and (np.nanmin(preds) < 0 or np.nanmax(preds) > 1):
            _refuse_ambiguous_scores(preds)
            prediction = PredictionKind.LOGITS
        else:
            prediction = PredictionKind.PROBABILITIES
    if num_classes is None:
        if kind is TaskKind.MULTILABEL:
            num_classes = tgts.shape[1]
        elif kind is TaskKind.MULTICLASS:
            widest = preds.shape[1] if preds.ndim == 2 else None
            num_classes = widest or int(max(labelled_preds.max(), labelled_tgts.max())) + 1
            if num_classes > MAX_INFERRED_CLASSES:
                raise ValueError(
                    f"labels up to {num_classes - 1} make a {num_classes}-class task (the classes are the labels "
                    f"0 .. num_classes - 1, so its confusion matrix would hold {num_classes}^2 counts); beyond "
                    f"{MAX_INFERRED_CLASSES} classes pass num_classes= explicitly, or check the labels for a stray value"
                )
    return Task(kind, num_classes, PredictionKind(prediction), threshold, ignore_index)


MAX_INFERRED_CLASSES = 10_000
"""The most classes taken from the largest label when ``num_classes`` is not given (a stray label of 10**6 made a
task whose confusion matrix needed 7 TiB)."""

_SHAPES = {
    TaskKind.BINARY: ((1,), (1,), "one score or label per row (predict_proba's [n, 2]: pass its column 1)"),
    TaskKind.MULTICLASS: ((1, 2), (1,), "a label or a row of class scores per row, and one target label per row"),
    TaskKind.MULTILABEL: ((2,), (2,), "a row of per-label scores or 0/1 labels per row, and a row of 0/1 targets"),
}


def _check_shapes(kind: TaskKind, preds: np.ndarray, tgts: np.ndarray) -> None:
    """Refuse predictions or targets of more or fewer dimensions than ``kind`` takes (a binary task's ``[n]`` targets
    broadcast against ``[n, 2]`` scores summed a loss over the whole grid), naming the shapes."""
    if kind not in _SHAPES:
        return
    pred_dims, target_dims, what = _SHAPES[kind]
    if preds.ndim not in pred_dims or tgts.ndim not in target_dims:
        raise ValueError(
            f"task {kind.value!r} takes {what}; got predictions of shape {preds.shape} and targets of shape "
            f"{tgts.shape}"
        )


NUMERIC_KINDS = "biuf"
"""NumPy dtype kinds the functional API reads: bool, signed and unsigned integers, floats."""


def check_numeric(role: str, values: np.ndarray, expected: str | None = None) -> None:
    """Refuse ``values`` (of argument ``role``) unless its dtype is one of :data:`NUMERIC_KINDS`, with one
    sentence naming the argument, its dtype and what was expected. Object arrays are refused, even when they
    hold only numbers: convert them first (``np.asarray(x, dtype=float)``); ``None`` inside one is named."""
    if values.dtype.kind in NUMERIC_KINDS:
        return
    expected = expected or "numbers (integer class ids, booleans or floating scores)"
    detail = ""
    if values.dtype == object:
        if any(v is None for v in values.flat):
            detail = " holding None (missing values are not supported)"
        else:
            detail = " (convert an object array of numbers first, e.g. np.asarray(x, dtype=float))"
    raise ValueError(f"{role}: expected {expected}, got dtype {values.dtype}{detail}.")


def check_threshold(threshold: Any) -> None:
    """Refuse a ``threshold`` that is not a number in [0, 1] (NaN included), the rule and wording of the YAML
    job path (``pipelines/spec.py``, the task section). A score counts as positive when ``p > threshold``."""
    ok = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool | np.bool_)
    if not (ok and 0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"threshold: expected a probability threshold in [0, 1], got {threshold!r}.")


NEARLY_PROBABILITIES = 1e-3
"""Float predictions within this much of [0, 1], some of them outside it, are neither read as probabilities nor as
logits: :func:`infer_task` asks which they are."""
FEW_OUTSIDE = 0.01
"""Float predictions of which at most this share lies outside [0, 1] (the rest within it) are neither read as
probabilities nor as logits: :func:`infer_task` asks which they are (logits of a model lie outside [0, 1] far more
often; one corrupt probability of 1.5 among 2,000 turned every row into a logit)."""


def _refuse_ambiguous_scores(preds: np.ndarray) -> None:
    """Refuse predictions that look like probabilities with a few values outside [0, 1]: a rounding (``1.0000001``),
    or at most :data:`FEW_OUTSIDE` of them (a corrupt row). Read as logits, every metric would silently change."""
    low, high = float(np.nanmin(preds)), float(np.nanmax(preds))
    outside = int(np.count_nonzero((preds < 0) | (preds > 1)))
    if low >= -NEARLY_PROBABILITIES and high <= 1 + NEARLY_PROBABILITIES:
        raise ValueError(
            f"predictions: {outside} values outside [0, 1] by at most {max(-low, high - 1):.3g}, the rest within it: "
            "clip probabilities to [0, 1], or pass prediction='logits' for logits"
        )
    counted = int(np.count_nonzero(~np.isnan(preds)))
    if outside <= FEW_OUTSIDE * counted:
        raise ValueError(
            f"predictions: {outside} of {counted} values lie outside [0, 1] (from {low:.6g} to {high:.6g}), the rest "
            "within it: read as logits, every row would change. Fix the values outside [0, 1] if they are "
            "probabilities, or pass prediction='logits' if they are logits"
        )


_PER_CLASS = re.compile(r"^\[(\d+)\]$")


def compute(
    name: str,
    predictions: Any,
    targets: Any,
    *,
    weights: Any = None,
    task: str | None = None,
    num_classes: int | None = None,
    prediction: str | None = None,
    threshold: float = 0.5,
    ignore_index: int | None = None,
    metric_params: dict[str, Any] | None = None,
    **params: Any,
) -> Any:
    """Evaluate catalogue metric ``name`` on one batch.

    ``weights`` are sample weights (also as scikit-learn's ``sample_weight``); ``metric_params`` passes metric parameters
    whose names clash with this function's own (cohen_kappa's ``weights``).

    Returns the headline value (a float, or an array for the confusion
    matrix), or a ``[C]`` array of per-class values for ``average="none"``.
    """
    if "sample_weight" in params and "sample_weight" not in catalog.parameters(name):  # (scikit-learn's name)
        if weights is not None:
            raise ValueError("give sample weights once: weights= or its scikit-learn name sample_weight=")
        weights = params.pop("sample_weight")
    if weights is not None:
        check_numeric("weights", np.asarray(weights), "numbers (non-negative sample weights)")
    t = infer_task(
        predictions,
        targets,
        task=task,
        num_classes=num_classes,
        prediction=prediction,
        threshold=threshold,
        ignore_index=ignore_index,
    )
    params = {**params, **(metric_params or {})}
    if "average" in params:
        if params["average"] is None and t.kind is TaskKind.BINARY and name in ("roc_auc", "average_precision"):
            params["average"] = TASK_DEFAULT  # (scikit-learn's binary ROC-AUC and AP take no average: one value)
        params["average"] = averaging(params["average"])
    metric = catalog.build(name, t, {k: v for k, v in params.items() if v is not None})
    columns = {"predictions": np.asarray(predictions), "targets": np.asarray(targets)}
    if weights is not None:
        columns["weights"] = np.asarray(weights)
    if weights is not None:
        rows = len(columns["targets"]) if columns["targets"].ndim else 0
        if columns["weights"].shape != (rows,):
            raise ValueError(
                f"weights: expected one weight per row, shape ({rows},); got shape {columns['weights'].shape}"
            )
    problems = check_batch(t, columns)  # the pipeline's own row checks
    if problems:
        raise ValueError("; ".join(problems))
    refuse_no_counted_rows(t, columns)
    values = evaluate([metric], columns["predictions"], columns["targets"], weights)[0]
    if "" in values:
        return values[""]
    per_class = sorted((int(m.group(1)), v) for k, v in values.items() if (m := _PER_CLASS.match(k)))
    if per_class:
        return np.array([v for _, v in per_class])
    return values


def refuse_no_counted_rows(task: Task, columns: dict[str, np.ndarray]) -> None:
    """Raise ``ValueError`` where a job stops with exit 2 because every metric would be undefined (scikit-learn
    raises there too): no rows, every weight 0, or every target ``ignore_index``, or both together."""
    rows = len(columns["targets"]) if np.ndim(columns["targets"]) else 0
    if rows == 0:
        raise ValueError("predictions, targets: no rows; a metric of no rows is undefined (give at least one row)")
    counted = adapter_for(task).counted_rows(columns)
    weights = columns.get("weights")
    if weights is not None and not np.any(weights[counted] if counted is not None else weights):
        ignoring = f" or the target {task.ignore_index} (ignore_index)" if counted is not None else ""
        raise ValueError(
            f"weights: all {rows} rows have weight 0{ignoring}, so every metric is undefined (a weighted mean of "
            "nothing); give some rows a positive weight"
        )
    if counted is not None and not counted.any():
        raise ValueError(
            f"targets: all {rows} rows have only the target {task.ignore_index}, which ignore_index leaves out, so "
            "every metric is undefined"
        )


def backbone_metric(
    name: str,
    kind: TaskKind,
    columns: dict[str, Any],
    backbone: Any,
    params: dict[str, Any] | None = None,
    extract: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A backbone metric of ``columns`` (raw ``predictions`` / ``targets``): the backbone's features go through
    the metric's statistic, as in the pipeline. ``backbone``: a loaded backbone or a ``BackboneSpec``;
    ``extract(encoder) -> features`` replaces ``encoder.extract(columns)``."""
    from evaluators.accumulate import Accumulator
    from evaluators.backbones import BackboneSpec, load_backbone

    encoder = load_backbone(backbone) if isinstance(backbone, BackboneSpec) else backbone
    metric = catalog.build(name, Task(kind), params)
    features = extract(encoder) if extract is not None else encoder.extract(columns)
    acc = Accumulator([metric.statistic])
    state = acc.update(acc.zero(), {k: features[k] for k in metric.statistic.features})[0]
    return metric.compute(state)


def with_columns(name: str, task: Task, columns: dict[str, Any], params: dict[str, Any] | None = None) -> dict:
    """Values of catalogue metric ``name`` over one batch of ``columns`` (roles -> ``[n]`` arrays, extra roles such
    as ``query_id`` or ``sensitive`` included): the batch goes through the pipeline's row checks, one update and
    the stored form, as in a work unit."""
    from evaluators.accumulate import Accumulator

    lengths = {role: len(values) for role, values in columns.items() if values is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of different lengths: {lengths}")
    metric = catalog.build(name, task, params)
    arrays = {role: np.asarray(values) for role, values in columns.items() if values is not None}
    problems = check_batch(task, {**arrays, "weights": arrays.get("weights")})
    if problems:
        raise ValueError("; ".join(problems))
    check_weights(arrays.get("weights"))
    if "targets" in arrays:
        refuse_no_counted_rows(task, arrays)
    acc = Accumulator([metric.statistic])
    (state,) = acc.to_host(acc.update(acc.zero(), arrays))
    check_merged(metric.statistic, state, len(next(iter(arrays.values()))))
    return metric.compute(state)


def text_column(role: str, values: Sequence[str]) -> np.ndarray:
    """``[n]`` object array of the strings of ``values``, one per row; a bare string (which would be read as rows
    of one character each), or a row that is no string (None: a missing text, which a job refuses when it reads a
    null), raises ``ValueError``."""
    if isinstance(values, str | bytes):
        raise ValueError(f"{role}: one string; expected a sequence of strings, one per row (a list of one for one row)")
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise ValueError(
            f"{role}: {counted(len(bad), 'row')} whose value is not a string (first: row {bad[0]}, {values[bad[0]]!r})"
        )
    return np.asarray(list(values), dtype=object).reshape(len(values))
