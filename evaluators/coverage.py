"""Catalogue coverage of a ranking: the share of the catalogue's items that some query shows in its top ``k``.

The batch is a ranking task's (see :mod:`evaluators.retrieval`: item scores, relevance, ``query_id``, a query's
rows contiguous) plus ``item_id`` (``[n]`` integers or strings, the item of each row). An item is *shown* when it
is among the top ``k`` rows of a query of positive weight, ranked by descending score with equal scores in row
order (the order of :mod:`evaluators.retrieval`). Coverage is the number of distinct items shown over
``catalog_size``, or, without it, over the number of distinct items in the data (every row of positive weight);
query weights only decide whether a query counts, as coverage counts items, not queries.

State (sets of 8-byte BLAKE2b digests, as ``distinct_n``'s, merged by union), bounded by distinct items and
queries, never rows:

===============  ===========================  ==================================================================
leaf             shape / dtype                meaning
===============  ===========================  ==================================================================
``keys``         ``[q]`` uint64, sorted       finished queries (a query met twice is refused, as in ``ndcg``)
``shown``        ``[m]`` uint64, sorted       the distinct items shown (integers as their bits, strings by digest)
``items``        ``[c]`` uint64, sorted       every distinct item met (empty when ``catalog_size`` is given)
``open_key``     ``[0]`` or ``[1]`` uint64    the last query of the batches seen so far, which the next batch may
``open_rows``    ``[r, 2]`` float64           continue: its rows' scores and weights, and their items;
``open_items``   ``[r]`` uint64               finished when the unit's state is stored or merged
===============  ===========================  ==================================================================

Two different string items share a digest with probability below ``c**2 / 2**65`` (3e-8 at a million items).
No bootstrap interval: a set does not split into bucket states that add.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from evaluators.retrieval import (
    NOT_CONTIGUOUS,
    QUERY,
    QueryRowsError,
    check_k,
    continued,
    goes_on,
    id_key,
    last_key,
    positive_rows,
    reopened,
    runs,
    split_across,
    union_keys,
)
from evaluators.statistic import NON_NEGATIVE, Batch, DerivedMetric, Direction, State, Statistic
from evaluators.task import Task, TaskKind

ITEM = "item_id"
"""The batch key (and ``data.columns`` role) of the item ids."""


def item_keys(values: np.ndarray) -> np.ndarray:
    """uint64 ``[n]`` key of each item id (integers as their bits, strings by an 8-byte BLAKE2b digest)."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(np.int64).view(np.uint64)
    if values.dtype.kind == "f":
        raise ValueError("item ids must be integers or strings, not floating-point numbers")
    uniq, inverse = np.unique(values.astype(str), return_inverse=True)
    return np.fromiter((id_key(u) for u in uniq), np.uint64, count=len(uniq))[inverse.reshape(-1)]


