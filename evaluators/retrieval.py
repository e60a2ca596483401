"""Ranking / retrieval metrics of ``(query id, item score, relevance)`` rows, from per-query values summed over
queries.

A ranking task's batch has ``predictions`` (item scores, float ``[n]``), ``targets`` (relevance, a number >= 0
``[n]``; graded for nDCG, relevant means > 0 elsewhere) and ``query_id`` (``[n]`` integers or strings). Each
query's items are ranked inside the statistic, so **the rows of one query must be contiguous** (one run of rows,
in one file: planning keeps a ranking job's files whole). A query found in two runs, two work units or two
slices is refused (:class:`QueryRowsError`), never half-counted.

State (one per ``k``; every metric with the same ``k`` shares it), bounded by queries, not items:

==============  ===========================  ======================================================================
leaf            shape / dtype                meaning
==============  ===========================  ======================================================================
``keys``        ``[q]`` uint64, sorted       one key per finished query (integers as their bits, strings by an
                                             8-byte BLAKE2b digest): a query met twice is refused
``sums``        ``[6, 2]`` int64             fixed-point sums over queries of weight x (nDCG, AP, precision,
                                             recall, reciprocal rank, hit), order-free and exact under merging
``counts``      ``[3]`` float64              total query weight, queries, queries without a relevant item
``open_key``    ``[0]`` or ``[1]`` uint64    the last query of the batches seen so far, which the next batch may
``open_rows``   ``[m, 3]`` float64           continue: its rows (score, relevance, weight); finished when the
                                             unit's state is stored (:meth:`QuerySums.stored`) or merged
==============  ===========================  ======================================================================

Conventions, as the references:

* ranks: items by descending score; equal scores keep their row order (the earlier row ranks higher), except
  in nDCG, where tied items share the mean gain of their tie group (scikit-learn ``ndcg_score``, torchmetrics);
* nDCG uses linear gains (``relevance / log2(rank + 1)``, scikit-learn), the ideal DCG over the top ``k`` of the
  ideal order; a query without a relevant item scores 0 in every metric (scikit-learn; torchmetrics'
  ``empty_target_action="neg"``) and is counted in ``.queries_without_relevant``;
* ``precision_at_k`` divides by ``min(k, items)`` (calibrax; torchmetrics ``adaptive_k=True``);
  ``mean_average_precision`` with ``k`` averages the precision at the relevant items found in the top ``k``
  (torchmetrics ``retrieval_average_precision(top_k=k)``), without ``k`` over all relevant items;
* a query's weight is the weight of its rows (they must agree); zero-weight rows are left out.

Bootstrap intervals: the pipeline buckets a ranking job's rows by query id, and :class:`QueryBucketSums` keeps the
``sums`` and ``counts`` per bucket (no keys), so a replicate reweights whole queries, exactly (integer sums).
Catalogue coverage, which also ranks per query, is in :mod:`evaluators.coverage`.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from evaluators.kernels import WeightBoundedSums, from_fixed, refuse_light_total, refuse_weight_total, to_fixed
from evaluators.statistic import (
    NON_NEGATIVE,
    RATIO,
    Batch,
    DerivedMetric,
    Direction,
    RowsError,
    State,
    Statistic,
    resample_sums,
)
from evaluators.task import Task, TaskKind

QUERY = "query_id"
"""The batch key (and ``data.columns`` role) of the query ids."""
VALUES = ("ndcg", "average_precision", "precision", "recall", "reciprocal_rank", "hit")
"""Per-query values, in the order of the state's ``sums`` rows."""


class QueryRowsError(RowsError):
    """Rows of one query that cannot be ranked together: not one contiguous run, or of different weights."""

    role = QUERY


DIFFERENT_WEIGHTS = "the rows of a query carry different weights; expected one weight per query"


NOT_CONTIGUOUS = (
    "the rows of a query are not contiguous (the same query id appears in two separate runs of rows, two work units "
    "or two slices); write each query's rows next to each other in one file"
)


def reopened(query: object) -> QueryRowsError:
    """The error of a batch whose last query was already finished earlier."""
    return QueryRowsError(
        f"query {np.asarray(query).item()!r}: its rows are not contiguous (they appear in two separate runs of rows); "
        "write each query's rows next to each other in one file"
    )


