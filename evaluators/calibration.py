"""Probability quality: log loss, Brier score and binned calibration error.

Confidence and accuracy follow torchmetrics' calibration error:

* binary: confidence is the predicted probability of class 1 and the
  "accuracy" is the target (so a perfectly calibrated binary model has
  ECE 0);
* multiclass: confidence is the top-class probability, accuracy whether the
  top class is the target.

Bins are ``n_bins`` equal-width intervals ``[i/n, (i+1)/n)`` of ``[0, 1]``,
the last one closed; the expected and maximum calibration error, as
torchmetrics' (``torch.bucketize(..., right=True)`` puts 1 past the last
edge), count a confidence of exactly 1 in a bin of its own after them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import ClassVar

import numpy as np

from evaluators.classification import require_kind
from evaluators.kernels import (
    FIXED_SUM_LIMIT,
    add_rows,
    array_namespace,
    fixed_bincount,
    fixed_sum,
    from_fixed,
    in_cache_steps,
    refuse_cell_sums,
    refuse_light_total,
    refuse_wrapped_sums,
    safe_divide,
    to_fixed,
)
from evaluators.lazyjax import jnp
from evaluators.statistic import NON_NEGATIVE, RATIO, Batch, DerivedMetric, Direction, State, Statistic, tree_add
from evaluators.task import (
    PredictionKind,
    Task,
    TaskKind,
    class_probabilities,
    positive_scores,
    top_class,
    valid_weights,
)

_PROBABILISTIC = (TaskKind.BINARY, TaskKind.MULTICLASS)


def _weighted_sum_zero() -> State:
    return (np.zeros((), np.float64), np.zeros(2, np.int64))


def _sums_by_group(group: np.ndarray, groups: int, w: np.ndarray, values: np.ndarray) -> list[State]:
    """Per group, the ``(weight, fixed-point sum)`` of :func:`_add_weighted` over its rows alone."""
    weight, total = np.bincount(group, w, groups), fixed_bincount(group, w * values, groups)
    return [(weight[g], total[g]) for g in range(groups)]


def _add_weighted(state: State, w: jnp.ndarray, values: jnp.ndarray) -> State:
    weight, total = state
    return weight + array_namespace(w).sum(w), total + fixed_sum(w * values)


class FixedPointSums:
    """Mixed into a statistic whose state's second leaf sums weight x value of non-negative values in fixed point
    (``[..., 2]`` int64, :func:`~evaluators.kernels.to_fixed`): batches that weigh too much, and sums that leave
    int64 across batches and merges, are refused (:class:`~evaluators.kernels.WeightRangeError`) instead of
    wrapping into a wrong value."""

    summed: ClassVar[str] = "this metric"
    """What the sums are, for the error message."""

    def largest_row_value(self) -> float:
        """The largest value one row adds per unit of weight."""
        return 1.0

    def cell_sums(self, batch: Batch) -> np.ndarray:
        """A host batch's weighted values summed into each of the state's fixed-point cells (float64 ``[cells]``),
        with NumPy: what the update would add to each."""
        raise NotImplementedError

    def refuse_batch(self, batch: Batch) -> None:
        """The batch's weights times :meth:`largest_row_value` while that stays below the limit; past it, the sum
        each cell would get (so heavy weights on small values, or spread over many cells, still count)."""
        if float(np.sum(batch["weights"])) * self.largest_row_value() < FIXED_SUM_LIMIT:
            return
        refuse_cell_sums(self.cell_sums(batch), self.summed)

    def refuse_state(self, state: State) -> None:
        refuse_wrapped_sums(state[1], self.summed)

    def state_weight(self, state: State) -> float:
        """The rows' total weight: the first leaf, summed (one weight per row in all)."""
        return float(np.sum(state[0]))

    def refuse_light(self, state: State, rows: int) -> None:
        refuse_light_total(self.state_weight(state), rows, self.summed)

    def merge(self, a: State, b: State) -> State:
        merged = tree_add(a, b)
        self.refuse_state(merged)
        return merged


def _host_batch(batch: Batch) -> dict[str, np.ndarray]:
    """A batch's columns as NumPy arrays (the conversions then take their NumPy paths)."""
    return {k: np.asarray(v) for k, v in batch.items()}


