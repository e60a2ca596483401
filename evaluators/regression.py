"""Regression metrics from one set of weighted, centred moments.

:class:`RegressionMoments` keeps the total weight, the means of target,
prediction and residual, their centred second moments, the target-prediction
co-moment, the absolute-error sum and the number of rows of positive weight. Centred moments merge with the
parallel formula of Chan, Golub and LeVeque, which stays accurate where raw
power sums would cancel (large means, small variances).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from evaluators.classification import require_kind
from evaluators.kernels import ValueRangeError
from evaluators.lazyjax import jnp
from evaluators.statistic import CORRELATION, NON_NEGATIVE, Batch, DerivedMetric, Direction, State, Statistic
from evaluators.task import Task, TaskKind

STORED_BEFORE_ROWS = np.array(2.0)
"""The ``rows`` of a state stored before the moments counted them: two or more, all that :func:`r2` asks."""
NO_LOW_PART = np.array(0.0)
"""The low part of a mean stored before the means kept one (the mean was one float64)."""


class Moments(NamedTuple):
    """Float64 scalars (0-d arrays). ``rows``: how many rows of positive weight (R^2 is undefined below two). Each mean
    is ``mean_x + low_x``, a float64 and the rest below its last digit (two floats): a merge adds the difference of
    two units' means to one of them, and with targets of 1e8 that vary by 1e-3 a mean rounded to one float64 (1.5e-8
    off) moved R^2 by 1e-7 with the units' size."""

    weight: np.ndarray
    mean_target: np.ndarray
    mean_pred: np.ndarray
    mean_resid: np.ndarray
    m2_target: np.ndarray
    m2_pred: np.ndarray
    m2_resid: np.ndarray
    c_target_pred: np.ndarray
    abs_error: np.ndarray
    rows: np.ndarray = STORED_BEFORE_ROWS
    low_target: np.ndarray = NO_LOW_PART
    low_pred: np.ndarray = NO_LOW_PART
    low_resid: np.ndarray = NO_LOW_PART


