"""Check that a :class:`~evaluators.statistic.Statistic` keeps the promises the pipeline relies on.

A job's result does not depend on how its rows were sharded, in which order the states were merged, whether
the update ran compiled or not, or how bootstrap replicates were formed, only because every statistic keeps
these laws. :class:`StatisticTester` checks them on batches you give it (generated ones, ideally with ties,
empty batches and zero weights) and compares the value with a reference implementation:

* ``identity``:     ``merge(zero, s) == s == merge(s, zero)``, an empty batch changes nothing, and merge
  leaves its arguments as they were;
* ``commutative``:  ``merge(a, b) == merge(b, a)``;
* ``associative``:  ``merge(merge(a, b), c) == merge(a, merge(b, c))``;
* ``partition``:    any split of the rows into parts, updated separately and merged in any tree order, or
  folded part after part into one state, gives the state of one update over all rows;
* ``jit``:          the compiled, padded update (as workers run it) equals the plain eager update, and the NumPy
                    update of a small job's rows equals it bit for bit (statistics that ``runs_on_host``);
* ``resample``:     :meth:`~evaluators.statistic.Statistic.resample` of bucket states equals the explicit
  merges (bucket ``g`` merged ``weights[b, g]`` times into replicate ``b``), and the grouped (per-bucket)
  update equals one update per bucket (a host grouped update: each bucket read back by ``resample``);
* ``reference``:    the value read off the merged state equals a reference function of all rows.

States compare bit for bit (``rtol=0``: counts, fixed-point sums) or within ``rtol`` relative to the largest
magnitude of the leaf (floating-point moments). A failed check raises :class:`ConformanceError` naming the
law and the state leaf.

Example (a statistic of your own, with numpy's weighted mean as the reference)::

    >>> from dataclasses import dataclass
    >>> import numpy as np
    >>> import jax.numpy as jnp
    >>> from evaluators.conformance import StatisticTester
    >>> from evaluators.statistic import Statistic
    >>> @dataclass(frozen=True)
    ... class WeightedSum(Statistic):
    ...     def zero(self):
    ...         return (np.zeros(()), np.zeros(()))
    ...     def update(self, state, batch):
    ...         w = batch["weights"]
    ...         return (state[0] + jnp.sum(w * batch["predictions"]), state[1] + jnp.sum(w))
    >>> rng = np.random.default_rng(0)
    >>> batches = [{"predictions": rng.integers(0, 8, n) / 4, "targets": np.zeros(n), "weights": rng.integers(0, 3, n)
    ...             * 1.0} for n in (0, 1, 7, 30)]
    >>> StatisticTester(WeightedSum()).check_all(
    ...     batches, finalize=lambda s: s[0] / s[1],
    ...     reference=lambda b: np.average(b["predictions"], weights=b["weights"]))
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.accumulate import Accumulator, as_column
from evaluators.lazyjax import jax, jnp
from evaluators.statistic import Batch, State, Statistic, tree_to_numpy

LAWS = ("identity", "commutative", "associative", "partition", "jit", "resample", "reference")
"""The checks of :meth:`StatisticTester.check_all`, in the order it runs them."""


class ConformanceError(AssertionError):
    """A statistic broke one of its laws; the message names the law and the state leaf."""


def leaves(state: State) -> list[tuple[str, np.ndarray]]:
    """``(path, array)`` for every leaf of a state pytree (tuples, lists and dicts), in a fixed order."""
    if isinstance(state, tuple | list):
        return [(f"[{i}]{p}", leaf) for i, part in enumerate(state) for p, leaf in leaves(part)]
    if isinstance(state, dict):
        return [(f"[{k!r}]{p}", leaf) for k in sorted(state) for p, leaf in leaves(state[k])]
    return [("", np.asarray(state))]


def concatenate(batches: Sequence[Batch]) -> dict[str, np.ndarray]:
    """The rows of all ``batches`` (same roles in each) as one batch."""
    return {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in batches[0]}


def take(batch: Batch, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The rows ``rows`` (integer indices) of ``batch``."""
    return {k: np.asarray(v)[rows] for k, v in batch.items()}


