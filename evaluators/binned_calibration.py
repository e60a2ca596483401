"""Calibration read off finer or per-class bins: Brier decomposition, classwise ECE and adaptive ECE.

* :class:`ClasswiseBins` bins every class's probability separately (``K = 2`` columns ``1 - p, p`` for a
  binary task, ``C`` for multiclass) and keeps, per class and bin, the weight, the probability sum and the
  sum of hits ``[y == k]``. Murphy's Brier decomposition and the classwise ECE of Kull et al. (2019) both
  read it.
* The adaptive (equal-mass) calibration error reads a fine equal-width
  :class:`~evaluators.calibration.CalibrationBins` (``ADAPTIVE_FINE_BINS`` bins) and groups consecutive
  fine bins into ``num_bins`` bins of about equal weight when it computes, so its state merges by addition
  like every other binned statistic and needs no first pass over the data.

Bins are the equal-width bins of :func:`~evaluators.calibration.bin_index` (``[i/n, (i+1)/n)``, the last
closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from evaluators.calibration import (
    CalibrationBins,
    FixedPointSums,
    bin_index,
    check_bins,
    fold_ones,
    require_probabilities,
)
from evaluators.classification import per_class_values
from evaluators.kernels import from_fixed, safe_divide, to_fixed
from evaluators.lazyjax import jnp
from evaluators.statistic import NON_NEGATIVE, RATIO, Batch, DerivedMetric, Direction, State, Statistic
from evaluators.task import Task, TaskKind, class_probabilities, positive_scores, valid_weights

ADAPTIVE_FINE_BINS = 1 << 12
"""Equal-width bins of confidence under the adaptive calibration error: equal-mass bin edges are placed at
fine-bin edges, so rows whose confidences lie within one fine bin (1/4096 wide) always share a bin."""


@dataclass(frozen=True)
class ClasswiseBins(FixedPointSums, Statistic):
    """Per class ``k`` and bin ``b``: weight, sum of ``p_k`` and sum of ``[y == k]``.

    State: ``(weight float64 [K, n_bins], probability sum int64 fixed point [K, n_bins, 2],
    hit sum float64 [K, n_bins])`` with ``K = 2`` for binary (classes 0 and 1, probabilities ``1 - p``
    and ``p``) and ``K = C`` for multiclass.
    """

    task: Task
    n_bins: int = 15
    summed: ClassVar[str] = "the classwise calibration bins' probability"

    @property
    def classes(self) -> int:
        return 2 if self.task.kind is TaskKind.BINARY else int(self.task.num_classes)

    def state_weight(self, state: State) -> float:
        return float(np.sum(state[0][0]))  # (each row weighs in every class's bins: class 0's hold each row once)

    def zero(self) -> State:
        k, b = self.classes, self.n_bins
        return (np.zeros((k, b)), np.zeros((k, b, 2), np.int64), np.zeros((k, b)))

    def _cells(self, batch: Batch, xp: ModuleType) -> tuple[Any, Any, Any, Any]:
        """``(targets [n], weights [n], class probabilities [n, K], each (row, class)'s cell [n * K])`` with
        ``xp`` (NumPy for a host check, ``jax.numpy`` in the update)."""
        targets, w = valid_weights(self.task, xp.asarray(batch["targets"]), xp.asarray(batch["weights"]))
        preds = xp.asarray(batch["predictions"])
        if self.task.kind is TaskKind.BINARY:
            p = positive_scores(self.task, preds).astype(xp.float64)
            probs = xp.stack([1.0 - p, p], axis=1)
        else:
            probs = class_probabilities(self.task, preds).astype(xp.float64)
        k, b = self.classes, self.n_bins
        cell = (bin_index(probs.reshape(-1), b).reshape(probs.shape) + xp.arange(k)[None, :] * b).reshape(-1)
        return targets, w, probs, cell

    def cell_sums(self, batch: Batch) -> np.ndarray:
        _, w, probs, cell = self._cells(batch, np)
        return np.bincount(cell, (w[:, None] * probs).reshape(-1), self.classes * self.n_bins)

    def update(self, state: State, batch: Batch) -> State:
        targets, w, probs, cell = self._cells(batch, jnp)
        k, b = self.classes, self.n_bins
        hits = (targets[:, None] == jnp.arange(k)[None, :]).astype(jnp.float64)
        weight = jnp.broadcast_to(w[:, None], probs.shape)
        count, prob_sum, hit_sum = state
        return (
            count + jnp.zeros(k * b, jnp.float64).at[cell].add(weight.reshape(-1)).reshape(k, b),
            prob_sum
            + jnp.zeros((k * b, 2), jnp.int64).at[cell].add(to_fixed((weight * probs).reshape(-1))).reshape(k, b, 2),
            hit_sum + jnp.zeros(k * b, jnp.float64).at[cell].add((weight * hits).reshape(-1)).reshape(k, b),
        )


def _class_terms(state: State) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(weight [K, B], mean probability [K, B], hit rate [K, B], total weight)``; empty bins read 0."""
    count, prob_sum, hit_sum = state
    total = float(count[0].sum())
    return count, safe_divide(from_fixed(prob_sum), count, 0.0), safe_divide(hit_sum, count, 0.0), total


def _brier_decomposition(binary: bool, state: State) -> dict[str, float]:
    """Murphy's decomposition over bins, summed over classes (class 1 alone for a binary task):
    reliability ``sum_b n_b (f_b - o_b)^2 / N``, resolution ``sum_b n_b (o_b - o)^2 / N``,
    uncertainty ``o (1 - o)``."""
    count, mean_prob, hit_rate, total = _class_terms(state)
    if total <= 0:
        nan = float("nan")
        return {".reliability": nan, ".resolution": nan, ".uncertainty": nan}
    if binary:
        count, mean_prob, hit_rate = count[1:], mean_prob[1:], hit_rate[1:]
    base = (count * hit_rate).sum(axis=1, keepdims=True) / total
    return {
        ".reliability": float((count * (mean_prob - hit_rate) ** 2).sum() / total),
        ".resolution": float((count * (hit_rate - base) ** 2).sum() / total),
        ".uncertainty": float((base * (1.0 - base)).sum()),
    }


def _classwise_ece(state: State) -> dict[str, object]:
    """Kull et al.'s classwise ECE: the mean over classes of ``sum_b n_kb |o_kb - f_kb| / N``, and each
    class's term as ``[k]``."""
    count, mean_prob, hit_rate, total = _class_terms(state)
    if total <= 0:
        return {"": float("nan")}
    per_class = (count * np.abs(hit_rate - mean_prob)).sum(axis=1) / total
    return {"": float(per_class.mean()), **per_class_values(per_class)}


def equal_mass_groups(weight: np.ndarray, num_bins: int) -> np.ndarray:
    """Group of each fine bin for ``num_bins`` bins of about equal weight: ``floor(num_bins * W_below / W)``
    (capped at ``num_bins - 1``), where ``W_below`` is the weight of the fine bins before it, so rows are
    never split from equal-confidence rows. int ``[F]``."""
    total = weight.sum()
    below = np.cumsum(weight) - weight
    edges = np.arange(1, num_bins, dtype=np.float64) * total
    # below * num_bins >= k * total, compared without a division
    return np.sum(below[:, None] * num_bins >= edges[None, :], axis=1)


def _adaptive_ece(num_bins: int, state: State) -> dict[str, float]:
    count, conf, acc = fold_ones(state, ADAPTIVE_FINE_BINS)[:3]  # a confidence of 1 in the last fine bin
    total = float(count.sum())
    if total <= 0:
        return {"": float("nan")}
    group = equal_mass_groups(count, num_bins)
    conf_sum = np.bincount(group, from_fixed(conf), minlength=num_bins)
    acc_sum = np.bincount(group, acc, minlength=num_bins)
    return {"": float(np.abs(acc_sum - conf_sum).sum() / total)}


def brier_decomposition(task: Task, *, num_bins: int | None = None, n_bins: int | None = None) -> DerivedMetric:
    """Reliability, resolution and uncertainty of the Brier score (Murphy, 1973) over equal-width bins:
    ``.reliability`` (lower is better), ``.resolution`` (higher is better), ``.uncertainty`` (of the targets).
    Their sum ``reliability - resolution + uncertainty`` is the Brier score when the probabilities are
    constant within each bin."""
    require_probabilities(task, "brier_decomposition")
    stat = ClasswiseBins(task, check_bins(num_bins, n_bins))
    binary = task.kind is TaskKind.BINARY
    parts = tuple((part, NON_NEGATIVE) for part in (".reliability", ".resolution", ".uncertainty"))
    value_of = partial(_brier_decomposition, binary)
    return DerivedMetric("brier_decomposition", stat, value_of, Direction.INFO, part_ranges=parts)


def classwise_ece(task: Task, *, num_bins: int | None = None, n_bins: int | None = None) -> DerivedMetric:
    """Classwise expected calibration error: every class's probability binned and compared with that
    class's frequency, averaged over classes (two classes, ``1 - p`` and ``p``, for a binary task)."""
    require_probabilities(task, "classwise_ece")
    stat = ClasswiseBins(task, check_bins(num_bins, n_bins))
    return DerivedMetric("classwise_ece", stat, _classwise_ece, Direction.LOWER, value_range=RATIO)


def adaptive_calibration_error(task: Task, *, num_bins: int | None = None, n_bins: int | None = None) -> DerivedMetric:
    """Expected calibration error over ``num_bins`` bins of equal weight (equal mass) instead of equal width;
    confidence and accuracy as :func:`~evaluators.calibration.expected_calibration_error`. Bin edges fall on
    the edges of ``ADAPTIVE_FINE_BINS`` equal-width fine bins (rows of one fine bin share a bin)."""
    require_probabilities(task, "adaptive_calibration_error")
    bins = check_bins(num_bins, n_bins)
    stat = CalibrationBins(task, ADAPTIVE_FINE_BINS)
    return DerivedMetric(
        "adaptive_calibration_error", stat, partial(_adaptive_ece, bins), Direction.LOWER, value_range=RATIO
    )