def _two_sum(a, b):
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e == a + b`` exactly (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _merged_mean(xp, a: Moments, b: Moments, field: str, fb):
    """``(d, mean, low)``: the difference of ``b``'s and ``a``'s means of ``field`` and their weighted mean, as two
    floats; a side of no weight leaves the other's mean as it is."""
    a_hi, a_lo = getattr(a, f"mean_{field}"), getattr(a, f"low_{field}")
    b_hi, b_lo = getattr(b, f"mean_{field}"), getattr(b, f"low_{field}")
    s, e = _two_sum(b_hi, -a_hi)
    d = s + (e + (b_lo - a_lo))
    hi, lo = _two_sum(a_hi, a_lo + d * fb)
    only_a, only_b = b.weight <= 0, a.weight <= 0  # (b of no weight changes nothing, whatever a holds)
    hi = xp.where(only_a, a_hi, xp.where(only_b, b_hi, hi))
    lo = xp.where(only_a, a_lo, xp.where(only_b, b_lo, lo))
    return d, hi, lo


def _merge_moments(xp, a: Moments, b: Moments) -> Moments:
    n = a.weight + b.weight
    safe_n = xp.where(n > 0, n, 1.0)
    fb = b.weight / safe_n
    factor = a.weight * fb  # (not a.weight * b.weight / n: that product leaves float64 for weights of 1e-170 or 1e155)
    dt, mean_target, low_target = _merged_mean(xp, a, b, "target", fb)
    dp, mean_pred, low_pred = _merged_mean(xp, a, b, "pred", fb)
    dr, mean_resid, low_resid = _merged_mean(xp, a, b, "resid", fb)
    return Moments(
        weight=n,
        mean_target=mean_target,
        mean_pred=mean_pred,
        mean_resid=mean_resid,
        m2_target=a.m2_target + b.m2_target + dt * dt * factor,
        m2_pred=a.m2_pred + b.m2_pred + dp * dp * factor,
        m2_resid=a.m2_resid + b.m2_resid + dr * dr * factor,
        c_target_pred=a.c_target_pred + b.c_target_pred + dt * dp * factor,
        abs_error=a.abs_error + b.abs_error,
        rows=a.rows + b.rows,
        low_target=low_target,
        low_pred=low_pred,
        low_resid=low_resid,
    )


def _shifted_mean(x: jnp.ndarray, w: jnp.ndarray, total: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``sum(w * x) / total`` for ``[n]`` float64 values as two floats ``(shift, offset)``: the first row of positive
    weight and the weighted mean of the rows' differences from it. A column of one value has exactly that value as its
    mean, and no spread. (``sum(w * x) / total`` can end one unit off it: a weighted constant target then had a variance
    of 1e-30, a Pearson correlation of -0.02 and an R^2 of -1e30.)"""
    if x.shape[0] == 0:
        return jnp.sum(w * x) / total, jnp.zeros((), x.dtype)
    counted = w > 0
    shift = jnp.where(jnp.any(counted), x[jnp.argmax(counted)], 0.0)  # (no counted row: no shift)
    return shift, jnp.sum(w * (x - shift)) / total


TINY_VALUES = 1e-150
"""Below this mean magnitude, targets or predictions whose squared deviations sum to 0 may vary by less than the
square root of float64's smallest number (about 1.5e-154): refused rather than read as constant."""
SQUARES_FLOOR = float(np.finfo(np.float64).tiny) * 2.0**45
"""The least mean squared deviation (per row of positive weight; about 7.7e-295, deviations of about 2.8e-148) read
from the moments: a row's squared deviation below float64's smallest normal number (2.2e-308) is flushed to 0 where
the update is compiled (XLA) and keeps fewer digits in NumPy, so rows may lose up to that much each; above this
floor all of them together move a sum by at most ``2**-45`` (2.8e-14) of it. Deviations of 3e-153 moved MSE by
2.3e-4 and of 1e-154 by 97% (r2 0.988 for 0.745), committed."""


@dataclass(frozen=True)
class RegressionMoments(Statistic):
    """Weighted centred moments of target, prediction and residual (see module doc)."""

    task: Task

    def zero(self) -> State:
        return tuple(np.zeros((), np.float64) for _ in Moments._fields)

    def update(self, state: State, batch: Batch) -> State:
        y = jnp.asarray(batch["targets"]).astype(jnp.float64)
        p = jnp.asarray(batch["predictions"]).astype(jnp.float64)
        w = batch["weights"].astype(jnp.float64)
        r = y - p
        n = jnp.sum(w)
        safe_n = jnp.where(n > 0, n, 1.0)
        (sy, oy), (sp, op), (sr, orr) = (_shifted_mean(x, w, safe_n) for x in (y, p, r))
        dy, dp, dr = (y - sy) - oy, (p - sp) - op, (r - sr) - orr
        (my, ly), (mp, lp), (mr, lr) = _two_sum(sy, oy), _two_sum(sp, op), _two_sum(sr, orr)  # (the mean, its rest)
        batch_moments = Moments(
            weight=n,
            mean_target=my,
            mean_pred=mp,
            mean_resid=mr,
            m2_target=jnp.sum(w * dy * dy),
            m2_pred=jnp.sum(w * dp * dp),
            m2_resid=jnp.sum(w * dr * dr),
            c_target_pred=jnp.sum(w * dy * dp),
            abs_error=jnp.sum(w * jnp.abs(r)),
            rows=jnp.sum(w > 0).astype(jnp.float64),
            low_target=ly,
            low_pred=lp,
            low_resid=lr,
        )
        return tuple(_merge_moments(jnp, Moments(*state), batch_moments))

    def refuse_merged(self, state: State) -> None:
        """Refuse (:class:`~evaluators.kernels.ValueRangeError`) moments whose squared deviations come near or below
        float64's smallest normal number (a mean square below :data:`SQUARES_FLOOR`: deviations below about 3e-148),
        where rows' squares were flushed to 0 or kept fewer digits (r2 of 1 and a NaN Pearson's r were committed for
        targets of 1e-160 that vary, r2 0.988 for 0.745 at 1e-154); a value read from them would be wrong."""
        m = Moments(*(float(x) for x in state))
        floor = SQUARES_FLOOR * max(float(m.rows), 1.0)
        lost = [name for name in ("m2_target", "m2_pred", "m2_resid") if 0 < getattr(m, name) < floor]
        for name, mean, m2 in (("targets", m.mean_target, m.m2_target), ("predictions", m.mean_pred, m.m2_pred)):
            if m2 == 0 and 0 < abs(mean) < TINY_VALUES:  # (squares flushed to 0: constant, or too small to tell)
                lost.append(name)
        if lost:
            raise ValueRangeError(
                f"targets or predictions so small or so close together (deviations below about 3e-148) that the "
                f"squares of their deviations ({', '.join(lost)}) come near or below float64's smallest normal number "
                "(2.2e-308), where sums lose their digits: the values read from them would be wrong; scale the "
                "columns up (r2, explained "
                "variance and Pearson's r do not change with a scale, MSE, RMSE and MAE scale with it)"
            )

    def merge(self, a: State, b: State) -> State:
        with np.errstate(over="ignore", invalid="ignore"):  # (inf / NaN left are refused, naming the columns)
            return tuple(np.asarray(x) for x in _merge_moments(np, Moments(*a), Moments(*b)))

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        # Weight k scales the weight, the centred sums and the absolute error; means stay.
        weights = np.asarray(weights, np.float64)
        total = Moments(*(np.zeros(weights.shape[0]) for _ in Moments._fields))
        fields = [np.asarray(x, np.float64) for x in stacked]
        for g in range(weights.shape[1]):
            m = Moments(*(f[g] for f in fields))
            k = weights[:, g]
            scaled = Moments(
                weight=k * m.weight,
                mean_target=np.full_like(k, m.mean_target),
                mean_pred=np.full_like(k, m.mean_pred),
                mean_resid=np.full_like(k, m.mean_resid),
                m2_target=k * m.m2_target,
                m2_pred=k * m.m2_pred,
                m2_resid=k * m.m2_resid,
                c_target_pred=k * m.c_target_pred,
                abs_error=k * m.abs_error,
                rows=k * m.rows,
                low_target=np.full_like(k, m.low_target),
                low_pred=np.full_like(k, m.low_pred),
                low_resid=np.full_like(k, m.low_resid),
            )
            with np.errstate(over="ignore", invalid="ignore"):
                total = _merge_moments(np, total, scaled)
        return [tuple(np.asarray(field[b]) for field in total) for b in range(weights.shape[0])]


def _moments(state: State) -> Moments:
    m = Moments(*(float(x) for x in state))
    if not np.isfinite(m).all():  # (a job refuses such states before this, naming the columns)
        raise ValueError(
            "the regression moments left float64's range: targets or predictions whose squares pass 1e308 "
            "(about 1e154 in absolute value); scale them down"
        )
    return m


def _mse(m: Moments) -> float:
    # sum w (y - p)^2 = M2_resid + W * mean_resid^2; beyond float64's range inf, as NumPy's (a Python float's power
    # raises OverflowError instead; a job refuses such values before they are published)
    if not m.weight > 0:
        return float("nan")
    with np.errstate(over="ignore"):
        return float((m.m2_resid + m.weight * (np.float64(m.mean_resid) + m.low_resid) ** 2) / m.weight)


def _mse_value(state: State) -> dict[str, float]:
    return {"": _mse(_moments(state))}


def _rmse_value(state: State) -> dict[str, float]:
    return {"": float(np.sqrt(_mse(_moments(state))))}


def _mae_value(state: State) -> dict[str, float]:
    m = _moments(state)
    return {"": m.abs_error / m.weight if m.weight > 0 else float("nan")}


def _one_minus_ratio(weight: float, num: float, den: float) -> float:
    # No counted row: undefined (NaN), as every other metric of these moments.
    # scikit-learn's force_finite: a constant target scores 1 if predicted exactly, else 0.
    if weight <= 0:
        return float("nan")
    if den == 0:
        return 1.0 if num == 0 else 0.0
    return 1.0 - num / den


def _r2_value(state: State) -> dict[str, float]:
    m = _moments(state)
    if m.rows < 2:  # scikit-learn: "R^2 score is not well-defined with less than two samples" (NaN)
        return {"": float("nan")}
    return {"": _one_minus_ratio(m.weight, _mse(m) * m.weight, m.m2_target)}


def _explained_variance_value(state: State) -> dict[str, float]:
    m = _moments(state)
    return {"": _one_minus_ratio(m.weight, m.m2_resid, m.m2_target)}


def _pearson_value(state: State) -> dict[str, float]:
    m = _moments(state)
    den = np.sqrt(m.m2_target) * np.sqrt(m.m2_pred)  # (their product may leave float64's range: 1e80-scale values)
    # (within [-1, 1], as scipy clips it: rounding can carry r of perfectly correlated rows to 1 + 2e-16)
    return {"": float(np.clip(m.c_target_pred / den, -1.0, 1.0)) if den > 0 else float("nan")}


def _regression(
    name: str, finalize, direction: Direction, task: Task, value_range: tuple[float, float] | None = None
) -> DerivedMetric:
    require_kind(task, name, TaskKind.REGRESSION)
    return DerivedMetric(name, RegressionMoments(task), finalize, direction, value_range=value_range)


AT_MOST_ONE = (-np.inf, 1.0)
"""The values of r2 and explained variance: 1 at best, unbounded below."""


def mse(task: Task) -> DerivedMetric:
    """Mean squared error."""
    return _regression("mse", _mse_value, Direction.LOWER, task, NON_NEGATIVE)


def rmse(task: Task) -> DerivedMetric:
    """Root mean squared error."""
    return _regression("rmse", _rmse_value, Direction.LOWER, task, NON_NEGATIVE)


def mae(task: Task) -> DerivedMetric:
    """Mean absolute error."""
    return _regression("mae", _mae_value, Direction.LOWER, task, NON_NEGATIVE)


def r2(task: Task) -> DerivedMetric:
    """Coefficient of determination."""
    return _regression("r2", _r2_value, Direction.HIGHER, task, AT_MOST_ONE)


def explained_variance(task: Task) -> DerivedMetric:
    """1 - Var(residual) / Var(target)."""
    return _regression("explained_variance", _explained_variance_value, Direction.HIGHER, task, AT_MOST_ONE)


def pearson_corrcoef(task: Task) -> DerivedMetric:
    """Pearson correlation of predictions and targets."""
    return _regression("pearson_corrcoef", _pearson_value, Direction.HIGHER, task, CORRELATION)
