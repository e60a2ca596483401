"""Threshold-free ranking metrics: ROC-AUC and average precision.

Two statistics hold the score distribution of positives and negatives:

* :class:`ScoreHistogram` (default, ``mode: binned``): sorted integer cells, one per distinct (class, score)
  while the rows hold at most ``exact_cells`` (250,000) of them, so the values equal scikit-learn's; beyond, one
  per occupied bin of a fixed grid whose bins follow the float32 bit pattern of ``min(p, 1 - p)`` (bins
  ``2**-precision_bits`` of the distance to the nearer end wide; about 6.1e-5 around 0.5 at the binary
  default of 12 bits, 319,490 bins; 10 bits, 79,874 bins per class, for several classes). Rows whose scores
  share a bin then count as in unknown order, and the exact value is guaranteed to lie within the reported
  ``.error_bound`` (computed from the state by ordering each bin's rows best-first and worst-first; it also
  covers the weights' fixed point and float64 evaluation).
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
from itertools import pairwise
from typing import Any

import numpy as np

from evaluators.classification import per_class_values, require_kind
from evaluators.ranking_cells import _starts, merge_cells, summed_leaves, summed_runs
from evaluators.ranking_many import binary_values, evaluation_bound
from evaluators.ranking_positions import (
    cell_positions,
    digamma_difference,
    harmonic_sum,
    mean_positions,
    position_shift,
    positioned_precision_sum,
    precision_integral,
)
from evaluators.ranking_statistics import (
    _BIN_MASK,
    CLASS_SHIFT,
    EXACT_CELLS,
    REPLICATE_PRECISION_BITS,
    SMALL_BATCH_CELLS,
    WEIGHT_BITS,
    ExactScoreCounts,
    ScoreHistogram,
    _empty_cells,
    compact_cells,
    exact_row_cells,
    fixed_weights,
    is_exact,
    is_sparse,
    one_vs_rest,
    ranked_classes,
    rounded_rows,
)
from evaluators.score_grid import (
    BINARY_BIN_SCORES,
    BINARY_PRECISION_BITS,
    DEFAULT_PRECISION_BITS,
    DEFAULT_SCORE_DECIMALS,
    MAX_BIN_SCORES,
    MAX_SCORE_DECIMALS,
    bin_count,
    bin_positions,
    cell_count,
    score_bins,
)
from evaluators.statistic import RATIO, DerivedMetric, State, Statistic
from evaluators.task import (
    PredictionKind,
    Task,
    TaskKind,
)

__all__ = [
    "BINARY_BIN_SCORES",
    "BINARY_PRECISION_BITS",
    "CLASS_SHIFT",
    "DEFAULT_PRECISION_BITS",
    "EXACT_CELLS",
    "GRID_CELLS",
    "REPLICATE_PRECISION_BITS",
    "SMALL_BATCH_CELLS",
    "WEIGHT_BITS",
    "Distribution",
    "ExactScoreCounts",
    "RankingValue",
    "ScoreHistogram",
    "average_precision",
    "average_precision_from_counts",
    "bin_count",
    "bin_positions",
    "class_distributions",
    "class_positions",
    "compact_cells",
    "default_bin_scores",
    "default_precision_bits",
    "digamma_difference",
    "exact_row_cells",
    "fixed_weights",
    "is_exact",
    "is_sparse",
    "mean_positions",
    "merge_cells",
    "one_vs_rest",
    "pooled_distribution",
    "pooled_positions",
    "position_shift",
    "ranked_classes",
    "roc_auc",
    "roc_auc_from_counts",
    "score_bins",
]

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


def class_positions(state: Any, classes: int | None = None) -> list[np.ndarray | None]:
    """Per class, :func:`cell_positions` (``[m, 3]``: each label's mean position and the positives' unit) of each
    cell of :func:`class_distributions` (None for states without positions: exact counts, and runs stored before
    them)."""
    if not is_sparse(state):
        return [None] * len(class_distributions(state, classes))
    positions = _positions(state)
    return [positions[lo:hi] for lo, hi in _class_ranges(state, classes)]


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


def pooled_positions(state: Any) -> np.ndarray | None:
    """:func:`cell_positions` of each cell of :func:`pooled_distribution` (None without positions)."""
    if not is_sparse(state):
        return None
    pooled = _pooled_cells(state)
    return _positions(pooled)


def _positions(state: State) -> np.ndarray:
    """:func:`cell_positions` of a stored state's cells (units of 1 for a state stored before its squares)."""
    squares = np.asarray(state["squares"]) if "squares" in state else None
    return cell_positions(np.asarray(state["counts"]), np.asarray(state["sums"]), squares)


