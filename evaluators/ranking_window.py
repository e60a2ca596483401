"""A binned ranking state as a dense window of bins, the form in which a Ray actor ships a unit's state, and the
running sum of such windows in which the driver merges them.

A binned unit of 500k continuous scores is some 33,000 stored cells in 18,000 bins of a 33,000-bin window. Merging
10,000 of them from the stored form (:func:`~evaluators.ranking_bins.merge_bins`) scatters every cell into the
window and tracks each bin's distinct scores anew for each pool of states: about 1.3 ms a state. In the window form
a state adds to the running totals by one contiguous add, and only the bins whose distinct scores are still counted
(at most ``bin_scores`` of them, no cell of several) are looked at cell by cell, many states' cells at once: about
0.2-0.3 ms a state. Making a window costs more than the stored merge (about 2.3 ms), so only results that cross a
process boundary are shipped so (:class:`~pipelines.worker.UnitEvaluator` ``ships``).

:class:`CellWindow` holds the same information as the stored state it is made from (:func:`from_window` gives it
back bit for bit), and :class:`WindowSum` gives the state that :func:`~evaluators.ranking_bins.merge_many_kept`
gives for the same states (the merged state is a function of the rows alone). Checkpoints and ``statistics.npz``
keep the stored form. NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evaluators.kernels import WeightRangeError
from evaluators.ranking_cells import (
    _NAN_BITS,
    _NO_CELL,
    CLASS_SHIFT,
    _pair_view,
    _starts,
    check_counts,
    implied_squares,
    is_exact,
    is_sparse,
    rounded_rows,
    summed_leaves,
    summed_runs,
)
from evaluators.statistic import MergeStream, State

WINDOW_CELLS = 1 << 12
"""A state of fewer cells is shipped in the stored form: its window would save nothing worth a second path."""
WINDOW_FACTOR = 2
"""... as is a state whose window holds more than this many bins per stored cell (its window would be larger)."""
PENDING_CELLS = 1 << 14
"""A :class:`WindowSum` counts the cells of bins still counting their scores once this many wait (some 100 states'
worth): per state, the count would be some twenty NumPy calls on a hundred cells."""
STREAM_BYTES = 1 << 26
"""A :class:`WindowSum` spans at most this many bytes of per-bin tables (64 MiB: 180,000 bins at ``bin_scores: 8``);
a window that would widen it further is left to the stored merge."""
_KEPT = np.array(0x7FF0_0000_0000_0002, np.int64).item()
"""A window bin's tie bits where the bin keeps several cells, one per score (``CellWindow.kept_*``)."""


@dataclass(frozen=True, eq=False)
class CellWindow:
    """A binned state of one class (``ScoreHistogram`` cells beyond ``exact_cells``) over the window of bins
    ``[first, first + w)`` (keys, as stored: ``class << 32 | bin``).

    ``totals``: int64 ``[len(leaves), w, 2]``, each bin's summed leaves (``leaves``: ``counts``, ``sums`` and, where
    held, ``squares``); ``ties``: int64 ``[w]``, each bin's one score as float64 bits, NaN's for a cell of several
    scores, :data:`~evaluators.ranking_cells._NO_CELL` for no cell, :data:`_KEPT` for a bin of several cells; the
    stored cells of those bins: ``kept_keys`` (int64 ``[k]``), ``kept_ties`` (float64 ``[k]``) and ``kept_cells``
    (int64 ``[len(leaves), k, 2]``, as ``totals``); ``rounded``: the stored count of rounded weights; ``largest``: the
    largest count of a bin (int), so that sums are checked for overflow only where they may pass it. And where in the
    window each kind of bin is (int64 offsets, ascending): ``joined_bins`` (a cell of several scores),
    ``single_bins`` (a cell of one score), ``kept_bins`` (several cells; the first of a bin's cells in ``kept_*`` is
    ``kept_first``, their number ``kept_sizes``), so that the sum looks only at those."""

    first: int
    totals: np.ndarray
    ties: np.ndarray
    kept_keys: np.ndarray
    kept_ties: np.ndarray
    kept_cells: np.ndarray
    leaves: tuple[str, ...]
    rounded: np.ndarray
    largest: int
    joined_bins: np.ndarray
    single_bins: np.ndarray
    kept_bins: np.ndarray
    kept_first: np.ndarray
    kept_sizes: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(leaf.nbytes for leaf in vars(self).values() if isinstance(leaf, np.ndarray))


