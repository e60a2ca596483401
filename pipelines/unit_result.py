"""The result of one work unit, and merging such results in plan order.

A worker turns a work unit into a :class:`UnitResult`: the unit's states per slice (a :class:`Partial`),
its row counts and what it cost. Results arrive in any order (fast workers take more units, retries
finish late); :class:`OrderedMerger` merges them in unit-index order as a balanced binary tree, so the
floating-point result depends only on the plan, never on scheduling. Memory: O(log units) merged states
plus results waiting for an earlier unit.

The driver, the runners, checkpoints, storage and the results API read these types; only the runners
import the worker that makes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evaluators.statistic import MergeStream, RowsError, State
from pipelines.errors import DataError

if TYPE_CHECKING:  # storage and the results API read these types without loading JAX
    import pyarrow as pa

    from evaluators.accumulate import Accumulator

SliceKey = tuple[tuple[str, str], ...]
"""One slice: ``((column, value), ...)`` in slice-entry order; ``()`` is the overall slice."""
OVERALL: SliceKey = ()
TOTAL_DROPPED = "rows"
"""Key of :attr:`UnitResult.dropped` that counts the rows left out (each once, whatever its reasons)."""


@dataclass
class Partial:
    """Mergeable partial result: states per slice, bootstrap-bucket states per slice (each leaf with a
    leading ``[buckets]`` axis), and rows per slice."""

    states: dict[SliceKey, tuple[State, ...]] = field(default_factory=dict)
    bucket_states: dict[SliceKey, tuple[State, ...]] = field(default_factory=dict)
    rows: dict[SliceKey, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitResult:
    """States of one work unit, in the accumulators' statistic order."""

    index: int
    key: str
    partial: Partial
    rows: int
    seconds: float
    worker: str
    backbone_loads: int = 0
    """How many times this worker has loaded its backbone so far (1 when it holds one)."""
    scores: pa.Table | None = None
    """Per-row scores of user functions that asked for them (``file``, ``row``, [``row_id``], ``key.output``...)."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Rows left out under ``data.on_bad_rows: drop``, per reason (``"predictions: with NaN or inf"``)."""
    read_retries: int = 0
    """Times this unit was read again after a transient storage error."""
    cpu_seconds: float = 0.0
    """CPU time of the worker's process (all its threads: reading, the compiled update) while on this unit."""
    weight: float | None = None
    """Total weight of the unit's counted rows (``data.columns.weights``, 1 a row without; rows whose every target is
    the task's ``ignore_index`` count 0); None for a job with neither weights nor ``ignore_index``."""
    compile_seconds: float = 0.0
    """Seconds of that spent tracing, lowering and compiling (or loading compiled updates from the cache)."""
    key_digest: int | None = None
    """:func:`~pipelines.bootstrap.key_digest` of the row keys of the unit's counted rows (a job with intervals),
    so that a run can tell whether another was over the same rows; None without intervals."""


def _merge_maps(acc: Accumulator | None, a: dict, b: dict, skip: bool) -> dict:
    out = dict(a)
    skipped = acc.order_free if skip and acc is not None else ()
    every = skipped and len(skipped) == len(acc.statistics)  # every state is merged elsewhere: a's are kept
    for key, states in b.items():
        if key not in out:
            out[key] = states
        elif not every:
            out[key] = acc.merge(out[key], states, skipped)
    return out


def merge_partials(
    acc: Accumulator, racc: Accumulator | None, a: Partial, b: Partial, *, skip_order_free: bool = False
) -> Partial:
    """Merge two partial results; a slice or bucket missing on one side is taken as is. ``skip_order_free``: the
    accumulators' :attr:`~evaluators.accumulate.Accumulator.order_free` statistics keep ``a``'s state (the caller
    merges them all at once)."""
    rows = dict(a.rows)
    for key, n in b.rows.items():
        rows[key] = rows.get(key, 0) + n
    try:
        with refused_weights():
            states = _merge_maps(acc, a.states, b.states, skip_order_free)
    except RowsError as exc:  # a ranking query or an image in two work units
        raise DataError(f"data.columns.{exc.role}: {exc}.") from None
    return Partial(states, _merge_maps(racc, a.bucket_states, b.bucket_states, skip_order_free), rows)


@contextlib.contextmanager
def refused_weights() -> Iterator[None]:
    """Weights whose exact sums overflow where states merge (:class:`~evaluators.kernels.WeightRangeError`) as
    the :class:`~pipelines.errors.DataError` of ``data.columns.weights``."""
    from evaluators.kernels import WeightRangeError

    try:
        yield
    except WeightRangeError as exc:
        raise DataError(f"data.columns.weights: {exc}.") from None


POOL_STATES = 64
""":class:`OrderedMerger` merges the pooled states of an order-free statistic (one slice) once this many wait..."""
POOL_BYTES = 1 << 28
"""... or once they hold this many bytes (256 MiB)."""


