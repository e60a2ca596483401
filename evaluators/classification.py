"""Classification statistics (confusion counts, top-k hits) and the metrics read off them.

Every thresholded metric (accuracy, precision, recall, F1, F-beta,
specificity, balanced accuracy, MCC, Cohen's kappa, the confusion matrix)
reads one :class:`ConfusionCounts` state, so a job computes it once.

Averaging follows scikit-learn:

* ``binary``   the positive class (1) of a binary task;
* ``micro``    from counts summed over classes;
* ``macro``    unweighted mean over the classes that occur in the targets or
  the predictions (multiclass) or over all labels (multilabel);
* ``weighted`` mean weighted by each class's support (targets);
* ``none``     one value per class, all ``C`` classes.

A ratio whose denominator is zero takes ``zero_division`` (default 0.0, as
scikit-learn's ``"warn"``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from evaluators.kernels import add_at, array_namespace, in_cache_steps, safe_divide
from evaluators.lazyjax import jnp
from evaluators.statistic import CORRELATION, RATIO, Batch, DerivedMetric, Direction, State, Statistic
from evaluators.task import Task, TaskKind, predicted_labels, valid_weights

AVERAGES = ("binary", "micro", "macro", "weighted", "none")


@dataclass(frozen=True)
class ConfusionCounts(Statistic):
    """Weighted confusion counts.

    State: float64 ``[C, C]`` with ``state[true, predicted]`` for binary and
    multiclass tasks; ``[L, 2, 2]`` per label for multilabel tasks.
    """

    task: Task

    def zero(self) -> State:
        c = self.task.classes
        shape = (c, 2, 2) if self.task.kind is TaskKind.MULTILABEL else (c, c)
        return np.zeros(shape, np.float64)

    def runs_on_host(self) -> bool:
        return self.task.converts_on_host

    def folds_fast_on_host(self) -> bool:
        return self.task.kind is TaskKind.BINARY and self.runs_on_host()

    def update(self, state: State, batch: Batch) -> State:
        return in_cache_steps(self._update_rows, state, batch)

    def folds_groups_on_host(self) -> bool:
        return self.runs_on_host() and self.task.kind is not TaskKind.MULTILABEL

    def rows_by_group(self, batch: Batch, group: np.ndarray, groups: int) -> list[State]:
        c = self.task.classes
        targets, w = valid_weights(self.task, np.asarray(batch["targets"]), batch["weights"])
        index = targets.astype(np.int64) * c + predicted_labels(self.task, np.asarray(batch["predictions"]))
        keep = (index >= 0) & (index < c * c)  # (as add_at: a cell outside the matrix is dropped)
        cell = (group * (c * c) + index)[keep]
        counts = np.bincount(cell, w[keep], groups * c * c).reshape(groups, c, c)
        return list(counts)

    def _update_rows(self, state: State, batch: Batch) -> State:
        c = self.task.classes
        xp = array_namespace(batch["weights"])
        targets, w = valid_weights(self.task, xp.asarray(batch["targets"]), batch["weights"])
        preds = predicted_labels(self.task, xp.asarray(batch["predictions"]))
        if self.task.kind is TaskKind.MULTILABEL:
            label = xp.arange(c, dtype=xp.int32)[None, :]
            index = label * 4 + targets.astype(xp.int32) * 2 + preds
            return add_at(state, index, w)
        index = targets.astype(xp.int32) * c + preds
        return add_at(state, index, w)


@dataclass(frozen=True)
class TopKHits(Statistic):
    """Per-class weighted support and top-k hits of a multiclass task.

    State: float64 ``[2, C]``: row 0 the support of each true class, row 1 the
    weight of rows whose true class is among the ``k`` highest scores.
    """

    task: Task
    k: int

    def zero(self) -> State:
        return np.zeros((2, self.task.classes), np.float64)

    def update(self, state: State, batch: Batch) -> State:
        c = self.task.classes
        targets, w = valid_weights(self.task, jnp.asarray(batch["targets"]), batch["weights"])
        # the raw scores: a softmax keeps each row's order but can tie what it underflows to 0 (logits of 0, -800
        # and -900 with target 2: a miss at k=2, as scikit-learn and torchmetrics rank the logits, not a hit)
        scores = jnp.asarray(batch["predictions"])
        target_score = jnp.take_along_axis(scores, targets[:, None].astype(jnp.int32), axis=1)
        # A class ranks ahead of the target when its score is higher or, on a tie, when its index is lower: the
        # smaller index first, as argmax picks the top class (top_k=1 is the predicted label of accuracy and the
        # confusion matrix) and torch.topk ranks; scikit-learn's top_k_accuracy_score puts the larger index first.
        idx = jnp.arange(c)[None, :]
        ahead = (scores > target_score) | ((scores == target_score) & (idx < targets[:, None]))
        hit = (jnp.sum(ahead, axis=1) < self.k).astype(jnp.float64)
        t = targets.astype(jnp.int32)
        return state.at[:, t].add(jnp.stack([w, w * hit]))


@dataclass(frozen=True)
class SubsetMatch(Statistic):
    """Multilabel exact-match counts. State: float64 ``[2]`` = (weight, weight of exact matches)."""

    task: Task

    def zero(self) -> State:
        return np.zeros(2, np.float64)

    def runs_on_host(self) -> bool:
        return self.task.converts_on_host

    def update(self, state: State, batch: Batch) -> State:
        xp = array_namespace(batch["weights"])
        targets = xp.asarray(batch["targets"])
        preds = predicted_labels(self.task, xp.asarray(batch["predictions"]))
        if self.task.ignore_index is not None:
            same = xp.all((preds == targets) | (targets == self.task.ignore_index), axis=1)
        else:
            same = xp.all(preds == targets, axis=1)
        w = batch["weights"].astype(xp.float64)
        return state + xp.stack([xp.sum(w), xp.sum(w * same)])


# --- reading metrics off confusion counts ------------------------------------


@dataclass(frozen=True)
class ClassCounts:
    """Per-class true/false positives/negatives, float64 ``[C]`` each."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @property
    def support(self) -> np.ndarray:
        return self.tp + self.fn

    @property
    def present(self) -> np.ndarray:
        """Classes that occur in the targets or in the predictions."""
        return (self.tp + self.fp + self.fn) > 0

    @property
    def counted(self) -> bool:
        """Whether any row (element, for multilabel) was counted: not every one ignored or of weight 0."""
        return bool((self.tp + self.fp + self.fn + self.tn).sum() > 0)


