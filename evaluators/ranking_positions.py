"""What the values of a binned ranking cell assume about the order of its rows.

A cell of several distinct scores (a bin of the grid) keeps each label's weight and the sum of each label's positions
within the bin (:func:`~evaluators.ranking_statistics.bin_positions`: 0 at the bin's lowest scores, towards 1 at its
highest), not the order of its rows. ROC-AUC reads the difference of the two labels' mean positions
(:func:`position_shift`); average precision places each label's rows evenly over an interval around its mean position
(:func:`positioned_precision_sum`). Both only estimate: the reported bound covers every order within the cell. NumPy
only, in closed form (digamma), so that no shape compiles.
"""

from __future__ import annotations

import numpy as np

from evaluators.ranking_cells import squared_weight_sums

_ASYMPTOTIC_FROM = 10.0
# Coefficients of y**-2k in the asymptotic series psi(y) ~ ln y - 1/(2y) - sum_k B_2k / (2k y**2k).
_DIGAMMA_SERIES = (-1 / 12, 1 / 120, -1 / 252, 1 / 240, -1 / 132, 691 / 32760)


def _digamma_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y, psi(x) - ln y)`` with ``y = x + n >= 10`` for float64 ``x > 0``: ``psi(x) = psi(x + n) -
    sum_{k<n} 1/(x + k)`` moves ``x`` to where the series is accurate to about 1e-16."""
    x = np.asarray(x, dtype=np.float64)
    y = x.copy()
    rest = np.zeros_like(x)
    small = x < _ASYMPTOTIC_FROM  # usually few: x counts the rows ranked above a cell
    if small.any():
        xs = x[small]
        steps = np.ceil(_ASYMPTOTIC_FROM - xs)
        total = np.zeros_like(xs)
        for k in range(int(_ASYMPTOTIC_FROM)):  # one term at a time: the same order of additions whatever len(xs)
            total += np.where(k < steps, 1.0 / (xs + k), 0.0)  # (a reduction could sum a column of one pairwise)
        rest[small] = -total
        y[small] = xs + steps
    inv2 = 1.0 / (y * y)
    series = np.zeros_like(y)
    for coefficient in reversed(_DIGAMMA_SERIES):
        series = (series + coefficient) * inv2
    return y, rest - 0.5 / y + series


def digamma_difference(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``psi(x + p) - psi(x)`` elementwise for float64 ``x > 0``, ``p >= 0``, in NumPy (no compile
    per shape); the logarithms' difference goes through ``log1p`` so that small ``p / x`` keeps its digits."""
    y_hi, rest_hi = _digamma_parts(np.asarray(x, dtype=np.float64) + p)
    y_lo, rest_lo = _digamma_parts(x)
    return np.log1p((y_hi - y_lo) / y_lo) + (rest_hi - rest_lo)


def harmonic_sum(a: np.ndarray, b: np.ndarray, p: np.ndarray, c: np.ndarray | float = 1.0) -> np.ndarray:
    """``sum_{i=1..p} (a + i) / (b + c i)`` in closed form (digamma), elementwise."""
    bc = b / c
    return (p - (bc - a) * digamma_difference(bc + 1, p)) / c


def precision_integral(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``integral_0^p (a + x) / (b + x) dx``: a lower bound of ``sum_i w_i (a + W_i) / (b + W_i)``
    for any positive weights ``w_i`` summing to ``p`` (``W_i`` their running sum)."""
    safe_b = np.where(b > 0, b, 1.0)
    return np.where(b > 0, p - (b - a) * np.log1p(p / safe_b), p)


def mean_positions(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """float64 ``[m, 2]``: the mean position within its bin of each cell's negatives and positives (NaN where the cell
    has none of that label), from integer ``counts`` / ``sums [m, 2]``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def cell_positions(counts: np.ndarray, sums: np.ndarray, squares: np.ndarray | None) -> np.ndarray:
    """float64 ``[m, 3]``: :func:`mean_positions` and :func:`positive_units` of each cell."""
    return np.concatenate([mean_positions(counts, sums), positive_units(counts, squares)[:, None]], axis=1)