def require_probabilities(task: Task, name: str) -> None:
    require_kind(task, name, *_PROBABILISTIC)
    if not task.has_scores:
        raise ValueError(f"{name} needs probabilities or logits, not predicted labels")


@dataclass(frozen=True)
class LogLossSum(FixedPointSums, Statistic):
    """Weighted sum of negative log-likelihoods.

    State: ``(weight float64, loss sum int64 fixed point)``; see :func:`to_fixed`.

    Probabilities are clipped to ``[eps, 1 - eps]`` first (scikit-learn clips
    at the machine epsilon of the input dtype; the default here is float64's).
    """

    task: Task
    eps: float = float(np.finfo(np.float64).eps)
    jittable: ClassVar[bool] = False
    """NumPy's logarithm in every update, so that the bits never depend on which path folded a batch: XLA's
    ``log`` and NumPy's vectorised one may end a few rows one unit apart in the last place (as on CPUs with
    AVX-512), and the fixed-point sum keeps that unit."""

    summed: ClassVar[str] = "log loss"

    def zero(self) -> State:
        return _weighted_sum_zero()

    def largest_row_value(self) -> float:
        return -math.log(min(self.eps, 0.5))  # (probabilities are clipped to [eps, 1 - eps])

    def cell_sums(self, batch: Batch) -> np.ndarray:
        w, loss = self._weighted_losses(_host_batch(batch))
        return np.array([np.sum(w * loss)])

    def update_grouped(self, batch: Batch, stacked: State, group: np.ndarray) -> State:
        weight, total = (np.array(leaf) for leaf in stacked)
        order = np.argsort(group, kind="stable")
        bounds = np.flatnonzero(np.diff(group[order])) + 1
        for rows in np.split(order, bounds) if len(order) else ():
            g = group[rows[0]]
            weight[g], total[g] = self.update((weight[g], total[g]), {k: v[rows] for k, v in batch.items()})
        return weight, total

    def update(self, state: State, batch: Batch) -> State:
        return in_cache_steps(self._update_rows, state, batch)

    def folds_groups_on_host(self) -> bool:
        return True

    def rows_by_group(self, batch: Batch, group: np.ndarray, groups: int) -> list[State]:
        return _sums_by_group(group, groups, *self._weighted_losses(batch))

    def _update_rows(self, state: State, batch: Batch) -> State:
        return _add_weighted(state, *self._weighted_losses(batch))

    def _weighted_losses(self, batch: Batch) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``(weight, loss)`` per row."""
        xp = array_namespace(batch["weights"])
        targets, w = valid_weights(self.task, xp.asarray(batch["targets"]), batch["weights"])
        preds = xp.asarray(batch["predictions"])
        if self.task.kind is TaskKind.BINARY:
            p = xp.clip(positive_scores(self.task, preds).astype(xp.float64), self.eps, 1 - self.eps)
            # one logarithm per row, of the probability given to the true class (as scikit-learn)
            loss = -xp.log(xp.where(targets == 1, p, 1 - p))
        else:
            if self.task.prediction is not PredictionKind.LOGITS:  # the true class's column only, then float64
                preds = xp.take_along_axis(preds, targets[:, None].astype(xp.int32), axis=1)
                targets = xp.zeros_like(targets)
            probs = class_probabilities(self.task, preds).astype(xp.float64)
            p = xp.take_along_axis(probs, targets[:, None].astype(xp.int32), axis=1)[:, 0]
            loss = -xp.log(xp.clip(p, self.eps, 1 - self.eps))
        return w, loss


@dataclass(frozen=True)
class BrierSum(FixedPointSums, Statistic):
    """Weighted sum of squared probability errors. State: ``(weight float64, sum int64 fixed point)``.

    Binary: ``(p - y)^2``; multiclass: ``sum_c (p_c - [y == c])^2``.
    """

    task: Task
    summed: ClassVar[str] = "the Brier score"

    def zero(self) -> State:
        return _weighted_sum_zero()

    def largest_row_value(self) -> float:
        return 1.0 if self.task.kind is TaskKind.BINARY else 2.0

    def cell_sums(self, batch: Batch) -> np.ndarray:
        w, err = self._weighted_errors(_host_batch(batch))
        return np.array([np.sum(w * err)])

    def runs_on_host(self) -> bool:
        # the multiclass sum of squares is a dot product, whose order of additions is the backend's
        return self.task.kind is TaskKind.BINARY and self.task.converts_on_host

    def folds_fast_on_host(self) -> bool:
        return self.runs_on_host()

    def update(self, state: State, batch: Batch) -> State:
        return in_cache_steps(self._update_rows, state, batch)

    def folds_groups_on_host(self) -> bool:
        return self.runs_on_host()

    def rows_by_group(self, batch: Batch, group: np.ndarray, groups: int) -> list[State]:
        return _sums_by_group(group, groups, *self._weighted_errors(batch))

    def _update_rows(self, state: State, batch: Batch) -> State:
        return _add_weighted(state, *self._weighted_errors(batch))

    def _weighted_errors(self, batch: Batch) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``(weight, squared error)`` per row."""
        xp = array_namespace(batch["weights"])
        targets, w = valid_weights(self.task, xp.asarray(batch["targets"]), batch["weights"])
        preds = xp.asarray(batch["predictions"])
        if self.task.kind is TaskKind.BINARY:
            p = positive_scores(self.task, preds).astype(xp.float64)
            err = (p - targets) ** 2
        else:
            probs = class_probabilities(self.task, preds).astype(xp.float64)
            # sum_c (p_c - [y == c])^2 = sum_c p_c^2 - 2 p_y + 1: a row-wise dot product (vectorised)
            # instead of a one-hot array
            p_true = xp.take_along_axis(probs, targets[:, None].astype(xp.int32), axis=1)[:, 0]
            # (never below 0: a sum of squares; a rounding below it would read as a wrapped sum)
            err = xp.maximum(xp.einsum("nc,nc->n", probs, probs) - 2.0 * p_true + 1.0, 0.0)
        return w, err


