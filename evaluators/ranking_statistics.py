"""The statistics of ROC-AUC and average precision: :class:`ScoreHistogram` (``mode: binned``) and
:class:`ExactScoreCounts` (``mode: exact``), with the score binning and the sparse cell form of the
histogram's state. The values read off their merged states are in :mod:`evaluators.ranking`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import cache, partial
from typing import Any, ClassVar

import numpy as np

from evaluators.accumulate import padded_batch
from evaluators.distinct import distinct_lower_bound
from evaluators.kernels import HOST_CHUNK_ROWS, add_at, array_namespace
from evaluators.lazyjax import jax, jnp
from evaluators.ranking_bins import collapse_bins, merge_kept, merge_many_kept
from evaluators.ranking_cells import (
    _BIN_MASK,
    CLASS_SHIFT,
    EXACT_CELLS,
    UNIT_SQUARE_SHIFT,
    WEIGHT_BITS,
    _empty_cells,
    canonical_squares,
    check_counts,
    collapse_cells,
    compact_cells,
    exact_cells_by_group,
    exact_row_cells,
    implied_squares,
    is_exact,
    is_sparse,
    rounded_rows,
    square_limbs,
    summed_leaves,
    with_squares,
)
from evaluators.ranking_grid import KeptGridBins, grid_rows
from evaluators.ranking_weights import check_batch_weights, check_counted, fixed_weights
from evaluators.ranking_window import WindowTransport
from evaluators.score_grid import (
    BINARY_PRECISION_BITS,
    DEFAULT_PRECISION_BITS,
    DEFAULT_SCORE_DECIMALS,
    EARLIER_BINARY_PRECISION_BITS,
    bin_positions,
    cell_count,
    score_cells,
)
from evaluators.statistic import (
    Batch,
    State,
    Statistic,
    merge_with_extremes,
    replicate_sums,
    resample_with_extremes,
)
from evaluators.task import PredictionKind, Task, TaskKind, class_probabilities, positive_scores, valid_weights

REPLICATE_PRECISION_BITS = 5
"""Bootstrap replicates of ranking metrics use 2,498-bin histograms; intervals are re-centred on
the full-resolution value, so only the spread comes from the coarser bins."""


def one_vs_rest(task: Task, batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(probabilities, order, is_positive, weights)``, each ``[n, K]``, for ranking statistics.

    ``order`` ranks rows as the score the user wrote does: the raw prediction for binary and
    multilabel tasks (a logit keeps its order where its sigmoid saturates to 1.0), the class
    probability for multiclass tasks.
    """
    xp = array_namespace(batch["weights"])
    targets, w = valid_weights(task, xp.asarray(batch["targets"]), batch["weights"])
    preds = xp.asarray(batch["predictions"])
    if task.kind is TaskKind.BINARY:
        return positive_scores(task, preds)[:, None], preds[:, None], targets[:, None], w[:, None]
    if task.kind is TaskKind.MULTICLASS:
        probs = class_probabilities(task, preds)
        positive = (targets[:, None] == xp.arange(task.classes)[None, :]).astype(xp.int32)
        return probs, probs, positive, xp.broadcast_to(w[:, None], probs.shape)
    return positive_scores(task, preds), preds, targets, w


def ranked_classes(task: Task) -> int:
    return 1 if task.kind is TaskKind.BINARY else task.classes


