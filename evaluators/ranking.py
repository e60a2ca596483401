"""Threshold-free ranking metrics: ROC-AUC and average precision.

Two statistics hold the score distribution of positives and negatives:

* :class:`ScoreHistogram` (default, ``mode: binned``): a fixed histogram whose
  bins follow the float32 bit pattern of ``min(p, 1 - p)``, so bins are
  relatively narrow near 0, 1 and 0.5 alike (``2**-precision_bits`` of the
  distance to the nearer end; about 2.4e-4 wide around 0.5 with the default
  10 bits). State: float64 ``[K, 2, B]`` with ``B = 79,874`` bins at 10 bits,
  about 1.3 MB per class, whatever the number of rows. Rows whose scores share
  a bin count as tied, so the value can differ from the exact one; the exact
  value is guaranteed to lie within the reported ``.error_bound`` (computed
  from the state by ordering each bin's rows best-first and worst-first).
* :class:`ExactScoreCounts` (``mode: exact``): the distinct scores with their
  positive and negative weights. Equal to scikit-learn (ties handled the same
  way); the state grows with the number of distinct scores, 24 bytes each per
  class, and the update runs on the host (not jit-able).

For multiclass tasks each class is scored one-vs-rest (``K = C``); for
multilabel tasks each label (``K = L``); ``micro`` pools all (score, label)
pairs, which is the sum of the per-class histograms.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from evaluators.classification import add_at, per_class_values, require_kind
from evaluators.statistic import Batch, DerivedMetric, State, Statistic, merge_with_extremes, resample_with_extremes
from evaluators.task import (
    Task,
    TaskKind,
    class_probabilities,
    positive_scores,
    valid_weights,
)

_MIN_EXPONENT = 40
REPLICATE_PRECISION_BITS = 5
"""Bootstrap replicates of ranking metrics use 2,498-bin histograms; intervals are re-centred on
the full-resolution value, so only the spread comes from the coarser bins."""  # scores closer than 2**-40 to 0 or 1 share the end bins


def bin_count(precision_bits: int) -> int:
    """Number of histogram bins for a given mantissa precision."""
    return 2 * (((127 - 1) << precision_bits) - ((127 - _MIN_EXPONENT) << precision_bits) + 1)


def score_bins(scores: jax.Array, precision_bits: int) -> jax.Array:
    """Monotone bin index in ``[0, bin_count)`` of probabilities in ``[0, 1]``.

    The index is read from the float32 bit pattern of ``u = min(p, 1 - p)``
    (``1 - p`` is exact in ``p``'s own float type for ``p >= 0.5``; ``u`` is
    rounded to float32 only afterwards, so that scores near 1 keep the same
    relative resolution as scores near 0), keeping ``precision_bits`` bits of
    mantissa.
    """
    p = scores
    u = jnp.minimum(p, 1 - p).astype(jnp.float32)
    shift = 23 - precision_bits
    lo = (127 - _MIN_EXPONENT) << precision_bits
    hi = (127 - 1) << precision_bits
    half = hi - lo + 1
    code = jnp.clip(jax.lax.bitcast_convert_type(u, jnp.int32) >> shift, lo, hi) - lo
    return jnp.where(p <= 0.5, code, 2 * half - 1 - code)


def one_vs_rest(task: Task, batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(probabilities, order, is_positive, weights)``, each ``[n, K]``, for ranking statistics.

    ``order`` ranks rows as the score the user wrote does: the raw prediction for binary and
    multilabel tasks (a logit keeps its order where its sigmoid saturates to 1.0), the class
    probability for multiclass tasks.
    """
    targets, w = valid_weights(task, jnp.asarray(batch["targets"]), batch["weights"])
    preds = jnp.asarray(batch["predictions"])
    if task.kind is TaskKind.BINARY:
        return positive_scores(task, preds)[:, None], preds[:, None], targets[:, None], w[:, None]
    if task.kind is TaskKind.MULTICLASS:
        probs = class_probabilities(task, preds)
        positive = (targets[:, None] == jnp.arange(task.classes)[None, :]).astype(jnp.int32)
        return probs, probs, positive, jnp.broadcast_to(w[:, None], probs.shape)
    return positive_scores(task, preds), preds, targets, w


def ranked_classes(task: Task) -> int:
    return 1 if task.kind is TaskKind.BINARY else task.classes