def confidence_and_accuracy(task: Task, batch: Batch) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """``(confidence, accuracy, weight)``, each ``[n]``, as torchmetrics' calibration error (binned with the edges
    of the predictions' dtype: :func:`edges_dtype`)."""
    xp = array_namespace(batch["weights"])
    targets, w = valid_weights(task, xp.asarray(batch["targets"]), batch["weights"])
    preds = xp.asarray(batch["predictions"])
    if task.kind is TaskKind.BINARY:
        return positive_scores(task, preds).astype(xp.float64), targets.astype(xp.float64), w
    # the top class as the confusion counts find it (for probabilities XLA computes it once for both)
    confidence, label = top_class(task, class_probabilities(task, preds))
    return confidence, (label == targets).astype(xp.float64), w


@dataclass(frozen=True)
class CalibrationBins(FixedPointSums, Statistic):
    """Per-bin weight, confidence sum and accuracy sum over ``n_bins`` equal-width bins and one more slot, last,
    for the confidences of exactly 1 (at or above 1), which torchmetrics' calibration error bins on their own.

    State: ``(weight float64 [n_bins + 1], confidence sum int64 fixed point [n_bins + 1, 2],
    accuracy sum float64 [n_bins + 1], squared weight float64 [n_bins + 1])``; :func:`fold_ones` gives the
    ``n_bins`` bins with the slot in the last. The squared weights (Kish's effective count of a bin,
    ``weight**2 / squared weight``, for the debiased ECE of intervals) are absent from runs stored before them: read
    as the weights, rows of weight 1 (:func:`with_squared_weights`).
    """

    task: Task
    n_bins: int = 15
    closed: str = "left"
    """``"left"``: torchmetrics' bins ``[edge_i, edge_i+1)`` (its edges, :func:`bin_edges`), the calibration errors';
    ``"right"``: scikit-learn's ``calibration_curve``, ``(edge_i, edge_i+1]`` with NumPy's edges (the first bin closed),
    the reliability diagram's. The two differ only for a confidence on an inner edge."""
    summed: ClassVar[str] = "the calibration bins' confidence"

    def stored_reprs(self, approximately: bool = False) -> tuple[str, ...]:
        """Runs stored before the reliability diagram closed its bins on the right kept one state of left-closed
        bins (its repr without ``closed``) for the calibration errors and the diagram alike: the calibration errors'
        own, which the diagram reads only ``approximately`` (a confidence on an inner edge one bin higher)."""
        legacy = f"CalibrationBins(task={self.task!r}, n_bins={self.n_bins!r})"
        return (repr(self), legacy) if self.closed == "left" or approximately else (repr(self),)

    def slots(self, confidence: jnp.ndarray, predictions: jnp.ndarray) -> jnp.ndarray:
        """Each confidence's slot: its bin, or ``n_bins`` for confidences of 1 (and above)."""
        if self.closed == "right":
            return right_closed_slot(confidence, self.n_bins)
        return calibration_slot(confidence, self.n_bins, edges_dtype(predictions))

    def cell_sums(self, batch: Batch) -> np.ndarray:
        confidence, _, w = confidence_and_accuracy(self.task, _host_batch(batch))
        slot = self.slots(confidence, np.asarray(batch["predictions"]))
        return np.bincount(slot, w * confidence, self.n_bins + 1)

    def zero(self) -> State:
        slots = self.n_bins + 1
        return (np.zeros(slots), np.zeros((slots, 2), np.int64), np.zeros(slots), np.zeros(slots))

    def runs_on_host(self) -> bool:
        return self.task.converts_on_host

    def folds_fast_on_host(self) -> bool:
        return self.task.kind is TaskKind.BINARY and self.runs_on_host()

    def update(self, state: State, batch: Batch) -> State:
        return in_cache_steps(self._update_rows, state, batch)

    def folds_groups_on_host(self) -> bool:
        return self.runs_on_host()

    def rows_by_group(self, batch: Batch, group: np.ndarray, groups: int) -> list[State]:
        slots = self.n_bins + 1
        confidence, correct, w = confidence_and_accuracy(self.task, batch)
        cell = group * slots + self.slots(confidence, batch["predictions"])
        count, acc, squares = (
            np.bincount(cell, v, groups * slots).reshape(groups, slots) for v in (w, w * correct, w * w)
        )
        conf = fixed_bincount(cell, w * confidence, groups * slots).reshape(groups, slots, 2)
        return [(count[g], conf[g], acc[g], squares[g]) for g in range(groups)]

    def _update_rows(self, state: State, batch: Batch) -> State:
        confidence, correct, w = confidence_and_accuracy(self.task, batch)
        xp = array_namespace(w)
        slots = self.n_bins + 1
        index = self.slots(confidence, batch["predictions"])
        count, conf, acc, squares = with_squared_weights(state)
        if xp is np:  # (the bincounts add_rows takes on the host, without its [n, 2] stacks)
            weight = np.bincount(index, w, slots)
            return (
                count + weight,
                conf + fixed_bincount(index, w * confidence, slots),
                acc + np.bincount(index, w * correct, slots),
                squares + (weight if (w == 1).all() else np.bincount(index, w * w, slots)),  # (weights of 1: w * w = w)
            )
        sums = add_rows(xp.zeros((slots, 3), xp.float64), index, xp.stack([w, w * correct, w * w], axis=-1))
        return (
            count + sums[:, 0],
            conf + add_rows(xp.zeros((slots, 2), xp.int64), index, to_fixed(w * confidence)),
            acc + sums[:, 1],
            squares + sums[:, 2],
        )

    def merge(self, a: State, b: State) -> State:
        return super().merge(*(with_squared_weights(self._with_ones_slot(s)) for s in (a, b)))

    def _with_ones_slot(self, state: State) -> State:
        """``state`` (or a stack of states on leading axes) with the slot of confidences of 1: a state of
        ``n_bins`` slots, as runs stored before the slot existed, gets an empty one (its confidences of 1 stay
        in its last bin)."""
        if np.shape(state[0])[-1] == self.n_bins + 1:
            return state
        return _along_bins(state, lambda x, axis: np.concatenate([x, np.zeros_like(np.take(x, [0], axis))], axis))


