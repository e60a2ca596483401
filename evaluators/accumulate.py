"""Feeding columns through a set of statistics: one fused, jit-compiled update.

:class:`Accumulator` is what both the functional API and the distributed
workers use, so every reference test of a metric function also tests the
pipeline's arithmetic.

Rows are processed in chunks of a fixed number of rows (a power of two sized
so that one chunk holds about 262,144 values), so the compiled update sees
one shape per job and compiles once:

* columns go to the update as they were read (``int8`` labels, ``float32``
  scores: no host-side conversion or copy); integer and boolean columns become
  ``int32`` and ``weights`` (ones when absent) ``float64`` inside the compiled
  update, fused with the statistics;
* every chunk carries the range ``[lo, hi)`` of its rows that count; the others
  get weight 0. A batch's last, partial chunk is the batch's last full chunk
  with only its new rows counting (no copy, no new shape); a batch shorter than
  a chunk is padded with zero-weight rows to the smallest size already compiled
  that holds it, else to the next power of four (at least 1,024).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.kernels import WeightRangeError
from evaluators.lazyjax import accelerator_possible, jax, jnp
from evaluators.statistic import DerivedMetric, State, Statistic, check_merged, check_weights, tree_to_numpy

MIN_CHUNK_ROWS = 1 << 10
MAX_CHUNK_ROWS = 1 << 16
CHUNK_VALUES = 1 << 18
"""Values per compiled chunk (rows of ``width`` values: ``CHUNK_VALUES // width`` rows, within the bounds above).
XLA allocates a program's temporaries on every call; at 2**18 values a wide program's (a 100-class ranking
histogram, the confusion matrix, calibration bins) stay under glibc's 32 MiB mmap threshold, so the allocator
reuses them instead of mapping and faulting in fresh pages each call (at 2**20 a 1M x 100 job spent 4 s of system
time there)."""
HOST_ROWS = 1 << 18
"""An accumulator whose statistics all :meth:`~evaluators.statistic.Statistic.runs_on_host` folds its first
batches, up to this many rows, with NumPy: a small job (or a small functional call) neither imports nor compiles
JAX (about 1 s of a process's start). Later batches take the compiled update, several times faster per row. Both
give the same states, bit for bit."""
HOST_ENTRIES = 1 << 22
"""... and up to this many entries (:meth:`~evaluators.statistic.Statistic.host_row_entries`: a multiclass ranking
state sorts one entry per row and class): NumPy's sort of 100-class rows costs about 290 ns an entry, the compiled
update about 1.1 s (import and compile) plus 55 ns, so beyond about 4M entries the compiled update is faster (a
1M x 100 job's first unit of 250,000 rows took 3.3 s on the host, 0.9 s compiled)."""
ALL_ROWS = 1 << 62
"""``host_rows`` of an accumulator whose statistics all :meth:`~evaluators.statistic.Statistic.folds_fast_on_host`,
in a process where JAX has no accelerator to use (:func:`~evaluators.lazyjax.accelerator_possible`): every row on
the host."""
GROUP_ROWS = 256
GROUP_PASSES = 4
"""Rows per group in one grouped (bootstrap-bucket) block, and blocks per compiled call."""


def chunk_rows_for(width: int) -> int:
    """Rows per compiled chunk for rows of ``width`` values each."""
    rows = max(1, CHUNK_VALUES // max(1, width))
    rows = 1 << (rows.bit_length() - 1)
    return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, rows)))


def _power_of_four(n: int) -> int:
    bits = (max(1, n) - 1).bit_length()
    return 1 << (bits + (bits & 1))


def _bucket(n: int, limit: int) -> int:
    """Padded size of a chunk of ``n`` rows: a power of four (few shapes, few compiles), at most ``limit``."""
    return min(limit, max(MIN_CHUNK_ROWS, _power_of_four(n)))


NUMERIC_ROLES = ("predictions", "targets", "weights")
"""The columns whose integers are numbers to the statistics (the others are ids and labels)."""


def wide_integers_as_float(name: str, values: np.ndarray) -> np.ndarray:
    """Integer ``weights``, and integer predictions or targets beyond int32's range, as float64: the compiled
    update reads integer columns as int32 (labels), which would wrap ``2**62`` to 0 and read a uint64 weight of
    ``2**63 + 1`` as 1. float64 holds every such number to 16 digits; labels that large are out of any range."""
    if name not in NUMERIC_ROLES or values.dtype.kind not in "iu" or not values.size:
        return values
    if name == "weights" or values.dtype.itemsize > 4 or values.dtype == np.uint32:
        info = np.iinfo(np.int32)
        if name == "weights" or int(values.min()) < info.min or int(values.max()) > info.max:
            return values.astype(np.float64)
    return values


def as_column(values: np.ndarray, name: str = "", kept: Iterable[str] = ()) -> np.ndarray:
    """Normalise dtypes: booleans and integers to int32 (labels), floats unchanged; a column named in ``kept`` (the
    extra columns statistics read, :attr:`~evaluators.statistic.Statistic.columns`: query ids, group labels) as it
    is (int32 would take ``2**32 + 1`` for 1)."""
    values = np.asarray(values)
    if name in kept:
        return values
    if values.dtype == np.bool_ or np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int32, copy=False)
    return values


