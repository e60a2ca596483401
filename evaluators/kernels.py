"""Numeric kernels the statistics share: exact fixed-point sums, weighted bincounts into a state, and
division with a value for a zero denominator.

Fixed point: bounded per-row sums (losses, squared errors, confidences, per-query values) are accumulated
as integers: each value ``v`` becomes two int64 limbs, ``hi = round(v * 2**32)`` and
``lo = round((v * 2**32 - hi) * 2**20)``, so a row is kept to 2**-52 (float64's own precision near 1).
Integer addition is exact, so the sums, and everything computed from them, do not depend on sharding or
merge order. ``hi`` holds up to 2**31 (about 2.1e9) units in all, e.g. a billion rows at log loss 2.

Array namespace: the kernels (and the updates of statistics that :meth:`~evaluators.statistic.Statistic.runs_on_host`)
take the namespace of their inputs from :func:`array_namespace`: ``jax.numpy`` inside the compiled update, NumPy
on host arrays. The two give the same bits for the same rows (integer and fixed-point sums are exact, and the
float steps are the same correctly rounded operations), which ``tests/test_host_updates.py`` checks.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluators.lazyjax import jnp

if TYPE_CHECKING:
    from evaluators.statistic import Batch, State

FIXED_POINT_BITS = 32
FIXED_POINT_LOW_BITS = 20
"""Scale of the high limb (``2**32``) and of the low limb below it (``2**20``): see the module docstring."""


class WeightRangeError(ValueError):
    """Weights whose fixed-point sums (counts, weighted losses, confidences) do not fit int64."""


class ValueRangeError(ValueError):
    """Values whose float64 sums lost their precision (squares below float64's smallest normal number)."""


FIXED_SUM_LIMIT = 2.0**31
"""The largest sum a fixed-point high limb holds: ``2**31`` in units of ``2**-32`` is ``2**63``."""

SCALE_ADVICE = (
    "the metric, and every weighted mean, is unchanged when all weights are divided by the same number: divide them "
    "by their mean, for instance"
)


LIGHTEST_MEAN_WEIGHT = 2.0**-20
"""The least a slice's rows may weigh on average in a fixed-point sum of weighted values: a row's weight x value is
kept to ``2**-52``, so rows this light keep at least 32 bits of it (rows all of weight 1e-17, every one rounded,
once gave a Brier score of 0)."""


def refuse_light_total(weight: float, rows: int, what: str, unit: tuple[str, str] = ("row", "rows")) -> None:
    """Refuse a merged state whose ``rows`` (all of them, weight 0 included) weigh ``weight > 0`` in all, less than
    :data:`LIGHTEST_MEAN_WEIGHT` on average: its fixed-point sums of ``what`` would have lost their digits. Checked
    on the merged state, so that a few light rows among ordinary ones (a work unit's, or a batch's) are fine.
    ``unit``: what ``rows`` counts, singular and plural, for the message (queries, where a query's weight is one
    term)."""
    if rows and 0.0 < weight < LIGHTEST_MEAN_WEIGHT * rows:
        raise WeightRangeError(
            f"its {rows} {unit[1]} weigh {weight / rows:.3g} on average; the weighted values of {what} are summed "
            f"exactly, in units of 2^-52 per {unit[0]}, where weights below 2^-20 (9.5e-7) on average lose the digits "
            "of the values; "
            f"{SCALE_ADVICE}"
        )


def refuse_unbounded_total(weight: float) -> None:
    """Refuse rows whose weights, each finite, add up past float64's range (``weight`` their float64 sum, inf):
    every weighted mean would read inf / inf, NaN."""
    if np.isinf(weight):
        raise WeightRangeError(f"the weights add up to more than float64 holds (1.8e308); {SCALE_ADVICE}")


def refuse_cell_sums(cell_sums: np.ndarray, what: str) -> None:
    """Refuse a batch whose weighted values, summed per fixed-point cell (float64 ``[cells]``, each ``>= 0``), reach
    :data:`FIXED_SUM_LIMIT` in some cell."""
    largest = float(np.max(cell_sums, initial=0.0))
    if not largest < FIXED_SUM_LIMIT:
        raise WeightRangeError(
            f"the weighted values of {what} in one batch add up to {largest:.6g} in one sum; they are summed exactly, "
            f"in units of 2^-32 in int64, so each sum holds less than 2^31 (2,147,483,648); {SCALE_ADVICE}"
        )


class WeightBoundedSums:
    """Mixed into a statistic whose fixed-point sums add weight x a value in ``[-1, 1]`` (text scores, per-query
    retrieval values): while the weights add up below :data:`FIXED_SUM_LIMIT` no such sum can leave int64, so a
    batch or state that weighs more is refused (:class:`WeightRangeError`) instead of wrapping into a wrong value.
    Its ``merge`` calls :meth:`refuse_state` on the merged state."""

    summed: str = "this metric"
    """What the sums are, for the error message."""

    def state_weight(self, state: State) -> Any:
        """The state's total weight (any shape: bootstrap buckets are checked one by one)."""
        return state["weight"]

    def refuse_weights(self, weights: np.ndarray) -> None:
        refuse_weight_total(np.sum(weights), self.summed)

    def refuse_state(self, state: State) -> None:
        refuse_weight_total(self.state_weight(state), self.summed)

    def refuse_light(self, state: State, rows: int) -> None:
        refuse_light_total(float(np.sum(self.state_weight(state))), rows, self.summed)


def refuse_weight_total(total: Any, what: str) -> None:
    """Refuse weights that add up (float64, any shape, host or device; the largest counts) to
    :data:`FIXED_SUM_LIMIT` or more: the fixed-point sums of ``what``, values in ``[-1, 1]`` times these weights,
    could then leave int64."""
    largest = float(np.max(np.asarray(total, np.float64), initial=0.0))
    if not largest < FIXED_SUM_LIMIT:
        raise WeightRangeError(
            f"the weights of {what} add up to {largest:.6g}; its weighted values are summed exactly, in units of "
            f"2^-32 in int64, so the weights may add up to less than 2^31 (2,147,483,648); {SCALE_ADVICE}"
        )


def has_negative(values: Any) -> bool:
    """Whether integer ``values`` (host or device array, any shape) hold a negative number: sums of non-negative
    int64 values below ``2**63``, taken two at a time, overflow exactly when theirs is. A device array is reduced
    as int64 on the device (JAX's default would truncate it to int32) and one number comes back."""
    if array_namespace(values) is np:
        return bool(np.asarray(values).min(initial=0) < 0)
    from evaluators.lazyjax import jax, jnp

    with jax.enable_x64(True):
        return bool(jnp.min(values, initial=0) < 0)


def refuse_wrapped_sums(sums: Any, what: str) -> None:
    """Refuse fixed-point sums ``[..., 2]`` of non-negative values whose high limb turned negative
    (:func:`has_negative`)."""
    if has_negative(sums[..., 0]):
        raise WeightRangeError(
            f"the weighted values of {what} add up beyond 2^31; they are summed exactly, in units of 2^-32 in int64; "
            f"{SCALE_ADVICE}"
        )


def array_namespace(*arrays: Any) -> ModuleType:
    """NumPy when every argument is a host value (NumPy array or scalar, Python number), else ``jax.numpy``
    (traced or device arrays)."""
    if all(isinstance(a, np.ndarray | np.generic | int | float) for a in arrays):
        return np
    return jnp


def to_fixed(values: Any) -> Any:
    """Float values -> int64 fixed point, ``[..., 2]`` (hi, lo limbs)."""
    return array_namespace(values).stack(_limbs(values), axis=-1)


def _limbs(values: Any) -> tuple[Any, Any]:
    xp = array_namespace(values)
    scaled = values.astype(xp.float64) * 2.0**FIXED_POINT_BITS
    hi = xp.round(scaled)
    lo = xp.round((scaled - hi) * 2.0**FIXED_POINT_LOW_BITS)
    return hi.astype(xp.int64), lo.astype(xp.int64)


def fixed_sum(values: Any) -> Any:
    """``sum(to_fixed(values), axis=0)`` for ``[n]`` values: int64 ``[2]``, one row reduction per limb
    (a reduction over the leading axis of ``[n, 2]`` is several times slower)."""
    xp = array_namespace(values)
    hi, lo = _limbs(values)
    return xp.stack([xp.sum(hi), xp.sum(lo)])


def from_fixed(values: np.ndarray) -> np.ndarray:
    """Fixed-point sums ``[..., 2]`` (int64, or float64 after re-weighting) -> floats ``[...]``."""
    values = np.asarray(values, np.float64)
    return (values[..., 0] + values[..., 1] / 2.0**FIXED_POINT_LOW_BITS) / 2.0**FIXED_POINT_BITS


def scatter_add(size: int, index: jnp.ndarray, values: jnp.ndarray) -> jnp.ndarray:
    """Weighted bincount: ``out[i] = sum(values[index == i])``, float64 ``[size]``."""
    return jnp.zeros(size, jnp.float64).at[index.reshape(-1)].add(values.reshape(-1).astype(jnp.float64))


SMALL_BINCOUNT = 16
"""Up to this many cells, :func:`add_at` sums each cell's masked values (vectorised passes) instead of
scattering row by row."""


def add_at(state: Any, index: Any, values: Any) -> Any:
    """``state`` plus the weighted bincount of flat ``index`` (``state.flat[i] += sum(values[index == i])``).

    The sums go straight into the state's buffer (the fused update donates its states, so XLA adds in
    place instead of building a zero array of the state's size per chunk); a state of at most
    ``SMALL_BINCOUNT`` cells takes one masked sum per cell. Indices past the end are dropped. XLA picks
    the order in which rows are added; sums of exact weights (integers, halves) do not depend on it.
    On host arrays (NumPy) the result is a new array: see :func:`host_add_at`.
    """
    if array_namespace(index, values) is np:
        return host_add_at(np.asarray(state), index, values)
    flat = state.reshape(-1)
    index = index.reshape(-1)
    values = values.reshape(-1).astype(flat.dtype)
    if flat.shape[0] <= SMALL_BINCOUNT:
        cells = [jnp.sum(jnp.where(index == i, values, 0)) for i in range(flat.shape[0])]
        return (flat + jnp.stack(cells)).reshape(state.shape)
    return flat.at[index].add(values).reshape(state.shape)


def add_rows(state: Any, index: Any, values: Any) -> Any:
    """``state`` ``[m, k]`` plus ``values`` ``[n, k]`` added to rows ``index`` ``[n]`` (``state[index[i]] +=
    values[i]``; indices past the end dropped)."""
    if array_namespace(index, values) is np:
        return host_add_at(np.asarray(state), index, values)
    return state.at[index].add(values.astype(state.dtype))


EXACT_FLOAT_SUM = 2.0**52
"""Integer values whose absolute sum is below this (with room for the rounding of that sum itself) add exactly in
float64, so :func:`host_add_at` bins them with ``np.bincount`` (several times faster than ``np.add.at``)."""


def host_add_at(state: np.ndarray, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:func:`add_at` on the host: a new array, ``state`` plus the bincount of flat ``index`` weighted by
    ``values`` (indices outside the state dropped). ``values`` with one more axis than ``index`` (``[n, k]``
    for ``[n]``) add rows of a state of shape ``[m, k]`` (``state[index[i]] += values[i]``). Integer states add
    exactly (``np.add.at``); float states through a float64 bincount."""
    out = np.array(state, copy=True)
    by_row = np.ndim(values) == np.ndim(index) + 1
    rows = out.reshape(out.shape[0], -1) if by_row else out.reshape(-1, 1)
    index = np.asarray(index).reshape(-1)
    values = np.asarray(values).reshape(len(index), -1)
    keep = (index >= 0) & (index < rows.shape[0])
    if not keep.all():
        index, values = index[keep], values[keep]
    if np.issubdtype(rows.dtype, np.integer) and np.abs(values).sum(axis=0, dtype=np.float64).max() >= EXACT_FLOAT_SUM:
        np.add.at(rows, index, values.astype(rows.dtype))
    elif np.issubdtype(rows.dtype, np.integer):  # every partial sum below 2**52: exact in float64
        for column in range(rows.shape[1]):
            rows[:, column] += np.bincount(index, weights=values[:, column], minlength=rows.shape[0]).astype(np.int64)
    else:
        for column in range(rows.shape[1]):
            rows[:, column] += np.bincount(index, weights=values[:, column], minlength=rows.shape[0])
    return out


def fixed_bincount(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Host ``add_rows(zeros((size, 2), int64), index, to_fixed(values))`` for ``[n]`` values and indices in
    ``[0, size)``: int64 ``[size, 2]``, each limb's sums by a float64 bincount while they are exact
    (:data:`EXACT_FLOAT_SUM`), else by ``np.add.at``; the same integers either way."""
    out = np.zeros((size, 2), np.int64)
    scaled = np.multiply(values, 2.0**FIXED_POINT_BITS, dtype=np.float64)
    hi = np.round(scaled)  # the limbs of _limbs, still as (integer) floats
    lo = np.round((scaled - hi) * 2.0**FIXED_POINT_LOW_BITS)
    # |hi| <= |scaled| + 1/2 and |lo| <= 2**(FIXED_POINT_LOW_BITS - 1): a bound on every partial sum of both
    exact = np.abs(scaled).sum() + len(scaled) * 2.0**FIXED_POINT_LOW_BITS < EXACT_FLOAT_SUM
    for column, limb in enumerate((hi, lo)):
        if exact:
            out[:, column] = np.bincount(index, limb, size)
        else:
            np.add.at(out[:, column], index, limb.astype(np.int64))
    return out


def safe_divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    """``num / den`` with ``zero_division`` where ``den == 0`` (float64, broadcast shape)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return out


HOST_CHUNK_ROWS = 1 << 14
"""Rows per step of a NumPy update of a sum over rows: its dozen float64 temporaries (128 KiB each) stay in the
core's cache instead of streaming the batch through memory once per operation."""


def in_cache_steps(update_rows: Callable[[State, Batch], State], state: State, batch: Batch) -> State:
    """``update_rows(state, batch)``; on host arrays longer than :data:`HOST_CHUNK_ROWS`, one step per that many rows
    (a sum over rows: the same integer sums, 3-6x faster than whole-batch NumPy operations)."""
    n = len(batch["weights"])
    if n <= HOST_CHUNK_ROWS or array_namespace(batch["weights"]) is not np:
        return update_rows(state, batch)
    for first in range(0, n, HOST_CHUNK_ROWS):
        state = update_rows(state, {k: v[first : first + HOST_CHUNK_ROWS] for k, v in batch.items()})
    return state