def split_across(repeated: int) -> QueryRowsError:
    """The error of a merge that meets ``repeated`` queries on both sides."""
    return QueryRowsError(
        f"{repeated} queries have rows in two work units or two slices; a query's rows must be contiguous in one "
        "file (planning keeps each file of a ranking job in one work unit), and a slice column must be constant "
        "within a query"
    )


INT64_IDS = (-(1 << 63), (1 << 63) - 1)
"""Integer ids in this range are keyed by their int64 bits; beyond it (uint64 ids from 2**63), by their text's digest,
so that such an id and the negative int64 of the same bits are two queries."""


def id_key(value: object) -> int:
    """uint64 key of one id: an integer within int64 as its bits, anything else (a larger integer, a string) by an
    8-byte BLAKE2b digest of its text."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool) and INT64_IDS[0] <= value <= INT64_IDS[1]:
        return int(np.int64(value).view(np.uint64))
    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8).digest(), "little")


def runs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, keys)`` of the runs of equal consecutive ids: int64 ``[r]`` first rows, uint64 ``[r]`` keys."""
    ids = np.asarray(ids)
    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    if ids.dtype.kind == "f":
        raise ValueError("query ids must be integers or strings, not floating-point numbers")
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    if ids.dtype.kind == "i" or (ids.dtype.kind == "u" and int(ids.max()) <= INT64_IDS[1]):
        return starts, ids[starts].astype(np.int64).view(np.uint64)
    if ids.dtype.kind == "u":  # (uint64 ids from 2**63: not the negative int64 ids of the same bits)
        return starts, np.fromiter((id_key(int(v)) for v in ids[starts]), np.uint64, count=len(starts))
    return starts, np.fromiter((id_key(v) for v in ids[starts]), np.uint64, count=len(starts))


def union_keys(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """``(sorted union, number of keys in both)`` of two sorted uint64 key arrays, each without repeats."""
    keys = np.concatenate([a, b]).astype(np.uint64, copy=False)
    keys.sort(kind="stable")
    repeated = keys[1:] == keys[:-1] if len(keys) > 1 else np.zeros(0, bool)
    return keys, int(np.count_nonzero(repeated))


def positive_rows(batch: Batch, columns: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids [k], rows float64 [k, c], keep bool [n])``: the query ids and ``columns`` (each ``[n]``) of the rows of
    positive weight (the others count nowhere)."""
    keep = np.asarray(batch["weights"], np.float64) > 0
    ids = np.asarray(batch[QUERY])
    if keep.any() and not keep.all():  # a query weighs 0 in all its rows or in none (its rows carry its weight)
        starts, _ = runs(ids)
        kept = np.add.reduceat(keep.astype(np.int64), starts)
        if np.any((kept > 0) & (kept < np.diff(starts, append=len(ids)))):
            raise QueryRowsError(DIFFERENT_WEIGHTS)
        if len(runs(ids[keep])[0]) < np.count_nonzero(kept):  # a query of weight 0 between two runs of another
            raise QueryRowsError(NOT_CONTIGUOUS)
    rows = np.stack([np.asarray(c, np.float64)[keep] for c in columns], axis=1)
    return ids[keep], rows, keep


def goes_on(open_key: np.ndarray, open_rows: np.ndarray, ids: np.ndarray, keep: np.ndarray) -> bool:
    """Whether a batch of query ids ``ids`` (``[n]``, ``n >= 1``; ``keep`` bool ``[n]``: its rows of positive weight)
    continues the query left open by the batches before it (``open_key`` ``[0]`` or ``[1]``, ``open_rows`` ``[m, ...]``;
    a key without rows: that query weighed 0): its first row is of that query, and of positive weight. A batch
    that does not continue it finishes it (a row of another query lies between), even where weight 0 leaves that
    row out. Refused (``QueryRowsError``) where the first row is of that query but weighs 0 and the query's earlier
    rows did not, or the other way round."""
    if not len(open_key):
        return False
    same = int(runs(ids[:1])[1][0]) == int(open_key[0])
    if same and bool(keep[0]) != bool(len(open_rows)):
        raise QueryRowsError(DIFFERENT_WEIGHTS)
    return same and bool(len(open_rows))


def last_key(ids: np.ndarray, keep: np.ndarray) -> np.ndarray | None:
    """uint64 ``[1]``: the key of the query of a batch's last row where that row weighs 0 (the next batch may go on
    with that query: :func:`goes_on` checks it weighs 0 there too), else None."""
    return None if keep[-1] else runs(ids[-1:])[1]


def continued(
    open_key: np.ndarray, open_rows: np.ndarray, starts: np.ndarray, keys: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, keys, rows)`` of a batch's runs (:func:`runs`) with the open query's rows (``[m, ...]``, key
    ``open_key`` ``[0]`` or ``[1]``) in front, joined to the batch's first run when the batch continues it. The
    last run is the new open query; the others are finished."""
    if not len(open_rows):
        return starts, keys, rows
    if int(open_key[0]) == int(keys[0]):  # the batch continues the open query
        starts = np.concatenate([[0], starts[1:] + len(open_rows)])
    else:
        starts = np.concatenate([[0], starts + len(open_rows)])
        keys = np.concatenate([np.asarray(open_key, np.uint64), keys])
    return starts, keys, np.concatenate([open_rows, rows])


