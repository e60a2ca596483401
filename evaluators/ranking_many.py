"""Binary ROC-AUC and average precision of many stored ranking states at once (a run's slices).

A run with 1,000 slices reads two ranking values off each slice's cells. One state at a time, that is some
thirty NumPy calls per value on about a thousand cells: mostly call overhead. Here the cells of many states are
padded into the rows of one ``[R, m]`` array and go through the same row functions
(:func:`~evaluators.ranking.roc_auc_rows`, :func:`~evaluators.ranking.average_precision_rows`), which add left to
right, so that each row's value and bound are the bits of that state read alone. A single state is read this way
too (``R = 1``), so there is one code path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from evaluators.ranking_cells import rounded_rows
from evaluators.ranking_positions import cell_positions
from evaluators.ranking_statistics import WEIGHT_BITS
from evaluators.statistic import State

RowsFn = Callable[..., tuple[np.ndarray, np.ndarray]]
"""``(neg [R, m], pos [R, m], tied [R, m], positions [R, m, 3]) -> (values [R], bounds [R])``."""
RoundingRowsFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``(neg [R, m], pos [R, m], rounded [R, 2]) -> bounds [R]``."""

FLOAT_ERROR_PER_CELL = 8 * 2.0**-52
"""What the bound adds per cell for the value's float64 evaluation (cumulative sums and ratios over the cells), so
that it holds for the computed number, not only for the exact arithmetic on the state."""


def evaluation_bound(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """What the bound adds for the float64 evaluation over the occupied cells of each row of ``neg`` / ``pos``
    (``[..., m]``): :data:`FLOAT_ERROR_PER_CELL` per occupied cell, and one more."""
    return FLOAT_ERROR_PER_CELL * (np.count_nonzero((neg > 0) | (pos > 0), axis=-1) + 1)


BATCH_CELLS = 1 << 16
"""At most this many padded cells per batch of states (a state with more is a batch of its own): 512 KB per float64
array, so that the row functions' temporaries stay in cache (the values of a 1,000-slice run of 1M exact cells: 0.45 s
in batches of 4M cells, 0.30 s in these)."""
PADDING = 1.25
"""A batch's rows are at most this many times as long as its shortest state (plus 64 cells)."""


def size_batches(sizes: np.ndarray) -> list[np.ndarray]:
    """Indices of states with ``sizes`` cells, grouped so that padding each group to its longest costs little
    (:data:`PADDING`) and a group holds at most :data:`BATCH_CELLS` padded cells."""
    order = np.argsort(sizes, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end < len(order):  # (ascending: the next state would be the group's longest)
            longest = int(sizes[order[end]])
            short = longest <= PADDING * int(sizes[order[start]]) + 64
            if short and (end + 1 - start) * max(longest, 1) <= BATCH_CELLS:
                continue
        batches.append(order[start:end])
        start = end
    return batches


def binary_values(
    rows_fn: RowsFn, rounding_rows: RoundingRowsFn, states: Sequence[State]
) -> tuple[np.ndarray, np.ndarray]:
    """``(values [S], bounds [S])`` of a binary ranking metric over the stored sparse states ``states``: the
    value of ``rows_fn`` and its bound plus the fixed point's rounding (``rounding_rows``) and the float64
    evaluation (:func:`evaluation_bound`)."""
    values, bounds = np.empty(len(states)), np.empty(len(states))
    sizes = np.array([len(s["keys"]) for s in states], np.int64)
    for batch in size_batches(sizes):
        values[batch], bounds[batch] = _padded_values(rows_fn, rounding_rows, [states[i] for i in batch], sizes[batch])
    return values, bounds


def _padded_values(
    rows_fn: RowsFn, rounding_rows: RoundingRowsFn, states: Sequence[State], sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    rows, width = len(states), int(sizes.max())
    counts = np.concatenate([np.asarray(s["counts"]).reshape(-1, 2) for s in states])
    sums = np.concatenate([np.asarray(s["sums"]).reshape(-1, 2) for s in states])
    squares = np.concatenate([_squares(s) for s in states])
    ties = np.concatenate([np.asarray(s["ties"]) for s in states])
    starts = np.cumsum(sizes) - sizes
    at = np.repeat(np.arange(rows) * width - starts, sizes) + np.arange(len(ties))  # flat places in [rows, width]
    weights = counts / 2.0**WEIGHT_BITS
    neg, pos, positions = np.zeros(rows * width), np.zeros(rows * width), np.full((rows * width, 3), np.nan)
    tied = np.ones(rows * width, bool)  # empty cells: one score (none), no weight
    neg[at], pos[at], tied[at], positions[at] = (
        weights[:, 0],
        weights[:, 1],
        ~np.isnan(ties),
        cell_positions(counts, sums, squares),
    )
    neg, pos, tied = (a.reshape(rows, width) for a in (neg, pos, tied))
    values, bounds = rows_fn(neg, pos, tied, positions.reshape(rows, width, 3))
    rounded = np.stack([rounded_rows(s) for s in states]) if rows else np.zeros((0, 2), np.int64)
    return values, bounds + rounding_rows(neg, pos, rounded) + evaluation_bound(neg, pos)


def _squares(state: State) -> np.ndarray:
    """A stored state's ``squares`` (``[m, 2]``), or zeros (units of 1) for a state stored before them."""
    return np.asarray(state["squares"]).reshape(-1, 2) if "squares" in state else np.zeros((len(state["keys"]), 2))
