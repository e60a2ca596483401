"""The sparse cell form of a ranking state (:class:`~evaluators.ranking_statistics.ScoreHistogram`): rows sorted
into cells, exact (one cell per distinct class and score) or binned (one per class and bin), and the merge of
two states. NumPy only, but for :func:`square_limbs` (host or traced)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.distinct import distinct_lower_bound
from evaluators.kernels import WeightRangeError, array_namespace, has_negative
from evaluators.statistic import State

WEIGHT_BITS = 32
"""Bin counts are integers: a row of weight ``w`` adds ``round(w * 2**32)``. Integer sums do not depend on
sharding or merge order; a bin holds up to 2**31 (about 2.1e9) rows of weight 1."""
CLASS_SHIFT = 32
"""A stored cell's key is ``class << 32 | bin``: cells sort by class, then by score."""
_BIN_MASK = (1 << CLASS_SHIFT) - 1
Column = np.ndarray
"""One value per (row, class) entry of a batch (``[r]``; ``square``: ``[r, 2]``)."""

SCALE_ADVICE = (
    "ROC-AUC and average precision count weights exactly, in units of 2^-32 in int64, so the rows counted together "
    "(one batch, and one score cell of the merged job) may weigh at most 2^31 (2,147,483,648); both metrics, and every "
    "weighted mean, are unchanged when all weights are divided by the same number: divide them by their mean, for "
    "instance"
)


def cell_overflow() -> WeightRangeError:
    """The error of a cell whose weights add up beyond what its int64 count holds."""
    return WeightRangeError(f"the weights of one score cell add up beyond 2^31; {SCALE_ADVICE}")


def check_counts(counts: np.ndarray) -> None:
    """Refuse integer ``counts`` (any shape) that an int64 overflow turned negative: sums of non-negative values below
    ``2**63`` each, taken two at a time, overflow exactly when their sum is negative."""
    if has_negative(counts):
        raise cell_overflow()