def class_counts(task: Task, cm: np.ndarray) -> ClassCounts:
    """Per-class counts from a ``ConfusionCounts`` state."""
    cm = np.asarray(cm, np.float64)
    if task.kind is TaskKind.MULTILABEL:
        return ClassCounts(tp=cm[:, 1, 1], fp=cm[:, 0, 1], fn=cm[:, 1, 0], tn=cm[:, 0, 0])
    tp = np.diag(cm).copy()
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return ClassCounts(tp=tp, fp=fp, fn=fn, tn=tn)


def per_class_values(values: np.ndarray) -> dict[str, float]:
    return {f"[{i}]": float(v) for i, v in enumerate(values)}


def average_ratio(
    task: Task,
    counts: ClassCounts,
    num: np.ndarray,
    den: np.ndarray,
    average: str,
    zero_division: float,
) -> dict[str, float]:
    """Average a per-class ratio ``num / den`` the scikit-learn way. Without a counted row every average is NaN
    (undefined: scikit-learn refuses empty input); per class (``none``) a zero denominator takes ``zero_division``."""
    values = safe_divide(num, den, zero_division)
    if average != "none" and not counts.counted:
        return {"": float("nan")}
    if average == "binary":
        return {"": float(values[1])}
    if average == "micro":
        return {"": float(safe_divide(num.sum(), den.sum(), zero_division))}
    if average == "none":
        return per_class_values(values)
    if average == "weighted":
        support = counts.support
        if not support.sum() > 0:  # no positive target in any label: scikit-learn's plain mean, NaN values left out
            kept = values[~np.isnan(values)]
            return {"": float(kept.mean()) if kept.size else float("nan")}
        return {"": float(safe_divide((values * support).sum(), support.sum(), zero_division))}
    if average == "macro":
        keep = np.ones_like(counts.present) if task.kind is TaskKind.MULTILABEL else counts.present
        return {"": float(values[keep].mean()) if keep.any() else float(zero_division)}
    raise ValueError(f"unknown average {average!r}; expected one of {', '.join(AVERAGES)}")