@dataclass(frozen=True)
class StatisticTester:
    """Checks the laws of one statistic.

    Attributes:
        statistic: the statistic under test (settings only; states are made here).
        rtol: 0 (states must be bit-identical), or the tolerance of a state leaf relative to its largest
            magnitude (at least 1), for statistics whose sums round (centred moments).
        jit_atol: absolute tolerance of the jit-vs-eager and grouped-update checks, in the units of the leaves (integer
            leaves included): XLA may fuse a compiled update's float arithmetic differently from the eager
            one, so a fixed-point sum of rounded products can end one unit apart. 0: bit-identical.
    """

    statistic: Statistic
    rtol: float = 0.0
    jit_atol: float = 0.0

    # --- states ---------------------------------------------------------------------------------------

    @property
    def _accumulator(self) -> Accumulator:
        return _accumulator(self.statistic)

    def state(self, batch: Batch) -> State:
        """The stored state of one update of ``batch`` from zero, as a worker computes it."""
        return self.statistic.stored(self.update(self.statistic.zero(), batch))

    def update(self, state: State, batch: Batch) -> State:
        """``state`` with ``batch`` folded in, as a worker folds it (compiled, padded; host statistics eager)."""
        (out,) = self._accumulator.update((state,), batch)
        return out

    def merge(self, a: State, b: State) -> State:
        return self.statistic.merge(a, b)

    def eager_state(self, batch: Batch) -> State:
        """One update of ``batch`` from zero without ``jax.jit`` and without padding."""
        stat = self.statistic
        n = len(next(iter(batch.values())))
        columns = {k: as_column(v, k, stat.columns) for k, v in batch.items() if k != "weights"}
        weights = batch.get("weights")
        columns["weights"] = np.ones(n, np.float64) if weights is None else np.asarray(weights, np.float64)
        if stat.folds_on_host(stat.zero(), columns):  # (an exact ranking state: the accumulator folds it there too)
            return stat.update_stored(stat.zero(), columns)
        with jax.enable_x64(True), jax.disable_jit():
            state = jax.tree.map(jnp.asarray, stat.working(stat.zero()))
            return stat.stored(tree_to_numpy(stat.update(state, {k: jnp.asarray(v) for k, v in columns.items()})))

    # --- comparison -----------------------------------------------------------------------------------

    def assert_same(self, law: str, got: State, expected: State, rtol: float | None = None) -> None:
        """Raise :class:`ConformanceError` unless the two states have the same leaves (see ``rtol``)."""
        rtol = self.rtol if rtol is None else rtol
        a, b = leaves(got), leaves(expected)
        if [p for p, _ in a] != [p for p, _ in b]:
            raise ConformanceError(f"{law}: the states differ in structure: {[p for p, _ in a]} vs {[p for p, _ in b]}")
        for (path, x), (_, y) in zip(a, b, strict=True):
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape:
                raise ConformanceError(f"{law}: state leaf {path or '(root)'} has shape {x.shape}, expected {y.shape}")
            if not _equal(x, y, rtol):
                raise ConformanceError(
                    f"{law}: state leaf {path or '(root)'} differs"
                    f"{'' if rtol == 0 else f' beyond rtol={rtol}'}:\n{x!r}\nexpected\n{y!r}"
                )

    # --- the laws -------------------------------------------------------------------------------------

    def check_identity(self, batch: Batch) -> None:
        """``zero`` is the identity of ``merge`` on either side, an empty batch changes nothing, and ``merge``
        leaves its arguments unchanged."""
        s = self.state(batch)
        kept = copy.deepcopy(tree_to_numpy(s))
        zero = self.statistic.zero()
        self.assert_same("identity: merge(zero, s)", self.merge(zero, s), s, rtol=0.0)
        self.assert_same("identity: merge(s, zero)", self.merge(s, zero), s, rtol=0.0)
        self.assert_same("identity: update(s, empty batch)", self.update(s, take(batch, np.zeros(0, int))), s, 0.0)
        self.assert_same("identity: merge modified its argument", s, kept, rtol=0.0)

    def check_commutative(self, a: Batch, b: Batch) -> None:
        """``merge(a, b) == merge(b, a)`` for the states of two batches."""
        sa, sb = self.state(a), self.state(b)
        self.assert_same("commutative", self.merge(sa, sb), self.merge(sb, sa))

    def check_associative(self, a: Batch, b: Batch, c: Batch) -> None:
        """``merge(merge(a, b), c) == merge(a, merge(b, c))`` for the states of three batches."""
        sa, sb, sc = self.state(a), self.state(b), self.state(c)
        self.assert_same("associative", self.merge(self.merge(sa, sb), sc), self.merge(sa, self.merge(sb, sc)))

    def check_partition(self, batch: Batch, parts: Sequence[np.ndarray], rng: np.random.Generator) -> None:
        """The rows of ``batch`` split into ``parts`` (index arrays covering every row once), each updated
        from zero and merged in a random tree order, and the parts folded one after the other into one
        state, both give the state of one update over ``batch``."""
        whole = self.state(batch)
        states = [self.state(take(batch, rows)) for rows in parts]
        self.assert_same(
            "partition: parts merged in a random tree order", merge_in_random_order(self, states, rng), whole
        )
        if self.statistic.merges_in_any_order():
            shuffled = [states[i] for i in rng.permutation(len(states))]
            self.assert_same("partition: merge_all of the parts", self.statistic.merge_all(shuffled), whole, rtol=0)
        folded = self.statistic.zero()
        for rows in parts:
            folded = self.update(folded, take(batch, rows))
        self.assert_same("partition: parts folded into one state", self.statistic.stored(folded), whole)

    def check_jit(self, batch: Batch) -> None:
        """The compiled, padded update equals the eager update (jittable statistics; others: nothing to do).
        Give batches without subnormal floats: compiled XLA code and eager ops may treat those differently."""
        if not self.statistic.jittable:
            return
        compiled = self.state(batch)
        self._assert_compiled_same("jit: compiled update vs eager update", compiled, self.eager_state(batch))
        if self.statistic.runs_on_host():  # a small job's rows: the same bits from NumPy
            host = Accumulator([self.statistic], host_rows=len(next(iter(batch.values()))))
            (state,) = host.update((self.statistic.zero(),), batch)
            self.assert_same("host: NumPy update vs compiled update", self.statistic.stored(state), compiled)

    def _assert_compiled_same(self, law: str, got: State, expected: State) -> None:
        """:meth:`assert_same`, within ``jit_atol`` when set (states of two differently compiled programs)."""
        if self.jit_atol == 0:
            self.assert_same(law, got, expected)
            return
        for (path, x), (_, y) in zip(leaves(got), leaves(expected), strict=True):
            if np.shape(x) != np.shape(y) or not np.allclose(x, y, rtol=0, atol=self.jit_atol, equal_nan=True):
                raise ConformanceError(
                    f"{law}: state leaf {path or '(root)'} differs beyond {self.jit_atol}:\n{x!r}\n{y!r}"
                )

    def check_resample(self, batches: Sequence[Batch], weights: np.ndarray) -> None:
        """For the replicate statistic (:meth:`~evaluators.statistic.Statistic.for_replicates`) with one bucket
        per batch: ``resample`` equals the explicit merges, for integer ``weights`` ``[B, len(batches)]``;
        the grouped update (every bucket in one call, as the bootstrap runs it) equals one update per bucket.
        Statistics without intervals (``bootstrap = False``) have nothing to check."""
        if not self.statistic.bootstrap:
            return
        replicate = StatisticTester(self.statistic.for_replicates(), self.rtol, self.jit_atol)
        buckets = [replicate.state(b) for b in batches]
        if replicate.statistic.jittable:
            acc = replicate._accumulator
            rows = concatenate(batches)
            group = np.repeat(np.arange(len(batches)), [len(next(iter(b.values()))) for b in batches])
            (grouped,) = acc.update_grouped(acc.zero_grouped(len(batches)), rows, group)
            for g, bucket in enumerate(buckets):
                got = replicate.statistic.stored(jax.tree.map(lambda x, g=g: np.asarray(x)[g], grouped))
                replicate._assert_compiled_same(f"resample: grouped update, bucket {g}", got, bucket)
        elif type(replicate.statistic).update_grouped is not Statistic.update_grouped:  # a host grouped update
            acc = replicate._accumulator
            group = np.repeat(np.arange(len(batches)), [len(next(iter(b.values()))) for b in batches])
            (grouped,) = acc.to_host(acc.update_grouped(acc.zero_grouped(len(batches)), concatenate(batches), group))
            for g, alone in enumerate(replicate.statistic.resample(grouped, np.eye(len(batches), dtype=np.int64))):
                replicate.assert_same(f"resample: grouped update, bucket {g}", alone, buckets[g])
        stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *buckets)
        replicates = replicate.statistic.resample(stacked, np.asarray(weights))
        for b, row in enumerate(np.asarray(weights)):
            expected = replicate.statistic.zero()
            for g, times in enumerate(row):
                for _ in range(int(times)):
                    expected = replicate.merge(expected, buckets[g])
            replicate.assert_same(f"resample: replicate {b} (weights {row.tolist()})", replicates[b], expected)

    def check_reference(
        self,
        batches: Sequence[Batch],
        finalize: Callable[[State], Any],
        reference: Callable[[Batch], Any],
        *,
        rtol: float = 1e-12,
        atol: float = 0.0,
    ) -> None:
        """``finalize`` of the merged states of ``batches`` equals ``reference`` of all their rows (numbers,
        arrays, or mappings of them with the same keys), within ``rtol`` / ``atol``."""
        merged = self.statistic.zero()
        for batch in batches:
            merged = self.merge(merged, self.state(batch))
        got, expected = finalize(tree_to_numpy(merged)), reference(concatenate(batches))
        if isinstance(expected, Mapping):
            if set(got) != set(expected):
                raise ConformanceError(f"reference: keys {sorted(got)}, expected {sorted(expected)}")
            pairs = [(f"[{k!r}]", got[k], expected[k]) for k in expected]
        else:
            pairs = [("", got, expected)]
        for key, x, y in pairs:
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            if x.shape != y.shape or not np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
                raise ConformanceError(f"reference: value{key} {x!r}, reference {y!r} (rtol={rtol}, atol={atol})")

    def check_all(
        self,
        batches: Sequence[Batch],
        *,
        finalize: Callable[[State], Any] | None = None,
        reference: Callable[[Batch], Any] | None = None,
        seed: int = 0,
        rtol: float = 1e-12,
        atol: float = 0.0,
    ) -> None:
        """Every law on ``batches`` (at least one; give several, of different sizes, including an empty one):
        identity, commutativity and associativity on consecutive batches, three random partitions of all
        rows, jit vs eager per batch, resample with one bucket per batch and random weights, and, when
        ``finalize`` and ``reference`` are given, the value (``rtol`` / ``atol``)."""
        if not batches:
            raise ValueError("check_all needs at least one batch")
        rng = np.random.default_rng(seed)
        cycle = [batches[i % len(batches)] for i in range(len(batches) + 2)]
        for i, batch in enumerate(batches):
            self.check_identity(batch)
            self.check_commutative(batch, cycle[i + 1])
            self.check_associative(batch, cycle[i + 1], cycle[i + 2])
            self.check_jit(batch)
        rows = concatenate(batches)
        n = len(next(iter(rows.values())))
        for _ in range(3):
            cuts = np.sort(rng.integers(0, n + 1, rng.integers(0, 6)))
            self.check_partition(rows, np.split(rng.permutation(n), cuts), rng)
        self.check_resample(batches, rng.integers(0, 3, (4, len(batches))))
        if finalize is not None and reference is not None:
            self.check_reference(batches, finalize, reference, rtol=rtol, atol=atol)


