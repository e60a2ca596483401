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

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from itertools import pairwise
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from evaluators.accumulate import padded_batch
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


def bin_positions(scores: jax.Array, precision_bits: int) -> jax.Array:
    """Where each score lies within its :func:`score_bins` bin, in ``[0, 1)`` (0: the bin's lowest scores),
    from the float32 bit pattern's remaining mantissa bits; 0.5 in the end bins (scores within 2**-40 of
    0 or 1)."""
    u = jnp.minimum(scores, 1 - scores).astype(jnp.float32)
    shift = 23 - precision_bits
    raw = jax.lax.bitcast_convert_type(u, jnp.int32)
    frac = (raw & ((1 << shift) - 1)).astype(jnp.float64) / 2.0**shift
    frac = jnp.where((raw >> shift) < (127 - _MIN_EXPONENT) << precision_bits, 0.5, frac)
    return jnp.where(scores <= 0.5, frac, 1.0 - frac)


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


WEIGHT_BITS = 32
"""Bin counts are integers: a row of weight ``w`` adds ``round(w * 2**32)``. Integer sums do not depend on
sharding or merge order; a bin holds up to 2**31 (about 2.1e9) rows of weight 1."""
CLASS_SHIFT = 32
"""A stored cell's key is ``class << 32 | bin``: cells sort by class, then by score."""
_BIN_MASK = (1 << CLASS_SHIFT) - 1


def fixed_weights(w: jax.Array) -> jax.Array:
    """Row weights (float) -> int64 counts in units of ``2**-WEIGHT_BITS``."""
    return jnp.round(w.astype(jnp.float64) * 2.0**WEIGHT_BITS).astype(jnp.int64)


def _empty_cells() -> State:
    pairs = np.zeros((0, 2), np.int64)
    return {"keys": np.zeros(0, np.int64), "counts": pairs, "sums": pairs, "ties": np.zeros(0, np.float64)}


def is_sparse(state: Any) -> bool:
    """Whether a ranking state is the stored sparse form (else the dense working form, or a run stored
    before the sparse form)."""
    return isinstance(state, dict) and "keys" in state


