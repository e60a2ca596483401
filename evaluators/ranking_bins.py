"""Bins that keep their scores: the binned form of a ranking state (:class:`~evaluators.ranking_statistics.
ScoreHistogram` beyond ``exact_cells``) in which a bin of at most ``bin_scores`` distinct scores keeps one exact
cell per score, and only a bin of more scores becomes one cell of several scores (a NaN tie).

Which bins keep their scores depends only on the rows a state holds (each bin's distinct scores), never on how
they were sharded, so every merge below gives the state that any order of pairwise merges gives. With
``bin_scores = 1`` this is the plain binned form (:func:`~evaluators.ranking_cells.collapse_cells`). NumPy only.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from evaluators.ranking_cells import (
    _NO_CELL,
    CLASS_SHIFT,
    EXACT_CELLS,
    ONE_CELL_PER_BIN,
    BinnedForm,
    _add_cells,
    _alike,
    _empty_cells,
    _KeyWindow,
    _starts,
    canonical_squares,
    collapse_cells,
    merge_cells,
    merge_many_cells,
    summed_leaves,
    summed_runs,
)
from evaluators.statistic import State


def collapse_bins(state: State, bin_scores: int) -> State:
    """Cells ascending by key, then score (a key may repeat; cells of one key hold distinct scores, or one holds a
    NaN tie) -> the binned form: each key of more than ``bin_scores`` cells, or with a cell of several scores,
    becomes one cell (counts and positions add; a NaN tie); the other keys keep their cells as they are."""
    keys = np.asarray(state["keys"])
    if bin_scores <= 1:
        return collapse_cells(state)
    if len(keys) < 2:
        return canonical_squares(state)
    ties = np.asarray(state["ties"])
    starts = _starts(keys)
    sizes = np.diff(starts, append=len(keys))
    several = np.logical_or.reduceat(np.isnan(ties), starts)
    joined = (sizes > bin_scores) | several
    if not (joined & (sizes > 1)).any():
        return canonical_squares(state)
    first = np.ones(len(keys), bool)  # a cell starts a run unless it continues a joined key
    first[np.repeat(joined, sizes)] = False
    first[starts] = True
    runs = np.flatnonzero(first)
    low, high = np.minimum.reduceat(ties, runs), np.maximum.reduceat(ties, runs)
    summed = {name: summed_runs(np.asarray(state[name]), runs) for name in summed_leaves(state)}
    return canonical_squares({"keys": keys[runs], **summed, "ties": np.where(low == high, low, np.nan)})


def union_cells(states: list[State]) -> State:
    """The cells of ``states`` (each ascending by key, then score) in one order by key, then score; cells of one
    (key, score) add, and cells of several scores (NaN ties) stay apart (:func:`collapse_bins` joins them).

    One stable sort by key (it merges the states' sorted runs), then, only among the keys that several states hold
    without a NaN cell, one stable sort by score: within one class a score's cell follows the score, so that order
    is the keys' too (of several classes, by class, then score)."""
    states = _alike([s for s in states if len(s["keys"])])
    if not states:
        return _empty_cells()
    names = ("keys", "ties", *summed_leaves(states[0]))
    if len(states) == 1:
        return {name: np.asarray(states[0][name]) for name in names}
    all_keys = np.concatenate([np.asarray(s["keys"]) for s in states])
    all_ties = np.concatenate([np.asarray(s["ties"], np.float64) for s in states])
    source = np.repeat(np.arange(len(states)), [len(s["keys"]) for s in states])
    order = np.argsort(all_keys, kind="stable")
    keys, ties, source = all_keys[order], all_ties[order], source[order]
    groups = _starts(keys)
    sizes = np.diff(groups, append=len(keys))
    several = np.minimum.reduceat(source, groups) != np.maximum.reduceat(source, groups)
    several &= ~np.logical_or.reduceat(np.isnan(ties), groups)  # (a NaN cell's key is joined: order moot)
    if several.any():
        at = np.flatnonzero(np.repeat(several, sizes))
        cls = keys[at] >> CLASS_SHIFT
        within = (
            np.argsort(ties[at], kind="stable") if cls[0] == cls[-1] else np.lexsort((ties[at], keys[at]))
        )  # (cells ascend by class: one class when the first and last agree)
        order[at] = order[at[within]]
        keys, ties = all_keys[order], all_ties[order]
    starts = _starts(keys, ties)  # (NaN != NaN: each NaN cell is a run of its own)
    merged = {"keys": keys[starts], "ties": ties[starts]}
    for name in names[2:]:
        pairs = np.concatenate([np.asarray(s[name], np.int64).reshape(-1, 2) for s in states])[order]
        merged[name] = summed_runs(pairs, starts) if len(starts) < len(keys) else pairs
    return merged


def merge_bins(states: list[State], bin_scores: int) -> State:
    """The binned form (:func:`collapse_bins`) of the union of ``states``, each in any stored form (exact, binned or
    binned with kept scores): counts and positions of each bin added over the dense window of keys the states span
    (:func:`~evaluators.ranking_cells._add_cells`), and the bins whose scores all states together hold at most
    ``bin_scores`` of (:func:`_kept_bins`) with their cells unioned from the states' cells there."""
    states = _alike([s for s in states if len(s["keys"])])
    window = _KeyWindow.of(states) if len(states) > 1 else None
    if window is None:
        return collapse_bins(union_cells(states), bin_scores)
    joined = _add_cells(states)  # one cell per key: its tie stays only where every cell holds that one score
    kept = _kept_bins(states, window, bin_scores)
    if not kept.any():
        return joined
    parts = []
    for state in states:
        keys = np.asarray(state["keys"])
        at = kept[window.slots(keys)]
        if at.any():
            parts.append({name: np.asarray(state[name])[at] for name in ("keys", "ties", *summed_leaves(state))})
    cells = union_cells(parts)
    stays = ~kept[window.slots(np.asarray(joined["keys"]))]
    names = ("keys", "ties", *summed_leaves(joined))
    both = {name: np.concatenate([np.asarray(joined[name])[stays], np.asarray(cells[name])]) for name in names}
    order = np.argsort(both["keys"], kind="stable")  # (the kept bins' cells are in score order already)
    return {name: column[order] for name, column in both.items()}


KEPT_TABLE_BYTES = 1 << 24
""":func:`_kept_bins` tracks the distinct scores of at most this many bytes of bins at a time (16 MB)."""


def _kept_bins(states: list[State], window: _KeyWindow, bin_scores: int) -> np.ndarray:
    """bool ``[window.size]``: the bins that the states' cells give at least two and at most ``bin_scores``
    distinct scores, none of them a cell of several scores (:func:`_kept_in`), over consecutive stretches of the window
    of :data:`KEPT_TABLE_BYTES` of tracked scores each, whatever the window's size."""
    slots = [window.slots(np.asarray(s["keys"])) for s in states]  # (ascending: cells ascend by key)
    bits = [np.ascontiguousarray(s["ties"], np.float64).view(np.int64) for s in states]
    kept = np.zeros(window.size, bool)
    stretch = max(1, KEPT_TABLE_BYTES // (8 * bin_scores))
    for first in range(0, window.size, stretch):
        last = min(first + stretch, window.size)
        parts = []
        for slot, bit in zip(slots, bits, strict=True):
            lo, hi = np.searchsorted(slot, [first, last])
            if hi > lo:
                parts.append((slot[lo:hi] - first, bit[lo:hi]))
        kept[first:last] = _kept_in(parts, last - first, bin_scores)
    return kept


def _kept_in(parts: list[tuple[np.ndarray, np.ndarray]], size: int, bin_scores: int) -> np.ndarray:
    """:func:`_kept_bins` of ``size`` bins from each state's ``(slot, tie bits)`` there. Each bin's distinct scores so
    far are kept as float64 bits in a ``[size, bin_scores]`` table; a bin leaves it for good once it has more or a
    NaN tie, so most cells of a long merge are only looked up."""
    table = np.full((size, bin_scores), _NO_CELL, np.int64)
    count = np.zeros(size, np.int64)
    over = np.zeros(size, bool)
    for slot, bits in parts:
        live = ~over[slot]
        slot, bits = slot[live], bits[live]
        several = np.isnan(bits.view(np.float64))
        over[slot[several]] = True
        slot, bits = slot[~several], bits[~several]
        new = ~(table[slot] == bits[:, None]).any(axis=1)
        slot, bits = slot[new], bits[new]
        if not len(slot):
            continue
        starts = _starts(slot)  # (one run per bin)
        rank = np.arange(len(slot)) - np.repeat(starts, np.diff(starts, append=len(slot)))
        place = count[slot] + rank
        full = place >= bin_scores
        over[slot[full]] = True
        table[slot[~full], place[~full]] = bits[~full]
        count[slot[starts]] += np.diff(starts, append=len(slot))
    return ~over & (count >= 2)


def kept_form(bin_scores: int) -> BinnedForm:
    """The binned form of bins that keep up to ``bin_scores`` distinct scores (:data:`~evaluators.ranking_cells.
    ONE_CELL_PER_BIN` for 1), for :func:`~evaluators.ranking_cells.merge_cells` and
    :func:`~evaluators.ranking_cells.merge_many_cells`: a state's cells through :func:`collapse_bins`, two states by
    :func:`union_cells`, many by :func:`merge_bins`."""
    if bin_scores <= 1:
        return ONE_CELL_PER_BIN
    return BinnedForm(
        partial(collapse_bins, bin_scores=bin_scores),
        lambda a, b: collapse_bins(union_cells([a, b]), bin_scores),
        partial(merge_bins, bin_scores=bin_scores),
    )


def merge_kept(a: State, b: State, exact_cells: int = EXACT_CELLS, bin_scores: int = 1) -> State:
    """:func:`~evaluators.ranking_cells.merge_cells` of two stored states whose bins keep up to ``bin_scores``
    distinct scores beyond ``exact_cells`` (:func:`kept_form`)."""
    return merge_cells(a, b, exact_cells, kept_form(bin_scores))


def merge_many_kept(states: list[State], exact_cells: int = EXACT_CELLS, bin_scores: int = 1) -> State:
    """:func:`merge_kept` folded over ``states`` in any order, at once: :func:`~evaluators.ranking_cells.
    merge_many_cells` in :func:`kept_form`."""
    return merge_many_cells(states, exact_cells, kept_form(bin_scores))