class _Pools:
    """States of the order-free statistics (:attr:`~evaluators.accumulate.Accumulator.order_free`) per slice,
    merged many at a time (:meth:`~evaluators.statistic.Statistic.merge_all`) instead of pairwise in the tree."""

    def __init__(self, acc: Accumulator | None) -> None:
        self.acc = acc
        self.free = acc.order_free if acc is not None else ()
        self.pools: dict[tuple[SliceKey, int], list[State]] = {}
        self.bytes: dict[tuple[SliceKey, int], int] = {}
        self.streams: dict[tuple[SliceKey, int], MergeStream | None] = {}  # (transported states, one at a time)

    def take(self, states: dict[SliceKey, tuple[State, ...]]) -> dict[SliceKey, tuple[State, ...]]:
        """Pool the order-free states of ``states``; what is left for the tree (their places hold None)."""
        return self._replaced(states, self._pooled)

    def put_back(self, states: dict[SliceKey, tuple[State, ...]]) -> dict[SliceKey, tuple[State, ...]]:
        """``states`` from the tree with each pooled statistic's merged state in its place."""
        return self._replaced(states, self._merged)

    def _merged(self, key: SliceKey, i: int, _: None) -> State:
        stream = self.streams.get((key, i))
        with refused_weights():
            streamed = stream.result() if stream is not None else None
        return self._merge_all(i, [*self.pools.get((key, i), []), *([streamed] if streamed is not None else [])])

    def _replaced(self, states: dict[SliceKey, tuple[State, ...]], new: Callable) -> dict[SliceKey, tuple[State, ...]]:
        """``states`` with each order-free statistic's state ``s`` of slice ``key`` replaced by ``new(key, i, s)``."""
        if not self.free:
            return states
        out = {}
        for key, row in states.items():
            row = list(row)
            for i in self.free:
                row[i] = new(key, i, row[i])
            out[key] = tuple(row)
        return out

    def _pooled(self, key: SliceKey, i: int, state: State) -> None:
        assert self.acc is not None
        at, statistic = (key, i), self.acc.statistics[i]
        if at not in self.streams:
            self.streams[at] = statistic.merge_stream()
        stream = self.streams[at]
        with refused_weights():
            if stream is not None and stream.add(state):
                return
        state = statistic.received(state)
        pool = self.pools.setdefault(at, [])
        pool.append(state)
        self.bytes[at] = self.bytes.get(at, 0) + _nbytes(state)
        if len(pool) >= POOL_STATES or self.bytes[at] >= POOL_BYTES:
            pool[:] = [self._merge_all(i, pool)]
            self.bytes[at] = _nbytes(pool[0])

    def _merge_all(self, i: int, states: list[State]) -> State:
        assert self.acc is not None
        with refused_weights():
            return self.acc.statistics[i].merge_all(states)


def _nbytes(state: State) -> int:
    return sum(getattr(leaf, "nbytes", 0) for leaf in state.values()) if isinstance(state, dict) else 0


class OrderedMerger:
    """Merge per-unit partial results in index order ``0, 1, 2, ...`` as a binary tree. The states of statistics
    whose merge does not depend on order (:attr:`~evaluators.accumulate.Accumulator.order_free`: the ranking
    histogram's integer cells) are pooled and merged many at a time instead, which gives the same bits."""

    def __init__(self, acc: Accumulator, racc: Accumulator | None = None) -> None:
        self.acc = acc
        self.racc = racc
        self.next_index = 0
        self.waiting: dict[int, Partial] = {}
        self.stack: list[tuple[int, Partial]] = []  # (level, merged partial)
        self.pools, self.bucket_pools = _Pools(acc), _Pools(racc)

    def _merge(self, a: Partial, b: Partial) -> Partial:
        return merge_partials(self.acc, self.racc, a, b, skip_order_free=True)

    def add(self, index: int, partial: Partial) -> None:
        if index < self.next_index or index in self.waiting:
            return  # a duplicate (a retried unit that also finished): identical states, keep one
        self.waiting[index] = partial
        while self.next_index in self.waiting:
            unit = self.waiting.pop(self.next_index)
            states, bucket_states = self.pools.take(unit.states), self.bucket_pools.take(unit.bucket_states)
            self._push(Partial(states, bucket_states, unit.rows))
            self.next_index += 1

    def _push(self, partial: Partial) -> None:
        level = 0
        while self.stack and self.stack[-1][0] == level:
            _, left = self.stack.pop()
            partial = self._merge(left, partial)
            level += 1
        self.stack.append((level, partial))

    def result(self) -> Partial:
        if self.waiting:
            raise RuntimeError(f"units missing before {min(self.waiting)}: results incomplete")
        merged = fold_right(self.acc, self.racc, [partial for _, partial in self.stack], skip_order_free=True)
        if not self.stack:
            return merged
        states, bucket_states = self.pools.put_back(merged.states), self.bucket_pools.put_back(merged.bucket_states)
        return Partial(states, bucket_states, merged.rows)


def received(acc: Accumulator, partial: Partial) -> Partial:
    """``partial`` with its states in the stored form (:meth:`~evaluators.accumulate.Accumulator.received`), however
    the worker shipped them: what checkpoints keep."""
    states = {key: acc.received(row) for key, row in partial.states.items()}
    return Partial(states, partial.bucket_states, partial.rows)


def fold_right(
    acc: Accumulator, racc: Accumulator | None, partials: Sequence[Partial], *, skip_order_free: bool = False
) -> Partial:
    """The last step of the ordered merge: ``p0 + (p1 + (... + pn))``; no partials: the empty overall one."""
    merged: Partial | None = None
    for partial in reversed(partials):
        merged = (
            partial if merged is None else merge_partials(acc, racc, partial, merged, skip_order_free=skip_order_free)
        )
    return merged if merged is not None else Partial({OVERALL: acc.zero()}, {}, {OVERALL: 0})