def with_squared_weights(state: State) -> State:
    """A :class:`CalibrationBins` state (or a stack of them) with its squared weights: a state stored before them
    (three leaves) gets its weights, as rows of weight 1 have (what its debiased ECE read)."""
    return tuple(state) if len(state) == 4 else (*state, state[0] * 1.0)


def fold_ones(state: State, n_bins: int) -> State:
    """A :class:`CalibrationBins` state as its ``n_bins`` bins: the slot of confidences of exactly 1 added to the
    last bin, ``[(n-1)/n, 1]`` (scikit-learn's ``calibration_curve``); a state of ``n_bins`` slots (stored before
    the slot existed, its confidences of 1 in the last bin already) as it is."""
    if np.shape(state[0])[-1] == n_bins:
        return tuple(np.asarray(x) for x in state)

    def fold(x: np.ndarray, axis: int) -> np.ndarray:
        last_two = np.take(x, [n_bins - 1, n_bins], axis).sum(axis, keepdims=True)
        return np.concatenate([np.take(x, np.arange(n_bins - 1), axis), last_two], axis)

    return _along_bins(state, fold)


_BIN_AXES = (-1, -2, -1, -1)
"""The bin axis of each leaf of a :class:`CalibrationBins` state (weight, confidence sum pairs, accuracy sum, squared
weight; a state stored before the squared weights has the first three)."""


