"""Ranking tables and scaling laws over runs (calibrax's ``RankEntry`` and ``ScalingLaw``).

Both read committed :class:`~pipelines.records.Run` records (``load_run`` / ``load_runs`` give them); they never
touch predictions.

* :func:`rank_runs` orders runs by one metric of one point, best first, using the metric's recorded direction.
* :func:`fit_scaling_law` fits ``value = coefficient * size ** exponent`` by least squares on
  ``log(value)`` against ``log(size)``, where each run's size is a number recorded with it: a ``vars:`` entry of
  its job spec (``vars: {params: 7.0e9}``), or a metadata entry, or given explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from pipelines.records import RankEntry, Run, ScalingLaw, is_higher_better


def _value(run: Run, metric: str, point: str) -> float:
    try:
        found = run.point(point)
    except KeyError as exc:
        raise ValueError(str(exc).strip("'\"")) from None
    if metric not in found.metrics:
        raise ValueError(
            f"run {run.id} has no metric {metric!r} in point {point!r}; its metrics: {', '.join(sorted(found.metrics))}"
        )
    return float(found.metrics[metric].value)


def rank_runs(
    runs: Sequence[Run],
    metric: str,
    *,
    point: str = "overall",
    label: Callable[[Run], str] | None = None,
    higher_is_better: bool | None = None,
) -> list[RankEntry]:
    """Rank ``runs`` by ``metric`` of ``point``, best first.

    Args:
        runs: committed runs (of one job or several that record the metric).
        metric: the metric key (``"f1_macro"``).
        point: ``"overall"`` or a slice's point name.
        label: each row's label; default the run's job name and id (``"churn/20261201T...``").
        higher_is_better: default from the first run's ``metric_defs`` (unknown or ``info`` metrics rank higher
            values first, as calibrax's ``is_higher_better``).

    Returns:
        one :class:`RankEntry` per run; equal values share the better rank (1, 2, 2, 4); runs whose value is NaN
        come last, unranked ties of each other.
    """
    if not runs:
        return []
    if higher_is_better is None:
        higher_is_better = is_higher_better(runs[0].metric_defs.get(metric))
    labels = [label(r) if label else f"{r.metadata.get('job', 'run')}/{r.id}" for r in runs]
    values = [_value(r, metric, point) for r in runs]
    sign = -1.0 if higher_is_better else 1.0
    order = sorted(
        range(len(runs)), key=lambda i: (math.isnan(values[i]), sign * values[i] if values[i] == values[i] else 0)
    )
    finite = [values[i] for i in order if not math.isnan(values[i])]
    best = finite[0] if finite else float("nan")
    entries: list[RankEntry] = []
    for position, i in enumerate(order):
        value = values[i]
        previous = entries[-1] if entries else None
        tied = previous is not None and (previous.value == value or (math.isnan(value) and math.isnan(previous.value)))
        rank = previous.rank if tied and previous is not None else position + 1
        entries.append(RankEntry(labels[i], value, rank, value == best, value - best))
    return entries


def recorded_size(run: Run, key: str) -> float:
    """The number ``key`` recorded with ``run``: its job's ``vars:`` entry, else its metadata entry."""
    spec = run.metadata.get("spec") or {}
    variables = spec.get("vars") or {} if isinstance(spec, Mapping) else {}
    raw = variables.get(key, run.metadata.get(key))
    if raw is None:
        raise ValueError(
            f"run {run.id} records no {key!r}: put it in the job's vars (vars: {{{key}: 7.0e9}}) or pass sizes="
        )
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"run {run.id}: {key}={raw!r} is not a number") from None


def fit_scaling_law(
    runs: Sequence[Run],
    metric: str,
    *,
    complexity: str = "params",
    point: str = "overall",
    sizes: Mapping[str, float] | None = None,
) -> ScalingLaw:
    """Fit ``metric = coefficient * size ** exponent`` over ``runs``.

    Args:
        runs: runs of models of different sizes.
        metric: the metric key; every value must be positive (a power law of a logarithm is not defined).
        complexity: what the size measures, and the key each run records it under (see :func:`recorded_size`).
        point: ``"overall"`` or a slice's point name.
        sizes: ``{run id: size}``, instead of recorded sizes.

    Returns:
        the fit, with ``r_squared`` of the log-log line (1.0 for an exact power law).
    """
    size = np.array([sizes[r.id] if sizes is not None else recorded_size(r, complexity) for r in runs], np.float64)
    value = np.array([_value(r, metric, point) for r in runs], np.float64)
    bad = [r.id for r, s, v in zip(runs, size, value, strict=True) if not (s > 0 and v > 0 and math.isfinite(s * v))]
    if bad:
        raise ValueError(f"a power law needs positive, finite sizes and values of {metric!r}; runs {', '.join(bad)}")
    if len(np.unique(size)) < 2:
        raise ValueError(f"a scaling law needs runs of at least two different {complexity!r} sizes")
    x, y = np.log(size), np.log(value)
    exponent, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + exponent * x)
    total = ((y - y.mean()) ** 2).sum()
    r_squared = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    return ScalingLaw(float(np.exp(intercept)), float(exponent), float(r_squared), complexity)