def merge_in_random_order(tester: StatisticTester, states: Sequence[State], rng: np.random.Generator) -> State:
    """Merge ``states`` pairwise in a random tree order, each pair in a random argument order."""
    pool = list(states) or [tester.statistic.zero()]
    while len(pool) > 1:
        i, j = sorted(rng.choice(len(pool), 2, replace=False))
        b, a = pool.pop(j), pool.pop(i)
        pool.append(tester.merge(a, b) if rng.random() < 0.5 else tester.merge(b, a))
    return pool[0]


def _equal(x: np.ndarray, y: np.ndarray, rtol: float) -> bool:
    if rtol == 0 or not (np.issubdtype(x.dtype, np.floating) and np.issubdtype(y.dtype, np.floating)):
        return bool(np.array_equal(x, y, equal_nan=np.issubdtype(x.dtype, np.inexact)))
    magnitudes = np.abs(np.concatenate([x.ravel(), y.ravel()]))
    scale = max(1.0, float(magnitudes[np.isfinite(magnitudes)].max(initial=0.0)))
    return bool(np.allclose(x, y, rtol=rtol, atol=rtol * scale, equal_nan=True))


_ACCUMULATORS: dict[Statistic, Accumulator] = {}


def _accumulator(statistic: Statistic) -> Accumulator:
    """One accumulator per statistic, always compiled, so that its update compiles once per padded shape."""
    if statistic not in _ACCUMULATORS:
        _ACCUMULATORS[statistic] = Accumulator([statistic], host_rows=0)
    return _ACCUMULATORS[statistic]