def _along_bins(state: State, fn: Callable[[np.ndarray, int], np.ndarray]) -> State:
    """``fn(leaf, bin axis)`` for each leaf of a :class:`CalibrationBins` state (or a stack of them)."""
    return tuple(fn(np.asarray(leaf), axis) for leaf, axis in zip(state, _BIN_AXES[: len(state)], strict=True))


COMPARED_EDGES = 64
"""Up to this many bins, a row's bin is the count of inner edges at or below it (vectorised compares);
above, a binary search."""


def calibration_slot(confidence: jnp.ndarray, n_bins: int, dtype: str = "float64") -> jnp.ndarray:
    """:func:`bin_index`, and ``n_bins`` (the slot of :class:`CalibrationBins` for confidences of 1) where
    ``confidence >= 1``. On the host in one pass of fewer operations than the two (the same integers)."""
    xp = array_namespace(confidence)
    if xp is not np:
        return xp.where(confidence >= 1.0, n_bins, bin_index(confidence, n_bins, dtype))
    edges = np.append(bin_edges(n_bins, dtype), np.nan)  # (the slot's edge is 1; nothing is >= NaN)
    scaled = np.multiply(confidence, n_bins, dtype=np.float64)
    guess = np.minimum(np.maximum(scaled, 0.0, out=scaled), n_bins, out=scaled).astype(np.intp)  # floor, in [0, n]
    guess -= confidence < edges[guess]  # (the edge of floor(c * n), moved by one where it is not c's)
    guess += confidence >= edges[guess + 1]
    return np.maximum(guess, 0, out=guess)  # (below 0: bin 0)


def right_closed_slot(confidence: jnp.ndarray, n_bins: int) -> jnp.ndarray:
    """scikit-learn's ``calibration_curve`` bin of each confidence, ``searchsorted(edges[1:-1], c)`` with NumPy's
    ``linspace(0, 1, n_bins + 1)`` edges (a confidence on an inner edge in the bin below it), and ``n_bins`` for
    confidences of 1 and above (the last bin's, once :func:`fold_ones` adds that slot to it)."""
    xp = array_namespace(confidence)
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    if xp is np:
        return np.where(confidence >= 1.0, n_bins, np.searchsorted(inner, confidence, side="left"))
    if n_bins <= COMPARED_EDGES:
        index = xp.sum(confidence[:, None] > xp.asarray(inner)[None, :], axis=1, dtype=xp.int32)
    else:
        index = xp.searchsorted(xp.asarray(inner), confidence, side="left").astype(xp.int32)
    return xp.where(confidence >= 1.0, n_bins, index)


@functools.cache
def bin_edges(n_bins: int, dtype: str = "float64") -> np.ndarray:
    """The ``n_bins + 1`` edges of torchmetrics' calibration bins, ``torch.linspace(0, 1, n_bins + 1)`` in the
    confidences' ``dtype`` (``"float32"`` or ``"float64"``), as float64 values: edge ``i`` is ``i * step`` below the
    middle and ``1 - (n_bins - i) * step`` from it on, each rounded once (PyTorch's CPU kernel, whose fused
    multiply-add rounds once), with ``step = 1 / n_bins`` rounded to ``dtype``. So a confidence of exactly 0.7
    (the float nearest 7/10) starts the bin ``[0.7, 0.8)`` of 10, as in torchmetrics; NumPy's ``linspace`` puts that
    edge one unit above 0.7 (0.7000000000000001) and the confidence one bin lower. Checked against ``torch.linspace``
    for up to 1,000 bins in both dtypes (``tests/test_calibration_regression_reference.py``)."""
    kind = np.float32 if dtype == "float32" else np.float64
    step = kind(1) / kind(n_bins)
    halfway = (n_bins + 1) // 2
    edges = [
        float(step * kind(i)) if i < halfway else float(kind(Fraction(1) - Fraction(float(step)) * (n_bins - i)))
        for i in range(n_bins + 1)
    ]
    out = np.array(edges, np.float64)
    out.flags.writeable = False
    return out