def _precision(task: Task, average: str, zero_division: float, cm: np.ndarray) -> dict[str, float]:
    c = class_counts(task, cm)
    return average_ratio(task, c, c.tp, c.tp + c.fp, average, zero_division)


def _recall(task: Task, average: str, zero_division: float, cm: np.ndarray) -> dict[str, float]:
    c = class_counts(task, cm)
    return average_ratio(task, c, c.tp, c.tp + c.fn, average, zero_division)


def _specificity(task: Task, average: str, zero_division: float, cm: np.ndarray) -> dict[str, float]:
    c = class_counts(task, cm)
    return average_ratio(task, c, c.tn, c.tn + c.fp, average, zero_division)


def _fbeta(task: Task, beta: float, average: str, zero_division: float, cm: np.ndarray) -> dict[str, float]:
    c = class_counts(task, cm)
    b2 = beta * beta
    return average_ratio(task, c, (1 + b2) * c.tp, (1 + b2) * c.tp + b2 * c.fn + c.fp, average, zero_division)


def _accuracy(task: Task, average: str, cm: np.ndarray) -> dict[str, float]:
    c = class_counts(task, cm)
    if task.kind is TaskKind.MULTILABEL:
        # Per-label accuracy (tp + tn) / total, as torchmetrics' MultilabelAccuracy.
        total = c.tp + c.fp + c.fn + c.tn
        return average_ratio(task, c, c.tp + c.tn, total, average, 0.0)
    if average in ("micro", "binary"):
        # no counted row (all ignored or of weight 0): undefined, as scikit-learn's mean of nothing
        return {"": float(safe_divide(np.trace(cm), np.sum(cm), np.nan))}
    # macro / weighted / none: per-class recall, as torchmetrics' MulticlassAccuracy.
    return average_ratio(task, c, c.tp, c.tp + c.fn, average, 0.0)


def _subset_accuracy(state: np.ndarray) -> dict[str, float]:
    return {"": float(safe_divide(state[1], state[0], np.nan))}  # NaN without a counted row


def _balanced_accuracy(task: Task, adjusted: bool, cm: np.ndarray) -> dict[str, float]:
    c = class_counts(task, cm)
    has_support = c.support > 0
    if not has_support.any():  # no counted row
        return {"": float("nan")}
    recall = c.tp[has_support] / c.support[has_support]
    score = float(recall.mean())
    if adjusted:
        chance = 1.0 / has_support.sum()
        # One class present: chance is 1 and the adjusted score is undefined: NaN (scikit-learn divides by 0: -inf,
        # or NaN for a perfect score)
        score = (score - chance) / (1.0 - chance) if chance < 1.0 else float("nan")
    return {"": score}


def _matthews(cm: np.ndarray) -> dict[str, float]:
    cm = np.asarray(cm, np.float64)
    n = cm.sum()
    if n == 0:  # no counted row
        return {"": float("nan")}
    cm = cm / n  # (shares of the weight: products of weighted sums left float64's range at weights of 1e100)
    t_sum = cm.sum(axis=1)
    p_sum = cm.sum(axis=0)
    n = cm.sum()
    correct = np.trace(cm)
    cov_ytyp = correct * n - t_sum @ p_sum
    # n^2 - sum_i s_i^2 as sum_i s_i (n - s_i), n = sum_i s_i: never below 0, and exactly 0 where one class holds every
    # row (n^2 - s @ s of weighted counts left rounding noise there, whose sign gave NaN or ~1e-9 instead of 0)
    cov_ypyp = p_sum @ (p_sum.sum() - p_sum)
    cov_ytyt = t_sum @ (t_sum.sum() - t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return {"": 0.0}
    return {"": float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))}


def _cohen_kappa(weights: str | None, cm: np.ndarray) -> dict[str, float]:
    cm = np.asarray(cm, np.float64)
    c = cm.shape[0]
    total = cm.sum()
    if total == 0:
        return {"": float("nan")}
    cm = cm / total  # (shares of the weight: the products below stay in float64's range at any scale of weights)
    total = cm.sum()
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / total
    idx = np.arange(c)
    if weights is None or weights == "none":
        w = 1.0 - np.eye(c)
    elif weights == "linear":
        w = np.abs(idx[:, None] - idx[None, :]).astype(np.float64)
    elif weights == "quadratic":
        w = ((idx[:, None] - idx[None, :]) ** 2).astype(np.float64)
    else:
        raise ValueError(f"unknown kappa weights {weights!r}; expected none, linear or quadratic")
    den = (w * expected).sum()
    if den == 0:
        return {"": float("nan")}
    return {"": float(1.0 - (w * cm).sum() / den)}