def top_items(starts: np.ndarray, scores: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """uint64 ``[t]``: the items of the top ``k`` rows of each query (rows ``[starts[i], starts[i + 1])``), by
    descending score, equal scores in row order."""
    n = len(scores)
    sizes = np.diff(np.append(starts, n))
    group = np.repeat(np.arange(len(starts)), sizes)
    order = np.lexsort((np.arange(n), -scores, group))
    return items[order][np.arange(n) - np.repeat(starts, sizes) < k]


def _empty_open() -> State:
    return {"open_key": np.zeros(0, np.uint64), "open_rows": np.zeros((0, 2)), "open_items": np.zeros(0, np.uint64)}


@dataclass(frozen=True)
class ShownItems(Statistic):
    """The items shown in the top ``k`` of some query, and (``catalog``) every item met; see the module."""

    k: int = 10
    catalog: bool = True

    jittable = False
    bootstrap = False
    columns = (QUERY, ITEM)

    def zero(self) -> State:
        empty = np.zeros(0, np.uint64)
        return {"keys": empty, "shown": empty, "items": empty, **_empty_open()}

    def _add(self, state: State, starts: np.ndarray, keys: np.ndarray, rows: np.ndarray, items: np.ndarray) -> State:
        """``state`` with finished queries ``keys`` (rows ``rows[starts[i]:starts[i + 1]]``) added."""
        if not len(keys):
            return state
        seen, repeated = union_keys(state["keys"], np.sort(keys))
        if repeated:
            raise QueryRowsError(NOT_CONTIGUOUS)
        shown = np.union1d(state["shown"], top_items(starts, rows[:, 0], items, self.k)).astype(np.uint64)
        every = np.union1d(state["items"], items).astype(np.uint64) if self.catalog else state["items"]
        return {**state, "keys": seen, "shown": shown, "items": every}

    def update(self, state: State, batch: Batch) -> State:
        ids, rows, keep = positive_rows(batch, (batch["predictions"], batch["weights"]))
        every = np.asarray(batch[QUERY])
        if not len(every):
            return state
        if not goes_on(state["open_key"], state["open_rows"], every, keep):
            state = self.stored(state)
        if len(ids):
            items = item_keys(batch[ITEM])[keep]
            starts, keys = runs(ids)
            _, _, items = continued(state["open_key"], state["open_items"], starts, keys, items)
            starts, keys, rows = continued(state["open_key"], state["open_rows"], starts, keys, rows)
            last = starts[-1]
            done = self._add({**state, **_empty_open()}, starts[:-1], keys[:-1], rows[:last], items[:last])
            if np.any(done["keys"] == keys[-1]):
                raise reopened(ids[-1])
            state = {**done, "open_key": keys[-1:].copy(), "open_rows": rows[last:], "open_items": items[last:]}
        weighing_0 = last_key(every, keep)
        return state if weighing_0 is None else {**self.stored(state), "open_key": weighing_0}

    def stored(self, state: State) -> State:
        if not len(state["open_rows"]):
            return {**state, **_empty_open()} if len(state["open_key"]) else state
        return self._add(
            {**state, **_empty_open()},
            np.zeros(1, np.int64),
            np.asarray(state["open_key"], np.uint64),
            np.asarray(state["open_rows"], np.float64),
            np.asarray(state["open_items"], np.uint64),
        )

    def merge(self, a: State, b: State) -> State:
        a, b = self.stored(a), self.stored(b)
        keys, repeated = union_keys(a["keys"], b["keys"])
        if repeated:
            raise split_across(repeated)
        union = {name: np.union1d(a[name], b[name]).astype(np.uint64) for name in ("shown", "items")}
        return {"keys": keys, **union, **_empty_open()}


def _coverage(statistic: ShownItems, catalog_size: int | None, state: State) -> dict[str, float]:
    state = statistic.stored(state)  # a state straight from updates may still hold its last query open
    shown = float(len(state["shown"]))
    size = float(catalog_size if catalog_size is not None else len(state["items"]))
    value = shown / size if size > 0 else float("nan")
    return {"": value, ".items_shown": shown, ".catalog_size": size, ".queries": float(len(state["keys"]))}


def coverage(task: Task, *, k: int = 10, catalog_size: int | None = None) -> DerivedMetric:
    """Catalogue coverage: distinct items in some query's top ``k`` over ``catalog_size`` (None: the distinct
    items in the data); also ``.items_shown``, ``.catalog_size`` and ``.queries``. A value above 1 means the data
    shows more items than ``catalog_size``."""
    if task.kind is not TaskKind.RANKING:
        raise ValueError(f"coverage is defined for ranking tasks (query id, item id, item score), not {task.kind}")
    size = None if catalog_size is None else int(catalog_size)
    statistic = ShownItems(check_k(k, False), catalog=size is None)
    parts = (".items_shown", ".catalog_size", ".queries")
    counts = tuple((part, NON_NEGATIVE) for part in parts)
    value_of = partial(_coverage, statistic, size)
    return DerivedMetric(
        "coverage",
        statistic,
        value_of,
        Direction.HIGHER,
        value_range=NON_NEGATIVE,
        part_ranges=counts,
        info_parts=parts,
    )