def query_sums(starts: np.ndarray, rows: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per finished query (rows ``rows[starts[i]:starts[i + 1]]``, columns score, relevance, weight, ...):
    ``(int64 [q, 6, 2] fixed-point weight x :data:`VALUES`, float64 [q, 3] weight, 1, whether no item is
    relevant)``."""
    sizes = np.diff(np.append(starts, len(rows)))
    weights = rows[starts, 2]
    if np.any(rows[:, 2] != np.repeat(weights, sizes)):
        raise QueryRowsError(DIFFERENT_WEIGHTS)
    values = per_query(starts, rows[:, 0], rows[:, 1], k)
    relevant = np.add.reduceat((rows[:, 1] > 0).astype(np.int64), starts)
    counts = np.stack([weights, np.ones(len(starts)), (relevant == 0).astype(np.float64)], axis=1)
    return to_fixed(weights[:, None] * values), counts


def per_query(starts: np.ndarray, scores: np.ndarray, relevance: np.ndarray, k: int | None) -> np.ndarray:
    """float64 ``[q, 6]``: the :data:`VALUES` of each query, whose rows are ``[starts[i], starts[i + 1])``.

    Vectorised over queries: one sort by (query, descending score, row).
    """
    n, q = len(scores), len(starts)
    sizes = np.diff(np.append(starts, n))
    group = np.repeat(np.arange(q), sizes)
    first = np.repeat(starts, sizes)
    order = np.lexsort((np.arange(n), -scores, group))
    s, r = scores[order], relevance[order]
    pos = np.arange(n) - first
    top = pos < k if k is not None else np.ones(n, bool)
    discount = np.where(top, 1.0 / np.log2(pos + 2.0), 0.0)
    found = (r > 0) & top
    hits = np.bincount(group, found, minlength=q)
    relevant = np.bincount(group, r > 0, minlength=q)
    shown = np.minimum(sizes, k) if k is not None else sizes
    within = np.cumsum(found)
    within = within - np.repeat(within[starts] - found[starts], sizes)  # relevant found so far in the query
    precisions = np.bincount(group, np.where(found, within / (pos + 1.0), 0.0), minlength=q)
    reciprocal = np.maximum.reduceat(np.where(found, 1.0 / (pos + 1.0), 0.0), starts) if n else np.zeros(0)
    # DCG with tied scores sharing their mean gain (scikit-learn's _tie_averaged_dcg)
    tie_start = np.ones(n, bool)
    tie_start[1:] = (group[1:] != group[:-1]) | (s[1:] != s[:-1])
    tie = np.cumsum(tie_start) - 1
    mean_gain = np.bincount(tie, r) / np.bincount(tie)
    dcg = np.bincount(group[tie_start], mean_gain * np.bincount(tie, discount), minlength=q)
    ideal = relevance[np.lexsort((-relevance, group))]
    idcg = np.bincount(group, ideal * discount, minlength=q)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack(
            [
                np.where(idcg > 0, dcg / idcg, 0.0),
                np.where(hits > 0, precisions / hits, 0.0),
                hits / shown,
                np.where(relevant > 0, hits / relevant, 0.0),
                reciprocal,
                (hits > 0).astype(np.float64),
            ],
            axis=1,
        )


@dataclass(frozen=True)
class QuerySums(WeightBoundedSums, Statistic):
    """Sums over queries of the :data:`VALUES` at cut-off ``k`` (None: the whole list); see the module."""

    k: int | None = None

    jittable = False
    columns = (QUERY,)
    summed = "the per-query values"

    def state_weight(self, state: State) -> Any:
        return np.asarray(state["counts"])[..., 0]

    def refuse_light(self, state: State, rows: int) -> None:
        """Per query, not per item row: each query's weight x value is one fixed-point term."""
        queries = int(np.sum(np.asarray(state["counts"])[..., 1]))
        refuse_light_total(float(np.sum(self.state_weight(state))), queries, self.summed, ("query", "queries"))

    def refuse_batch(self, batch: Batch) -> None:
        """A query weighs once (its rows carry its weight): the weights at each run's first row add up."""
        ids = np.asarray(batch[QUERY])
        if len(ids):
            refuse_weight_total(np.sum(np.asarray(batch["weights"], np.float64)[runs(ids)[0]]), self.summed)

    def zero(self) -> State:
        return {
            "keys": np.zeros(0, np.uint64),
            "sums": np.zeros((len(VALUES), 2), np.int64),
            "counts": np.zeros(3, np.float64),
            "open_key": np.zeros(0, np.uint64),
            "open_rows": np.zeros((0, 3), np.float64),
        }

    def _add(self, state: State, starts: np.ndarray, keys: np.ndarray, rows: np.ndarray) -> State:
        """``state`` with finished queries ``keys`` (their rows ``rows[starts[i]:starts[i + 1]]``) added."""
        if not len(keys):
            return state
        seen, repeated = union_keys(state["keys"], np.sort(keys))
        if repeated:
            raise QueryRowsError(NOT_CONTIGUOUS)
        sums, counts = query_sums(starts, rows, self.k)
        return {
            **state,
            "keys": seen,
            "sums": state["sums"] + sums.sum(axis=0),
            "counts": state["counts"] + counts.sum(0),
        }

    def _closed(self, state: State) -> State:
        """``state`` with its open query finished."""
        rows = np.asarray(state.get("open_rows", np.zeros((0, 3))), np.float64)  # (a bootstrap replicate has none)
        key = np.asarray(state.get("open_key", np.zeros(0, np.uint64)), np.uint64)
        if not len(key):
            return state
        state = {**state, "open_key": np.zeros(0, np.uint64), "open_rows": np.zeros((0, 3), np.float64)}
        return self._add(state, np.zeros(1, np.int64), key, rows) if len(rows) else state

    def update(self, state: State, batch: Batch) -> State:
        ids, rows, keep = positive_rows(batch, (batch["predictions"], batch["targets"], batch["weights"]))
        every = np.asarray(batch[QUERY])
        if not len(every):
            return state
        if not goes_on(state["open_key"], state["open_rows"], every, keep):
            state = self._closed(state)
        if len(ids):
            starts, keys, rows = continued(state["open_key"], state["open_rows"], *runs(ids), rows)
            last = starts[-1]
            done = self._add(
                {**state, "open_key": np.zeros(0, np.uint64), "open_rows": np.zeros((0, 3))},
                starts[:-1],
                keys[:-1],
                rows[:last],
            )
            if np.any(done["keys"] == keys[-1]):
                raise reopened(ids[-1])
            state = {**done, "open_key": keys[-1:].copy(), "open_rows": rows[last:]}
        weighing_0 = last_key(every, keep)
        return state if weighing_0 is None else {**self._closed(state), "open_key": weighing_0}

    def stored(self, state: State) -> State:
        return self._closed(state)

    def merge(self, a: State, b: State) -> State:
        a, b = self._closed(a), self._closed(b)
        keys, repeated = union_keys(a["keys"], b["keys"])
        if repeated:
            raise split_across(repeated)
        merged = {
            "keys": keys,
            "sums": a["sums"] + b["sums"],
            "counts": a["counts"] + b["counts"],
            "open_key": np.zeros(0, np.uint64),
            "open_rows": np.zeros((0, 3), np.float64),
        }
        self.refuse_state(merged)
        return merged

    def for_replicates(self) -> Statistic:
        return QueryBucketSums(self.k)


@dataclass(frozen=True)
class QueryBucketSums(WeightBoundedSums, Statistic):
    """:class:`QuerySums` kept per bootstrap bucket, without the query keys (the job's :class:`QuerySums` refuses
    split queries). The pipeline buckets a ranking job's rows by query id, so each query lies in one bucket.

    Stored state: ``{"sums": int64 [6, 2], "counts": float64 [3]}`` as :class:`QuerySums`, with a leading ``[G]``
    axis for the ``G`` buckets (:meth:`zero_grouped`); while batches are folded in, also ``open_key`` and
    ``open_rows`` ``[m, 4]`` (score, relevance, weight, bucket) of the last query, which the next batch may continue.
    A replicate (:meth:`resample`) adds bucket sums with integer weights, so it is exact.
    """

    k: int | None = None

    jittable = False
    columns = (QUERY,)
    summed = QuerySums.summed
    state_weight = QuerySums.state_weight
    refuse_light = QuerySums.refuse_light
    refuse_batch = QuerySums.refuse_batch

    def zero(self) -> State:
        return {"sums": np.zeros((len(VALUES), 2), np.int64), "counts": np.zeros(3, np.float64)}

    def zero_grouped(self, groups: int) -> State:
        return {"sums": np.zeros((groups, len(VALUES), 2), np.int64), "counts": np.zeros((groups, 3), np.float64)}

    def _add(self, state: State, starts: np.ndarray, rows: np.ndarray) -> State:
        if not len(starts):
            return state
        sums, counts = query_sums(starts, rows, self.k)
        if np.ndim(state["sums"]) == 2:  # one bucket
            return {**state, "sums": state["sums"] + sums.sum(axis=0), "counts": state["counts"] + counts.sum(0)}
        bucket = rows[starts, 3].astype(np.int64)
        out = {**state, "sums": np.array(state["sums"], copy=True), "counts": np.array(state["counts"], copy=True)}
        np.add.at(out["sums"], bucket, sums)
        np.add.at(out["counts"], bucket, counts)
        return out

    def update_grouped(self, batch: Batch, stacked: State, group: np.ndarray) -> State:
        ids, rows, keep = positive_rows(batch, (batch["predictions"], batch["targets"], batch["weights"], group))
        every = np.asarray(batch[QUERY])
        if not len(every):
            return stacked
        empty = (np.zeros(0, np.uint64), np.zeros((0, 4)))
        open_key, open_rows = (stacked.get(name, e) for name, e in zip(("open_key", "open_rows"), empty, strict=True))
        if not goes_on(open_key, open_rows, every, keep):
            stacked, open_key, open_rows = self.stored(stacked), *empty
        if len(ids):
            starts, keys, rows = continued(open_key, open_rows, *runs(ids), rows)
            done = self._add({"sums": stacked["sums"], "counts": stacked["counts"]}, starts[:-1], rows[: starts[-1]])
            stacked = {**done, "open_key": keys[-1:].copy(), "open_rows": rows[starts[-1] :]}
        weighing_0 = last_key(every, keep)
        return (
            stacked if weighing_0 is None else {**self.stored(stacked), "open_key": weighing_0, "open_rows": empty[1]}
        )

    def update(self, state: State, batch: Batch) -> State:
        return self.update_grouped(batch, state, np.zeros(len(batch["weights"]), np.int64))

    def stored(self, state: State) -> State:
        rows = np.asarray(state.get("open_rows", np.zeros((0, 4))), np.float64)
        return self._add(
            {"sums": state["sums"], "counts": state["counts"]}, np.zeros(min(len(rows), 1), np.int64), rows
        )

    def merge(self, a: State, b: State) -> State:
        a, b = self.stored(a), self.stored(b)
        merged = {"sums": a["sums"] + b["sums"], "counts": a["counts"] + b["counts"]}
        self.refuse_state(merged)
        return merged

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        return resample_sums(self.stored(stacked), weights)


# --- metrics -------------------------------------------------------------------------------------------------------


def _require_ranking(task: Task, name: str) -> None:
    if task.kind is not TaskKind.RANKING:
        raise ValueError(f"{name} is defined for ranking tasks (query id, item score, relevance), not {task.kind}")


LARGEST_K = 1 << 62
"""A cut-off beyond any list: larger ``k`` (which takes the whole list as well) is taken as this."""


def check_k(k: int | None, optional: bool) -> int | None:
    """``k`` as a Python int (NumPy integers and whole floats accepted; beyond :data:`LARGEST_K`, that), or None
    where ``optional``; anything else is refused."""
    if k is None and optional:
        return None
    whole = isinstance(k, numbers.Integral) or (isinstance(k, numbers.Real) and math.isfinite(k) and k == int(k))
    if isinstance(k, bool | np.bool_) or not whole or k < 1:
        raise ValueError(f"k must be an integer >= 1{' or None' if optional else ''}, got {k!r}")
    return min(int(k), LARGEST_K)


def _mean_of(statistic: QuerySums, index: int, state: State) -> dict[str, float]:
    state = statistic.stored(state)  # a state straight from updates may still hold its last query open
    weight, queries, empty = (float(v) for v in np.asarray(state["counts"], np.float64))
    value = float(from_fixed(np.asarray(state["sums"])[index]) / weight) if weight > 0 else float("nan")
    return {"": value, ".queries": queries, ".queries_without_relevant": empty}


_COUNTS = (".queries", ".queries_without_relevant")


def _metric(name: str, task: Task, value: str, k: int | None) -> DerivedMetric:
    _require_ranking(task, name)
    statistic = QuerySums(k)
    counts = tuple((part, NON_NEGATIVE) for part in _COUNTS)
    value_of = partial(_mean_of, statistic, VALUES.index(value))
    return DerivedMetric(
        name, statistic, value_of, Direction.HIGHER, value_range=RATIO, part_ranges=counts, info_parts=_COUNTS
    )


def ndcg(task: Task) -> DerivedMetric:
    """Mean over queries of nDCG over each query's whole list (scikit-learn ``ndcg_score``, tie-averaged)."""
    return _metric("ndcg", task, "ndcg", None)


def ndcg_at_k(task: Task, *, k: int = 10) -> DerivedMetric:
    """Mean over queries of nDCG of the top ``k`` (scikit-learn ``ndcg_score(k=k)``, tie-averaged)."""
    return _metric("ndcg_at_k", task, "ndcg", check_k(k, False))


def mean_average_precision(task: Task, *, k: int | None = None) -> DerivedMetric:
    """Mean over queries of average precision (of the top ``k``; None: of the whole list), torchmetrics'
    ``retrieval_average_precision``."""
    return _metric("mean_average_precision", task, "average_precision", check_k(k, True))


def precision_at_k(task: Task, *, k: int = 10) -> DerivedMetric:
    """Mean over queries of the relevant items among the top ``k`` over ``min(k, items)``."""
    return _metric("precision_at_k", task, "precision", check_k(k, False))


def recall_at_k(task: Task, *, k: int = 10) -> DerivedMetric:
    """Mean over queries of the relevant items among the top ``k`` over the query's relevant items."""
    return _metric("recall_at_k", task, "recall", check_k(k, False))


def mean_reciprocal_rank(task: Task, *, k: int | None = None) -> DerivedMetric:
    """Mean over queries of 1 / rank of the first relevant item (0 when none is in the top ``k``)."""
    return _metric("mean_reciprocal_rank", task, "reciprocal_rank", check_k(k, True))


def hit_rate(task: Task, *, k: int = 10) -> DerivedMetric:
    """Fraction of queries (by weight) with a relevant item among the top ``k``."""
    return _metric("hit_rate", task, "hit", check_k(k, False))