def _pooled_cells(state: State) -> State:
    """A stored state with every class's cells of one bin added into one cell (tied if all hold one score);
    of an exact state, every class's cells of one score."""
    if len(state["keys"]) == 0:
        return _empty_cells()
    cells = np.asarray(state["keys"]) & _BIN_MASK
    if is_exact(state):
        pooled = {**state, "keys": cells}
        order = np.argsort(np.asarray(state["ties"]), kind="stable")
        return exact_cells_merged(pooled, order)
    order = np.argsort(cells, kind="stable")
    cells = cells[order]
    starts = _starts(cells)
    ties = np.asarray(state["ties"])[order]
    with np.errstate(invalid="ignore"):
        low, high = np.minimum.reduceat(ties, starts), np.maximum.reduceat(ties, starts)
    summed = {name: summed_runs(np.asarray(state[name])[order], starts) for name in summed_leaves(state)}
    return {"keys": cells[starts], **summed, "ties": np.where(low == high, low, np.nan)}


def exact_cells_merged(state: State, order: np.ndarray) -> State:
    """An exact state's cells in ``order`` (ascending scores), those of one score added into one cell."""
    keys, ties = np.asarray(state["keys"])[order], np.asarray(state["ties"])[order]
    starts = _starts(ties)
    summed = {name: summed_runs(np.asarray(state[name])[order], starts) for name in summed_leaves(state)}
    return {"keys": keys[starts], **summed, "ties": ties[starts]}


@dataclass(frozen=True)
class RankingValue:
    """A ranking metric's value and the half-width of the interval known to hold the exact value."""

    value: float
    bound: float


def roc_auc_from_counts(
    neg: np.ndarray, pos: np.ndarray, tied: np.ndarray, positions: np.ndarray | None = None
) -> RankingValue:
    """Area under the ROC curve over ascending score cells.

    A pair (positive, negative) within a tied cell (one distinct score) counts one half, as
    scikit-learn: exact. Within a mixed cell it counts ``1/2 + shift`` (clipped to [0, 1]), the
    probability that the positive ranks above the negative when, within the bin, each label's
    scores are any mixture of a linear density and one repeated score (``shift``: the mean
    position of the cell's positives minus its negatives', :func:`position_shift` of ``positions``
    ``[m, 2]``, :func:`mean_positions`; 0 without positions). The bound covers any order within mixed cells.
    """
    value, bound = roc_auc_rows(neg[None], pos[None], tied, positions)
    return RankingValue(float(value[0]), float(bound[0]))


def row_sums(x: np.ndarray) -> np.ndarray:
    """Sums of the rows of ``x`` (``[R, m]``), added left to right: a row's sum is the same with zeros appended,
    so rows of different lengths padded into one array give the sums each gives alone (NumPy's pairwise sum
    groups the terms by the row's length)."""
    return np.cumsum(x, axis=1)[:, -1] if x.shape[1] else np.zeros(x.shape[0], x.dtype)