def positive_units(counts: np.ndarray, squares: np.ndarray | None) -> np.ndarray:
    """float64 ``[m]``: each cell's positives' squared weights over their weight, ``sum w**2 / sum w``: the weight of
    one row where they all weigh the same (1 for unit weights), so that the cell holds ``sum w / unit`` rows'
    worth of positives (``(sum w)**2 / sum w**2``, the effective number of rows). From int64 ``counts [m, 2]`` (fixed
    point, ``2**-32``) and ``squares [m, 2]`` (the two limbs of
    :func:`~evaluators.ranking_cells.square_limbs`, ``2**-48``); 1 where the squares are unknown (a state stored
    before them) or rounded to 0 (weights below about ``1e-7``), and where the cell has no positives."""
    if squares is None:
        return np.ones(len(counts))
    total = squared_weight_sums(squares)
    weight = np.asarray(counts[:, 1], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((total > 0) & (weight > 0), total / weight, 1.0)


def position_shift(positions: np.ndarray) -> np.ndarray:
    """``[..., m]``: the positives' mean position minus the negatives' (:func:`mean_positions`, ``[..., m, 2]``), 0 where
    a cell lacks either label."""
    shift = positions[..., 1] - positions[..., 0]
    return np.where(np.isnan(shift), 0.0, shift)


def spread(mean: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Half-width of the interval that a label's rows in a cell are taken to fill evenly: the widest centred on their
    mean position within the bin where they weigh two rows or more (``weight`` in rows), 0 for one row (its
    position), and in proportion between (the effective number of rows of unequal weights)."""
    return np.clip(weight - 1.0, 0.0, 1.0) * np.minimum(mean, 1.0 - mean)


def positioned_precision_sum(
    tp0: np.ndarray, fp0: np.ndarray, p: np.ndarray, n: np.ndarray, mp: np.ndarray, mn: np.ndarray
) -> np.ndarray:
    """``sum_{i=1..p} (tp0 + i) / (tp0 + fp0 + i + N_i)`` per cell (float64 ``[k]`` each): the precisions at a cell's
    ``p`` positives when ``tp0`` / ``fp0`` weigh the rows ranked above the cell, the i-th positive from the top has
    ``N_i`` of the cell's ``n`` negatives before it, and each label's rows evenly fill an interval around its mean
    position ``mp`` / ``mn`` (:func:`spread`).

    The i-th positive lies at ``x_i = mp + hp - (2i - 1) hp / p`` and a negative above ``x`` with probability
    ``clip((mn + hn - x) / (2 hn), 0, 1)`` (a step where ``hn = 0``), so ``N_i = n clip(alpha + beta i, 0, 1)``: no
    negative for the first ``k0`` positives, a linear share for the next ``k1``, all of them for the rest; each part
    is a :func:`harmonic_sum`. A single positive and a single negative are ordered by their positions, which is
    exact. ``N_i`` lies in ``[0, n]``, so the sum lies between the cell's best and worst orders."""
    mn = np.where(n > 0, mn, 0.5)
    hp, hn = spread(mp, p), spread(mn, n)
    top = mp + hp + np.where(p > 0, hp / np.where(p > 0, p, 1.0), 0.0)  # x_i = top - 2 i hp / p
    safe_hn = np.where(hn > 0, hn, 1.0)
    safe_hp = np.where(hp > 0, hp, 1.0)
    step = np.where(mn > mp, 1.0, np.where(mn == mp, 0.5, 0.0))  # both labels at one point each
    point_share = np.where(hn > 0, np.clip((mn + hn - mp) / (2 * safe_hn), 0.0, 1.0), step)
    alpha = np.where(hp > 0, (mn + hn - top) / (2 * safe_hn), point_share)
    beta = np.where((hp > 0) & (hn > 0), hp / (np.where(p > 0, p, 1.0) * safe_hn), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        safe_beta = np.where(beta > 0, beta, 1.0)
        k0 = np.clip(np.floor(-alpha / safe_beta), 0.0, p)
        k_end = np.clip(np.ceil((1.0 - alpha) / safe_beta) - 1.0, k0, p)
        # negatives at one point mn: x_i > mn  <=>  i < crossing (mn - mp and 1 as they are: exact at the middle)
        crossing = ((mp - mn) / safe_hp + 1.0) * p / 2 + 0.5
    k0 = np.where(hp > 0, np.where(hn > 0, k0, np.clip(np.ceil(crossing) - 1.0, 0.0, p)), 0.0)
    at_point = (hp > 0) & (hn == 0) & (crossing == np.floor(crossing)) & (crossing >= 1.0) & (crossing <= p)
    k_end = np.where(hp > 0, np.where(hn > 0, k_end, k0 + at_point), p)
    alpha = np.where((hp > 0) & (hn == 0), 0.5, alpha)  # (a positive exactly at mn: half of them before it)
    k1, k2 = k_end - k0, p - k_end
    c = 1.0 + n * beta
    # (an empty linear part may start where alpha + beta i < 0 with many negatives: its digamma argument then need not
    # be positive, so it gets a harmless one; a part that has positives starts at a positive denominator)
    linear_start = np.where(k1 > 0, tp0 + fp0 + n * alpha + c * k0, 0.0)
    return (
        harmonic_sum(tp0, tp0 + fp0, k0)
        + harmonic_sum(tp0 + k0, linear_start, k1, c)
        + harmonic_sum(tp0 + k_end, tp0 + fp0 + n + k_end, k2)
    )