@dataclass(frozen=True)
class ScoreHistogram(Statistic):
    """Weighted histogram of scores by label, with each bin's smallest and largest score.

    State: ``{"counts": float64 [K, 2, B] (negatives, positives), "lo": float64 [K, B],
    "hi": float64 [K, B]}``. A bin whose ``lo == hi`` holds one distinct score (true ties,
    computed exactly); other bins hold distinct scores whose order within the bin is unknown.

    With ``track_ties=False`` (the bootstrap-replicate variant) ``lo``/``hi`` stay at
    ``-inf``/``+inf``: every bin is treated as holding distinct scores (expected-order
    interpolation) and the update is only the count scatter, several times cheaper per bucket.
    """

    task: Task
    precision_bits: int = 10
    track_ties: bool = True

    def zero(self) -> State:
        k, b = ranked_classes(self.task), bin_count(self.precision_bits)
        inf = np.inf if self.track_ties else -np.inf
        return {
            "counts": np.zeros((k, 2, b), np.float64),
            "lo": np.full((k, b), inf),
            "hi": np.full((k, b), -inf),
        }

    def update(self, state: State, batch: Batch) -> State:
        scores, order, positive, w = one_vs_rest(self.task, batch)
        k, _, b = state["counts"].shape
        cls = jnp.arange(k, dtype=jnp.int32)[None, :]
        bins = score_bins(scores, self.precision_bits)
        index = (cls * 2 + positive.astype(jnp.int32)) * b + bins
        counts = add_at(state["counts"], index, w)
        if not self.track_ties:
            return {"counts": counts, "lo": state["lo"], "hi": state["hi"]}
        cell = (cls * b + bins).reshape(-1)
        s = order.astype(jnp.float64).reshape(-1)
        live = (w > 0).reshape(-1)
        lo = state["lo"].reshape(-1).at[cell].min(jnp.where(live, s, jnp.inf), mode="promise_in_bounds")
        hi = state["hi"].reshape(-1).at[cell].max(jnp.where(live, s, -jnp.inf), mode="promise_in_bounds")
        return {"counts": counts, "lo": lo.reshape(k, b), "hi": hi.reshape(k, b)}

    def for_replicates(self) -> Statistic:
        return ScoreHistogram(self.task, min(self.precision_bits, REPLICATE_PRECISION_BITS), track_ties=False)

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        return resample_with_extremes(stacked, weights)

    def merge(self, a: State, b: State) -> State:
        return merge_with_extremes(a, b)