def to_window(state: State, min_cells: int = WINDOW_CELLS) -> CellWindow | None:
    """The window form of a stored binned state of one class, or None for one that stays in the stored form: exact,
    of several classes, of fewer cells than ``min_cells`` or sparser than :data:`WINDOW_FACTOR`."""
    keys = np.asarray(state["keys"])
    m = len(keys)
    if m < max(min_cells, 1) or int(keys[0]) >> CLASS_SHIFT != int(keys[-1]) >> CLASS_SHIFT or is_exact(state):
        return None
    first, width = int(keys[0]), int(keys[-1]) - int(keys[0]) + 1
    if width > WINDOW_FACTOR * m:
        return None
    leaves = summed_leaves(state)
    ties = np.asarray(state["ties"], np.float64)
    slots = keys - first
    starts = _starts(keys)
    sizes = np.diff(starts, append=m)
    several = sizes > 1
    alone = starts[~several]  # the cells alone in their bins
    kept = np.flatnonzero(np.repeat(several, sizes))  # the others, by bin
    kept_starts = np.cumsum(sizes[several]) - sizes[several]
    totals = np.zeros((len(leaves), width, 2), np.int64)
    kept_cells = np.empty((len(leaves), len(kept), 2), np.int64)
    for at, name in enumerate(leaves):
        leaf = np.asarray(state[name], np.int64).reshape(-1, 2)
        _pair_view(totals[at])[slots[alone]] = _pair_view(leaf)[alone]
        kept_cells[at] = leaf[kept]
        if len(kept):
            try:
                totals[at][slots[starts[several]]] = summed_runs(kept_cells[at], kept_starts)
            except WeightRangeError:  # a kept bin whose cells together pass int64: merged as stored (and refused
                return None  # there only if a merge must add them)
    window_ties = np.full(width, _NO_CELL, np.int64)
    alone_ties, alone_bins, kept_bins = ties[alone], slots[alone], slots[starts[several]]
    joined = np.isnan(alone_ties)
    window_ties[alone_bins] = np.where(joined, _NAN_BITS, alone_ties.view(np.int64))
    window_ties[kept_bins] = _KEPT
    largest = int(totals[0].max(initial=0))
    rounded = rounded_rows(state).copy()
    where = alone_bins[joined], alone_bins[~joined], kept_bins, kept_starts, sizes[several]
    return CellWindow(first, totals, window_ties, keys[kept], ties[kept], kept_cells, leaves, rounded, largest, *where)


def from_window(window: CellWindow) -> State:
    """The stored state that ``window`` was made from, bit for bit."""
    occupied = np.flatnonzero(window.ties != _NO_CELL)
    alone = occupied[window.ties[occupied] != _KEPT]
    keys = np.concatenate([alone + window.first, window.kept_keys])
    order = np.argsort(keys, kind="stable")  # (a key is either alone or kept; kept cells are in score order)
    ties = np.concatenate([window.ties[alone].view(np.float64), window.kept_ties])[order]
    state: State = {"keys": keys[order], "ties": ties}
    for at, name in enumerate(window.leaves):
        state[name] = np.concatenate([window.totals[at, alone], window.kept_cells[at]])[order]
    state["rounded"] = window.rounded.copy()
    return state


def _window_with_squares(window: CellWindow) -> CellWindow:
    """``window`` with the squares its counts imply (every positive row of weight 1), as a stored state without them
    is read (:func:`~evaluators.ranking_cells.implied_squares`)."""
    totals = np.concatenate([window.totals, implied_squares(window.totals[0])[None]])
    kept_cells = np.concatenate([window.kept_cells, implied_squares(window.kept_cells[0])[None]])
    return replace(window, totals=totals, kept_cells=kept_cells, leaves=(*window.leaves, "squares"))


