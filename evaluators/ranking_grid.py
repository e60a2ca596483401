"""The host rows of a ranking batch as cells of the dense grid (class, bin), in few NumPy passes: what
:meth:`~evaluators.ranking_statistics.ScoreHistogram._grid_update` counts, and for one ranked class the bins that
keep their scores (:class:`KeptGridBins`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from evaluators.ranking_bins import collapse_bins
from evaluators.ranking_cells import WEIGHT_BITS, _alike, exact_row_cells, square_limbs, summed_leaves
from evaluators.ranking_weights import fixed_weights
from evaluators.score_grid import _MIN_EXPONENT, decimal_offsets
from evaluators.statistic import State

if TYPE_CHECKING:
    from evaluators.ranking_statistics import ScoreHistogram


def grid_rows(statistic: ScoreHistogram, converted: tuple[Any, ...]) -> tuple[Any, ...]:
    """Host rows, as :func:`~evaluators.ranking_statistics.one_vs_rest` converted them, -> flat ``(grid cell (class * cells + cell), positive bool, weight int64, weighted position int64,
    score float64, weight rounded bool or None, squared weight int64 [., 2] or None)`` of the live (row, class) entries
    (None: every weight is 1): :func:`~evaluators.ranking_statistics.row_cells` for NumPy in fewer passes (the cell's bin and the position share one
    float32 bit pattern, and the position's fixed point is that pattern's low bits, shifted; rows of weight 1, the
    common case, take ``2**32`` and that fixed point without rounding), the same integers."""
    scores, order, positive, w = converted
    bits = statistic.precision_bits
    shift, lo, hi = 23 - bits, (127 - _MIN_EXPONENT) << bits, (127 - 1) << bits
    raw = np.minimum(scores, 1 - scores).astype(np.float32, copy=False).view(np.int32)  # (as score_bins)
    upper = scores > 0.5
    top = raw >> shift
    below = top < lo  # (position 1/2, as bin_positions)
    np.clip(top, lo, hi, out=top)
    top -= lo
    cell = np.where(upper, 2 * (hi - lo + 1) - 1 - top, top)
    if statistic.score_decimals:
        cell += decimal_offsets(order, statistic.score_decimals)
    if scores.shape[1] > 1:
        cell = cell + np.arange(scores.shape[1]) * statistic.cell_count()
    # the position in its bin times 2**WEIGHT_BITS: the bits below the bin's, or 1/2 below the lowest bin
    position = (raw & ((1 << shift) - 1)).astype(np.int64) << (WEIGHT_BITS - shift)
    position[below] = 1 << (WEIGHT_BITS - 1)
    position = np.where(upper, (1 << WEIGHT_BITS) - position, position)
    score = np.add(order, 0.0, dtype=np.float64)  # (-0.0 as 0.0, as row_cells)
    live = w > 0
    columns = [cell, positive == 1, w, position, score]  # (a label counts as positive as row_cells' does)
    cell, positive, w, position, score = (c.reshape(-1) if live.all() else c[live] for c in columns)
    if (w == 1).all():
        return cell, positive, np.full(len(w), 1 << WEIGHT_BITS), position, score, None, None
    fixed = fixed_weights(w)
    inexact = fixed.astype(np.float64) != w * 2.0**WEIGHT_BITS
    moment = fixed_weights(w * (position * 2.0**-WEIGHT_BITS))
    return cell, positive, fixed, moment, score, inexact, square_limbs(w, positive)


_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def score_hash_bits(score: np.ndarray) -> np.ndarray:
    """uint64 ``[r]``: one of 64 bits for each float64 score, picked by a multiplicative hash of its bits. OR-ed over
    a bin's rows, the number of bits set is at most the bin's distinct scores (equal scores set one bit)."""
    picked = (np.ascontiguousarray(score, np.float64).view(np.uint64) * _HASH_MULTIPLIER) >> np.uint64(58)
    return np.left_shift(np.uint64(1), picked)


class KeptGridBins:
    """The bins that keep their scores (``bin_scores``, :mod:`evaluators.ranking_bins`) of one ranked class's batch
    counted over the grid: per grid cell an OR of :func:`score_hash_bits`, so that only the rows of bins with few
    bits set (at most ``bin_scores`` distinct scores possible) are sorted, and each live row's cell."""

    def __init__(self, width: int, bin_scores: int) -> None:
        self.hashes = np.zeros(width, np.uint64)
        self.bin_scores = bin_scores
        self._cells: list[np.ndarray] = []
        self._rows: list[np.ndarray] = []
        self._sorted = np.zeros(width, bool)

    def add(self, cell: np.ndarray, score: np.ndarray, rows: np.ndarray) -> None:
        """Rows ``rows`` (batch indices, ascending) of grid cells ``cell`` (less the window's first) and ``score``."""
        np.bitwise_or.at(self.hashes, cell, score_hash_bits(score))
        self._cells.append(cell.astype(np.int32))
        self._rows.append(rows.astype(np.int32))

    def rows(self, occupied: np.ndarray, several: np.ndarray) -> np.ndarray:
        """int64: the batch rows (ascending) in the ``occupied`` cells of ``several`` scores (bool, per occupied
        cell) whose bits leave them at most ``bin_scores`` distinct scores."""
        at = occupied[several]
        self._sorted[at] = np.bitwise_count(self.hashes[at]) <= self.bin_scores
        if not self._sorted.any():
            return np.zeros(0, np.int64)
        cells, rows = np.concatenate(self._cells), np.concatenate(self._rows)
        return rows[self._sorted[cells]].astype(np.int64)

    def joined(self, cells: State, occupied: np.ndarray, row_columns: tuple) -> State:
        """The grid's ``cells`` (one per ``occupied`` cell) with the cells of the bins :meth:`rows` chose replaced by
        those of their rows (``row_columns``: :func:`~evaluators.ranking_statistics.row_cells` of those rows), one per
        score, or one per bin where the rows hold more than ``bin_scores`` scores after all: the state that sorting
        every row of the batch gives (:func:`~evaluators.ranking_bins.collapse_bins`)."""
        keys, label, weight, moment, score, live, _, square = row_columns
        square = None if square is None else square[live]
        exact = exact_row_cells(keys[live], label[live], weight[live], moment[live], score[live], square)
        stays = ~self._sorted[occupied]
        parts = _alike(
            [{name: np.asarray(v)[stays] for name, v in cells.items()}, collapse_bins(exact, self.bin_scores)]
        )
        names = ("keys", "ties", *summed_leaves(parts[0]))
        both = {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in names}
        order = np.argsort(both["keys"], kind="stable")  # (no key in both parts; a kept bin's cells by score)
        return {name: column[order] for name, column in both.items()}