def edges_dtype(predictions: jnp.ndarray) -> str:
    """``"float32"`` for float32 predictions, else ``"float64"``: the dtype torchmetrics builds its bin edges in for
    binary predictions. (Its multiclass calibration error rounds every confidence to float32 first, so float64
    multiclass confidences on an edge may fall one bin apart from it: evalpipe bins them as given.)"""
    return "float32" if predictions.dtype == np.float32 else "float64"


def bin_index(confidence: jnp.ndarray, n_bins: int, dtype: str = "float64") -> jnp.ndarray:
    """Bin of each confidence among ``n_bins`` equal-width bins of [0, 1] (``[edge_i, edge_i+1)``, the last
    closed; values outside [0, 1] go to the end bins): ``searchsorted(edges, c, side="right") - 1``, clipped, with
    the edges of :func:`bin_edges` (torchmetrics') as constants on every device. (An XLA ``linspace`` rounds its edges
    by how it runs: on a GPU, op by op, an edge came out one unit off its compiled value.)"""
    xp = array_namespace(confidence)
    edges = bin_edges(n_bins, dtype)
    if xp is np:  # (the same bins as the search below: the edge of floor(c * n), moved by one where it is not c's)
        guess = np.clip(np.floor(confidence * n_bins), 0, n_bins - 1).astype(np.intp)
        guess -= confidence < edges[guess]
        guess += confidence >= edges[guess + 1]
        return np.clip(guess, 0, n_bins - 1)
    edges = xp.asarray(edges)
    if n_bins <= COMPARED_EDGES:  # (the same bins as the search below; faster compiled)
        inner = edges[1:-1]
        return xp.sum(confidence[:, None] >= inner[None, :], axis=1, dtype=xp.int32)
    return xp.clip(xp.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)


def _mean_of_sums(state: State) -> dict[str, float]:
    weight, total = state
    return {"": float(safe_divide(from_fixed(total), weight, float("nan")))}


def _bin_gaps(state: State) -> tuple[np.ndarray, np.ndarray]:
    count, conf, acc = state[:3]
    conf = from_fixed(conf)
    nonempty = count > 0
    gap = np.abs(safe_divide(acc, count, 0.0) - safe_divide(conf, count, 0.0))
    return gap, nonempty


def _ece(state: State) -> dict[str, float]:
    count = state[0]
    gap, _ = _bin_gaps(state)
    total = count.sum()
    return {"": float(np.sum(gap * count) / total) if total > 0 else float("nan")}


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _debiased_ece(state: State) -> dict[str, float]:
    """ECE with the first-order bias of ``|gap|`` removed bin by bin (Kumar et al., 2019).

    Each bin's observed gap ``g`` is taken as normal with standard error
    ``s = sqrt(a (1 - a) / (n - 1))`` (``a`` the bin's accuracy, ``n`` its effective count: Kish's
    ``weight**2 / squared weight``, its number of rows where every weight is 1, the same at any scale of the
    weights); the plug-in ``|g|`` overshoots ``|gap|`` by about ``E|N(g, s^2)| - |g|``, which is subtracted. The
    result can be slightly negative for a well-calibrated model.
    """
    count, conf, acc, squares = with_squared_weights(state)
    total = count.sum()
    if total <= 0:
        return {"": float("nan")}
    gap = safe_divide(acc, count, 0.0) - safe_divide(from_fixed(conf), count, 0.0)
    rate = np.clip(safe_divide(acc, count, 0.0), 0.0, 1.0)
    rows = np.where(squares == count, count, safe_divide(count * count, squares, 0.0))  # (weights of 1: the count)
    se = np.sqrt(safe_divide(rate * (1.0 - rate), np.maximum(rows - 1.0, 0.0), 0.0))
    z = safe_divide(gap, se, 0.0)
    folded = np.where(
        se > 0,
        se * np.sqrt(2.0 / np.pi) * np.exp(-0.5 * z * z) + gap * _erf(z / np.sqrt(2.0)),
        np.abs(gap),
    )
    return {"": float(np.sum(count * (2.0 * np.abs(gap) - folded)) / total)}


