"""Numeric kernels the statistics share: exact fixed-point sums, weighted bincounts into a state, and
division with a value for a zero denominator.

Fixed point: bounded per-row sums (losses, squared errors, confidences, per-query values) are accumulated
as integers: each value ``v`` becomes two int64 limbs, ``hi = round(v * 2**32)`` and
``lo = round((v * 2**32 - hi) * 2**20)``, so a row is kept to 2**-52 (float64's own precision near 1).
Integer addition is exact, so the sums, and everything computed from them, do not depend on sharding or
merge order. ``hi`` holds up to 2**31 (about 2.1e9) units in all, e.g. a billion rows at log loss 2.
"""

from __future__ import annotations

import numpy as np

from evaluators.lazyjax import jnp

FIXED_POINT_BITS = 32
FIXED_POINT_LOW_BITS = 20
"""Scale of the high limb (``2**32``) and of the low limb below it (``2**20``): see the module docstring."""


def to_fixed(values: jnp.ndarray) -> jnp.ndarray:
    """Float values -> int64 fixed point, ``[..., 2]`` (hi, lo limbs)."""
    return jnp.stack(_limbs(values), axis=-1)


def _limbs(values: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    scaled = values.astype(jnp.float64) * 2.0**FIXED_POINT_BITS
    hi = jnp.round(scaled)
    lo = jnp.round((scaled - hi) * 2.0**FIXED_POINT_LOW_BITS)
    return hi.astype(jnp.int64), lo.astype(jnp.int64)


def fixed_sum(values: jnp.ndarray) -> jnp.ndarray:
    """``jnp.sum(to_fixed(values), axis=0)`` for ``[n]`` values: int64 ``[2]``, one row reduction per limb
    (a reduction over the leading axis of ``[n, 2]`` is several times slower)."""
    hi, lo = _limbs(values)
    return jnp.stack([jnp.sum(hi), jnp.sum(lo)])


def to_fixed_host(values: np.ndarray) -> np.ndarray:
    """:func:`to_fixed` on the host (numpy, for statistics updated outside the compiled update): float64
    ``[...]`` -> int64 limbs ``[..., 2]``."""
    scaled = np.asarray(values, np.float64) * 2.0**FIXED_POINT_BITS
    hi = np.round(scaled)
    return np.stack([hi, np.round((scaled - hi) * 2.0**FIXED_POINT_LOW_BITS)], axis=-1).astype(np.int64)


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


def add_at(state: jnp.ndarray, index: jnp.ndarray, values: jnp.ndarray) -> jnp.ndarray:
    """``state`` plus the weighted bincount of flat ``index`` (``state.flat[i] += sum(values[index == i])``).

    The sums go straight into the state's buffer (the fused update donates its states, so XLA adds in
    place instead of building a zero array of the state's size per chunk); a state of at most
    ``SMALL_BINCOUNT`` cells takes one masked sum per cell. Indices past the end are dropped. XLA picks
    the order in which rows are added; sums of exact weights (integers, halves) do not depend on it.
    """
    flat = state.reshape(-1)
    index = index.reshape(-1)
    values = values.reshape(-1).astype(flat.dtype)
    if flat.shape[0] <= SMALL_BINCOUNT:
        cells = [jnp.sum(jnp.where(index == i, values, 0)) for i in range(flat.shape[0])]
        return (flat + jnp.stack(cells)).reshape(state.shape)
    return flat.at[index].add(values).reshape(state.shape)


def safe_divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    """``num / den`` with ``zero_division`` where ``den == 0`` (float64, broadcast shape)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return out
