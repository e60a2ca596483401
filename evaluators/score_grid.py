"""Where a score falls in the grid of a binned ranking state (:class:`~evaluators.ranking_statistics.ScoreHistogram`):
its bin, its position within the bin, and the cell that refines the bin at rounded scores.

*Bins* follow the float32 bit pattern of ``min(p, 1 - p)``, keeping ``precision_bits`` bits of mantissa: each bin is
``2**-precision_bits`` of the distance to the nearer end of ``[0, 1]`` wide (:func:`score_bins`).

*Cells* split the bins at the scores written with at most ``decimals`` decimals (``0.37``, ``0.125``): each such
score has a cell of its own, and the other scores of its bin fall into the cells below and above it
(:func:`score_cells`). Rows of a rounded score are then known as a block of ties, however many continuous scores
share its bin, which is what average precision needs of them. A rounded score ``m / 10**decimals`` is the float64
nearest to it or the float32 nearest to it (written by NumPy's ``round`` in either dtype); the two get a cell each,
and the scores strictly between them one more, so that the cells follow the order of the scores whatever dtype
each shard has. The refinement is read from the order the state keeps (the prediction as written), so a value in
``[0, 1]`` of it counts: probabilities, and binary or multilabel logits between 0 and 1.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from evaluators.kernels import array_namespace
from evaluators.lazyjax import jax, jnp

_MIN_EXPONENT = 40  # scores closer than 2**-40 to 0 or 1 share the end bins
DEFAULT_SCORE_DECIMALS = 3
"""Scores with at most this many decimals keep cells of their own beyond ``exact_cells`` (``score_decimals``)."""
MAX_SCORE_DECIMALS = 5
DEFAULT_PRECISION_BITS = 10
"""``precision_bits`` of a task of several ranked classes that does not set it (fewer above 100 classes:
:func:`~evaluators.ranking.default_precision_bits`), and of a binary task's runs stored before
:data:`EARLIER_BINARY_PRECISION_BITS`."""
BINARY_PRECISION_BITS = 11
"""``precision_bits`` of a single ranked class (binary) that does not set it: bins twice as narrow as several
classes', keeping up to :data:`BINARY_BIN_SCORES` scores a bin (README, "ROC-AUC and average precision": within
5.1e-7 of scikit-learn on 151 measured cases where one cell per bin at 12 bits was up to 4.2e-6 off)."""
BINARY_BIN_SCORES = 8
"""``bin_scores`` of a single ranked class that does not set it: a bin of at most this many distinct scores keeps
a cell per score (:mod:`evaluators.ranking_bins`); several ranked classes keep one cell per bin."""
EARLIER_BINARY_PRECISION_BITS = 12
"""A binary task's default ``precision_bits`` before :data:`BINARY_BIN_SCORES` (one cell per bin, 12 bits; 10
before that): runs stored under either are read for display, never merged with new ones."""
MAX_BIN_SCORES = 64
"""The most distinct scores a bin may keep (``bin_scores``)."""


def bin_count(precision_bits: int) -> int:
    """Number of histogram bins for a given mantissa precision."""
    return 2 * (((127 - 1) << precision_bits) - ((127 - _MIN_EXPONENT) << precision_bits) + 1)


def grid_slots(decimals: int) -> int:
    """How many cells the rounded scores of ``decimals`` decimals add to a class's bins: for each of the
    ``10**decimals + 1`` rounded scores in ``[0, 1]``, its float64 and its float32 value, the scores between the two
    and those up to the next rounded score (:func:`decimal_offsets`); none for 0."""
    return 4 * 10**decimals + 4 if decimals > 0 else 0


def cell_count(precision_bits: int, decimals: int) -> int:
    """Number of cells of a class: its bins, plus the slots of its rounded scores (:func:`grid_slots`)."""
    return bin_count(precision_bits) + grid_slots(decimals)


def score_bins(scores: jax.Array, precision_bits: int) -> jax.Array:
    """Monotone bin index in ``[0, bin_count)`` of probabilities in ``[0, 1]``.

    The index is read from the float32 bit pattern of ``u = min(p, 1 - p)``
    (``1 - p`` is exact in ``p``'s own float type for ``p >= 0.5``; ``u`` is
    rounded to float32 only afterwards, so that scores near 1 keep the same
    relative resolution as scores near 0), keeping ``precision_bits`` bits of
    mantissa.
    """
    p = scores
    xp = array_namespace(p)
    u = xp.minimum(p, 1 - p).astype(xp.float32)
    shift = 23 - precision_bits
    lo = (127 - _MIN_EXPONENT) << precision_bits
    hi = (127 - 1) << precision_bits
    half = hi - lo + 1
    code = xp.clip(_float32_bits(u) >> shift, lo, hi) - lo
    return xp.where(p <= 0.5, code, 2 * half - 1 - code)


def score_cells(scores: Any, order: Any, precision_bits: int, decimals: int) -> Any:
    """Monotone cell index in ``[0, cell_count)``: the bin of ``scores`` (probabilities, :func:`score_bins`) plus
    :func:`decimal_offsets` of ``order`` (the values the state orders by; ``scores`` is a monotone function of it).
    Both parts grow with the score, and a step of one never lands on another's cell, so the index is monotone and
    two scores share a cell only where they share the bin and the interval between rounded scores."""
    bins = score_bins(scores, precision_bits)
    if decimals == 0:
        return bins
    return bins + decimal_offsets(order, decimals)


def decimal_offsets(order: Any, decimals: int) -> Any:
    """``4 m + [x >= a] + [x > a] + [x >= b] + [x > b]`` (int32, in ``[0, 4 * 10**decimals + 4]``) for each value
    ``x`` of ``order``, with ``m`` its nearest rounded score's index (``round(x * 10**decimals)``, clipped to ``[0,
    10**decimals]``) and ``a <= b`` that rounded score's float64 and float32 values (:func:`rounded_values`, exact
    tables: a nearest index off by one still counts ``x`` in the right interval). Constant below 0 and above 1;
    subnormal values of ``order``'s dtype count as 0 (the compiled update's comparisons flush them), so they share
    0's cell. Float32 values on the host compare in float32 (:func:`float32_thresholds`), the same answers."""
    xp = array_namespace(order)
    scale = 10**decimals
    floating = xp.issubdtype(order.dtype, xp.floating)
    tiny = float(np.finfo(order.dtype).tiny) if floating else 0.0
    if xp is not np:
        low, high = rounded_values(decimals)
        x = xp.where(xp.abs(order) < tiny, 0.0, order).astype(xp.float64)  # (as XLA may read them anyway)
        m = xp.clip(xp.rint(x * scale), 0, scale).astype(xp.int32)
        a, b = jnp.asarray(low)[m], jnp.asarray(high)[m]
        return 4 * m + (x >= a).astype(xp.int32) + (x > a) + (x >= b) + (x > b)
    x = order if order.dtype == np.float32 else order.astype(np.float64)
    t = np.rint(x * x.dtype.type(scale))
    np.clip(t, 0, scale, out=t)
    m = t.astype(np.intp)
    near_zero = np.flatnonzero(m <= int(np.ceil(tiny * scale)))  # (usually few: where a subnormal may be)
    if len(near_zero):
        flat = x.reshape(-1).copy()
        flushed = near_zero[np.abs(flat[near_zero]) < tiny]
        flat[flushed] = 0.0
        m.reshape(-1)[flushed] = 0  # (0's own index: a flushed value is 0)
        x = flat.reshape(x.shape)
    if x.dtype == np.float32:  # (x >= a) + (x > a) + (x >= b) + (x > b) = 4 [x > c] + ties [x == c]
        least, ties = float32_steps(decimals)
        c = least.take(m)
        steps = (x > c).astype(np.int32)
        steps *= 4
        equal = np.flatnonzero(x.reshape(-1) == c.reshape(-1))  # (usually few, but for rounded scores)
        steps.reshape(-1)[equal] = ties.take(m.reshape(-1)[equal])
    else:
        low, high = rounded_values(decimals)
        a, b = low.take(m), high.take(m)  # (1-D gathers: several times faster than one of pairs)
        steps = (x >= a).astype(np.int32)
        steps += x > a
        steps += x >= b
        steps += x > b
    m *= 4
    m += steps
    return m.astype(np.int32)