def normalized_confusion(normalize: str | None, cm: np.ndarray) -> dict[str, object]:
    """A confusion matrix (``[C, C]`` or ``[L, 2, 2]``) as counts or normalized over ``true`` rows, ``pred``
    columns or ``all`` cells (a zero total gives 0), under the key ``""``."""
    cm = np.asarray(cm, np.float64)
    if normalize in (None, "none"):
        out = cm
    elif normalize == "true":
        out = safe_divide(cm, cm.sum(axis=-1, keepdims=True), 0.0)
    elif normalize == "pred":
        out = safe_divide(cm, cm.sum(axis=-2, keepdims=True), 0.0)
    elif normalize == "all":
        out = safe_divide(cm, cm.sum(axis=(-2, -1), keepdims=True), 0.0)
    else:
        raise ValueError(f"unknown normalize {normalize!r}; expected true, pred, all or none")
    return {"": out}


def _top_k_accuracy(average: str, state: np.ndarray) -> dict[str, float]:
    support, hits = state
    if average != "none" and not support.sum() > 0:  # no counted row
        return {"": float("nan")}
    if average == "micro":
        return {"": float(safe_divide(hits.sum(), support.sum(), 0.0))}
    recall = safe_divide(hits, support, 0.0)
    if average == "none":
        return per_class_values(recall)
    if average == "weighted":
        return {"": float(safe_divide((recall * support).sum(), support.sum(), 0.0))}
    if average == "macro":
        keep = support > 0
        return {"": float(recall[keep].mean()) if keep.any() else 0.0}
    raise ValueError(f"unknown average {average!r} for top-k accuracy; expected micro, macro, weighted or none")


# --- catalogue factories ------------------------------------------------------


def default_average(task: Task) -> str:
    return "binary" if task.kind is TaskKind.BINARY else "macro"


def check_average(task: Task, average: str, allowed: tuple[str, ...] = AVERAGES) -> str:
    if average not in allowed:
        offered = [a for a in allowed if a != "binary" or task.kind is TaskKind.BINARY]
        hint = (
            " (scikit-learn's `samples`, a mean over rows of each row's value, is not one of evalpipe's averages)"
            if average == "samples"
            else ""
        )
        raise ValueError(f"average must be one of {', '.join(offered)} for a {task.kind} task; got {average!r}{hint}")
    if average == "binary" and task.kind is not TaskKind.BINARY:
        raise ValueError(f"average 'binary' needs a binary task; this task is {task.kind}")
    return average


def require_kind(task: Task, metric: str, *kinds: TaskKind) -> None:
    if task.kind not in kinds:
        names = ", ".join(str(k) for k in kinds)
        raise ValueError(f"{metric} is defined for {names} tasks, not {task.kind}")


_CLASSIFICATION = (TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.MULTILABEL)
_SINGLE_LABEL = (TaskKind.BINARY, TaskKind.MULTICLASS)


def accuracy(task: Task, *, average: str | None = None, top_k: int = 1) -> DerivedMetric:
    """Fraction of correct predictions (multilabel default: exact-match subset accuracy)."""
    require_kind(task, "accuracy", *_CLASSIFICATION)
    if top_k > 1:
        require_kind(task, "top-k accuracy", TaskKind.MULTICLASS)
        if not task.has_scores:
            raise ValueError("top_k > 1 needs class scores, not predicted labels")
        if top_k > task.classes:  # (every row would count as a hit: torchmetrics refuses it too)
            raise ValueError(
                f"top_k {top_k} is more than the task's {task.classes} classes; expected 1 to {task.classes}"
            )
        avg = check_average(task, average or "micro", ("micro", "macro", "weighted", "none"))
        return DerivedMetric("accuracy", TopKHits(task, int(top_k)), partial(_top_k_accuracy, avg), value_range=RATIO)
    if task.kind is TaskKind.MULTILABEL and average in (None, "subset"):
        return DerivedMetric(
            "accuracy", SubsetMatch(task), _subset_accuracy, description="exact-match ratio", value_range=RATIO
        )
    avg = check_average(task, average or "micro")
    return DerivedMetric("accuracy", ConfusionCounts(task), partial(_accuracy, task, avg), value_range=RATIO)


