"""The mergeable sufficient statistic and the metrics derived from it.

A :class:`Statistic` is a small, frozen description (its settings) plus four
pure functions over its *state*, a pytree of arrays:

* ``zero()``            the empty state, identity of ``merge``;
* ``update(state, b)``  fold one batch of rows into the state (pure, jit-able
  unless ``jittable`` is False);
* ``merge(a, b)``       associative and commutative combination of two states;
* ``finalize`` lives on :class:`DerivedMetric`: a host-side function turning a
  merged state into named values.

Statistics are frozen dataclasses, so two metrics that need the same statistic
(accuracy and F1 both read one confusion matrix) compare equal and a job
computes it once.

Batches are ``Mapping[str, Array]`` with the column roles as keys:
``predictions``, ``targets`` and ``weights`` (float64, shape ``[n]``; padding
rows carry weight 0, so every statistic must be weighted).

Example::

    >>> import numpy as np
    >>> from evaluators.accumulate import Accumulator
    >>> from evaluators.classification import ConfusionCounts
    >>> from evaluators.task import Task
    >>> stat = ConfusionCounts(Task("binary"))
    >>> acc = Accumulator([stat])            # runs the update under jit, in float64
    >>> (a,) = acc.update(acc.zero(), {"predictions": np.array([0.9, 0.2]), "targets": np.array([1, 1])})
    >>> (b,) = acc.update(acc.zero(), {"predictions": np.array([0.1]), "targets": np.array([0])})
    >>> stat.merge(a, b).tolist()            # rows: true class, columns: predicted
    [[1.0, 0.0], [1.0, 1.0]]
"""

from __future__ import annotations

import abc
import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluators.kernels import WeightRangeError, refuse_unbounded_total
from evaluators.lazyjax import jax

State = Any
"""A pytree (nested tuples / dicts) of numpy or JAX arrays."""

Batch = Mapping[str, Any]
"""Column role -> array. Always has ``weights`` (float64 ``[n]``)."""