@dataclass(frozen=True)
class ScoreHistogram(WindowTransport, Statistic):
    """Weighted counts of scores by label: every distinct score while there are few enough, else the occupied
    bins of a fine, fixed grid.

    Stored state (what :meth:`merge` takes, checkpoints and ``statistics.npz`` keep): ``{"keys":
    int64 [m] (class << 32 | cell, ascending; :func:`~evaluators.score_grid.score_cells`), "counts": int64 [m, 2]
    (negatives, positives; see :data:`WEIGHT_BITS`), "sums": int64 [m, 2], "ties": float64 [m], "squares": int64
    [m, 2], "rounded": int64 [2]}``, cells sorted by class and score; ``rounded`` counts the (row, class) entries of
    each label whose weight the fixed point rounded (:func:`rounded_rows`). Binned, one cell per occupied (class,
    cell). ``sums`` adds each row's weight times its position within the bin (:func:`bin_positions`), in the same
    fixed point, so a cell knows where its negatives and its positives lie on average; ``squares`` adds each
    positive row's squared weight (:func:`square_limbs`), so a cell knows how many rows' worth its positives are.
    ``ties`` is the cell's single distinct score when it holds one (its rows are true ties, computed exactly), NaN
    when it holds several (order within the cell unknown). Its size follows the data (48 bytes per occupied cell, 64
    with ``squares``, held only where some positive row's weight is not 1: :func:`canonical_squares`),
    not the grid; merging is a sorted union of keys with integer sums, so the merged state does not depend on
    sharding or merge order.

    While its rows hold at most ``exact_cells`` distinct (class, score) pairs the state is *exact*: one
    cell per distinct score (ascending by class, then score; a bin may hold several cells), each with its
    score in ``ties``, so the values equal scikit-learn's. A merge or update whose rows exceed that
    number turns the state into one cell per bin (:func:`collapse_cells`), or with ``bin_scores`` above 1 into
    one cell per bin of more than ``bin_scores`` distinct scores, the others keeping their cells
    (:func:`~evaluators.ranking_bins.collapse_bins`); as that depends only on the rows, not on how they were
    sharded, merges stay associative and commutative. Batches are folded into an exact state on the host
    (:meth:`folds_on_host`, every batch where ``bin_scores`` is above 1); the compiled update only ever sees binned
    states of one cell per bin.

    Working state (what the compiled :meth:`update` folds batches into, one per work unit): dense
    ``{"counts": int64 [K, 2, B], "sums": int64 [K, 2, B], "squares": int64 [K, 2, B] (limbs), "lo": float64 [K, B],
    "hi": float64 [K, B]}`` over the ``B`` cells of a class (:meth:`cell_count`) with each cell's lowest and highest
    score; :meth:`stored` keeps its occupied cells at the end of the unit.

    With ``track_ties=False`` (the bootstrap-replicate variant) the state is the dense float64
    ``{"counts": [K, 2, B], "lo": -inf, "hi": +inf}`` in both forms, every bin treated as holding
    distinct scores (expected-order interpolation), and the update is only the count scatter.
    """

    undefined_leaves: ClassVar[tuple[str, ...]] = ("ties",)

    task: Task
    precision_bits: int = 10
    track_ties: bool = True
    exact_cells: int = EXACT_CELLS
    score_decimals: int = DEFAULT_SCORE_DECIMALS
    """Scores with at most this many decimals keep cells of their own when binned (:mod:`evaluators.score_grid`);
    0: bins only, the cells of runs stored before this field."""
    bin_scores: int = 1
    """Beyond ``exact_cells``, a bin whose rows hold at most this many distinct scores keeps a cell per score
    (:mod:`evaluators.ranking_bins`); 1: one cell per bin, the form of runs stored before this field. Above 1, every
    batch is sorted into the stored form on the host (no working grid)."""

    def __repr__(self) -> str:  # (``bin_scores`` only where it is not 1: the repr of the runs stored before it)
        shown = (f for f in fields(self) if f.name != "bin_scores" or self.bin_scores != 1)
        return f"{type(self).__name__}({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"

    @property
    def stored_chunk_values(self) -> int:  # type: ignore[override]
        """A merge into an exact state rewrites it, and into one of kept scores sorts their bins again: a unit's
        batch is folded 2^18 values at a time, 2^20 where bins keep scores (a default binary unit at once)."""
        return 1 << 20 if self.bin_scores > 1 else 1 << 18

    def cell_count(self) -> int:
        """Cells of a class's grid (``B`` of the working state): :func:`~evaluators.score_grid.cell_count`."""
        return cell_count(self.precision_bits, self.score_decimals)

    def optional_leaves(self) -> tuple[str, ...]:
        return ("squares",) if self.track_ties else ()  # (held where some weight is not 1: canonical_squares)

    def stored_reprs(self, approximately: bool = False) -> tuple[str, ...]:
        """Runs stored before ``score_decimals`` (the repr without it): the state of ``score_decimals=0``, read
        ``approximately`` otherwise (values as they were; merged with this one's cells they would be out of order).
        Read ``approximately`` too: runs of one cell per bin, and at a binary task's default bits, runs of the earlier
        defaults' bits (:data:`EARLIER_BINARY_PRECISION_BITS`, :data:`DEFAULT_PRECISION_BITS`), ``bin_scores`` this or 1."""
        legacy = repr(self).replace(f", score_decimals={self.score_decimals!r}", "")
        with_legacy = self.bin_scores == 1 and (self.score_decimals == 0 or approximately)
        own = (repr(self), legacy) if with_legacy else (repr(self),)
        if not approximately:
            return own
        earlier: list[str] = []
        if self.bin_scores != 1:
            earlier += replace(self, bin_scores=1).stored_reprs(True)
        if ranked_classes(self.task) == 1 and self.precision_bits == BINARY_PRECISION_BITS:
            for bits in (EARLIER_BINARY_PRECISION_BITS, DEFAULT_PRECISION_BITS):
                for kept in dict.fromkeys((self.bin_scores, 1)):
                    earlier += replace(self, precision_bits=bits, bin_scores=kept).stored_reprs(True)
        return tuple(dict.fromkeys((*own, *earlier)))

    def zero(self) -> State:
        if self.track_ties:
            return {**_empty_cells(), "rounded": np.zeros(2, np.int64)}
        k, b = ranked_classes(self.task), self.cell_count()
        return {
            "counts": np.zeros((k, 2, b), np.float64),
            "lo": np.full((k, b), -np.inf),
            "hi": np.full((k, b), np.inf),
        }

    def working(self, state: State) -> State:
        if not is_sparse(state):
            # (a device state keeps its count as it is: reading it would wait for the update in flight)
            return state if not self.track_ties or "rounded" in state else {**state, "rounded": rounded_rows(state)}
        rounded = rounded_rows(state)
        state = with_squares(collapse_cells(state))  # (the compiled update adds the squares of every batch)
        k, b = ranked_classes(self.task), self.cell_count()
        keys = np.asarray(state["keys"])
        cls, cell = keys >> CLASS_SHIFT, keys & _BIN_MASK
        dense = {}
        for name in summed_leaves(state):
            dense[name] = np.zeros((k, 2, b), np.int64)
            dense[name][cls, :, cell] = state[name]
        lo, hi = np.full((k, b), np.inf), np.full((k, b), -np.inf)
        ties = np.asarray(state["ties"])
        lo[cls, cell] = np.where(np.isnan(ties), -np.inf, ties)
        hi[cls, cell] = np.where(np.isnan(ties), np.inf, ties)
        return {**dense, "lo": lo, "hi": hi, "rounded": rounded}

    def working_on_device(self, state: State) -> State:
        if self.track_ties and is_sparse(state) and len(state["keys"]) == 0:
            # a unit's first batch: the empty grid made where the update runs (no host copy to allocate, fill and
            # transfer: 96 MB for 100 classes at 8 bits), with the state's count of rounded weights
            grid = _empty_working(ranked_classes(self.task), self.cell_count())()
            return {**grid, "rounded": jax.device_put(rounded_rows(state))}
        return super().working_on_device(state)

    def stored(self, state: State) -> State:
        state = self.received(state)
        if not self.track_ties or is_sparse(state):
            return state
        counts, lo, hi = (np.asarray(state[key]) for key in ("counts", "lo", "hi"))
        if not np.issubdtype(counts.dtype, np.integer):  # a checkpoint written before the sparse form
            counts = np.round(counts * 2.0**WEIGHT_BITS).astype(np.int64)
        sums = np.asarray(state["sums"]) if "sums" in state else np.zeros_like(counts)  # (no positions: all equal)
        cls, cell = np.nonzero((lo <= hi) | (counts != 0).any(axis=1))
        low, high = lo[cls, cell], hi[cls, cell]
        summed = {"counts": counts, "sums": sums, **({"squares": state["squares"]} if "squares" in state else {})}
        cells = {
            "keys": (cls.astype(np.int64) << CLASS_SHIFT) | cell,
            **{name: np.ascontiguousarray(np.asarray(leaf)[cls, :, cell]) for name, leaf in summed.items()},
            "ties": np.where(low == high, low, np.nan),
        }
        return {**canonical_squares(cells), "rounded": rounded_rows(state)}

    def update(self, state: State, batch: Batch) -> State:
        scores, order, positive, w = one_vs_rest(self.task, batch)
        k, _, b = state["counts"].shape
        cls = jnp.arange(k, dtype=jnp.int32)[None, :]
        bins = score_cells(scores, order, self.precision_bits, self.score_decimals)
        index = (cls * 2 + positive.astype(jnp.int32)) * b + bins
        if not self.track_ties:
            return {"counts": add_at(state["counts"], index, w), "lo": state["lo"], "hi": state["hi"]}
        fixed = fixed_weights(w)
        counts = add_at(state["counts"], index, fixed)
        inexact = (fixed.astype(jnp.float64) != w * 2.0**WEIGHT_BITS) & (w > 0)
        label = positive.astype(bool)
        rounded = state["rounded"] + jnp.stack([jnp.sum(inexact & ~label), jnp.sum(inexact & label)])
        sums = add_at(state["sums"], index, fixed_weights(w * bin_positions(scores, self.precision_bits)))
        squares = _add_squares(self.task, state["squares"], batch, bins, positive, w)
        cell = (cls * b + bins).reshape(-1)
        s = _without_negative_zero(order.astype(jnp.float64).reshape(-1))  # (as row_cells)
        live = (w > 0).reshape(-1)
        lo = state["lo"].reshape(-1).at[cell].min(jnp.where(live, s, jnp.inf), mode="promise_in_bounds")
        hi = state["hi"].reshape(-1).at[cell].max(jnp.where(live, s, -jnp.inf), mode="promise_in_bounds")
        lo, hi = lo.reshape(k, b), hi.reshape(k, b)
        return {"counts": counts, "sums": sums, "squares": squares, "lo": lo, "hi": hi, "rounded": rounded}

    def refuse_weights(self, weights: np.ndarray) -> None:
        if self.track_ties:  # (bootstrap replicates count in float64)
            check_batch_weights(weights)

    def refuse_state(self, state: State) -> None:
        if self.track_ties:
            check_counts(state["counts"])  # (a working grid on the device too: one number comes back)

    def refuse_merged(self, state: State) -> None:
        if self.track_ties and is_sparse(state):
            check_counted(state)

    def small_batch_rows(self) -> int:
        if not self.track_ties:
            return 0
        k = ranked_classes(self.task)
        if k * self.cell_count() * WORKING_BYTES_PER_BIN > MAX_WORKING_BYTES or self._host_softmax():
            return 1 << 62  # every batch: no working histogram of the whole grid, or NumPy's softmax
        return max(1, SMALL_BATCH_CELLS // k)

    def runs_on_host(self) -> bool:
        return self.track_ties and (self.task.converts_on_host or self._host_softmax())

    def _host_softmax(self) -> bool:
        # multiclass logits: NumPy's softmax gives a row the same bits wherever it is in a batch (the compiled one's
        # move with it, splitting rows of equal logits into cells: values moved with the unit size)
        return self.task.kind is TaskKind.MULTICLASS and not self.task.converts_on_host

    def folds_fast_on_host(self) -> bool:
        return self.runs_on_host() and ranked_classes(self.task) == 1  # (counted over the grid, _grid_update)

    def update_stored(self, state: State, batch: Batch) -> State:
        # rows into a binned state (or more distinct scores than an exact one may hold) need one cell per bin only
        binned = not is_exact(state) or len(state["keys"]) > self.exact_cells or self._exceeds_exact_cells(batch)
        kept = self.bin_scores > 1  # (bins that keep their scores: every row's score is sorted)
        grid = not kept or ranked_classes(self.task) == 1  # (kept scores over the grid: one ranked class)
        if binned and grid and self.runs_on_host() and self._fills_grid(batch):
            return merge_kept(state, self._grid_update(batch), self.exact_cells, self.bin_scores)
        if self.runs_on_host():
            keys, label, weight, moment, order, live, inexact, square = row_cells(self, batch)
        else:  # (sigmoid and softmax: the compiled update's own functions)
            with jax.enable_x64(True):
                compiled = (np.asarray(a) for a in _compiled_row_cells(self)(padded_batch(batch)))
                keys, label, weight, moment, order, live, inexact, square = compiled
        cells = compact_cells if binned and not kept else exact_row_cells
        square = None if square is None else square[live]  # (None: weights of 1, implied by the counts)
        rows = cells(keys[live], label[live], weight[live], moment[live], order[live], square)
        rows = collapse_bins(rows, self.bin_scores) if binned and kept else rows
        inexact = inexact & live
        rows["rounded"] = np.array([np.sum(inexact & (label != 1)), np.sum(inexact & (label == 1))], np.int64)
        return merge_kept(state, rows, self.exact_cells, self.bin_scores)

    def folds_groups_on_host(self) -> bool:
        return self.runs_on_host()

    def host_row_entries(self) -> int:
        return ranked_classes(self.task)

    def rows_by_group(self, batch: Batch, group: np.ndarray, groups: int) -> list[State]:
        keys, label, weight, moment, score, live, inexact, square = row_cells(self, batch)
        entry_group = np.repeat(group, ranked_classes(self.task))  # (row_cells: the [n, K] entries row by row)
        rounded = inexact & live
        rounded = np.bincount(2 * entry_group[rounded] + (label[rounded] == 1), minlength=2 * groups)
        square = None if square is None else square[live]
        columns = (keys[live], label[live], weight[live], moment[live], score[live], square, entry_group[live])
        cells, bounds = exact_cells_by_group(*columns)
        out = []
        for g in range(groups):
            first, last = (bounds[g], bounds[g + 1]) if g + 1 < len(bounds) else (0, 0)
            state = {name: column[first:last] for name, column in cells.items()}
            if last - first > self.exact_cells:  # (the rows need bins: what merging them would make of them)
                state = collapse_bins(state, self.bin_scores)
            state = canonical_squares(state)
            out.append({**state, "rounded": rounded[2 * g : 2 * g + 2].astype(np.int64)})
        return out

    def _fills_grid(self, batch: Batch) -> bool:
        """Whether ``batch`` holds at least :data:`GRID_ROWS_PER_CELL` (row, class) entries per cell of the
        (class, bin) grid, so that :meth:`_grid_update` counts it faster than a sort."""
        k, b = ranked_classes(self.task), self.cell_count()
        return len(batch["predictions"]) * k >= GRID_ROWS_PER_CELL * k * b

    def _grid_update(self, batch: Batch) -> State:
        """Host rows -> a binned stored state (with its ``rounded`` count), counted over the dense (class, bin)
        grid in steps of :data:`~evaluators.kernels.HOST_CHUNK_ROWS` rows whose temporaries stay in cache:
        integer ``add.at`` of counts and positions, ``minimum.at`` / ``maximum.at`` of each cell's scores. The
        state :func:`compact_cells` sorts the same rows into, and the compiled update's. Only the window of cells
        between the batch's lowest and highest cell is counted (:meth:`_grid_window`)."""
        b = self.cell_count()
        offset, width = self._grid_window(batch)
        counts, sums = np.zeros(2 * width, np.int64), np.zeros(2 * width, np.int64)
        squares = None  # (until a chunk's weights are not all 1: implied by the counts before)
        low, high = np.full(width, np.inf), np.full(width, -np.inf)
        rounded = np.zeros(2, np.int64)
        n = len(batch["predictions"])
        kept = KeptGridBins(width, self.bin_scores) if self.bin_scores > 1 else None
        for first in range(0, n, HOST_CHUNK_ROWS):
            step = {name: column[first : first + HOST_CHUNK_ROWS] for name, column in batch.items()}
            converted = one_vs_rest(self.task, step)
            cell, positive, weight, moment, score, inexact, square = grid_rows(self, converted)
            cell -= offset
            if kept is not None:  # (one ranked class: an entry is a row)
                kept.add(cell, score, first + np.flatnonzero(np.asarray(converted[3]).reshape(-1) > 0))
            if square is not None and squares is None:  # the rows so far all weighed 1: their squares are implied
                squares = implied_squares(counts.reshape(-1, 2)).reshape(-1)
            pair = 2 * cell + positive
            np.add.at(counts, pair, weight)
            np.add.at(sums, pair, moment)
            np.minimum.at(low, cell, score)
            np.maximum.at(high, cell, score)
            if squares is not None and square is None:  # (weights of 1: the high limb of each positive's square)
                np.add.at(squares, 2 * cell[positive], 1 << UNIT_SQUARE_SHIFT)
            elif squares is not None:
                np.add.at(squares, 2 * cell, square[:, 0])
                np.add.at(squares, 2 * cell + 1, square[:, 1])
            if inexact is not None:
                rounded += np.count_nonzero(inexact & ~positive), np.count_nonzero(inexact & positive)
        occupied = np.flatnonzero(low <= high)
        low, high = low[occupied], high[occupied]
        summed = {"counts": counts, "sums": sums, **({"squares": squares} if squares is not None else {})}
        grid_cell = occupied + offset
        cells = {
            "keys": ((grid_cell // b) << CLASS_SHIFT) | (grid_cell % b),
            **{name: leaf.reshape(-1, 2)[occupied] for name, leaf in summed.items()},
            "ties": np.where(low == high, low, np.nan),
        }
        if kept is not None:  # bins of few distinct scores: their rows sorted into a cell per score
            rows = kept.rows(occupied, low < high)
            if len(rows):
                cells = kept.joined(cells, occupied, row_cells(self, {k: v[rows] for k, v in batch.items()}))
        return {**canonical_squares(cells), "rounded": rounded}

    def _grid_window(self, batch: Batch) -> tuple[int, int]:
        """``(first cell, cells)`` of the grid :meth:`_grid_update` counts ``batch`` over: binary, the cells from
        its lowest prediction's to its highest's (cells grow with the score), else (or a NaN) the whole grid."""
        whole = (0, ranked_classes(self.task) * self.cell_count())
        predictions = np.asarray(batch["predictions"])
        if self.task.kind is not TaskKind.BINARY or predictions.ndim != 1 or not len(predictions):
            return whole
        ends = np.array([predictions.min(), predictions.max()], predictions.dtype)
        if np.isnan(ends).any():
            return whole
        two = {"predictions": ends, "targets": np.zeros(2, np.asarray(batch["targets"]).dtype), "weights": np.ones(2)}
        cell = grid_rows(self, one_vs_rest(self.task, two))[0]
        if len(cell) != 2:  # (a class 0 that is not a live row: the whole grid)
            return whole
        return int(cell[0]), int(cell[1] - cell[0]) + 1

    def folds_on_host(self, state: State, batch: Batch) -> bool:  # (bins that keep their scores: always)
        return self.track_ties and (self.bin_scores > 1 or (is_exact(state) and not self._exceeds_exact_cells(batch)))

    def _exceeds_exact_cells(self, batch: Batch) -> bool:
        """Whether the rows of ``batch`` alone certainly hold more than ``exact_cells`` distinct (class, score)
        pairs, so that any state holding them is binned: then the compiled update may take the batch. Counted as
        the distinct predictions of the live rows among the first ``2 * exact_cells`` values, a lower bound (False
        when unsure; no count for multiclass logits, whose order is the softmax)."""
        predictions = np.asarray(batch["predictions"])
        softmax_order = self.task.kind is TaskKind.MULTICLASS and self.task.prediction is PredictionKind.LOGITS
        if predictions.size <= self.exact_cells or softmax_order:
            return False
        width = predictions.size // max(len(predictions), 1)
        targets, weights = np.asarray(batch["targets"]), batch.get("weights")
        for share in PREFIX_SHARES:  # (a shorter prefix first: continuous scores exceed it, at a fraction of the sort)
            rows = min(len(predictions), -(-int(share * self.exact_cells) // width))
            given = np.ones(rows) if weights is None else np.asarray(weights)[:rows]
            _, w = valid_weights(self.task, targets[:rows], given)
            # (cells order rows by the prediction as written, a binary logit too; float32 sorts as it is)
            values = predictions[:rows][w > 0].reshape(-1)
            if distinct_lower_bound(values) > self.exact_cells:  # (most batches that exceed: no sort)
                return True
            values = np.sort(values, kind="quicksort")
            distinct = int(len(values) > 0) + int(np.count_nonzero(values[1:] != values[:-1]))
            if distinct > self.exact_cells or rows == len(predictions):
                break
        return distinct > self.exact_cells

    def for_replicates(self) -> Statistic:
        bits = min(self.precision_bits, REPLICATE_PRECISION_BITS)
        return ScoreHistogram(self.task, bits, track_ties=False, score_decimals=0)

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        replicates = resample_with_extremes(stacked, weights)
        if self.track_ties:
            return replicates
        # extremes not tracked: every replicate keeps the zero state's (-inf, +inf), a replicate of no bucket too
        zero = self.zero()
        return [{**r, "lo": zero["lo"], "hi": zero["hi"]} for r in replicates]

    def resample_stacked(self, stacked: State, weights: np.ndarray) -> State | None:
        if self.track_ties:
            return None
        zero = self.zero()  # (extremes not tracked: every replicate keeps the zero state's)
        return {"counts": replicate_sums(stacked["counts"], weights), "lo": zero["lo"], "hi": zero["hi"]}

    def merge(self, a: State, b: State) -> State:
        if self.track_ties:  # either side may be a dense histogram from a checkpoint of an earlier version
            return merge_kept(self.stored(a), self.stored(b), self.exact_cells, self.bin_scores)
        return merge_with_extremes(a, b)

    def merges_in_any_order(self) -> bool:
        return self.track_ties  # integer counts and a tie per cell: the merged state is a function of the rows

    def merge_all(self, states: Sequence[State]) -> State:
        if self.track_ties:
            return merge_many_kept([self.stored(s) for s in states], self.exact_cells, self.bin_scores)
        return super().merge_all(states)


PREFIX_SHARES = (1.25, 2.0)
"""A batch is known to hold more than ``exact_cells`` distinct scores when a prefix of this many times
``exact_cells`` values does; the longer prefix is sorted only when the shorter one falls short (the answer is the
longer prefix's either way: it holds the shorter one)."""
SMALL_BATCH_CELLS = 1 << 14
"""Batches of fewer (row, class) cells than this are sorted into the stored form on the host (a sliced
job's per-slice batches) instead of scattered into a working histogram of the whole grid."""
GRID_ROWS_PER_CELL = 1 / 8
"""A host batch of a binned :class:`ScoreHistogram` with at least this many (row, class) entries per cell of
the (class, bin) grid is counted over that grid (:meth:`ScoreHistogram._grid_update`) rather than sorted."""
WORKING_BYTES_PER_BIN = 64
"""The working histogram's bytes per (class, cell): counts and sums for both labels, the positives' squared weights,
lowest and highest score."""
MAX_WORKING_BYTES = 1 << 30
"""Above this working-histogram size (more than about 280 classes at 10 bits) every batch is sorted into
the stored form instead."""


@cache
def _empty_working(classes: int, bins: int) -> Callable[[], State]:
    """A compiled function that makes the working form of an empty :class:`ScoreHistogram` state on the device:
    zero counts and positions, and each bin's lowest score above its highest (``+inf``, ``-inf``)."""

    def empty() -> State:
        with jax.enable_x64(True):
            counts = jnp.zeros((classes, 2, bins), jnp.int64)
            return {
                "counts": counts,
                "sums": jnp.zeros_like(counts),
                "squares": jnp.zeros_like(counts),
                "lo": jnp.full((classes, bins), jnp.inf, jnp.float64),
                "hi": jnp.full((classes, bins), -jnp.inf, jnp.float64),
            }

    return jax.jit(empty)


def _add_squares(task: Task, squares: jax.Array, batch: Batch, cells: jax.Array, positive: jax.Array, w: jax.Array):
    """``squares`` (working, int64 ``[K, 2, B]``: limbs by class and cell) plus the squared weights of the batch's
    positive entries (``cells``, ``positive``, ``w``: ``[n, K]``). A multiclass row has one positive entry, its
    target's: only those are added (one entry a row instead of ``K``)."""
    k, _, b = squares.shape
    if task.kind is TaskKind.MULTICLASS:
        target = jnp.clip(jnp.asarray(batch["targets"]).astype(jnp.int32), 0, k - 1)[:, None]
        cell, weight = jnp.take_along_axis(cells, target, axis=1), w[:, :1]  # (w: the row's weight, 0 if ignored)
        limbs = square_limbs(weight, jnp.take_along_axis(positive, target, axis=1) == 1)
    else:
        target = jnp.arange(k, dtype=jnp.int32)[None, :]
        cell, limbs = cells, square_limbs(w, positive == 1)
    squares = add_at(squares, (target * 2) * b + cell, limbs[..., 0])
    return add_at(squares, (target * 2 + 1) * b + cell, limbs[..., 1])


def _without_negative_zero(scores: Any) -> Any:
    """-0.0 as 0.0: one bit pattern per distinct score (``x + 0.0`` would do on the host, but XLA drops it)."""
    xp = array_namespace(scores)
    return xp.where(scores == 0, 0.0, scores)


def row_cells(statistic: ScoreHistogram, batch: Batch) -> tuple[Any, ...]:
    """A batch -> flat ``(keys int64, label int32, weight int64, weighted position int64, score float64,
    live bool, weight rounded bool, squared weight int64 [., 2] (:func:`square_limbs`; None for host rows that all
    weigh 1))``, one entry per (row, class);
    NumPy for host columns, traced under :func:`_compiled_row_cells`."""
    scores, order, positive, w = one_vs_rest(statistic.task, batch)
    xp = array_namespace(w)
    cls = xp.arange(scores.shape[1], dtype=xp.int64)[None, :]
    cells = score_cells(scores, order, statistic.precision_bits, statistic.score_decimals)
    keys = (cls << CLASS_SHIFT) | cells.astype(xp.int64)
    moment = fixed_weights(w * bin_positions(scores, statistic.precision_bits))
    score = _without_negative_zero(order.astype(xp.float64))
    fixed = fixed_weights(w)
    inexact = fixed.astype(xp.float64) != w * 2.0**WEIGHT_BITS
    flat = (keys, positive.astype(xp.int32), fixed, moment, score, w > 0, inexact)
    unit = xp is np and bool((w == 1).all())  # (host rows of weight 1: squares implied by the counts)
    return (*(a.reshape(-1) for a in flat), None if unit else square_limbs(w, positive == 1).reshape(-1, 2))


@cache
def _compiled_row_cells(statistic: ScoreHistogram) -> Callable[[Batch], tuple[jax.Array, ...]]:
    """:func:`row_cells` compiled, for a padded host batch of a statistic that does not :meth:`~ScoreHistogram.
    runs_on_host` (logits: the compiled update's sigmoid and softmax)."""
    return jax.jit(partial(row_cells, statistic))


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
        return ScoreHistogram(self.task, REPLICATE_PRECISION_BITS, track_ties=False, score_decimals=0)

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