def precision(task: Task, *, average: str | None = None, zero_division: float = 0.0) -> DerivedMetric:
    """tp / (tp + fp)."""
    require_kind(task, "precision", *_CLASSIFICATION)
    avg = check_average(task, average or default_average(task))
    finalize = partial(_precision, task, avg, zero_division)
    return DerivedMetric("precision", ConfusionCounts(task), finalize, value_range=RATIO)


def recall(task: Task, *, average: str | None = None, zero_division: float = 0.0) -> DerivedMetric:
    """tp / (tp + fn)."""
    require_kind(task, "recall", *_CLASSIFICATION)
    avg = check_average(task, average or default_average(task))
    return DerivedMetric("recall", ConfusionCounts(task), partial(_recall, task, avg, zero_division), value_range=RATIO)


def sensitivity(task: Task, *, average: str | None = None, zero_division: float = 0.0) -> DerivedMetric:
    """Recall under its clinical name: tp / (tp + fn)."""
    metric = recall(task, average=average, zero_division=zero_division)
    return replace(metric, name="sensitivity")


def specificity(task: Task, *, average: str | None = None, zero_division: float = 0.0) -> DerivedMetric:
    """tn / (tn + fp)."""
    require_kind(task, "specificity", *_CLASSIFICATION)
    avg = check_average(task, average or default_average(task))
    finalize = partial(_specificity, task, avg, zero_division)
    return DerivedMetric("specificity", ConfusionCounts(task), finalize, value_range=RATIO)


def fbeta_score(
    task: Task, *, beta: float = 1.0, average: str | None = None, zero_division: float = 0.0
) -> DerivedMetric:
    """(1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp)."""
    require_kind(task, "fbeta_score", *_CLASSIFICATION)
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    avg = check_average(task, average or default_average(task))
    finalize = partial(_fbeta, task, float(beta), avg, zero_division)
    return DerivedMetric("fbeta_score", ConfusionCounts(task), finalize, value_range=RATIO)


def f1_score(task: Task, *, average: str | None = None, zero_division: float = 0.0) -> DerivedMetric:
    """Harmonic mean of precision and recall."""
    metric = fbeta_score(task, beta=1.0, average=average, zero_division=zero_division)
    return replace(metric, name="f1_score")


def balanced_accuracy(task: Task, *, adjusted: bool = False) -> DerivedMetric:
    """Mean recall over the classes present in the targets (scikit-learn)."""
    require_kind(task, "balanced_accuracy", *_SINGLE_LABEL)
    finalize = partial(_balanced_accuracy, task, adjusted)
    return DerivedMetric(
        "balanced_accuracy", ConfusionCounts(task), finalize, value_range=CORRELATION if adjusted else RATIO
    )


def matthews_corrcoef(task: Task) -> DerivedMetric:
    """Matthews correlation coefficient (multiclass generalisation, R_K)."""
    require_kind(task, "matthews_corrcoef", *_SINGLE_LABEL)
    return DerivedMetric("matthews_corrcoef", ConfusionCounts(task), _matthews, value_range=CORRELATION)


def cohen_kappa(task: Task, *, weights: str | None = None) -> DerivedMetric:
    """Cohen's kappa between predicted and true labels; ``weights``: none, linear, quadratic."""
    require_kind(task, "cohen_kappa", *_SINGLE_LABEL)
    _cohen_kappa(weights, np.eye(2))  # validates ``weights`` early
    finalize = partial(_cohen_kappa, weights)
    return DerivedMetric("cohen_kappa", ConfusionCounts(task), finalize, value_range=CORRELATION)


def confusion_matrix(task: Task, *, normalize: str | None = None) -> DerivedMetric:
    """``[C, C]`` counts (rows: true class, columns: predicted); ``[L, 2, 2]`` for multilabel."""
    require_kind(task, "confusion_matrix", *_CLASSIFICATION)
    normalized_confusion(normalize, np.eye(2))
    return DerivedMetric(
        "confusion_matrix", ConfusionCounts(task), partial(normalized_confusion, normalize), direction=Direction.INFO
    )