def _mce(state: State) -> dict[str, float]:
    gap, nonempty = _bin_gaps(state)
    return {"": float(gap[nonempty].max()) if nonempty.any() else float("nan")}


def _reliability(n_bins: int, state: State) -> dict[str, object]:
    count, conf, acc = fold_ones(state, n_bins)[:3]
    conf = from_fixed(conf)
    return {
        ".confidence": safe_divide(conf, count, float("nan")),
        ".accuracy": safe_divide(acc, count, float("nan")),
        ".count": count.copy(),
    }


def log_loss(task: Task, *, eps: float = float(np.finfo(np.float64).eps)) -> DerivedMetric:
    """Mean negative log-likelihood of the targets (cross-entropy)."""
    require_probabilities(task, "log_loss")
    stat = LogLossSum(task, float(eps))
    return DerivedMetric("log_loss", stat, _mean_of_sums, Direction.LOWER, unit="nats", value_range=NON_NEGATIVE)


def brier_score(task: Task) -> DerivedMetric:
    """Mean squared error of the predicted probabilities."""
    require_probabilities(task, "brier_score")
    most = 2.0 if task.kind is TaskKind.MULTICLASS else 1.0  # (a multiclass row's squares over its classes: 2 at most)
    return DerivedMetric("brier_score", BrierSum(task), _mean_of_sums, Direction.LOWER, value_range=(0.0, most))


DEFAULT_BINS = 15
"""Bins of the binned calibration metrics when neither ``num_bins`` nor ``n_bins`` is given (torchmetrics')."""


def check_bins(num_bins: int | None, n_bins: int | None = None, default: int = DEFAULT_BINS) -> int:
    """The number of bins from ``num_bins`` (calibrax's name) or its alias ``n_bins`` (torchmetrics'), checked."""
    if num_bins is not None and n_bins is not None and num_bins != n_bins:
        raise ValueError(f"num_bins={num_bins!r} and n_bins={n_bins!r} disagree: give one of them")
    bins = default if num_bins is None and n_bins is None else num_bins if num_bins is not None else n_bins
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or not 1 <= bins <= 100_000:
        raise ValueError(f"num_bins must be an integer between 1 and 100000, got {bins!r}")
    return int(bins)


def expected_calibration_error(task: Task, *, num_bins: int | None = None, n_bins: int | None = None) -> DerivedMetric:
    """Weighted mean over bins of |accuracy - confidence| (L1 calibration error)."""
    require_probabilities(task, "expected_calibration_error")
    stat = CalibrationBins(task, check_bins(num_bins, n_bins))
    return DerivedMetric("expected_calibration_error", stat, _ece, Direction.LOWER, interval_values=_debiased_ece)


def maximum_calibration_error(task: Task, *, num_bins: int | None = None, n_bins: int | None = None) -> DerivedMetric:
    """Largest |accuracy - confidence| over non-empty bins."""
    require_probabilities(task, "maximum_calibration_error")
    stat = CalibrationBins(task, check_bins(num_bins, n_bins))
    return DerivedMetric("maximum_calibration_error", stat, _mce, Direction.LOWER, value_range=RATIO)


def reliability_diagram(task: Task, *, num_bins: int | None = None, n_bins: int | None = None) -> DerivedMetric:
    """Per-bin mean confidence, accuracy and weight: the data of a reliability diagram."""
    require_probabilities(task, "reliability_diagram")
    stat = CalibrationBins(task, check_bins(num_bins, n_bins), closed="right")  # (scikit-learn's bins)
    parts = ((".confidence", RATIO), (".accuracy", RATIO), (".count", NON_NEGATIVE))
    value_of = partial(_reliability, stat.n_bins)
    return DerivedMetric("reliability_diagram", stat, value_of, Direction.INFO, part_ranges=parts)