def summed_runs(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``np.add.reduceat(values, starts, axis=0)`` of non-negative int64 values, refused (:class:`WeightRangeError`)
    where a run's sum could leave int64: checked by the largest value times the longest run, and where that bound is
    too loose, against the same sums in float64."""
    summed = np.add.reduceat(values, starts, axis=0)
    if not len(values):
        return summed
    longest = int(np.diff(starts, append=len(values)).max())
    if int(values.max()) * longest < 1 << 63:
        return summed
    approximate = np.add.reduceat(values.astype(np.float64), starts, axis=0)
    if (approximate >= 2.0**63).any() or (summed < 0).any():
        raise cell_overflow()
    return summed


def _empty_cells() -> State:
    pairs = np.zeros((0, 2), np.int64)
    return {"keys": np.zeros(0, np.int64), "counts": pairs, "sums": pairs, "ties": np.zeros(0, np.float64)}


SUMMED = ("counts", "sums", "squares")
"""The leaves of a cell that add when cells merge (int64 ``[m, 2]`` each). ``squares`` (the positives' squared
weights) is held only where it says more than the counts do (:func:`canonical_squares`)."""
LIMB_BITS = 32
"""The low limb of the squares holds ``2**-32`` of the high one's unit."""
UNIT_SQUARE_SHIFT = 16
"""A positive row of weight 1 adds ``2**32`` to its cell's count and ``2**16`` to the high limb of its squares
(:func:`square_limbs`, in units of ``2**-(2 * 32 - 16)``): squares of rows of weight 1
are the counts shifted right by 16."""


SQUARE_BITS = 2 * WEIGHT_BITS - UNIT_SQUARE_SHIFT  # 48: a weight of 1 is 2**16 in the high limb, its count >> 16
"""A positive row's squared weight ``w**2`` is counted in units of ``2**-48`` (``1e-6`` squared is 281 units), as
two int64 limbs (:func:`square_limbs`), so that the sums are exact integers and merge in any order."""
SQUARED_WEIGHT_LIMIT = 2.0**16
"""Weights above this count as this much in the squares (the cells' values read them only as an estimate), so that
a cell's squares stay within int64: below ``2**16`` times its weight, itself below ``2**31``."""


def square_limbs(w: Any, positive: Any) -> Any:
    """int64 ``[..., 2]``: ``(floor(q), round((q - floor(q)) * 2**32))`` with ``q = min(w, 2**16)**2 * 2**16`` for
    positive entries (``positive`` bool), 0 for the others: the squared weight in units of ``2**-48`` as a high and a
    low limb; a cell adds each limb apart (:func:`~evaluators.ranking_positions.positive_units` reads them)."""
    xp = array_namespace(w)
    capped = xp.minimum(w.astype(xp.float64), SQUARED_WEIGHT_LIMIT)
    q = capped * capped * 2.0 ** (SQUARE_BITS - LIMB_BITS)
    high = xp.floor(q)
    low = xp.round((q - high) * 2.0**LIMB_BITS)
    return xp.stack([xp.where(positive, high, 0.0), xp.where(positive, low, 0.0)], axis=-1).astype(xp.int64)


def summed_leaves(state: State) -> tuple[str, ...]:
    """The :data:`SUMMED` leaves ``state`` holds."""
    return tuple(name for name in SUMMED if name in state)


def implied_squares(counts: np.ndarray) -> np.ndarray:
    """int64 ``[m, 2]``: the squares of cells whose positive rows all weigh 1, from their ``counts [m, 2]``: the
    positives' count over ``2**16`` as two limbs (exact, so that it adds like the counts: the squares a state stored
    before them is read with, units of 1)."""
    positives = np.asarray(counts, np.int64)[:, 1]
    low = (positives & ((1 << UNIT_SQUARE_SHIFT) - 1)) << (LIMB_BITS - UNIT_SQUARE_SHIFT)
    return np.stack([positives >> UNIT_SQUARE_SHIFT, low], axis=1)


def squared_weight_sums(squares: np.ndarray) -> np.ndarray:
    """float64 ``[m]``: each cell's ``sum w**2`` from its ``squares`` limbs ``[m, 2]``, in the counts' unit (times
    ``2**32``, as :data:`WEIGHT_BITS`): the high limb counts ``2**-16`` of ``w**2``, the low one ``2**-48``."""
    squares = np.asarray(squares, np.float64)
    return (squares[:, 0] + squares[:, 1] * 2.0**-LIMB_BITS) * 2.0 ** (WEIGHT_BITS - UNIT_SQUARE_SHIFT)


def carried(squares: np.ndarray) -> np.ndarray:
    """Squares' limbs with the low limb's carry moved into the high one (low limb below ``2**32``): the one pair of
    limbs of each total, whichever sums of rows and states made it."""
    squares = np.asarray(squares, np.int64)
    return np.stack([squares[:, 0] + (squares[:, 1] >> LIMB_BITS), squares[:, 1] & ((1 << LIMB_BITS) - 1)], axis=1)


def with_squares(state: State) -> State:
    """``state`` with its ``squares`` leaf: held, or implied by the counts (:func:`implied_squares`)."""
    return state if "squares" in state else {**state, "squares": implied_squares(state["counts"])}


def canonical_squares(state: State) -> State:
    """``state`` with its ``squares`` :func:`carried`, and without them where the counts imply them (every positive
    row of weight 1, the common case: the state stays 48 bytes a cell), so that whether a state holds them, and their
    bits, are a function of its rows; states of unweighted rows merge as fast as before they were counted."""
    if "squares" not in state:
        return state
    squares = carried(state["squares"])
    if np.array_equal(squares, implied_squares(state["counts"])):
        return {name: leaf for name, leaf in state.items() if name != "squares"}
    return {**state, "squares": squares}


def _alike(states: list[State]) -> list[State]:
    """``states`` all with their ``squares`` where any holds them, else as they are."""
    return [with_squares(s) for s in states] if any("squares" in s for s in states) else states


def is_sparse(state: Any) -> bool:
    """Whether a ranking state is the stored sparse form (else the dense working form, or a run stored
    before the sparse form)."""
    return isinstance(state, dict) and "keys" in state


def is_exact(state: Any) -> bool:
    """Whether a stored sparse state holds every distinct score of its rows exactly: no cell of several
    distinct scores (NaN tie), so each cell is one score (a bin may then hold several cells)."""
    if not is_sparse(state):
        return False
    ties = np.asarray(state["ties"])
    return not (np.isnan(ties[:64]).any() or np.isnan(ties[64:]).any())  # a binned state's first cells tell


EXACT_CELLS = 250_000
"""A :class:`ScoreHistogram` state keeps one cell per distinct (class, score) of its rows, exact, while the
rows hold at most this many (about 12 MB); beyond, one cell per occupied (class, bin). Whether a state is
exact depends only on the rows it holds, so the merged state, and the value, do not depend on sharding. A little
below the 262,144 values a statistic of one cell per bin folds at once, so that a chunk of continuous scores is seen
to exceed it and takes the compiled update."""


def _starts(*sorted_columns: np.ndarray) -> np.ndarray:
    """Indices where a run of equal values (in all ``sorted_columns`` together) begins."""
    change = np.zeros(len(sorted_columns[0]), bool)
    change[0] = True
    for c in sorted_columns:
        change[1:] |= c[1:] != c[:-1]
    return np.flatnonzero(change)


def _rows_by_label(order: np.ndarray, starts: np.ndarray, label: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per run: ``[negatives' sum, positives' sum]`` of rows ``values[order]`` (int64 ``[runs, 2]``)."""
    v, positive = values[order], label[order] == 1
    return np.stack(
        [np.add.reduceat(np.where(positive, 0, v), starts), np.add.reduceat(np.where(positive, v, 0), starts)], axis=1
    )


def compact_cells(
    keys: Column, label: Column, weight: Column, moment: Column, score: Column, square: Column | None
) -> State:
    """Rows' cells ``[r]`` (``square``: ``[r, 2]``, see :func:`square_limbs`) -> a
    binned :class:`ScoreHistogram` state, one cell per key (summed integer counts, weighted positions and positives'
    squared weights, the tie value of single-score cells)."""
    if len(keys) == 0:
        return _empty_cells()
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = _starts(keys)
    s = score[order]
    low, high = np.minimum.reduceat(s, starts), np.maximum.reduceat(s, starts)
    ties = np.where(low == high, low, np.nan)
    counts, sums = _rows_by_label(order, starts, label, weight), _rows_by_label(order, starts, label, moment)
    return _with_row_squares(
        {"keys": keys[starts], "counts": counts, "sums": sums, "ties": ties}, square, order, starts
    )


def _with_row_squares(cells: State, square: np.ndarray | None, order: np.ndarray, starts: np.ndarray) -> State:
    """``cells`` with the summed ``square`` of their rows (rows ``order``, runs from ``starts``) where they say more
    than the counts; ``square`` None: every weight is 1."""
    if square is None:
        return cells
    return canonical_squares({**cells, "squares": np.add.reduceat(square[order], starts, axis=0)})


def _class_score_order(keys: np.ndarray, score: np.ndarray, presorted: bool = False) -> np.ndarray:
    """The permutation that sorts cells by class, then score (so by key too: bins are monotone in the score).
    ``presorted``: ``score`` is made of sorted runs (a merge), which the stable sort merges in linear time."""
    order = np.argsort(score, kind="stable" if presorted else None)
    cls = keys[order] >> CLASS_SHIFT
    if len(cls) and cls.min() != cls.max():
        narrow = cls.astype(np.int16) if cls.max() < 1 << 15 else cls  # radix sort for 16-bit keys
        order = order[np.argsort(narrow, kind="stable")]
    return order


def exact_row_cells(
    keys: Column, label: Column, weight: Column, moment: Column, score: Column, square: Column | None
) -> State:
    """Rows' cells ``[r]`` -> an exact :class:`ScoreHistogram` state: one cell per distinct (class, score),
    ascending, with the rows' summed integer counts, weighted positions and positives' squared weights, and the
    score as its tie."""
    if len(keys) == 0:
        return _empty_cells()
    order = _class_score_order(keys, score)
    k, s = keys[order], score[order]
    starts = _starts(k, s)
    counts, sums = _rows_by_label(order, starts, label, weight), _rows_by_label(order, starts, label, moment)
    return _with_row_squares(
        {"keys": k[starts], "counts": counts, "sums": sums, "ties": s[starts]}, square, order, starts
    )


def exact_cells_by_group(
    keys: Column, label: Column, weight: Column, moment: Column, score: Column, square: Column | None, group: Column
) -> tuple[State, np.ndarray]:
    """Rows' cells ``[r]`` with each row's group -> the cells of :func:`exact_row_cells` for every group at once
    (one sort by group, class and score), and the index at which each group's cells start (``[groups + 1]``: group
    ``g`` holds cells ``bounds[g]:bounds[g + 1]``)."""
    groups = int(group.max()) + 1 if len(group) else 0
    if len(keys) == 0:
        return _empty_cells(), np.zeros(groups + 1, np.int64)
    order = _class_score_order(keys, score)
    narrow = group.astype(np.int16) if groups <= 1 << 15 else group  # radix sort for 16-bit keys
    order = order[np.argsort(narrow[order], kind="stable")]
    g, k, s = group[order], keys[order], score[order]
    starts = _starts(g, k, s)
    counts, sums = _rows_by_label(order, starts, label, weight), _rows_by_label(order, starts, label, moment)
    cells = {"keys": k[starts], "counts": counts, "sums": sums, "ties": s[starts]}
    if square is not None:  # (each group's own are canonical_squares of its cells)
        cells["squares"] = np.add.reduceat(square[order], starts, axis=0)
    return cells, np.searchsorted(g[starts], np.arange(groups + 1))


def collapse_cells(state: State) -> State:
    """An exact state -> one cell per key (bin): counts and positions add, and a cell of several scores
    gets a NaN tie. A state of one cell per key is returned as it is."""
    keys = np.asarray(state["keys"])
    if len(keys) < 2 or not (keys[1:] == keys[:-1]).any():
        return canonical_squares(state)  # (squares carried, as every merge leaves them)
    starts = _starts(keys)
    ties = np.asarray(state["ties"])
    low, high = np.minimum.reduceat(ties, starts), np.maximum.reduceat(ties, starts)
    collapsed = {name: summed_runs(np.asarray(state[name]), starts) for name in summed_leaves(state)}
    return canonical_squares({"keys": keys[starts], **collapsed, "ties": np.where(low == high, low, np.nan)})


def _merge_exact(a: State, b: State) -> State:
    """Union of two exact states by (class, score); counts and positions of a score in both add."""
    slot_a, slot_b = _merged_slots(a, b)
    n = len(slot_a) + len(slot_b)
    merged: dict[str, np.ndarray] = {}
    summed = summed_leaves(a)
    for name in ("keys", "ties", *summed):
        pairs = name in summed  # (int64 pairs as 16-byte items, see _pair_view)
        column = np.empty(n, np.complex128 if pairs else np.asarray(a[name]).dtype)
        column[slot_a], column[slot_b] = (_pair_view(a[name]), _pair_view(b[name])) if pairs else (a[name], b[name])
        merged[name] = column
    ties = merged["ties"]
    again = np.flatnonzero((ties[1:] == ties[:-1]) & (merged["keys"][1:] == merged["keys"][:-1])) + 1
    if len(again):  # a score on both sides: the pair is adjacent (a's first); b's counts go into a's cell
        keep = np.ones(n, bool)
        keep[again] = False
        for name in summed:
            flat = merged[name].view(np.int64)
            for half in (0, 1):
                flat[2 * (again - 1) + half] += flat[2 * again + half]
                if name == "counts":  # (sums <= counts)
                    check_counts(flat[2 * (again - 1) + half])
        merged = {name: column[keep] for name, column in merged.items()}
    for name in summed:
        merged[name] = merged[name].view(np.int64).reshape(-1, 2)
    return merged


def _merged_slots(a: State, b: State) -> tuple[np.ndarray, np.ndarray]:
    """Where each cell of two exact states (each ascending by class, then score) goes in their merged order
    (a cell of both: ``a``'s first), by binary search of one side's cells in the other's: no sort."""
    ka, kb = np.asarray(a["keys"]), np.asarray(b["keys"])
    ta, tb = np.asarray(a["ties"]), np.asarray(b["ties"])
    ca, cb = ka >> CLASS_SHIFT, kb >> CLASS_SHIFT
    if ca[0] == ca[-1] == cb[0] == cb[-1]:  # one class (binary)
        before_b = np.searchsorted(ta, tb, "right")
    else:
        before_b = np.searchsorted(ca, cb, "left")  # a's cells of lower classes
        classes_b = cb[_starts(cb)]
        for c in classes_b[np.isin(classes_b, ca[_starts(ca)])]:  # within a class both hold: by score
            ra = slice(*np.searchsorted(ca, [c, c + 1]))
            rb = slice(*np.searchsorted(cb, [c, c + 1]))
            before_b[rb] += np.searchsorted(ta[ra], tb[rb], "right")
    slot_b = before_b + np.arange(len(kb))
    taken = np.zeros(len(ka) + len(kb), bool)
    taken[slot_b] = True
    return np.flatnonzero(~taken), slot_b


def _pair_view(pairs: np.ndarray) -> np.ndarray:
    """int64 ``[m, 2]`` as ``[m]`` 16-byte items (the same bytes): 1-D fancy indexing moves each pair at once,
    several times faster than row indexing."""
    return np.ascontiguousarray(pairs, np.int64).view(np.complex128).reshape(-1)


@dataclass(frozen=True)
class BinnedForm:
    """How states beyond ``exact_cells`` are binned: ``collapse`` takes cells of one state to the form, ``union``
    merges two states (at least one binned), ``add`` many at once. :data:`ONE_CELL_PER_BIN` by default; bins that
    keep their scores: :func:`~evaluators.ranking_bins.kept_form`."""

    collapse: Callable[[State], State]
    union: Callable[[State, State], State]
    add: Callable[[list[State]], State]


ONE_CELL_PER_BIN = BinnedForm(
    collapse_cells,
    lambda a, b: _merge_binned(*_alike([collapse_cells(a), collapse_cells(b)])),
    lambda states: _add_cells(states) if any(is_exact(s) for s in states) else _add_binned(states),
)


def merge_cells(a: State, b: State, exact_cells: int = EXACT_CELLS, form: BinnedForm = ONE_CELL_PER_BIN) -> State:
    """:func:`merge_cell_forms`, with the two sides' :func:`rounded_rows` added."""
    cells = merge_cell_forms(a, b, exact_cells, form)
    return {**cells, "rounded": rounded_rows(a) + rounded_rows(b)}


def rounded_rows(state: State) -> np.ndarray:
    """int64 ``[2]``: how many (row, class) entries of negatives and of positives had a weight that the fixed
    point rounded (each by at most ``2**-(WEIGHT_BITS + 1)``); zeros for states stored before this count."""
    return np.asarray(state["rounded"]) if "rounded" in state else np.zeros(2, np.int64)


def merge_cell_forms(a: State, b: State, exact_cells: int = EXACT_CELLS, form: BinnedForm = ONE_CELL_PER_BIN) -> State:
    """Merge two stored :class:`ScoreHistogram` states. Two exact states give their union while it holds at
    most ``exact_cells`` cells, and the binned ``form`` beyond (one cell per bin: :func:`collapse_cells`); otherwise
    the form's union (one cell per bin: both sides taken to one cell per bin and merged by sorted-key union, counts
    adding as integers, a cell tied only if both sides hold the same single score)."""
    if len(a["keys"]) == 0:
        return b if len(b["keys"]) <= exact_cells else form.collapse(b)
    if len(b["keys"]) == 0:
        return a if len(a["keys"]) <= exact_cells else form.collapse(a)
    if is_exact(a) and is_exact(b):
        union = _merge_exact(*_alike([a, b]))
        return canonical_squares(union) if len(union["keys"]) <= exact_cells else form.collapse(union)
    return canonical_squares(form.union(a, b))


def _merge_binned(a: State, b: State) -> State:
    """Sorted-key union of two states of one cell per key."""
    ka, kb = np.asarray(a["keys"]), np.asarray(b["keys"])
    summed = summed_leaves(a)
    if len(ka) == len(kb) and np.array_equal(ka, kb):
        ta, tb = a["ties"], b["ties"]
        out = {"keys": ka, **{name: a[name] + b[name] for name in summed}, "ties": np.where(ta == tb, ta, np.nan)}
        check_counts(out["counts"])
        return out
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
    for name in summed:
        flat = np.zeros(2 * m, np.int64)
        flat[flat_a] = np.asarray(a[name]).ravel()
        flat[flat_b] += np.asarray(b[name]).ravel()  # a key appears at most once per side
        out[name] = flat.reshape(m, 2)
    check_counts(out["counts"])
    ties = np.full(m, np.nan)
    ties[pa] = a["ties"]
    in_a = np.zeros(m, bool)
    in_a[pa] = True
    tb = np.asarray(b["ties"])
    ties[pb] = np.where(in_a[pb], np.where(ties[pb] == tb, tb, np.nan), tb)
    out["ties"] = ties
    return out


_NAN_BITS = np.array(np.nan).view(np.int64).item()
_NO_CELL = np.array(0x7FF0_0000_0000_0001, np.int64).item()
"""Bits of a float64 NaN that no tie holds (a tie is a score, or the quiet NaN of several scores): a cell no state
has reached yet."""
MERGE_WINDOW_FACTOR = 8
""":func:`merge_many_cells` adds states into dense arrays over the (class, bin) window they span while
that window holds at most this many times their cells; a sparser window is merged by sorted-key unions."""


def merge_many_cells(states: list[State], exact_cells: int = EXACT_CELLS, form: BinnedForm = ONE_CELL_PER_BIN) -> State:
    """The merge of many stored states, equal to folding :func:`merge_cells` over them in any order (the merged
    state is a function of the rows alone).

    States that are all exact are joined while their union stays exact (one sort of all their cells). Once the rows
    are known to need bins (a binned input, or more distinct scores than ``exact_cells``, seen without a sort by
    :func:`distinct_lower_bound`), the states are added into dense int64 arrays over the window of (class, bin) keys
    they span: binned states (one cell per key) by gathers and scatters (:func:`_add_binned`; 10,000 unit states of
    ~9,000 cells: ~4x faster than sorted unions), exact ones among them cell by cell (:func:`_add_cells`: no sort,
    and no collapse of each state first; 1,000 slice states of 1,000 cells: ~3x faster than joining them), or as the
    binned ``form`` adds them."""
    rounded = sum((rounded_rows(s) for s in states), np.zeros(2, np.int64))
    states = _alike([s for s in states if len(s["keys"])])
    exact = [is_exact(s) for s in states]
    if all(exact):
        total = sum(len(s["keys"]) for s in states)
        if total <= exact_cells or distinct_lower_bound(_concatenated(states, "ties")) <= exact_cells:
            union = _union_exact(states)
            cells = canonical_squares(union) if len(union["keys"]) <= exact_cells else form.collapse(union)
            return {**cells, "rounded": rounded}
    return {**canonical_squares(form.add(states)), "rounded": rounded}


def _concatenated(states: list[State], name: str) -> np.ndarray:
    return np.concatenate([np.asarray(s[name]) for s in states])


def _cells_of(state: State) -> State:
    """A stored state's cell leaves (without its ``rounded`` count)."""
    return {k: state[k] for k in ("keys", "ties", *summed_leaves(state))}


def _union_exact(states: list[State]) -> State:
    """The union of exact states by (class, score), one sort of all their cells (each state's are in order: the
    stable sort merges those runs); counts and positions of a score in several add. The state that merging them
    pairwise with :func:`_merge_exact` gives."""
    states = [s for s in states if len(s["keys"])]
    if len(states) < 2:
        return _cells_of(states[0]) if states else _empty_cells()
    keys, ties = _concatenated(states, "keys"), _concatenated(states, "ties")
    order = _class_score_order(keys, ties, presorted=True)
    keys, ties = keys[order], ties[order]
    starts = _starts(keys, ties)
    merged = {"keys": keys[starts], "ties": ties[starts]}
    for name in summed_leaves(states[0]):
        pairs = np.concatenate([_pair_view(s[name]) for s in states])[order].view(np.int64).reshape(-1, 2)
        merged[name] = summed_runs(pairs, starts) if len(starts) < len(keys) else pairs
    return merged


@dataclass(frozen=True)
class _KeyWindow:
    """The dense window of (class, bin) keys that some states span: slot ``(class - cls_lo) * span + bin - bin_lo``."""

    cls_lo: int
    bin_lo: int
    span: int
    size: int

    @staticmethod
    def of(states: list[State]) -> _KeyWindow | None:
        """The window of ``states`` (each ascending by key), or None where it holds more than
        :data:`MERGE_WINDOW_FACTOR` times their cells (the states are then merged by sorted-key unions)."""
        keys = [np.asarray(s["keys"]) for s in states]
        cls_lo = min(int(k[0]) >> CLASS_SHIFT for k in keys)
        cls_hi = max(int(k[-1]) >> CLASS_SHIFT for k in keys)
        if cls_lo == cls_hi:  # one class: keys ascend with the bin
            bin_lo, bin_hi = min(int(k[0]) & _BIN_MASK for k in keys), max(int(k[-1]) & _BIN_MASK for k in keys)
        else:
            bin_lo, bin_hi = (
                min(int((k & _BIN_MASK).min()) for k in keys),
                max(int((k & _BIN_MASK).max()) for k in keys),
            )
        span = bin_hi - bin_lo + 1
        size = (cls_hi - cls_lo + 1) * span
        return (
            None if size > MERGE_WINDOW_FACTOR * sum(len(k) for k in keys) else _KeyWindow(cls_lo, bin_lo, span, size)
        )

    def slots(self, keys: np.ndarray) -> np.ndarray:
        if self.size == self.span:  # one class: the keys less the window's first
            return keys - ((self.cls_lo << CLASS_SHIFT) | self.bin_lo)
        return (keys & _BIN_MASK) - self.bin_lo + ((keys >> CLASS_SHIFT) - self.cls_lo) * self.span

    def keys(self, slots: np.ndarray) -> np.ndarray:
        cls, rest = np.divmod(slots, self.span)
        return ((cls + self.cls_lo) << CLASS_SHIFT) | (rest + self.bin_lo)


def _by_unions(states: list[State]) -> State:
    """Sorted-key unions of the states, each taken to one cell per key (a sparse window)."""
    merged = collapse_cells(states[0])
    for state in states[1:]:
        merged = _merge_binned(*_alike([merged, collapse_cells(state)]))
    return merged


def _add_binned(states: list[State]) -> State:
    """Sum of binned states (one cell per key each) over their dense key window, by gathers and scatters of whole
    int64 pairs, or by sorted-key unions when that window is sparse."""
    if len(states) < 2:
        return _cells_of(states[0]) if states else _empty_cells()
    window = _KeyWindow.of(states)
    if window is None:
        return _by_unions(states)
    totals = {name: np.zeros(window.size, np.complex128) for name in summed_leaves(states[0])}  # int64 pairs
    ties = np.full(window.size, _NO_CELL, np.int64)  # each cell's tie as float64 bits
    for state in states:
        slot = window.slots(np.asarray(state["keys"]))
        for name, total in totals.items():
            seen = total[slot]
            seen.view(np.int64).reshape(-1, 2).__iadd__(np.asarray(state[name], np.int64))
            total[slot] = seen
            if name == "counts" and seen.view(np.int64).min() < 0:  # each state's add: an overflow is seen
                raise cell_overflow()  # before the next add (and sums <= counts)
        _add_ties(ties, slot, np.ascontiguousarray(state["ties"], np.float64))
    occupied = np.flatnonzero(ties != _NO_CELL)
    summed = {name: total[occupied].view(np.int64).reshape(-1, 2) for name, total in totals.items()}
    return {"keys": window.keys(occupied), **summed, "ties": ties[occupied].view(np.float64)}


def _add_ties(ties: np.ndarray, slot: np.ndarray, tie: np.ndarray) -> None:
    """Add one state's cell ties (float64 ``[m]``) at ``slot`` into ``ties`` (float64 bits, :data:`_NO_CELL` where no
    state has been): a tie stays while every side holds that one score, and a cell of several scores (NaN) is NaN.
    Only the cells that change are written: a cell no state has reached, or a single score that this state does not
    hold (once most cells are NaN, few)."""
    bits = tie.view(np.int64)
    seen = ties[slot]
    changed = np.flatnonzero(((seen != bits) | (seen == _NO_CELL)) & (seen != _NAN_BITS))
    if len(changed):
        tie = tie[changed]
        ties[slot[changed]] = np.where((seen[changed] == _NO_CELL) & (tie == tie), bits[changed], _NAN_BITS)


def _add_cells(states: list[State]) -> State:
    """The binned sum of stored states, exact ones among them (ascending by key; a key may repeat in an exact
    state): one cell per key, whose counts and positions add and whose tie stays while every cell of that key holds
    the same single score (compared as bits: the ties' lowest and highest bits are equal). Added with ``np.add.at``
    over the dense key window, or by sorted-key unions where that window is sparse."""
    window = _KeyWindow.of(states) if states else None
    if window is None:
        return _by_unions(states) if states else _empty_cells()
    totals = {name: np.zeros((window.size, 2), np.int64) for name in summed_leaves(states[0])}
    counts = totals["counts"]
    int64 = np.iinfo(np.int64)
    low, high = np.full(window.size, int64.max, np.int64), np.full(window.size, int64.min, np.int64)  # ties' bits
    occupied = np.zeros(window.size, bool)
    unchecked = 0  # the sum of the largest counts added since the counts were last seen non-negative
    for state in states:
        slot = window.slots(np.asarray(state["keys"]))
        largest = int(np.max(state["counts"], initial=0))
        if unchecked + largest >= 1 << 63:
            check_counts(counts)
            unchecked = 0
        unchecked += largest
        for name, total in totals.items():
            added = np.asarray(state[name], np.int64)
            np.add.at(total[:, 0], slot, added[:, 0])
            np.add.at(total[:, 1], slot, added[:, 1])
        tie = np.ascontiguousarray(state["ties"], np.float64).view(np.int64)
        np.minimum.at(low, slot, tie)
        np.maximum.at(high, slot, tie)
        occupied[slot] = True
    check_counts(counts)  # (counts below 2**63 before adds whose largest counts sum below 2**63 read negative after
    # them exactly when a cell passed 2**63; sums <= counts)
    at = np.flatnonzero(occupied)
    # (1-D gathers of whole pairs: faster)
    summed = {name: _pair_view(total)[at].view(np.int64).reshape(-1, 2) for name, total in totals.items()}
    return {
        "keys": window.keys(at),
        **summed,
        "ties": np.where(low[at] == high[at], low[at], _NAN_BITS).view(np.float64),
    }