def roc_auc_rows(
    neg: np.ndarray, pos: np.ndarray, tied: np.ndarray, positions: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`roc_auc_from_counts` of each row of ``neg`` / ``pos`` (float64 ``[R, m]``: the bootstrap replicates of
    one state, or the cells of many states, each padded with empty cells) at once: ``(values [R], bounds [R])``;
    ``tied`` is ``[m]`` (shared) or ``[R, m]``, ``positions`` ``[m, 2 or 3]`` or ``[R, m, 2 or 3]`` (the positives' unit
    unused). A row's value is the same
    whatever the other rows and however many empty cells pad it."""
    n_pos, n_neg = row_sums(pos), row_sums(neg)
    neg_below = np.cumsum(neg, axis=1) - neg
    if positions is None:
        inside = np.full(neg.shape[1], 0.5)
    else:
        inside = np.clip(0.5 + np.where(tied, 0.0, position_shift(positions)), 0.0, 1.0)
    pairs = n_pos * n_neg
    defined = pairs > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        area = np.minimum(row_sums(pos * (neg_below + inside * neg)) / pairs, 1.0)  # (a sum's rounding: not above 1)
        worst = np.maximum(inside, 1.0 - inside) * pos * neg
        bound = row_sums(np.where(tied, 0.0, worst)) / pairs
    return np.where(defined, area, np.nan), np.where(defined, bound, np.nan)


def average_precision_from_counts(
    neg: np.ndarray, pos: np.ndarray, tied: np.ndarray, positions: np.ndarray | None = None
) -> RankingValue:
    """Step-wise average precision (scikit-learn's definition) over descending score cells.

    A tied cell is one step, as scikit-learn treats equal scores. In a cell of distinct scores in unknown
    order, each label's rows are taken to fill an interval around their mean position within the bin
    (``positions`` ``[m, 3]``, :func:`cell_positions`; :func:`positioned_precision_sum`, counted in rows of the cell's
    positives' unit weight, so that the value does not depend on the weights' scale): a single row of each label is
    ordered by its position. Without positions (bootstrap replicates, runs stored before them),
    the i-th of ``p`` positives is taken to have the expected ``i * n / (p + 1)`` of the cell's ``n``
    negatives before it (exact for unit weights when ``n = 0``). The bound holds for any order and any
    weights: at most every positive at the cell's final precision with no negative before it, at least the
    integral of the precision with every negative first.
    """
    value, bound = average_precision_rows(neg[None], pos[None], tied, positions)
    return RankingValue(float(value[0]), float(bound[0]))


def average_precision_rows(
    neg: np.ndarray, pos: np.ndarray, tied: np.ndarray, positions: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`average_precision_from_counts` of each row of ``neg`` / ``pos`` (float64 ``[R, m]``) at once:
    ``(values [R], bounds [R])``; ``tied`` is ``[m]`` (shared) or ``[R, m]``, ``positions`` ``[m, 3]`` or
    ``[R, m, 3]`` (``[..., 2]``: units of 1). Each cell's term is computed as one row alone would compute it and the terms are added left to
    right (:func:`row_sums`), so a row's value does not depend on the others, nor on empty cells padding it."""
    total_pos = row_sums(pos)
    pos_d, neg_d, tied_d = pos[:, ::-1], neg[:, ::-1], np.broadcast_to(tied[..., ::-1], pos.shape)
    tp = np.cumsum(pos_d, axis=1)
    fp = np.cumsum(neg_d, axis=1)
    has = pos_d > 0
    contribution = np.zeros_like(pos_d)
    contribution[has] = pos_d[has] * tp[has] / (tp[has] + fp[has])
    open_cells = has & ~tied_d
    best_gap = np.zeros_like(pos_d)
    worst_gap = np.zeros_like(pos_d)
    if open_cells.any():
        p, n = pos_d[open_cells], neg_d[open_cells]
        tp0, fp0 = tp[open_cells] - p, fp[open_cells] - n
        if positions is None:
            expected = harmonic_sum(tp0, tp0 + fp0, p, 1.0 + n / (p + 1.0))
        else:
            at = np.broadcast_to(positions[..., ::-1, :], (*pos.shape, positions.shape[-1]))[open_cells]
            unit = at[:, 2] if at.shape[1] > 2 else np.ones(len(p))  # (in rows of the cell's positives' unit)
            expected = unit * positioned_precision_sum(tp0 / unit, fp0 / unit, p / unit, n / unit, at[:, 1], at[:, 0])
        contribution[open_cells] = expected
        best_gap[open_cells] = p * (tp0 + p) / (tp0 + fp0 + p) - expected
        worst_gap[open_cells] = expected - precision_integral(tp0, tp0 + fp0 + n, p)
    bound = np.maximum(np.maximum(row_sums(best_gap), row_sums(worst_gap)), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        value, bound = np.minimum(row_sums(contribution) / total_pos, 1.0), bound / total_pos  # (as ROC-AUC's)
    defined = total_pos > 0
    return np.where(defined, value, np.nan), np.where(defined, bound, np.nan)


def auc_rounding_bound(neg: np.ndarray, pos: np.ndarray, rounded: np.ndarray) -> float:
    """How far ROC-AUC can move because weights were rounded to the fixed point: ``rounded`` (negatives',
    positives') entries, each off by at most ``2**-33``, against the weight totals of ``neg`` and ``pos``
    (first order, with 1% to spare)."""
    return float(auc_rounding_rows(neg[None], pos[None], np.asarray(rounded)[None])[0])


def auc_rounding_rows(neg: np.ndarray, pos: np.ndarray, rounded: np.ndarray) -> np.ndarray:
    """:func:`auc_rounding_bound` of each row of ``neg`` / ``pos`` (``[R, m]``) with its ``rounded`` (``[R, 2]``)."""
    e_neg, e_pos = (np.asarray(rounded, np.float64) * 2.0 ** -(WEIGHT_BITS + 1)).T
    n_pos, n_neg = row_sums(pos), row_sums(neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = 2.02 * (e_pos / n_pos + e_neg / n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), bound, 0.0)


def ap_rounding_bound(neg: np.ndarray, pos: np.ndarray, rounded: np.ndarray) -> float:
    """As :func:`auc_rounding_bound`, for average precision: each positive's precision moves by at most
    ``(e_pos + e_neg) / TP``, and the weighted sum of ``1 / TP`` over positives is at most ``1 + ln(P / w_min)``
    with ``w_min >= 2**-32``."""
    return float(ap_rounding_rows(neg[None], pos[None], np.asarray(rounded)[None])[0])


def ap_rounding_rows(neg: np.ndarray, pos: np.ndarray, rounded: np.ndarray) -> np.ndarray:
    """:func:`ap_rounding_bound` of each row of ``neg`` / ``pos`` (``[R, m]``) with its ``rounded`` (``[R, 2]``)."""
    e_neg, e_pos = (np.asarray(rounded, np.float64) * 2.0 ** -(WEIGHT_BITS + 1)).T
    n_pos = row_sums(pos)
    defined = n_pos > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        harmonic = 1.0 + np.maximum(np.log(np.where(defined, n_pos, 1.0) * 2.0**WEIGHT_BITS), 0.0)
        bound = 1.01 * (2.0 * e_pos + (e_pos + e_neg) * harmonic) / n_pos
    return np.where(defined, bound, 0.0)


def _ranking_many(
    task: Task, average: str, rows_fn: Any, rounding_rows: Any, report_bound: bool, states: list[Any]
) -> list[dict[str, float]] | None:
    """:func:`_ranking` of many states at once (:func:`~evaluators.ranking_many.binary_values`) when the task is
    binary and every state is in the stored sparse form; else None."""
    if task.kind is not TaskKind.BINARY or not all(is_sparse(s) for s in states):
        return None
    values, bounds = binary_values(rows_fn, rounding_rows, states)
    if not report_bound:
        return [{"": v} for v in values.tolist()]
    return [{"": v, ".error_bound": b} for v, b in zip(values.tolist(), bounds.tolist(), strict=True)]


def _ranking(
    task: Task,
    average: str,
    score_fn: Any,
    rows_fn: Any,
    rounding_rows: Any,
    report_bound: bool,
    state: Any,
) -> dict[str, float]:
    alone = _ranking_many(task, average, rows_fn, rounding_rows, report_bound, [state])
    if alone is not None:  # (the path of a run's slices, read many at a time)
        return alone[0]
    rounded = rounded_rows(state) if is_sparse(state) else np.zeros(2, np.int64)

    def scored(neg: np.ndarray, pos: np.ndarray, tied: np.ndarray, positions: np.ndarray | None) -> RankingValue:
        result = score_fn(neg, pos, tied, positions)
        rounding = rounding_rows(neg[None], pos[None], np.asarray(rounded)[None])[0]
        return RankingValue(result.value, float(result.bound + rounding + evaluation_bound(neg, pos)))

    if average == "micro":
        result = scored(*pooled_distribution(state), pooled_positions(state))
        values = {"": result.value}
        if report_bound:
            values[".error_bound"] = result.bound
        return values
    distributions = class_distributions(state, ranked_classes(task))
    positions = class_positions(state, ranked_classes(task))
    per_class = [scored(*dist, at) for dist, at in zip(distributions, positions, strict=True)]
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


def _ranking_rows(task: Task, average: str, rows_fn: Any, report_bound: bool, stacked: Any) -> dict | None:
    """:func:`_ranking` of each replicate of a binary task's untracked dense histogram (counts ``[R, 1, 2, B]``,
    :meth:`~evaluators.ranking_statistics.ScoreHistogram.resample_stacked`) at once; None for other states."""
    if task.kind is not TaskKind.BINARY or not isinstance(stacked, dict) or is_sparse(stacked):
        return None
    counts = np.asarray(stacked["counts"], np.float64)
    if counts.ndim != 4 or np.issubdtype(np.asarray(stacked["counts"]).dtype, np.integer):
        return None
    tied = (np.asarray(stacked["lo"]) == np.asarray(stacked["hi"]))[0]
    neg, pos = np.ascontiguousarray(counts[:, 0, 0]), np.ascontiguousarray(counts[:, 0, 1])
    values, bounds = rows_fn(neg, pos, tied)
    bounds = bounds + evaluation_bound(neg, pos)  # as _ranking
    return {"": values, ".error_bound": bounds} if report_bound else {"": values}


GRID_CELLS = 1 << 23
"""The default precision of several classes is the finest (at most :data:`DEFAULT_PRECISION_BITS`) whose grid of
(class, bin) cells holds at most this many: 10 bits up to 105 classes; 1,000 classes get 6 bits, so that a binned
state (48 bytes per occupied cell) of 100,000 rows stays near 40 MB and the compiled histogram takes the batches."""


def default_score_decimals(task: Task) -> int:
    """``score_decimals`` of a binned ranking metric that does not set it: :data:`DEFAULT_SCORE_DECIMALS` for
    probabilities, 0 for logits (no rounded scores to keep: a logit is ordered as written, and a multiclass
    probability is the softmax's)."""
    return 0 if task.prediction is PredictionKind.LOGITS else DEFAULT_SCORE_DECIMALS


def default_bin_scores(task: Task) -> int:
    """``bin_scores`` of a binned ranking metric that does not set it: :data:`BINARY_BIN_SCORES` for one ranked
    class (its rows are sorted into cells on the host, a unit's at once: README, "Cost"), else 1 (several classes
    take the compiled working grid)."""
    return BINARY_BIN_SCORES if ranked_classes(task) == 1 else 1


def default_precision_bits(task: Task, score_decimals: int = DEFAULT_SCORE_DECIMALS) -> int:
    """``precision_bits`` of a binned ranking metric that does not set it: :data:`BINARY_PRECISION_BITS` for one
    ranked class, else see :data:`GRID_CELLS`, with the cells of ``score_decimals`` counted."""
    if ranked_classes(task) == 1:
        return BINARY_PRECISION_BITS
    bits = DEFAULT_PRECISION_BITS
    while bits > 4 and ranked_classes(task) * cell_count(bits, score_decimals) > GRID_CELLS:
        bits -= 1
    return bits


def _ranking_metric(
    name: str,
    score_fn: Any,
    rounding_rows: Any,
    rows_fn: Any,
    task: Task,
    average: str | None,
    mode: str,
    precision_bits: int | None,
    exact_cells: int,
    score_decimals: int | None,
    bin_scores: int | None = None,
):
    require_kind(task, name, TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.MULTILABEL)
    if not task.has_scores:
        raise ValueError(f"{name} needs scores or probabilities, not predicted labels")
    avg = average or ("binary" if task.kind is TaskKind.BINARY else "macro")
    allowed = ("binary",) if task.kind is TaskKind.BINARY else ("macro", "weighted", "none", "micro")
    if avg not in allowed:
        raise ValueError(f"average for {name} on a {task.kind} task must be one of {', '.join(allowed)}; got {avg!r}")
    if mode == "binned":
        if score_decimals is None:
            score_decimals = default_score_decimals(task)
        if not 0 <= score_decimals <= MAX_SCORE_DECIMALS:
            raise ValueError(f"score_decimals must be between 0 and {MAX_SCORE_DECIMALS}, got {score_decimals}")
        if precision_bits is None:
            precision_bits = default_precision_bits(task, int(score_decimals))
        if not 4 <= precision_bits <= 16:
            raise ValueError(f"precision_bits must be between 4 and 16, got {precision_bits}")
        if not 0 <= exact_cells <= 1 << 28:
            raise ValueError(f"exact_cells must be between 0 and {1 << 28}, got {exact_cells}")
        if bin_scores is None:
            bin_scores = default_bin_scores(task)
        if not 1 <= bin_scores <= MAX_BIN_SCORES:
            raise ValueError(f"bin_scores must be between 1 and {MAX_BIN_SCORES}, got {bin_scores}")
        statistic: Statistic = ScoreHistogram(
            task,
            int(precision_bits),
            exact_cells=int(exact_cells),
            score_decimals=int(score_decimals),
            bin_scores=int(bin_scores),
        )
    elif mode == "exact":
        statistic = ExactScoreCounts(task)
    else:
        raise ValueError(f"mode must be 'binned' or 'exact', got {mode!r}")
    binned = mode == "binned"
    rows = partial(_ranking_rows, task, avg, rows_fn, binned)
    value = partial(_ranking, task, avg, score_fn, rows_fn, rounding_rows, binned)
    many = partial(_ranking_many, task, avg, rows_fn, rounding_rows, binned)
    why = partial(_why_undefined, task, name)
    return DerivedMetric(
        name, statistic, value, interval_rows=rows, finalize_many=many, value_range=RATIO, undefined_because=why
    )


def _why_undefined(task: Task, name: str, state: State) -> str:
    """Why ``name`` (ROC-AUC or average precision) of ``state`` is undefined: the labels its rows lack."""
    needs = "a positive row" if name == "average_precision" else "rows of both labels"
    if task.kind is not TaskKind.BINARY:
        return f"no {'class' if task.kind is TaskKind.MULTICLASS else 'label'} has {needs}"
    ((negative, positive, _),) = class_distributions(state, 1)
    negatives, positives = float(negative.sum()), float(positive.sum())
    lacking = (
        "no counted row" if negatives + positives == 0 else "no positive row" if positives == 0 else "no negative row"
    )
    return f"{lacking}; {name} needs {needs}"


def roc_auc(
    task: Task,
    *,
    average: str | None = None,
    mode: str = "binned",
    precision_bits: int | None = None,
    exact_cells: int = EXACT_CELLS,
    score_decimals: int | None = None,
    bin_scores: int | None = None,
) -> DerivedMetric:
    """Area under the ROC curve (one-vs-rest for multiclass). ``mode: binned`` is exact while the rows hold
    at most ``exact_cells`` distinct (class, score) pairs, binned at ``precision_bits`` beyond (None:
    :func:`default_precision_bits`), where scores of at most ``score_decimals`` decimals keep cells of their own (None:
    :func:`default_score_decimals`), and where a bin of at most ``bin_scores`` distinct scores keeps a cell per score
    (1: one cell per bin; :mod:`evaluators.ranking_bins`; None: :func:`default_bin_scores`)."""
    return _ranking_metric(
        "roc_auc",
        roc_auc_from_counts,
        auc_rounding_rows,
        roc_auc_rows,
        task,
        average,
        mode,
        precision_bits,
        exact_cells,
        score_decimals,
        bin_scores,
    )


def average_precision(
    task: Task,
    *,
    average: str | None = None,
    mode: str = "binned",
    precision_bits: int | None = None,
    exact_cells: int = EXACT_CELLS,
    score_decimals: int | None = None,
    bin_scores: int | None = None,
) -> DerivedMetric:
    """Average precision, the step-wise area under the precision-recall curve (``mode`` as :func:`roc_auc`)."""
    return _ranking_metric(
        "average_precision",
        average_precision_from_counts,
        ap_rounding_rows,
        average_precision_rows,
        task,
        average,
        mode,
        precision_bits,
        exact_cells,
        score_decimals,
        bin_scores,
    )