@cache
def float32_thresholds(decimals: int) -> np.ndarray:
    """float32 ``[4, 10**decimals + 1]``: for each rounded score's ``a <= b`` (:func:`rounded_values`), the least
    float32 ``>= a``, ``> a``, ``>= b`` and ``> b``: a float32 ``x`` is ``>= a`` exactly when it is ``>=`` the first,
    and so on (each comparison of a float32 with a float64, made with float32 alone)."""
    rows = []
    for value in rounded_values(decimals):
        nearest = value.astype(np.float32)
        at_least = np.where(nearest < value, np.nextafter(nearest, np.float32(np.inf)), nearest)
        above = np.where(nearest <= value, np.nextafter(nearest, np.float32(np.inf)), nearest)
        rows += [at_least, above]
    table = np.stack(rows).astype(np.float32)
    table.flags.writeable = False
    return table


@cache
def float32_steps(decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """``(least, ties)``: float32 ``[10**decimals + 1]``, the least of :func:`float32_thresholds` for each rounded
    score, and int32, how many of its four thresholds equal that least one. The other thresholds are the next float32
    above it (a float32 and a float64 rounding of one score lie within half a float32 step of each other), so a
    float32 ``x`` is at or above all four when ``x > least``, at or above ``ties`` of them when ``x == least``, and
    below all of them otherwise."""
    table = float32_thresholds(decimals)
    least = table[0]
    above = np.nextafter(least, np.float32(np.inf))
    if not ((table == least) | (table == above)).all():  # (checked for every table there is: a guard)
        raise AssertionError(f"float32 thresholds of {decimals} decimals span more than two float32 values")
    ties = (table == least).sum(axis=0).astype(np.int32)
    ties.flags.writeable = False
    return least, ties


@cache
def rounded_values(decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float64 ``[10**decimals + 1]``: for each rounded score ``m / 10**decimals`` the lesser and the
    greater of its float64 value and its float32 value (correctly rounded by NumPy: equal where the score is exact in
    float32, as 0.5)."""
    scale = 10**decimals
    as_float64 = np.arange(scale + 1, dtype=np.float64) / scale
    as_float32 = as_float64.astype(np.float32).astype(np.float64)
    low, high = np.minimum(as_float64, as_float32), np.maximum(as_float64, as_float32)
    low.flags.writeable = high.flags.writeable = False
    return low, high


def _float32_bits(u: Any) -> Any:
    """The int32 bit patterns of float32 values (host or traced)."""
    if array_namespace(u) is np:
        return np.asarray(u).view(np.int32)
    return jax.lax.bitcast_convert_type(u, jnp.int32)


def bin_positions(scores: jax.Array, precision_bits: int) -> jax.Array:
    """Where each score lies within its :func:`score_bins` bin, in ``[0, 1)`` (0: the bin's lowest scores),
    from the float32 bit pattern's remaining mantissa bits; 0.5 in the end bins (scores within 2**-40 of
    0 or 1). A cell that splits a bin keeps the positions within the bin."""
    xp = array_namespace(scores)
    u = xp.minimum(scores, 1 - scores).astype(xp.float32)
    shift = 23 - precision_bits
    raw = _float32_bits(u)
    frac = (raw & ((1 << shift) - 1)).astype(xp.float64) / 2.0**shift
    frac = xp.where((raw >> shift) < (127 - _MIN_EXPONENT) << precision_bits, 0.5, frac)
    return xp.where(scores <= 0.5, frac, 1.0 - frac)