@dataclass(frozen=True)
class ScoreHistogram(Statistic):
    """Weighted counts of scores by label on a fine, fixed grid of score bins, occupied bins only.

    Stored state (what :meth:`merge` takes, checkpoints and ``statistics.npz`` keep): ``{"keys":
    int64 [m] (class << 32 | bin, ascending), "counts": int64 [m, 2] (negatives, positives; see
    :data:`WEIGHT_BITS`), "sums": int64 [m, 2], "ties": float64 [m]}``, one cell per occupied (class,
    bin). ``sums`` adds each row's weight times its position within the bin (:func:`bin_positions`), in
    the same fixed point, so a cell knows where its negatives and its positives lie on average. ``ties`` is the
    bin's single distinct score when it holds one (its rows are true ties, computed exactly), NaN
    when it holds several (order within the bin unknown). Its size follows the data (about 32 bytes
    per occupied bin), not the grid; merging is a sorted union of keys with integer sums, so the
    merged state does not depend on sharding or merge order.

    Working state (what the compiled :meth:`update` folds batches into, one per work unit): dense
    ``{"counts": int64 [K, 2, B], "sums": int64 [K, 2, B], "lo": float64 [K, B], "hi": float64 [K, B]}`` with each bin's
    lowest and highest score; :meth:`stored` keeps its occupied bins at the end of the unit.

    With ``track_ties=False`` (the bootstrap-replicate variant) the state is the dense float64
    ``{"counts": [K, 2, B], "lo": -inf, "hi": +inf}`` in both forms, every bin treated as holding
    distinct scores (expected-order interpolation), and the update is only the count scatter.
    """

    undefined_leaves: ClassVar[tuple[str, ...]] = ("ties",)

    task: Task
    precision_bits: int = 10
    track_ties: bool = True

    def zero(self) -> State:
        if self.track_ties:
            return _empty_cells()
        k, b = ranked_classes(self.task), bin_count(self.precision_bits)
        return {
            "counts": np.zeros((k, 2, b), np.float64),
            "lo": np.full((k, b), -np.inf),
            "hi": np.full((k, b), np.inf),
        }

    def working(self, state: State) -> State:
        if not is_sparse(state):
            return state
        k, b = ranked_classes(self.task), bin_count(self.precision_bits)
        keys = np.asarray(state["keys"])
        cls, cell = keys >> CLASS_SHIFT, keys & _BIN_MASK
        counts = np.zeros((k, 2, b), np.int64)
        counts[cls, :, cell] = state["counts"]
        sums = np.zeros((k, 2, b), np.int64)
        sums[cls, :, cell] = state["sums"]
        lo, hi = np.full((k, b), np.inf), np.full((k, b), -np.inf)
        ties = np.asarray(state["ties"])
        lo[cls, cell] = np.where(np.isnan(ties), -np.inf, ties)
        hi[cls, cell] = np.where(np.isnan(ties), np.inf, ties)
        return {"counts": counts, "sums": sums, "lo": lo, "hi": hi}

    def stored(self, state: State) -> State:
        if not self.track_ties or is_sparse(state):
            return state
        counts, lo, hi = (np.asarray(state[key]) for key in ("counts", "lo", "hi"))
        if not np.issubdtype(counts.dtype, np.integer):  # a checkpoint written before the sparse form
            counts = np.round(counts * 2.0**WEIGHT_BITS).astype(np.int64)
        sums = np.asarray(state["sums"]) if "sums" in state else np.zeros_like(counts)  # (no positions: all equal)
        cls, cell = np.nonzero((lo <= hi) | (counts != 0).any(axis=1))
        low, high = lo[cls, cell], hi[cls, cell]
        return {
            "keys": (cls.astype(np.int64) << CLASS_SHIFT) | cell,
            "counts": np.ascontiguousarray(counts[cls, :, cell]),
            "sums": np.ascontiguousarray(sums[cls, :, cell]),
            "ties": np.where(low == high, low, np.nan),
        }

    def update(self, state: State, batch: Batch) -> State:
        scores, order, positive, w = one_vs_rest(self.task, batch)
        k, _, b = state["counts"].shape
        cls = jnp.arange(k, dtype=jnp.int32)[None, :]
        bins = score_bins(scores, self.precision_bits)
        index = (cls * 2 + positive.astype(jnp.int32)) * b + bins
        if not self.track_ties:
            return {"counts": add_at(state["counts"], index, w), "lo": state["lo"], "hi": state["hi"]}
        counts = add_at(state["counts"], index, fixed_weights(w))
        sums = add_at(state["sums"], index, fixed_weights(w * bin_positions(scores, self.precision_bits)))
        cell = (cls * b + bins).reshape(-1)
        s = order.astype(jnp.float64).reshape(-1)
        live = (w > 0).reshape(-1)
        lo = state["lo"].reshape(-1).at[cell].min(jnp.where(live, s, jnp.inf), mode="promise_in_bounds")
        hi = state["hi"].reshape(-1).at[cell].max(jnp.where(live, s, -jnp.inf), mode="promise_in_bounds")
        return {"counts": counts, "sums": sums, "lo": lo.reshape(k, b), "hi": hi.reshape(k, b)}

    def small_batch_rows(self) -> int:
        if not self.track_ties:
            return 0
        k = ranked_classes(self.task)
        if k * bin_count(self.precision_bits) * WORKING_BYTES_PER_BIN > MAX_WORKING_BYTES:
            return 1 << 62  # every batch: no working histogram of the whole grid
        return max(1, SMALL_BATCH_CELLS // k)

    def update_stored(self, state: State, batch: Batch) -> State:
        with jax.enable_x64(True):
            keys, label, weight, moment, order, live = (np.asarray(a) for a in _row_cells(self)(padded_batch(batch)))
        return merge_cells(state, compact_cells(keys[live], label[live], weight[live], moment[live], order[live]))

    def for_replicates(self) -> Statistic:
        return ScoreHistogram(self.task, min(self.precision_bits, REPLICATE_PRECISION_BITS), track_ties=False)

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        return resample_with_extremes(stacked, weights)

    def merge(self, a: State, b: State) -> State:
        if self.track_ties:  # either side may be a dense histogram from a checkpoint of an earlier version
            return merge_cells(self.stored(a), self.stored(b))
        return merge_with_extremes(a, b)


SMALL_BATCH_CELLS = 1 << 14
"""Batches of fewer (row, class) cells than this are sorted into the stored form on the host (a sliced
job's per-slice batches) instead of scattered into a working histogram of the whole grid."""
WORKING_BYTES_PER_BIN = 48
"""The working histogram's bytes per (class, bin): counts and sums for both labels, lowest and highest score."""
MAX_WORKING_BYTES = 1 << 30
"""Above this working-histogram size (more than about 280 classes at 10 bits) every batch is sorted into
the stored form instead."""


@cache
def _row_cells(statistic: ScoreHistogram) -> Callable[[Batch], tuple[jax.Array, ...]]:
    """Compiled: a padded host batch -> flat ``(keys int64, label int32, weight int64, weighted position
    int64, score float64, live bool)``, one entry per (row, class)."""

    def cells(batch: Batch) -> tuple[jax.Array, ...]:
        scores, order, positive, w = one_vs_rest(statistic.task, batch)
        cls = jnp.arange(scores.shape[1], dtype=jnp.int64)[None, :]
        keys = (cls << CLASS_SHIFT) | score_bins(scores, statistic.precision_bits).astype(jnp.int64)
        moment = fixed_weights(w * bin_positions(scores, statistic.precision_bits))
        flat = (keys, positive.astype(jnp.int32), fixed_weights(w), moment, order.astype(jnp.float64), w > 0)
        return tuple(a.reshape(-1) for a in flat)

    return jax.jit(cells)


def compact_cells(
    keys: np.ndarray, label: np.ndarray, weight: np.ndarray, moment: np.ndarray, score: np.ndarray
) -> State:
    """Rows' cells ``[r]`` -> the stored :class:`ScoreHistogram` state (sorted keys, summed integer counts
    and weighted positions, the tie value of single-score cells)."""
    if len(keys) == 0:
        return _empty_cells()
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    positive = label[order] == 1

    def by_label(values: np.ndarray) -> np.ndarray:
        v = values[order]
        return np.stack(
            [np.add.reduceat(np.where(positive, 0, v), starts), np.add.reduceat(np.where(positive, v, 0), starts)],
            axis=1,
        )

    s = score[order]
    low, high = np.minimum.reduceat(s, starts), np.maximum.reduceat(s, starts)
    ties = np.where(low == high, low, np.nan)
    return {"keys": keys[starts], "counts": by_label(weight), "sums": by_label(moment), "ties": ties}


def merge_cells(a: State, b: State) -> State:
    """Sorted-key union of two stored :class:`ScoreHistogram` states: counts add (integers), and a cell
    stays tied only if both sides hold the same single score."""
    ka, kb = np.asarray(a["keys"]), np.asarray(b["keys"])
    if len(kb) == 0:
        return a
    if len(ka) == 0:
        return b
    if len(ka) == len(kb) and np.array_equal(ka, kb):
        ta, tb = a["ties"], b["ties"]
        ties = np.where(ta == tb, ta, np.nan)
        return {"keys": ka, "counts": a["counts"] + b["counts"], "sums": a["sums"] + b["sums"], "ties": ties}
    keys = np.concatenate([ka, kb])
    order = np.argsort(keys, kind="stable")  # two sorted runs: a linear merge
    sorted_keys = keys[order]
    first = np.empty(len(keys), bool)
    first[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    slot = np.empty(len(keys), np.int64)  # each input cell's index in the union
    slot[order] = np.cumsum(first) - 1
    pa, pb = slot[: len(ka)], slot[len(ka) :]
    m = int(np.count_nonzero(first))
    out = {"keys": sorted_keys[first]}
    # [m, 2] pairs through flat int64 views: 1-D fancy indexing is several times faster than row indexing
    flat_a, flat_b = np.stack([2 * pa, 2 * pa + 1], axis=1).ravel(), np.stack([2 * pb, 2 * pb + 1], axis=1).ravel()
    for name in ("counts", "sums"):
        flat = np.zeros(2 * m, np.int64)
        flat[flat_a] = np.asarray(a[name]).ravel()
        flat[flat_b] += np.asarray(b[name]).ravel()  # a key appears at most once per side
        out[name] = flat.reshape(m, 2)
    ties = np.full(m, np.nan)
    ties[pa] = a["ties"]
    in_a = np.zeros(m, bool)
    in_a[pa] = True
    tb = np.asarray(b["ties"])
    ties[pb] = np.where(in_a[pb], np.where(ties[pb] == tb, tb, np.nan), tb)
    out["ties"] = ties
    return out


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


def class_distributions(state: Any, classes: int | None = None) -> list[Distribution]:
    """One :data:`Distribution` per class (``classes`` of them; read off the state when None), from
    either statistic, in any stored form (sparse cells, or the dense histogram of older runs)."""
    if isinstance(state, tuple):
        return [(neg, pos, np.ones(len(neg), bool)) for _, neg, pos in state]
    if not is_sparse(state):
        counts = np.asarray(state["counts"], np.float64)
        if np.issubdtype(np.asarray(state["counts"]).dtype, np.integer):
            counts = counts / 2.0**WEIGHT_BITS
        tied = state["lo"] == state["hi"]
        return [(counts[k, 0], counts[k, 1], tied[k]) for k in range(counts.shape[0])]
    counts = np.asarray(state["counts"]) / 2.0**WEIGHT_BITS
    tied = ~np.isnan(state["ties"])
    return [(counts[lo:hi, 0], counts[lo:hi, 1], tied[lo:hi]) for lo, hi in _class_ranges(state, classes)]


def _class_ranges(state: State, classes: int | None) -> list[tuple[int, int]]:
    """``[start, stop)`` of each class's cells in a stored state."""
    cls = np.asarray(state["keys"]) >> CLASS_SHIFT
    k = int(cls[-1]) + 1 if classes is None and len(cls) else classes or 0
    return list(pairwise(np.searchsorted(cls, np.arange(k + 1)).tolist()))


def position_shift(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Per cell: mean position of the positives within the bin minus that of the negatives (0 where a cell
    lacks either), from integer ``counts`` / ``sums [m, 2]``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    both = (counts > 0).all(axis=1)
    return np.where(both, mean[:, 1] - mean[:, 0], 0.0)


def class_shifts(state: Any, classes: int | None = None) -> list[np.ndarray | None]:
    """Per class, :func:`position_shift` of each cell of :func:`class_distributions` (None for states
    without positions: exact counts, and runs stored before them)."""
    if not is_sparse(state):
        return [None] * len(class_distributions(state, classes))
    shift = position_shift(np.asarray(state["counts"]), np.asarray(state["sums"]))
    return [shift[lo:hi] for lo, hi in _class_ranges(state, classes)]


def pooled_distribution(state: Any) -> Distribution:
    """All classes' (score, label) pairs pooled, for ``micro`` averaging."""
    if isinstance(state, tuple):
        merged = (np.zeros(0), np.zeros(0), np.zeros(0))
        for part in state:
            merged = ExactScoreCounts._merge_one(merged, part)
        return merged[1], merged[2], np.ones(len(merged[0]), bool)
    if not is_sparse(state):
        counts = np.asarray(state["counts"], np.float64)
        if np.issubdtype(np.asarray(state["counts"]).dtype, np.integer):
            counts = counts / 2.0**WEIGHT_BITS
        tied = state["lo"].min(axis=0) == state["hi"].max(axis=0)
        return counts[:, 0].sum(axis=0), counts[:, 1].sum(axis=0), tied
    pooled = _pooled_cells(state)
    counts = pooled["counts"] / 2.0**WEIGHT_BITS
    return counts[:, 0], counts[:, 1], ~np.isnan(pooled["ties"])


def pooled_shift(state: Any) -> np.ndarray | None:
    """:func:`position_shift` of each cell of :func:`pooled_distribution` (None without positions)."""
    if not is_sparse(state):
        return None
    pooled = _pooled_cells(state)
    return position_shift(pooled["counts"], pooled["sums"])


def _pooled_cells(state: State) -> State:
    """A stored state with every class's cells of one bin added into one cell (tied if all hold one score)."""
    if len(state["keys"]) == 0:
        return _empty_cells()
    cells = np.asarray(state["keys"]) & _BIN_MASK
    order = np.argsort(cells, kind="stable")
    cells = cells[order]
    starts = np.flatnonzero(np.concatenate([[True], cells[1:] != cells[:-1]]))
    ties = np.asarray(state["ties"])[order]
    with np.errstate(invalid="ignore"):
        low, high = np.minimum.reduceat(ties, starts), np.maximum.reduceat(ties, starts)
    return {
        "keys": cells[starts],
        "counts": np.add.reduceat(np.asarray(state["counts"])[order], starts, axis=0),
        "sums": np.add.reduceat(np.asarray(state["sums"])[order], starts, axis=0),
        "ties": np.where(low == high, low, np.nan),
    }


@dataclass(frozen=True)
class RankingValue:
    """A ranking metric's value and the half-width of the interval known to hold the exact value."""

    value: float
    bound: float


def roc_auc_from_counts(
    neg: np.ndarray, pos: np.ndarray, tied: np.ndarray, shift: np.ndarray | None = None
) -> RankingValue:
    """Area under the ROC curve over ascending score cells.

    A pair (positive, negative) within a tied cell (one distinct score) counts one half, as
    scikit-learn: exact. Within a mixed cell it counts ``1/2 + shift`` (clipped to [0, 1]), the
    probability that the positive ranks above the negative when, within the bin, each label's
    scores are any mixture of a linear density and one repeated score (``shift``: the mean
    position of the cell's positives minus its negatives', :func:`position_shift`; 0 without
    positions). The bound covers any order within mixed cells.
    """
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return RankingValue(float("nan"), float("nan"))
    neg_below = np.cumsum(neg) - neg
    inside = np.full(len(pos), 0.5) if shift is None else np.clip(0.5 + np.where(tied, 0.0, shift), 0.0, 1.0)
    area = float(np.sum(pos * (neg_below + inside * neg)) / (n_pos * n_neg))
    worst = np.maximum(inside, 1.0 - inside) * pos * neg
    return RankingValue(area, float(np.sum(worst[~tied]) / (n_pos * n_neg)))


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


def average_precision_from_counts(
    neg: np.ndarray, pos: np.ndarray, tied: np.ndarray, shift: np.ndarray | None = None
) -> RankingValue:
    """Step-wise average precision (scikit-learn's definition) over descending score cells.

    A tied cell is one step, as scikit-learn treats equal scores. In a cell of distinct
    scores in unknown order, the i-th of ``p`` positives is taken to have the expected
    ``i * n / (p + 1)`` of the cell's ``n`` negatives before it (exact for unit weights when
    ``n = 0``). The bound holds for any order and any weights: at most every positive at the
    cell's final precision with no negative before it, at least the integral of the precision
    with every negative first. ``shift`` (positions within cells) is not used.
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
        result = score_fn(*pooled_distribution(state), pooled_shift(state))
        values = {"": result.value}
        if report_bound:
            values[".error_bound"] = result.bound
        return values
    distributions = class_distributions(state, ranked_classes(task))
    shifts = class_shifts(state, ranked_classes(task))
    per_class = [score_fn(*dist, shift) for dist, shift in zip(distributions, shifts, strict=True)]
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
        weight = np.array([dist[1].sum() for dist in distributions]) * defined
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