def tree_add(a: State, b: State) -> State:
    """Leaf-wise sum of two states of the same structure (no mutation)."""
    if isinstance(a, tuple):
        return tuple(tree_add(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return {k: tree_add(a[k], b[k]) for k in a}
    return np.add(a, b)


def tree_map_leaves(fn: Callable[[np.ndarray], np.ndarray], state: State) -> State:
    """Apply ``fn`` to every leaf (as a numpy array) of a state."""
    if isinstance(state, tuple):
        return tuple(tree_map_leaves(fn, x) for x in state)
    if isinstance(state, dict):
        return {k: tree_map_leaves(fn, v) for k, v in state.items()}
    return fn(np.asarray(state))


def tree_leaves(state: State) -> list[np.ndarray]:
    """Every leaf of a state as a numpy array: tuples in order, dicts by sorted key (so two states of one
    statistic pair their leaves whatever order their dicts were built in)."""
    if isinstance(state, tuple):
        return [leaf for x in state for leaf in tree_leaves(x)]
    if isinstance(state, dict):
        return [leaf for k in sorted(state) for leaf in tree_leaves(state[k])]
    return [np.asarray(state)]


def tree_to_numpy(state: State) -> State:
    """Copy every leaf to a host numpy array."""
    if isinstance(state, tuple):
        return tuple(tree_to_numpy(x) for x in state)
    if isinstance(state, dict):
        return {k: tree_to_numpy(v) for k, v in state.items()}
    return np.asarray(state)


class RowsError(ValueError):
    """Rows that a statistic cannot evaluate as they are placed (a ranking query in two runs of rows, an image on two
    rows): ``role`` is the job's column role (``data.columns.<role>``) whose values place them."""

    role: ClassVar[str] = ""


class MergeStream(abc.ABC):
    """A running merge of one statistic's :meth:`~Statistic.transported` states (see :meth:`~Statistic.merge_stream`)."""

    @abc.abstractmethod
    def add(self, state: Any) -> bool:
        """Add ``state``; False where this stream does not take it (the caller merges it otherwise)."""

    @abc.abstractmethod
    def result(self) -> State | None:
        """The merge of the states added, in the stored form; None if none was."""


class Statistic(abc.ABC):
    """A sufficient statistic with an associative, commutative merge.

    Subclasses are frozen dataclasses whose fields are the settings that
    change the state (task, number of bins, ...). The state itself never
    lives on the object.
    """

    jittable: ClassVar[bool] = True
    """Whether ``update`` can run under ``jax.jit`` on fixed-shape padded batches."""
    features: ClassVar[tuple[str, ...]] = ()
    """Backbone features the update reads instead of raw columns (``candidate``, ``bertscore``...)."""
    columns: ClassVar[tuple[str, ...]] = ()
    """Batch columns the update reads besides ``predictions`` / ``targets`` / ``weights`` (``data.columns`` roles,
    such as ``query_id``); a job that lacks one is refused before any data is read."""
    bootstrap: ClassVar[bool] = True
    """False: too large to keep one state per bootstrap bucket; its metrics get no interval."""
    undefined_leaves: ClassVar[tuple[str, ...]] = ()
    """Names of state leaves (dict keys) that hold NaN by design, as a marker rather than a value (e.g. "this
    bin holds more than one distinct score"); the check of merged states before a commit leaves them alone."""
    stored_chunk_values: ClassVar[int] = 0
    """(row, column) values per :meth:`update_stored` call at least (0: the compiled update's chunk): a statistic
    whose stored update costs in proportion to its state, not only to the batch, takes larger chunks."""

    def code_owner(self) -> str | None:
        """Whose code the update runs, named where an error in it is the job's to fix (exit 2, not retried): a user
        statistic class (its dotted path), a library the job configures (``torchmetrics.F1Score``); None for
        evalpipe's own statistics, whose errors are evalpipe's."""
        cls = type(self)
        return None if cls.__module__.startswith("evaluators.") else f"{cls.__module__}.{cls.__qualname__}"

    @abc.abstractmethod
    def zero(self) -> State:
        """The empty state: ``merge(zero(), s) == s`` for every state ``s``."""

    @abc.abstractmethod
    def update(self, state: State, batch: Batch) -> State:
        """Return ``state`` with the rows of ``batch`` folded in. Pure."""

    def merge(self, a: State, b: State) -> State:
        """Combine two states. Default: leaf-wise sum (counts and sums)."""
        return tree_add(a, b)

    def refuse_weights(self, weights: np.ndarray) -> None:
        """Raise where this statistic cannot count a batch of these ``weights`` (float64 ``[n]``, finite, >= 0)
        exactly. Default: it can."""
        return None

    def refuse_batch(self, batch: Batch) -> None:
        """Raise where this statistic cannot count a weighted batch exactly (host columns; ``weights`` float64
        ``[n]``, finite, >= 0). Default: :meth:`refuse_weights` of its weights."""
        self.refuse_weights(batch["weights"])

    def refuse_state(self, state: State) -> None:
        """Raise where a weighted batch took ``state`` beyond what this statistic counts exactly (an integer sum
        that overflowed). Default: nothing to check."""
        return None

    def refuse_merged(self, state: State) -> None:
        """Raise (:class:`~evaluators.kernels.WeightRangeError`) where the merged stored ``state`` of a slice counts
        none of its rows' weights, so that its values would be undefined where the rows define them. Default:
        nothing to check."""
        return None

    def refuse_light(self, state: State, rows: int) -> None:
        """Raise (:class:`~evaluators.kernels.WeightRangeError`) where the merged ``state`` of ``rows`` rows sums
        weighted values in a fixed point their weights are too light for (:func:`~evaluators.kernels.refuse_light_total`).
        Default: nothing to check."""
        return None

    def optional_leaves(self) -> tuple[str, ...]:
        """Leaves of a dict state that it holds only at times (not in :meth:`zero`), which storage keeps and reads back
        where they are. Default: none."""
        return ()

    def stored_reprs(self, approximately: bool = False) -> tuple[str, ...]:
        """The ``repr`` under which runs stored states that this statistic reads as its own (``statistics.json``),
        this one first: a statistic that gained a field lists the repr it had before, so runs stored then still load.
        ``approximately``: also states it can be read from for display (plots), where not every row falls as it would
        now. Default: its own."""
        return (repr(self),)

    def merges_in_any_order(self) -> bool:
        """Whether the merged state is the same whatever the grouping and order of the merges, bit for bit (integer
        sums, set unions), so that :meth:`merge_all` may take many states at once. Default False: floating sums
        are merged pairwise in plan order."""
        return False

    def merge_all(self, states: Sequence[State]) -> State:
        """The merge of one or more states. Default: :meth:`merge` from left to right; a statistic that
        :meth:`merges_in_any_order` may do better (one pass over all of them)."""
        return functools.reduce(self.merge, states)

    def transported(self, state: State) -> Any:
        """The form in which a worker ships a unit's stored state to the reducer: one that :meth:`merge_stream`
        adds faster, or the state itself (the default). :meth:`received` gives the stored state back, and
        :meth:`merge` and :meth:`merge_all` take either."""
        return state

    def received(self, state: Any) -> State:
        """The stored state of a :meth:`transported` one (what checkpoints keep). Default: the state itself."""
        return state

    def merge_stream(self) -> MergeStream | None:
        """A running merge that adds :meth:`transported` states one at a time and gives what :meth:`merge_all`
        gives, for a statistic that :meth:`merges_in_any_order`; None (the default): states are pooled and merged
        with :meth:`merge_all`."""
        return None

    def working(self, state: State) -> State:
        """The form :meth:`update` takes, from a state in either form. Default: the state itself.

        A statistic whose stored state is compact (occupied cells only, with a size that follows the
        data) but whose compiled update needs fixed shapes converts the stored form here, and back in
        :meth:`stored`; both are host-side and run once per work unit, not per batch.
        """
        return state

    def working_on_device(self, state: State) -> State:
        """:meth:`working` with every leaf a device array of its own, for the compiled update, which is handed
        its states' buffers (donated) and writes its result into them. Default: :meth:`working`'s host leaves
        copied to the device (device leaves as they are)."""
        return jax.tree.map(lambda x: x if isinstance(x, jax.Array) else jax.device_put(x), self.working(state))

    def stored(self, state: State) -> State:
        """The form :meth:`merge` takes and checkpoints keep, from a host copy of the working form."""
        return state

    def runs_on_host(self) -> bool:
        """Whether :meth:`update_stored` folds host (NumPy) columns without JAX, to the same state bit for bit
        as the compiled update of the same rows. A job whose statistics all do runs without importing JAX (see
        :class:`~evaluators.accumulate.Accumulator`). Default: no."""
        return False

    def folds_fast_on_host(self) -> bool:
        """Whether, besides :meth:`runs_on_host`, its NumPy update costs about what its compiled update does per
        row on a CPU (within 2x, measured by ``scripts/bench.py process``), so that a job on the CPU whose
        statistics all do folds every row with NumPy: no JAX import, no trace, no compile. Default: no."""
        return False

    def host_row_entries(self) -> int:
        """How many entries :meth:`update_stored` sorts or counts for one row (a multiclass ranking state: one a
        class), which the host budget of :class:`~evaluators.accumulate.Accumulator` counts
        (:data:`~evaluators.accumulate.HOST_ENTRIES`). Default: 1."""
        return 1

    def folds_groups_on_host(self) -> bool:
        """Whether :meth:`rows_by_group` takes host batches (then also :meth:`runs_on_host`, or not jittable).
        Default: no."""
        return False

    def rows_by_group(self, batch: Batch, group: np.ndarray, groups: int) -> list[State]:
        """The state of each group's rows alone, ``groups`` of them (``group``: int ``[n]`` in ``[0, groups)``), from
        one pass over the host batch: ``merge(state, rows_by_group(...)[g])`` is the state that :meth:`update` (or
        :meth:`update_stored`) of group ``g``'s rows gives, integer and fixed-point leaves bit for bit (float sums
        of weights may round differently). It spares a sliced job one update per slice and batch. Only for a
        statistic that :meth:`folds_groups_on_host`."""
        raise NotImplementedError(f"{type(self).__name__} folds no groups at once")

    def small_batch_rows(self) -> int:
        """Batches of fewer rows than this go to :meth:`update_stored` instead of the fused update (0: never)."""
        return 0

    def folds_on_host(self, state: State, batch: Batch) -> bool:
        """Whether ``batch`` must go to :meth:`update_stored` whatever its size, because ``state`` (stored form) is
        one the compiled update cannot continue with these rows (an exact ranking state). Default: no."""
        return False

    def update_stored(self, state: State, batch: Batch) -> State:
        """Fold a small batch (host columns as :class:`~evaluators.accumulate.Accumulator` passes them to
        host statistics) straight into the stored form: no working state of the full grid is built, so
        the cost of a sliced job's many small per-slice batches follows their rows.

        Default, for statistics that :meth:`runs_on_host`: :meth:`update` on the host columns, between
        :meth:`working` and :meth:`stored`."""
        if not self.runs_on_host():
            raise NotImplementedError(f"{type(self).__name__} has no host update")
        return self.stored(self.update(self.working(state), batch))

    def zero_grouped(self, groups: int) -> State:
        """``groups`` zero states on a leading axis (one per bootstrap bucket)."""
        import jax  # a pytree of any structure (named tuples included)

        return jax.tree.map(lambda x: np.stack([np.asarray(x)] * groups), self.zero())

    def update_grouped(self, batch: Batch, stacked: State, group: np.ndarray) -> State:
        """Host statistics with ``bootstrap``: ``stacked`` (from :meth:`zero_grouped`) with each row of ``batch``
        folded into the state of its group (``group``: int ``[n]``). Jittable statistics are updated by the
        accumulator's compiled, vmapped :meth:`update` instead."""
        raise NotImplementedError(f"{type(self).__name__} has no grouped host update")

    def occupied_groups(self, stacked: State, groups: int) -> np.ndarray | None:
        """bool ``[groups]``: which of the ``groups`` bucket states in ``stacked`` (from :meth:`zero_grouped`) hold
        rows, for states whose leaves do not keep their zero state's shape under the bucket axis (a label axis the
        buckets share); None (the default): those leaves that do are compared with the zero state's."""
        return None

    def for_replicates(self) -> Statistic:
        """The statistic kept per bootstrap bucket: itself, or a smaller variant (coarser bins)."""
        return self

    def resample_stacked(self, stacked: State, weights: np.ndarray) -> State | None:
        """The replicates of :meth:`resample` as one state whose leaves carry a leading ``[B]`` axis where the
        replicates differ, for metrics with ``interval_rows``; None (the default) where not offered."""
        return None

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        """Bootstrap replicates: ``out[b] = sum_g weights[b, g] * state_g`` in the merge's sense.

        ``stacked`` holds the states of ``G`` row buckets, every leaf with a leading ``[G]``
        axis; ``weights`` is a ``[B, G]`` array of non-negative integer weights. The default
        is exact for additive states (counts and sums); statistics with other merges override it.
        """
        mixed = tree_map_leaves(lambda x: np.tensordot(np.asarray(weights, np.float64), x, axes=1), stacked)
        return [tree_map_leaves(lambda x, b=b: x[b], mixed) for b in range(np.shape(weights)[0])]


EXTREMES = ("lo", "hi")
"""State keys of running minima / maxima: infinite until a row is seen."""


def _named_leaves(state: State, path: str) -> list[tuple[str, np.ndarray]]:
    """``(path, array)`` of every leaf of a state (nested tuples / dicts of arrays)."""
    if isinstance(state, tuple | list):
        return [leaf for i, part in enumerate(state) for leaf in _named_leaves(part, f"{path}[{i}]")]
    if isinstance(state, dict):
        return [leaf for k in sorted(state) for leaf in _named_leaves(state[k], f"{path}.{k}")]
    return [(path, np.asarray(state))]


def nonfinite_leaf(statistic: Statistic, state: State) -> tuple[str, str] | None:
    """``(path, "NaN" or "inf")`` of the first floating leaf of a merged ``state`` that is not finite where it
    should be (an overflow, a value that slipped through), else None. Allowed: the ``lo`` / ``hi``
    :data:`EXTREMES` of a statistic that saw no row (``+-inf``, never NaN) and the leaves the statistic names in
    ``undefined_leaves`` (NaN as a marker)."""
    for path, leaf in _named_leaves(state, "state"):
        if leaf.dtype.kind not in "fc" or np.isfinite(leaf).all():
            continue
        name = path.rsplit(".", 1)[-1]
        if name in statistic.undefined_leaves or (name in EXTREMES and not np.isnan(leaf).any()):
            continue
        return path, "NaN" if np.isnan(leaf).any() else "inf"
    return None


def check_weights(weights: Any) -> None:
    """Refuse (:class:`~evaluators.kernels.WeightRangeError`) rows' ``weights`` (or None) that add up beyond
    float64's range, as a job does, before any statistic sums them."""
    if weights is not None:
        with np.errstate(over="ignore"):
            refuse_unbounded_total(float(np.sum(np.asarray(weights, np.float64))))


def check_merged(statistic: Statistic, state: State, rows: int) -> None:
    """The checks of a merged state of ``rows`` rows before values are read from it, as a job makes them before a
    commit: weights none of which counted, too light for a fixed-point sum, and sums beyond float64 are refused
    (:class:`~evaluators.kernels.WeightRangeError`, a ``ValueError``)."""
    statistic.refuse_merged(state)
    statistic.refuse_light(state, rows)
    found = nonfinite_leaf(statistic, state)
    if found is not None:
        path, kind = found
        raise WeightRangeError(
            f"{type(statistic).__name__}: its sums left float64's range ({kind} in {path}), so no value read from "
            "them would be right: values whose squares pass 1e308 (about 1e154 in absolute value), or weights adding "
            "up beyond it; scale them down (every weighted mean is unchanged when all weights are divided by the same "
            "number)"
        )


def resample_sums(stacked: Mapping[str, np.ndarray], weights: np.ndarray) -> list[State]:
    """:meth:`Statistic.resample` for dict states of sums whose integer leaves (fixed-point sums) must stay exact:
    those are weighted in int64 (``weights`` must be whole numbers, as Poisson counts are), the others in float64."""
    w = np.asarray(weights, np.float64)
    if np.any(w != np.round(w)):
        raise ValueError("bootstrap weights of fixed-point sums must be whole numbers")
    mixed = {
        key: np.tensordot(w.astype(np.int64) if np.issubdtype(np.asarray(leaf).dtype, np.integer) else w, leaf, axes=1)
        for key, leaf in stacked.items()
    }
    return [{key: leaf[b] for key, leaf in mixed.items()} for b in range(w.shape[0])]


def merge_with_extremes(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> State:
    """:meth:`Statistic.merge` for dict states of sums plus running extremes ``lo`` / ``hi``."""
    out = {}
    for key in a:
        combine = np.minimum if key == "lo" else np.maximum if key == "hi" else np.add
        out[key] = combine(a[key], b[key])
    return out


def resample_with_extremes(stacked: Mapping[str, np.ndarray], weights: np.ndarray) -> list[State]:
    """:meth:`Statistic.resample` for dict states of sums plus running extremes ``lo`` / ``hi``:
    sums are weighted, extremes taken over the buckets a replicate uses (weight > 0).

    The sums of all ``B`` replicates come from one ``[B, G] @ [G, n]`` product; an extreme that is
    the same in every bucket (a statistic that does not track it) is shared, not reduced per replicate.
    """
    w = np.asarray(weights, np.float64)
    used = w > 0
    replicates: dict[str, Callable[[int], np.ndarray]] = {}
    for key, leaf in stacked.items():
        leaf = np.asarray(leaf)
        if key in ("lo", "hi"):
            replicates[key] = _extreme_of_used(leaf, used, low=key == "lo")
        else:
            replicates[key] = replicate_sums(leaf, w).__getitem__
    return [{key: take(b) for key, take in replicates.items()} for b in range(w.shape[0])]


def replicate_sums(leaf: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Float64 ``[B, ...]``: the bucket states ``leaf`` (``[G, ...]``) weighted by ``weights`` (``[B, G]``), all
    ``B`` replicates from one ``[B, G] @ [G, n]`` product."""
    leaf = np.asarray(leaf)
    w = np.asarray(weights, np.float64)
    return (w @ leaf.reshape(leaf.shape[0], -1).astype(np.float64, copy=False)).reshape((w.shape[0], *leaf.shape[1:]))


def _extreme_of_used(leaf: np.ndarray, used: np.ndarray, *, low: bool) -> Callable[[int], np.ndarray]:
    """``b -> `` elementwise min (``low``) or max of ``leaf[g]`` (``[G, ...]``) over the buckets
    with ``used[b, g]`` (``[B, G]`` bool); ``inf`` / ``-inf`` where replicate ``b`` uses none."""
    empty = np.full(leaf.shape[1:], np.inf if low else -np.inf)
    reduce = np.min if low else np.max
    shared = leaf[0] if leaf.shape[0] and np.array_equal(leaf.min(axis=0), leaf.max(axis=0)) else None

    def take(b: int) -> np.ndarray:
        if not used[b].any():
            return empty
        return shared if shared is not None else reduce(leaf[used[b]], axis=0)

    return take


class Direction(enum.StrEnum):
    """Whether a larger value of a metric is better (calibrax ``MetricDirection``)."""

    HIGHER = "higher"
    LOWER = "lower"
    INFO = "info"


Finalize = Callable[[State], Mapping[str, Any]]
RATIO = (0.0, 1.0)
"""The :attr:`DerivedMetric.value_range` of ratios (accuracy, precision, ROC-AUC, IoU, ...)."""
POINTS = (0.0, 100.0)
"""The :attr:`DerivedMetric.value_range` of scores in points (BLEU, chrF)."""
NON_NEGATIVE = (0.0, float("inf"))
"""The :attr:`DerivedMetric.value_range` of values never below 0 with no upper bound: rates (WER and CER, above 1
with insertions), losses, errors, distances, and counts (of queries, words, groups)."""
CORRELATION = (-1.0, 1.0)
"""The :attr:`DerivedMetric.value_range` of agreement scores (MCC, Cohen's kappa, adjusted balanced accuracy) and
cosine similarities."""


@dataclass(frozen=True)
class DerivedMetric:
    """A metric read off one statistic's merged state.

    Attributes:
        name: catalogue name (``"f1_score"``).
        statistic: the statistic whose state ``finalize`` reads.
        finalize: host function ``state -> {suffix: value}``. The suffix ``""``
            is the metric's headline value; ``"[3]"`` a per-class value;
            ``".error_bound"`` the bound of an approximate mode. Values are
            Python floats or numpy arrays (confusion matrices).
        direction: whether higher values are better.
        unit: unit of the value (``""`` for ratios).
        description: one line for ``MetricDef``.
        interval_values: optional host function ``state -> {suffix: value}`` giving the values
            whose bootstrap replicates make the intervals: an estimator of the same quantity with
            less small-sample bias than ``finalize`` (calibration error), or the subset of values
            that an interval suits (a mean, not an extreme). When set, intervals are percentile
            intervals of its replicates, only for the keys it returns; the reported values stay
            ``finalize``'s, which match the reference libraries.
        interval_rows: optional host function giving the interval values of many states at once, stacked on a
            leading ``[R]`` axis as :meth:`Statistic.resample_stacked` gives them: ``{suffix: [R] values}``,
            each row equal to that state's own value, or None for a state it does not take (the reducer then
            computes one state at a time).
        finalize_many: optional host function giving ``finalize`` of many states at once (a run's slices), each
            equal to that state's own, or None for states it does not take (then one state at a time).
        value_range: ``(low, high)`` that the headline and per-class values always lie in (:data:`RATIO` for
            ratios such as recall or ROC-AUC), or None; bootstrap intervals are clipped to it (a reflected interval
            can reach beyond: ROC-AUC 0.99 on a few hundred rows could read ``[0.97, 1.01]``).
        part_ranges: ``(suffix, (low, high))`` of the values beside the headline that have a range of their own
            (``.queries``: a count, :data:`NON_NEGATIVE`; ``.recall``: :data:`RATIO`), clipped as ``value_range``
            clips the headline's (per-class ``suffix[i]`` values too).
        info_parts: suffixes of the values beside the headline that describe the rows (counts, lengths, each group's
            rates) and rank nothing: recorded with direction ``info``, so a comparison of runs does not read fewer
            queries as a regression.
        undefined_because: optional host function: why the headline value of a merged state is undefined (NaN), a
            phrase such as ``"no positive row"`` (:meth:`why_undefined`); None where the metric does not say.
    """

    name: str
    statistic: Statistic
    finalize: Finalize
    direction: Direction = Direction.HIGHER
    unit: str = ""
    description: str = ""
    interval_values: Finalize | None = None
    interval_rows: Callable[[State], Mapping[str, np.ndarray] | None] | None = None
    finalize_many: Callable[[list[State]], Sequence[Mapping[str, Any]] | None] | None = None
    value_range: tuple[float, float] | None = None
    part_ranges: tuple[tuple[str, tuple[float, float]], ...] = ()
    info_parts: tuple[str, ...] = ()
    undefined_because: Callable[[State], str] | None = None

    def ranges(self, key: str) -> dict[str, tuple[float, float]]:
        """``{key + suffix: (low, high)}``: the range of each value this metric gives under ``key`` that has one
        (``value_range`` under ``key`` itself, ``part_ranges`` under ``key`` and their suffixes)."""
        own = () if self.value_range is None else (("", self.value_range),)
        return {key + suffix: bounds for suffix, bounds in (*own, *self.part_ranges)}

    def compute(self, state: State) -> dict[str, Any]:
        """Values of this metric for a merged ``state``."""
        return dict(self.finalize(tree_to_numpy(state)))

    def compute_many(self, states: Sequence[State]) -> list[dict[str, Any]]:
        """:meth:`compute` of each of ``states`` (a run's slices), in one pass where ``finalize_many`` takes them."""
        if self.finalize_many is not None and states:
            values = self.finalize_many([tree_to_numpy(s) for s in states])
            if values is not None:
                return [dict(v) for v in values]
        return [self.compute(s) for s in states]

    def why_undefined(self, state: State) -> str | None:
        """Why the headline value of ``state`` is NaN (:attr:`undefined_because`), or None where it does not say."""
        return None if self.undefined_because is None else self.undefined_because(tree_to_numpy(state))

    def compute_for_interval(self, state: State) -> dict[str, Any]:
        """Values whose bootstrap replicates give the interval: ``interval_values`` when set, else ``compute``."""
        return dict((self.interval_values or self.finalize)(tree_to_numpy(state)))