@dataclass(frozen=True)
class ExactScoreCounts(Statistic):
    """Distinct scores with their negative and positive weights, per class.

    State: a tuple over classes of ``(scores [m], negatives [m], positives [m])``
    float64 arrays, scores sorted ascending and distinct.
    """

    task: Task
    jittable = False

    def zero(self) -> State:
        empty = np.zeros(0, np.float64)
        return tuple((empty, empty, empty) for _ in range(ranked_classes(self.task)))

    def update(self, state: State, batch: Batch) -> State:
        with jax.enable_x64(True):
            _, scores, positive, w = (np.asarray(a) for a in one_vs_rest(self.task, batch))
        out = []
        for k, part in enumerate(state):
            keep = w[:, k] > 0
            s = scores[keep, k].astype(np.float64)
            pos = positive[keep, k].astype(np.float64)
            wk = w[keep, k]
            new = _distinct(s, wk * (1.0 - pos), wk * pos)
            out.append(self._merge_one(part, new))
        return tuple(out)

    def merge(self, a: State, b: State) -> State:
        return tuple(self._merge_one(x, y) for x, y in zip(a, b, strict=True))

    def for_replicates(self) -> Statistic:
        return ScoreHistogram(self.task, REPLICATE_PRECISION_BITS, track_ties=False)

    @staticmethod
    def _merge_one(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        if len(a[0]) == 0:
            return b
        if len(b[0]) == 0:
            return a
        return _distinct(*(np.concatenate([x, y]) for x, y in zip(a, b, strict=True)))


def _distinct(scores: np.ndarray, neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(scores, return_inverse=True)
    return (
        uniq,
        np.bincount(inverse, weights=neg, minlength=len(uniq)),
        np.bincount(inverse, weights=pos, minlength=len(uniq)),
    )


Distribution = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(negatives, positives, tied)``: weights per score cell in ascending order; ``tied`` marks
cells holding a single distinct score."""


def class_distributions(state: Any) -> list[Distribution]:
    """One :data:`Distribution` per class, from either statistic."""
    if isinstance(state, tuple):
        return [(neg, pos, np.ones(len(neg), bool)) for _, neg, pos in state]
    counts = state["counts"]
    tied = state["lo"] == state["hi"]
    return [(counts[k, 0], counts[k, 1], tied[k]) for k in range(counts.shape[0])]


def pooled_distribution(state: Any) -> Distribution:
    """All classes' (score, label) pairs pooled, for ``micro`` averaging."""
    if isinstance(state, tuple):
        merged = (np.zeros(0), np.zeros(0), np.zeros(0))
        for part in state:
            merged = ExactScoreCounts._merge_one(merged, part)
        return merged[1], merged[2], np.ones(len(merged[0]), bool)
    counts = state["counts"]
    tied = state["lo"].min(axis=0) == state["hi"].max(axis=0)
    return counts[:, 0].sum(axis=0), counts[:, 1].sum(axis=0), tied


@dataclass(frozen=True)
class RankingValue:
    """A ranking metric's value and the half-width of the interval known to hold the exact value."""

    value: float
    bound: float


def roc_auc_from_counts(neg: np.ndarray, pos: np.ndarray, tied: np.ndarray) -> RankingValue:
    """Area under the ROC curve over ascending score cells; pairs within a cell count one half.

    For a tied cell (one distinct score) that is the exact value, as scikit-learn; for a
    mixed cell it is the expectation over the unknown order, and the bound covers any order.
    """
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return RankingValue(float("nan"), float("nan"))
    neg_below = np.cumsum(neg) - neg
    area = float(np.sum(pos * (neg_below + 0.5 * neg)) / (n_pos * n_neg))
    return RankingValue(area, float(0.5 * np.sum((pos * neg)[~tied]) / (n_pos * n_neg)))


_ASYMPTOTIC_FROM = 10.0
# Coefficients of y**-2k in the asymptotic series psi(y) ~ ln y - 1/(2y) - sum_k B_2k / (2k y**2k).
_DIGAMMA_SERIES = (-1 / 12, 1 / 120, -1 / 252, 1 / 240, -1 / 132, 691 / 32760)


def _digamma_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, psi(x) - ln y)`` with ``y = x + n >= 10`` for float64 ``x > 0``: ``psi(x) = psi(x + n) -
    sum_{k<n} 1/(x + k)`` moves ``x`` to where the series is accurate to about 1e-16."""
    x = np.asarray(x, dtype=np.float64)
    y = x.copy()
    rest = np.zeros_like(x)
    small = x < _ASYMPTOTIC_FROM  # usually few: x counts the rows ranked above a cell
    if small.any():
        xs = x[small]
        steps = np.ceil(_ASYMPTOTIC_FROM - xs)
        k = np.arange(int(_ASYMPTOTIC_FROM), dtype=np.float64)[:, None]
        rest[small] = -np.sum(np.where(k < steps, 1.0 / (xs + k), 0.0), axis=0)
        y[small] = xs + steps
    inv2 = 1.0 / (y * y)
    series = np.zeros_like(y)
    for coefficient in reversed(_DIGAMMA_SERIES):
        series = (series + coefficient) * inv2
    return y, rest - 0.5 / y + series


def digamma_difference(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``psi(x + p) - psi(x)`` elementwise for float64 ``x > 0``, ``p >= 0``, in NumPy (no compile
    per shape); the logarithms' difference goes through ``log1p`` so that small ``p / x`` keeps its digits."""
    y_hi, rest_hi = _digamma_parts(np.asarray(x, dtype=np.float64) + p)
    y_lo, rest_lo = _digamma_parts(x)
    return np.log1p((y_hi - y_lo) / y_lo) + (rest_hi - rest_lo)


def _harmonic_sum(a: np.ndarray, b: np.ndarray, p: np.ndarray, c: np.ndarray | float = 1.0) -> np.ndarray:
    """``sum_{i=1..p} (a + i) / (b + c i)`` in closed form (digamma), elementwise."""
    bc = b / c
    return (p - (bc - a) * digamma_difference(bc + 1, p)) / c


def _precision_integral(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``integral_0^p (a + x) / (b + x) dx``: a lower bound of ``sum_i w_i (a + W_i) / (b + W_i)``
    for any positive weights ``w_i`` summing to ``p`` (``W_i`` their running sum)."""
    safe_b = np.where(b > 0, b, 1.0)
    return np.where(b > 0, p - (b - a) * np.log1p(p / safe_b), p)


def average_precision_from_counts(neg: np.ndarray, pos: np.ndarray, tied: np.ndarray) -> RankingValue:
    """Step-wise average precision (scikit-learn's definition) over descending score cells.

    A tied cell is one step, as scikit-learn treats equal scores. In a cell of distinct
    scores in unknown order, the i-th of ``p`` positives is taken to have the expected
    ``i * n / (p + 1)`` of the cell's ``n`` negatives before it (exact for unit weights when
    ``n = 0``). The bound holds for any order and any weights: at most every positive at the
    cell's final precision with no negative before it, at least the integral of the precision
    with every negative first.
    """
    total_pos = pos.sum()
    if total_pos == 0:
        return RankingValue(float("nan"), float("nan"))
    pos_d, neg_d, tied_d = pos[::-1], neg[::-1], tied[::-1]
    tp = np.cumsum(pos_d)
    fp = np.cumsum(neg_d)
    has = pos_d > 0
    contribution = np.zeros_like(pos_d)
    contribution[has] = pos_d[has] * tp[has] / (tp[has] + fp[has])
    open_cells = has & ~tied_d
    if not open_cells.any():
        return RankingValue(float(contribution.sum() / total_pos), 0.0)
    p, n = pos_d[open_cells], neg_d[open_cells]
    tp0, fp0 = tp[open_cells] - p, fp[open_cells] - n
    expected = _harmonic_sum(tp0, tp0 + fp0, p, 1.0 + n / (p + 1.0))
    contribution[open_cells] = expected
    best = p * (tp0 + p) / (tp0 + fp0 + p)
    worst = _precision_integral(tp0, tp0 + fp0 + n, p)
    bound = max(float(np.sum(best - expected)), float(np.sum(expected - worst)))
    return RankingValue(float(contribution.sum() / total_pos), max(bound, 0.0) / total_pos)


def _ranking(
    task: Task,
    average: str,
    score_fn: Any,
    report_bound: bool,
    state: Any,
) -> dict[str, float]:
    if average == "micro":
        result = score_fn(*pooled_distribution(state))
        values = {"": result.value}
        if report_bound:
            values[".error_bound"] = result.bound
        return values
    per_class = [score_fn(*dist) for dist in class_distributions(state)]
    if task.kind is TaskKind.BINARY:
        chosen = per_class[0]
        values = {"": chosen.value}
        if report_bound:
            values[".error_bound"] = chosen.bound
        return values
    scores = np.array([r.value for r in per_class])
    bounds = np.array([r.bound for r in per_class])
    if average == "none":
        values = per_class_values(scores)
        if report_bound:
            values.update({f"[{i}].error_bound": float(b) for i, b in enumerate(bounds)})
        return values
    defined = np.isfinite(scores)
    if average == "macro":
        weight = defined.astype(np.float64)
    elif average == "weighted":
        weight = np.array([dist[1].sum() for dist in class_distributions(state)]) * defined
    else:
        raise ValueError(f"unknown average {average!r}; expected macro, weighted, micro or none")
    if weight.sum() == 0:
        return {"": float("nan")}
    values = {"": float(np.sum(np.where(defined, scores, 0.0) * weight) / weight.sum())}
    if report_bound:
        values[".error_bound"] = float(np.sum(np.where(defined, bounds, 0.0) * weight) / weight.sum())
    return values


def _ranking_metric(name: str, score_fn: Any, task: Task, average: str | None, mode: str, precision_bits: int):
    require_kind(task, name, TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.MULTILABEL)
    if not task.has_scores:
        raise ValueError(f"{name} needs scores or probabilities, not predicted labels")
    avg = average or ("binary" if task.kind is TaskKind.BINARY else "macro")
    allowed = ("binary",) if task.kind is TaskKind.BINARY else ("macro", "weighted", "none", "micro")
    if avg not in allowed:
        raise ValueError(f"average for {name} on a {task.kind} task must be one of {', '.join(allowed)}; got {avg!r}")
    if task.kind is TaskKind.MULTICLASS and avg == "micro":
        raise ValueError(f"{name} with average 'micro' is defined for binary and multilabel tasks only")
    if mode == "binned":
        if not 4 <= precision_bits <= 16:
            raise ValueError(f"precision_bits must be between 4 and 16, got {precision_bits}")
        statistic: Statistic = ScoreHistogram(task, int(precision_bits))
    elif mode == "exact":
        statistic = ExactScoreCounts(task)
    else:
        raise ValueError(f"mode must be 'binned' or 'exact', got {mode!r}")
    return DerivedMetric(name, statistic, partial(_ranking, task, avg, score_fn, mode == "binned"))


def roc_auc(task: Task, *, average: str | None = None, mode: str = "binned", precision_bits: int = 10) -> DerivedMetric:
    """Area under the ROC curve (one-vs-rest for multiclass)."""
    return _ranking_metric("roc_auc", roc_auc_from_counts, task, average, mode, precision_bits)


def average_precision(
    task: Task, *, average: str | None = None, mode: str = "binned", precision_bits: int = 10
) -> DerivedMetric:
    """Average precision, the step-wise area under the precision-recall curve."""
    return _ranking_metric("average_precision", average_precision_from_counts, task, average, mode, precision_bits)