class WindowSum(MergeStream):
    """The running merge of :class:`CellWindow` states: each bin's summed leaves over a window that grows as states
    arrive, and, for each bin not yet joined, its distinct scores (up to ``bin_scores``) with their summed leaves.

    :meth:`result` is the stored state that :func:`~evaluators.ranking_bins.merge_many_kept` gives for the states
    added (binned: a bin keeps one cell per score while all its rows hold at most ``bin_scores`` distinct scores
    and no state joined it; else one cell, whose tie is the one score or NaN)."""

    def __init__(self, bin_scores: int) -> None:
        self.bin_scores = max(1, bin_scores)
        self.leaves: tuple[str, ...] = ()
        self.first = self.cls = 0  # (the window's first key, and the class of its keys)
        self.totals = np.zeros((0, 0, 2), np.int64)  # [leaves, window, 2]
        self.joined = np.zeros(0, bool)  # a bin of more distinct scores than bin_scores, or with a cell of several
        self.count = np.zeros(0, np.int64)  # the distinct scores seen in a bin not joined
        self.scores = np.zeros((0, self.bin_scores))  # those scores (float64; NaN: none yet)
        self.cells = np.zeros((0, self.bin_scores, 0, 2), np.int64)  # their summed leaves
        self.rounded = np.zeros(2, np.int64)
        self.unchecked = 0  # the sum of the largest counts added since the totals were last seen non-negative
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (slots, scores, cells [leaves, n, 2])
        self.pending_cells = 0

    def add(self, state: Any) -> bool:
        """Add a :class:`CellWindow` of the class of the windows added so far (where one side holds no squares, its
        counts imply them); False for another state: a stored state, a window of another class (the running window
        spans one class's bins), or one that would widen the running window past :data:`STREAM_BYTES`."""
        if not isinstance(state, CellWindow):
            return False
        if self.leaves and state.first >> CLASS_SHIFT != self.cls:
            return False
        if self.leaves and state.leaves != self.leaves:  # squares on one side only: the other's are implied
            if "squares" in state.leaves:
                self._with_squares()
            else:
                state = _window_with_squares(state)
        lo, hi = min(state.first, self.first), max(state.first + len(state.ties), self.first + len(self.joined))
        if (hi - lo if self.leaves else len(state.ties)) * self._bin_bytes(len(state.leaves)) > STREAM_BYTES:
            return False
        self._add(state)
        return True

    def _with_squares(self) -> None:
        """Hold the squares that the counts imply (the windows so far had none: every positive row of weight 1)."""
        self._flush()
        self.totals = np.concatenate([self.totals, implied_squares(self.totals[0])[None]])
        bins, places = self.cells.shape[:2]
        implied = implied_squares(self.cells[:, :, 0].reshape(-1, 2)).reshape(bins, places, 1, 2)
        self.cells = np.concatenate([self.cells, implied], axis=2)
        self.leaves = (*self.leaves, "squares")

    def _bin_bytes(self, leaves: int) -> int:
        """The bytes a bin of the running window takes: its totals, state, scores and their cells."""
        return 16 * leaves + 17 + self.bin_scores * (8 + 16 * leaves)

    def _add(self, window: CellWindow) -> None:
        width = len(window.ties)
        if not self.leaves:
            self.leaves, self.first, self.cls = window.leaves, window.first, window.first >> CLASS_SHIFT
            self.totals = np.zeros((len(self.leaves), 0, 2), np.int64)
            self.cells = np.zeros((0, self.bin_scores, len(self.leaves), 2), np.int64)
            self._grow(window.first, window.first + width)
        elif window.first < self.first or window.first + width > self.first + len(self.joined):
            self._flush()  # (pending cells are placed by slot in the window as it is)
            self._grow(window.first, window.first + width)
        if self.unchecked + window.largest >= 1 << 63:
            check_counts(self.totals[0])
            self.unchecked = 0
        self.unchecked += window.largest
        at = window.first - self.first
        self.totals[:, at : at + width] += window.totals
        self.rounded += window.rounded
        self.joined[at + window.joined_bins] = True
        single = window.single_bins[~self.joined[at + window.single_bins]]  # (the bins still counting their scores)
        slots, scores, cells = at + single, window.ties[single].view(np.float64), window.totals[:, single]
        self._pend(slots, scores, cells)
        kept = np.flatnonzero(~self.joined[at + window.kept_bins])
        if len(kept):  # the cells of those kept bins (each bin's run of kept cells, by key)
            first, sizes = window.kept_first[kept], window.kept_sizes[kept]
            at_cells = np.repeat(first - (np.cumsum(sizes) - sizes), sizes) + np.arange(sizes.sum())
            kept_slots = window.kept_keys[at_cells] - self.first
            self._pend(kept_slots, window.kept_ties[at_cells], window.kept_cells[:, at_cells])

    def _pend(self, slots: np.ndarray, scores: np.ndarray, cells: np.ndarray) -> None:
        """Keep cells of bins still counting their scores, to be counted many states at once (:meth:`_flush`)."""
        if len(slots):
            self.pending.append((slots, scores, cells))
            self.pending_cells += len(slots)
            if self.pending_cells >= PENDING_CELLS:
                self._flush()

    def _flush(self) -> None:
        """Count the pending cells: those of one bin and score (from several states) added into one cell, ascending
        by bin (:meth:`_count`). A bin joined meanwhile counts on harmlessly: its scores are no longer read."""
        if not self.pending:
            return
        slots, scores = (np.concatenate([p[i] for p in self.pending]) for i in range(2))
        cells = np.concatenate([p[2] for p in self.pending], axis=1)
        self.pending, self.pending_cells = [], 0
        order = np.lexsort((scores, slots))
        slots, scores, cells = slots[order], scores[order], cells[:, order]
        starts = _starts(slots, scores)
        if len(starts) < len(slots):
            slots, scores, cells = slots[starts], scores[starts], np.add.reduceat(cells, starts, axis=1)
        self._count(slots, scores, cells)

    def _count(self, slots: np.ndarray, scores: np.ndarray, cells: np.ndarray) -> None:
        """Count cells (``slots`` ascending, the ``scores`` of one slot distinct; ``cells``: their leaves, int64
        ``[leaves, n, 2]``) in their bins' distinct scores: a score seen adds to its cell, a new one takes the next
        place, and a bin past ``bin_scores`` places is joined."""
        cells = cells.transpose(1, 0, 2).reshape(len(slots), -1)
        flat = self.cells.reshape(-1, cells.shape[1])  # (a view: one row per bin and place)
        table = self.scores[slots]
        place = (table == scores[:, None]).argmax(axis=1)  # (the score's place where seen)
        seen = table[np.arange(len(slots)), place] == scores
        if seen.all():
            flat[slots * self.bin_scores + place] += cells
            return
        flat[slots[seen] * self.bin_scores + place[seen]] += cells[seen]
        new = ~seen
        slots, scores, cells = slots[new], scores[new], cells[new]
        if not len(slots):
            return
        starts = _starts(slots)  # (one run per bin)
        sizes = np.diff(starts, append=len(slots))
        place = self.count[slots] + np.arange(len(slots)) - np.repeat(starts, sizes)
        full = place >= self.bin_scores
        self.joined[slots[full]] = True
        room = ~full
        self.scores[slots[room], place[room]] = scores[room]
        flat[slots[room] * self.bin_scores + place[room]] = cells[room]
        self.count[slots[starts]] += sizes

    def _grow(self, lo: int, hi: int) -> None:
        """Widen the window to hold ``[lo, hi)``, with up to a quarter more on the side it grows: within the class's
        keys and :data:`STREAM_BYTES`."""
        old_lo, old_hi = self.first, self.first + len(self.joined)
        if len(self.joined):
            room = STREAM_BYTES // self._bin_bytes(len(self.leaves)) - (max(hi, old_hi) - min(lo, old_lo))
            margin = max(0, min((old_hi - old_lo) // 4, room))
            base = self.cls << CLASS_SHIFT
            lo = min(old_lo, max(lo - margin, base) if lo < old_lo else lo)
            hi = max(old_hi, min(hi + margin, base + (1 << CLASS_SHIFT)) if hi > old_hi else hi)
        at, size = old_lo - lo, old_hi - old_lo
        totals = np.zeros((len(self.leaves), hi - lo, 2), np.int64)
        totals[:, at : at + size] = self.totals
        self.totals = totals
        for name, fill in (("joined", False), ("count", 0), ("scores", np.nan), ("cells", 0)):
            old = getattr(self, name)
            new = np.full((hi - lo, *old.shape[1:]), fill, old.dtype)
            new[at : at + size] = old
            setattr(self, name, new)
        self.first = lo

    def result(self) -> State | None:
        """The merged stored state of the windows added (keys ascending, a kept bin's cells by score), or None if
        none was."""
        if not self.leaves:
            return None
        self._flush()
        check_counts(self.totals[0])
        joined, count = self.joined, self.count
        one = np.flatnonzero(joined | (count == 1))
        places = np.arange(self.bin_scores)
        slot, place = np.nonzero(~joined[:, None] & (count[:, None] > places) & (count[:, None] > 1))
        order = np.lexsort((self.scores[slot, place], slot))
        slot, place = slot[order], place[order]
        keys = np.concatenate([one, slot]) + self.first
        order = np.argsort(keys, kind="stable")  # (a bin is either one cell or kept cells, in score order)
        ties = np.concatenate([np.where(joined[one], np.nan, self.scores[one, 0]), self.scores[slot, place]])
        state: State = {"keys": keys[order], "ties": ties[order]}
        for at, name in enumerate(self.leaves):
            state[name] = np.concatenate([self.totals[at, one], self.cells[slot, place, at]])[order]
        state["rounded"] = self.rounded.copy()
        return state


class WindowTransport:
    """How a :class:`~evaluators.ranking_statistics.ScoreHistogram` ships its binned unit states: as
    :class:`CellWindow` (:meth:`~evaluators.statistic.Statistic.transported`), added by a :class:`WindowSum`."""

    track_ties: bool
    bin_scores: int

    def transported(self, state: State) -> Any:
        window = to_window(state) if self.track_ties and is_sparse(state) else None
        return state if window is None else window

    def received(self, state: Any) -> State:
        return from_window(state) if isinstance(state, CellWindow) else state

    def merge_stream(self) -> MergeStream | None:
        return WindowSum(self.bin_scores) if self.track_ties else None