class Accumulator:
    """Folds batches into the states of a fixed set of statistics: one compiled, fused update, or NumPy on
    the host for a small job's rows (:data:`HOST_ROWS`) when every statistic runs there.

    Args:
        statistics: distinct statistics, in a fixed order; states are tuples
            in the same order.
        host_rows: how many rows to fold on the host before the compiled update takes over (0: none; the
            tests of the two updates' equality set it). Default: every row (:data:`ALL_ROWS`) when each
            statistic :meth:`~evaluators.statistic.Statistic.folds_fast_on_host` and JAX has no accelerator
            here, else :data:`HOST_ROWS` (fewer rows of many entries each: :data:`HOST_ENTRIES`).
    """

    def __init__(self, statistics: Iterable[Statistic], *, host_rows: int | None = None) -> None:
        self.statistics: tuple[Statistic, ...] = tuple(dict.fromkeys(statistics))
        self._device = [i for i, s in enumerate(self.statistics) if s.jittable]
        runs_on_host = all(self.statistics[i].runs_on_host() for i in self._device)
        if host_rows is None:
            fast = all(self.statistics[i].folds_fast_on_host() for i in self._device)
            entries = max((self.statistics[i].host_row_entries() for i in self._device), default=1)
            host_rows = ALL_ROWS if fast and not accelerator_possible() else min(HOST_ROWS, HOST_ENTRIES // entries)
        self._host_rows_left = host_rows if runs_on_host else 0
        """Rows still to fold on the host (see :data:`HOST_ROWS`); 0: every batch takes the compiled update."""
        self._host = [i for i, s in enumerate(self.statistics) if not s.jittable]
        self._host_columns = {c for i in self._host for c in self.statistics[i].columns} - {
            c for i in self._device for c in self.statistics[i].columns
        }
        """Extra columns only host statistics read (query ids, group labels): never sent to the device."""
        self._own_columns = frozenset(c for s in self.statistics for c in s.columns)
        """Extra columns any statistic reads (ids, labels): on the host as written."""
        # Statistics that take small batches into their stored form directly (the fused update of the other
        # device statistics takes the rest of such batches).
        self._small = [i for i in self._device if self.statistics[i].small_batch_rows() > 0]
        self._small_rows = min((self.statistics[i].small_batch_rows() for i in self._small), default=0)
        self._rest = [i for i in self._device if i not in self._small]
        self._sizes: set[int] = set()

    def expect_rows(self, rows: int) -> None:
        """The caller is about to fold about ``rows`` more rows (a work unit): when they would not fit in what is
        left of :data:`HOST_ROWS`, every batch from now on takes the compiled update (its import and compile pay
        off over that many rows), instead of the host folding some first."""
        if rows > self._host_rows_left:
            self._host_rows_left = 0

    @functools.cached_property
    def _compiled(self) -> _Compiled:
        """The compiled updates of the device statistics, built (and JAX imported) on first use."""
        return _Compiled.of(
            tuple(self.statistics[i] for i in self._device),
            tuple(self.statistics[i] for i in self._rest),
            tuple(self.statistics[i] for i in self._small),
        )

    @classmethod
    def for_metrics(cls, metrics: Iterable[DerivedMetric]) -> Accumulator:
        return cls(m.statistic for m in metrics)

    def replicates(self) -> Accumulator | None:
        """The accumulator of per-bootstrap-bucket states: each statistic's replicate variant, for the
        statistics that support intervals (``bootstrap``); None when none does."""
        statistics = [s.for_replicates() for s in self.statistics if s.bootstrap]
        return Accumulator(statistics, host_rows=0) if statistics else None

    def features(self) -> tuple[str, ...]:
        """Backbone features any statistic reads (empty for jobs on plain columns)."""
        return tuple(dict.fromkeys(f for s in self.statistics for f in s.features))

    def index(self, statistic: Statistic) -> int:
        return self.statistics.index(statistic)

    def zero(self) -> tuple[State, ...]:
        return tuple(s.zero() for s in self.statistics)

    def merge(self, a: Sequence[State], b: Sequence[State], skip: Collection[int] = ()) -> tuple[State, ...]:
        """Statistic-wise merge; the statistics at indices ``skip`` keep ``a``'s state (merged elsewhere, all at
        once: see :attr:`order_free`)."""
        return tuple(
            x if i in skip else s.merge(x, y) for i, (s, x, y) in enumerate(zip(self.statistics, a, b, strict=True))
        )

    def merge_all(self, states: Sequence[Sequence[State]]) -> tuple[State, ...]:
        """The merge of one or more state tuples: each statistic whose merge
        :meth:`~evaluators.statistic.Statistic.merges_in_any_order` takes them all at once, the others pairwise from
        left to right (the bits of folding :meth:`merge` over them)."""
        columns = list(zip(*states, strict=True))
        return tuple(
            s.merge_all(column) if i in self.order_free else functools.reduce(s.merge, column)
            for i, (s, column) in enumerate(zip(self.statistics, columns, strict=True))
        )

    @functools.cached_property
    def order_free(self) -> tuple[int, ...]:
        """Indices of the statistics whose merge :meth:`~evaluators.statistic.Statistic.merges_in_any_order`."""
        return tuple(i for i, s in enumerate(self.statistics) if s.merges_in_any_order())

    def zero_grouped(self, groups: int) -> tuple[State, ...]:
        """``groups`` zero states stacked on a leading axis (one per group, e.g. bootstrap bucket)."""
        return tuple(s.zero_grouped(groups) for s in self.statistics)

    def update_grouped(
        self, stacked: Sequence[State], columns: Mapping[str, np.ndarray], group: np.ndarray, *, to_host: bool = True
    ) -> tuple[State, ...]:
        """Fold each row into the state of its group: ``stacked[i][g]`` gets the rows with ``group == g``.

        Rows are laid out as ``[P, G, GROUP_ROWS]`` zero-padded blocks (row ``j`` of group ``g``
        at ``[j // GROUP_ROWS, g, j % GROUP_ROWS]``). One compiled call scans over
        ``GROUP_PASSES`` blocks (fewer for the remainder, one at a time), each block updating every
        group at once through the vmapped update, so there are only two compiled shapes whatever
        the group sizes. Host statistics fold the rows with their own :meth:`~evaluators.statistic.Statistic.
        update_grouped`. With ``to_host=False`` the device states stay device arrays (no copy between
        successive updates; device-array inputs are consumed); :meth:`to_host` copies them back.
        """
        cols = {
            k: wide_integers_as_float(k, np.asarray(v)) for k, v in columns.items() if v is not None
        }  # (cast inside)
        n = len(next(iter(cols.values())))
        if n == 0:
            return tuple(stacked)
        weights = cols.get("weights")
        cols["weights"] = np.ones(n, np.float64) if weights is None else np.asarray(weights, np.float64)
        out = list(stacked)
        for i in self._host:
            out[i] = self.statistics[i].update_grouped(
                {k: as_column(v, k, self._own_columns) for k, v in cols.items()}, stacked[i], group
            )
        if self._device:
            device = self._update_grouped_device([stacked[i] for i in self._device], cols, group, n, to_host)
            for i, state in zip(self._device, device, strict=True):
                out[i] = state
        return tuple(out)

    def _update_grouped_device(
        self, stacked: list[State], cols: dict[str, np.ndarray], group: np.ndarray, n: int, to_host: bool
    ) -> tuple[State, ...]:
        cols = self._device_columns(cols)
        groups = jax.tree.leaves(stacked[0])[0].shape[0]
        counts = np.bincount(group, minlength=groups)
        small = group.astype(np.int16) if groups <= np.iinfo(np.int16).max else group
        order = np.argsort(small, kind="stable")  # radix sort for 16-bit keys
        sorted_group = group[order]
        position = np.arange(n) - (np.cumsum(counts) - counts)[sorted_group]
        passes = -(-int(counts.max()) // GROUP_ROWS)
        block_index = (position // GROUP_ROWS, sorted_group, position % GROUP_ROWS)
        blocks = {}
        for k, v in cols.items():
            out = np.zeros((passes, groups, GROUP_ROWS, *v.shape[1:]), v.dtype)
            out[block_index] = v[order]
            blocks[k] = out
        with jax.enable_x64(True):
            current = tuple(jax.tree.map(_on_device, s) for s in stacked)
            start = 0
            while start < passes:
                step = GROUP_PASSES if passes - start >= GROUP_PASSES else 1
                current = self._compiled.grouped(current, {k: v[start : start + step] for k, v in blocks.items()})
                start += step
            return tuple(tree_to_numpy(current)) if to_host else tuple(current)

    def _device_columns(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The columns the compiled update gets: not strings (query ids, group labels), nor the columns only host
        statistics read."""
        return {k: v for k, v in cols.items() if k not in self._host_columns and v.dtype.kind not in "OUS"}

    def transported(self, states: Sequence[State]) -> tuple[Any, ...]:
        """Stored states in the form a worker ships them (:meth:`~evaluators.statistic.Statistic.transported`)."""
        return tuple(stat.transported(s) for stat, s in zip(self.statistics, states, strict=True))

    def received(self, states: Sequence[Any]) -> tuple[State, ...]:
        """:meth:`transported` states in the stored form again (:meth:`~evaluators.statistic.Statistic.received`)."""
        return tuple(stat.received(s) for stat, s in zip(self.statistics, states, strict=True))

    def to_host(self, states: Sequence[State]) -> tuple[State, ...]:
        """Copy states (possibly device arrays from ``to_host=False`` updates) to numpy, in each statistic's
        stored form (see :meth:`~evaluators.statistic.Statistic.stored`)."""
        return tuple(stat.stored(tree_to_numpy(s)) for stat, s in zip(self.statistics, states, strict=True))

    def update(
        self, states: Sequence[State], columns: Mapping[str, np.ndarray], *, to_host: bool = True
    ) -> tuple[State, ...]:
        """Fold ``columns`` (role -> ``[n, ...]`` array) into ``states``.

        ``weights`` defaults to ones. Returns new numpy states (device arrays for jittable
        statistics when ``to_host=False``); inputs are not modified.
        """
        cols = {k: wide_integers_as_float(k, np.asarray(v)) for k, v in columns.items() if v is not None}
        n = len(next(iter(cols.values())))
        out = list(states)
        if n == 0:
            return tuple(out)
        self._refuse_weights(cols)
        out = self._updated(out, cols, n, to_host)
        if "weights" in cols:  # (unweighted rows count in units an int64 holds 2**31 of per cell)
            for stat, state in zip(self.statistics, out, strict=True):
                stat.refuse_state(state)
        return tuple(out)

    def _refuse_weights(self, cols: Mapping[str, np.ndarray]) -> None:
        """Each statistic's :meth:`~evaluators.statistic.Statistic.refuse_batch` of a weighted batch."""
        if cols.get("weights") is not None:
            batch = {**cols, "weights": np.asarray(cols["weights"], np.float64)}
            with np.errstate(over="ignore"):  # (weights summing past float64's range: refused, without a warning)
                for stat in self.statistics:
                    stat.refuse_batch(batch)

    def _refuse_group_weights(self, host: Mapping[str, np.ndarray], index: Sequence[np.ndarray]) -> None:
        """:meth:`_refuse_weights` of each group's rows (``host``: the groups' rows one after another, ``index``:
        each group's rows). The groups' rows joined are checked first: a group holds part of them, so when they
        pass every group does; else each group on its own (slices overlap: the overall group holds every row)."""
        try:
            self._refuse_weights(host)
        except WeightRangeError:
            start = 0
            for rows in index:
                self._refuse_weights({k: v[start : start + len(rows)] for k, v in host.items()})
                start += len(rows)

    def _updated(self, states: list[State], cols: dict[str, np.ndarray], n: int, to_host: bool) -> list[State]:
        """The states of :meth:`update` for a batch of ``n > 0`` rows."""
        out = list(states)
        on_host = n <= self._host_rows_left
        if on_host:
            self._host_rows_left -= n
        small = self._small if not on_host and self._takes_stored(states, cols, n) else []
        stored = self._device if on_host else small  # folded into their stored form on the host
        device = [] if on_host else self._rest if small else self._device
        if device:
            fused = self._compiled.fused_rest if small else self._compiled.fused
            stats = [self.statistics[i] for i in device]
            out_device = self._update_device(
                stats, fused, [states[i] for i in device], self._device_columns(cols), n, to_host
            )
            for i, state in zip(device, out_device, strict=True):
                out[i] = state
        if self._host or stored:
            host = {k: as_column(v, k, self._own_columns) for k, v in cols.items()}
            weights = host.get("weights")
            host["weights"] = np.ones(n, np.float64) if weights is None else np.asarray(weights, np.float64)
            for i in self._host:
                out[i] = self.statistics[i].update(states[i], host)
            if stored:
                # a large batch taken on the host only because a state had to stay stored (an exact ranking
                # state) goes on through the compiled update once no state does
                folded = self._update_stored(stored, out, self._device_columns(host), n, until_compiled=not on_host)
                if folded < n:
                    self._update_rest(
                        stored, out, {k: v[folded:] for k, v in self._device_columns(cols).items()}, to_host
                    )
        return out

    @functools.cached_property
    def folds_groups_on_host(self) -> bool:
        """Whether every statistic :meth:`~evaluators.statistic.Statistic.folds_groups_on_host`."""
        return all(s.folds_groups_on_host() for s in self.statistics)

    def update_groups(
        self,
        states: Sequence[Sequence[State] | None],
        columns: Mapping[str, np.ndarray],
        rows: Sequence[np.ndarray | None],
    ) -> list[tuple[State, ...]] | None:
        """Fold each group's rows (``rows[g]``: indices into ``columns``; None: all of them) into ``states[g]`` (None:
        a zero state) with one pass per statistic over the batch (:meth:`~evaluators.statistic.Statistic.
        rows_by_group`): the states that :meth:`update` of each group's rows on the host gives (integer and
        fixed-point leaves bit for bit). None, and nothing folded, unless every statistic folds groups on the
        host and the rows fit in what is left of :data:`HOST_ROWS` (then :meth:`update` each group)."""
        cols = {k: wide_integers_as_float(k, np.asarray(v)) for k, v in columns.items() if v is not None}
        n = len(next(iter(cols.values())))
        index = [np.arange(n) if r is None else np.asarray(r, np.int64) for r in rows]
        total = sum(len(i) for i in index)
        if not self.folds_groups_on_host or total > self._host_rows_left:
            return None
        self._host_rows_left -= total
        group = np.repeat(np.arange(len(index)), [len(i) for i in index])
        taken = np.concatenate(index) if index else np.zeros(0, np.int64)
        host = {k: as_column(v[taken], k, self._own_columns) for k, v in cols.items()}
        self._refuse_group_weights(host, index)
        weights = host.get("weights")
        host["weights"] = np.ones(total, np.float64) if weights is None else np.asarray(weights, np.float64)
        out: list[list[State | None]] = [[None] * len(self.statistics) if s is None else list(s) for s in states]
        for i, stat in enumerate(self.statistics):
            parts = stat.rows_by_group(host, group, len(index))
            for state, part in zip(out, parts, strict=True):
                # (a group without a state: its rows' state is the merge of a zero state with it, integer sums)
                state[i] = part if state[i] is None else stat.merge(stat.stored(tree_to_numpy(state[i])), part)
        return [tuple(state) for state in out]

    def _takes_stored(self, states: Sequence[State], cols: dict[str, np.ndarray], n: int) -> bool:
        """Whether the statistics that can take batches into their stored form do so for this batch: it is
        small, or one of their states must stay in stored form (then all of them take it)."""
        return n < self._small_rows or any(self.statistics[i].folds_on_host(states[i], cols) for i in self._small)

    def _update_rest(self, stored: list[int], out: list[State], cols: dict[str, np.ndarray], to_host: bool) -> None:
        """Fold ``cols`` into statistics ``stored`` (``out`` updated in place) through their own compiled update."""
        stats = [self.statistics[i] for i in stored]
        n = len(next(iter(cols.values())))
        states = self._update_device(stats, self._compiled.fused_small, [out[i] for i in stored], cols, n, to_host)
        for i, state in zip(stored, states, strict=True):
            out[i] = state

    def _update_stored(
        self, stored: list[int], out: list[State], cols: dict[str, np.ndarray], n: int, *, until_compiled: bool
    ) -> int:
        """Fold ``cols`` into the stored form of statistics ``stored`` (indices; ``out`` updated in place), in
        chunks of the compiled update's size (or more, :attr:`~evaluators.statistic.Statistic.stored_chunk_values`):
        temporaries of a few MB, which the allocator reuses. ``until_compiled``: stop after the chunk that
        leaves no state that :meth:`~evaluators.statistic.Statistic.folds_on_host`, when the rest is not a small
        batch. Returns how many rows were folded."""
        width = max(int(np.prod(v.shape[1:], dtype=np.int64)) for v in cols.values())
        stats = [self.statistics[i] for i in stored]
        step = max(chunk_rows_for(width), *(stat.stored_chunk_values // width for stat in stats))
        for i, stat in zip(stored, stats, strict=True):
            out[i] = stat.stored(tree_to_numpy(out[i]))
        for start in range(0, n, step):
            chunk = {k: v[start : start + step] for k, v in cols.items()}
            for i, stat in zip(stored, stats, strict=True):
                out[i] = stat.update_stored(out[i], chunk)
            rest = {k: v[start + step :] for k, v in cols.items()}
            if (
                until_compiled
                and n - start - step >= self._small_rows
                and not any(s.folds_on_host(out[i], rest) for i, s in zip(stored, stats, strict=True))
            ):
                return start + step
        return n

    def _chunk_size(self, rows: int, step: int) -> int:
        """Padded size for a batch of ``rows < step`` rows: a size already compiled if one holds it."""
        fits = [size for size in self._sizes if rows <= size <= step]
        return min(fits) if fits else _bucket(rows, step)

    def _update_device(
        self,
        stats: list[Statistic],
        fused: Callable[..., tuple[State, ...]],
        states: list[State],
        cols: dict[str, np.ndarray],
        n: int,
        to_host: bool,
    ) -> list[State]:
        width = max(int(np.prod(v.shape[1:], dtype=np.int64)) for v in cols.values())
        step = chunk_rows_for(width)
        with jax.enable_x64(True):
            current = tuple(st.working_on_device(s) for st, s in zip(stats, states, strict=True))
            if n < step:
                size = self._chunk_size(n, step)
                chunk = {k: _pad(v, size) for k, v in cols.items()} if size != n else cols
                self._sizes.add(size)
                current = fused(current, chunk, np.array([0, n], np.int32))
            else:
                self._sizes.add(step)
                for start in range(0, n, step):
                    stop = start + step
                    lo = 0
                    if stop > n:  # the last full chunk again, counting only the rows not yet folded in
                        lo, start, stop = stop - n, n - step, n
                    chunk = {k: v[start:stop] for k, v in cols.items()}
                    current = fused(current, chunk, np.array([lo, step], np.int32))
            if not to_host:
                return list(current)
            return [st.stored(tree_to_numpy(s)) for st, s in zip(stats, current, strict=True)]


@dataclass(frozen=True)
class _Compiled:
    """The jit-compiled updates of an accumulator's device statistics (states donated: each update writes its
    result into the previous state's buffers)."""

    fused: Callable[..., tuple[State, ...]]
    """``(states, batch, bounds [lo, hi)) -> states``: every device statistic, rows outside ``[lo, hi)`` weight 0."""
    fused_rest: Callable[..., tuple[State, ...]]
    """The same for the device statistics that do not take small batches into their stored form."""
    fused_small: Callable[..., tuple[State, ...]]
    """The same for those that do (the rest of a batch they began in stored form)."""
    grouped: Callable[..., tuple[State, ...]]
    """``(stacked states, blocks [P, G, GROUP_ROWS]) -> stacked states``: the vmapped update, scanned over blocks."""

    @classmethod
    def of(cls, device: tuple[Statistic, ...], rest: tuple[Statistic, ...], small: tuple[Statistic, ...]) -> _Compiled:
        def updates(stats: tuple[Statistic, ...]) -> Callable[..., tuple[State, ...]]:
            def fused(states: tuple[State, ...], batch: Mapping[str, jax.Array]) -> tuple[State, ...]:
                return tuple(stat.update(state, batch) for stat, state in zip(stats, states, strict=True))

            return fused

        def rows(update: Callable[..., tuple[State, ...]]) -> Callable[..., tuple[State, ...]]:
            return lambda states, batch, bounds: update(states, _device_batch(batch, bounds))

        grouped = jax.vmap(updates(device))

        def grouped_passes(states: tuple[State, ...], blocks: Mapping[str, jax.Array]) -> tuple[State, ...]:
            blocks = _int32_columns(blocks)
            return jax.lax.scan(lambda carry, block: (grouped(carry, block), None), states, blocks)[0]

        return cls(
            fused=jax.jit(rows(updates(device)), donate_argnums=0),
            fused_rest=jax.jit(rows(updates(rest)), donate_argnums=0),
            fused_small=jax.jit(rows(updates(small)), donate_argnums=0),
            grouped=jax.jit(grouped_passes, donate_argnums=0),
        )


def _device_batch(batch: Mapping[str, jax.Array], bounds: jax.Array) -> dict[str, jax.Array]:
    """Inside the compiled update: integer and boolean columns as int32, and float64 ``weights``
    (the given ones, or ones) that are 0 outside the chunk's counted rows ``[lo, hi)``."""
    out = _int32_columns({k: v for k, v in batch.items() if k != "weights"})
    rows = jnp.arange(next(iter(batch.values())).shape[0], dtype=jnp.int32)
    counted = (rows >= bounds[0]) & (rows < bounds[1])
    given = batch.get("weights")
    out["weights"] = jnp.where(counted, 1.0 if given is None else given.astype(jnp.float64), 0.0)
    return out


def _int32_columns(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Inside a compiled update: integer and boolean columns as int32, the others as they are."""
    return {
        k: v.astype(jnp.int32) if v.dtype == jnp.bool_ or jnp.issubdtype(v.dtype, jnp.integer) else v
        for k, v in batch.items()
    }


def _on_device(x: np.ndarray | jax.Array) -> jax.Array:
    return x if isinstance(x, jax.Array) else jax.device_put(x)


def padded_batch(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Host columns of ``n`` rows padded with zero rows (weight 0) to a power of four (at least 1,024), so
    that a function compiled on them sees few shapes."""
    n = len(next(iter(columns.values())))
    size = _bucket(n, max(n, MIN_CHUNK_ROWS))
    return {k: _pad(v, size) if size != n else v for k, v in columns.items()}


def _pad(values: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, *values.shape[1:]), values.dtype)
    out[: len(values)] = values
    return out


def evaluate(
    metrics: Sequence[DerivedMetric],
    predictions: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
) -> list[dict[str, object]]:
    """One-batch evaluation: zero, one update, compute. Returns each metric's values."""
    check_weights(weights)
    acc = Accumulator.for_metrics(metrics)
    states = acc.update(acc.zero(), {"predictions": predictions, "targets": targets, "weights": weights})
    for metric in metrics:
        check_merged(metric.statistic, states[acc.index(metric.statistic)], len(targets))
    return [m.compute(states[acc.index(m.statistic)]) for m in metrics]
