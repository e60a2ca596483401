"""Turning merged states into records (points, metric values, intervals, metric definitions).

The merge itself, in plan order, is :class:`pipelines.unit_result.OrderedMerger`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.statistic import DerivedMetric, State, tree_leaves
from pipelines.bootstrap import basic_interval, percentile_interval, poisson_weights
from pipelines.records import Metric, MetricDef, MetricDirection, MetricPriority, Point, slice_name
from pipelines.slicing import SliceSpec
from pipelines.spec import ConfidenceSpec, MetricSpec
from pipelines.unit_result import OVERALL, Partial, SliceKey

FILTER = "filter"
"""The column name of a filter entry's slice key: ``(("filter", name),)``, the point ``filter=<name>``."""


def flatten_values(key: str, values: Mapping[str, Any]) -> dict[str, float]:
    """``{suffix: float | array}`` -> ``{"key[suffix]": float}``; arrays become ``key[i]`` / ``key[i,j]``."""
    out: dict[str, float] = {}
    for suffix, value in values.items():
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 0:
            out[key + suffix] = float(array)
            continue
        for index in np.ndindex(array.shape):
            out[f"{key}{suffix}[{','.join(map(str, index))}]"] = float(array[index])
    return out


def _entry_of(key: SliceKey, slices: Sequence[SliceSpec]) -> SliceSpec | None:
    if not key:
        return None
    if len(key) == 1 and key[0][0] == FILTER and any(e.is_filter for e in slices):
        # a filter entry's point (beside filter entries, no entry slices a column named filter alone)
        return next((e for e in slices if e.is_filter and e.name == key[0][1]), None)
    columns = tuple(k for k, _ in key)
    return next((e for e in slices if not e.is_filter and e.columns == columns), None)


def select_slices(
    rows: Mapping[SliceKey, int], slices: Sequence[SliceSpec]
) -> tuple[list[SliceKey], dict[str, dict[str, int]]]:
    """Slice keys to report (at most ``max_slices`` per entry, largest first) and what was dropped."""
    kept: list[SliceKey] = [OVERALL] if OVERALL in rows else []
    dropped: dict[str, dict[str, int]] = {}
    by_entry: dict[str, list[SliceKey]] = {}
    for key in rows:
        entry = _entry_of(key, slices)
        if entry is not None:
            by_entry.setdefault(entry.name, []).append(key)
    for entry in slices:
        keys = sorted(by_entry.get(entry.name, []), key=lambda k: (-rows[k], k))
        kept.extend(keys[: entry.max_slices])
        tail = keys[entry.max_slices :]
        if tail:
            dropped[entry.name] = {"slices": len(tail), "rows": int(sum(rows[k] for k in tail))}
    return kept, dropped


def refuse_distinct_slices(rows: Mapping[SliceKey, int], slices: Sequence[SliceSpec]) -> None:
    """Refuse (:class:`~pipelines.errors.DataError`) a job whose merged rows give a slice entry more distinct values
    than its :attr:`~pipelines.slicing.SliceSpec.distinct_limit`, as a work unit past it is refused, so that whether
    a run passes does not depend on its units. (Runs merged later are not held to it: their states exist.)"""
    found: dict[str, int] = {}
    for key in rows:
        entry = _entry_of(key, slices)
        if entry is not None:
            found[entry.name] = found.get(entry.name, 0) + 1
    for entry in slices:
        entry.refuse_distinct(found.get(entry.name, 0), "the job's rows")


def _below_min_count(kept: Sequence[SliceKey], rows: Mapping[SliceKey, int], slices: Sequence[SliceSpec]) -> list:
    """The keys of ``kept`` whose rows are fewer than their entry's ``min_count``: reported by their rows alone."""
    return [key for key in kept if (entry := _entry_of(key, slices)) is not None and rows[key] < entry.min_count]


def reported_rows(rows: Mapping[SliceKey, int], slices: Sequence[SliceSpec]) -> dict[SliceKey, int]:
    """The rows of each slice whose metrics a run reports: :func:`select_slices`'s, less those below ``min_count``."""
    kept, _ = select_slices(rows, slices)
    below = set(_below_min_count(kept, rows, slices))
    return {key: rows[key] for key in kept if key not in below}


def occupied_buckets(racc: Accumulator, bucket_states: tuple[State, ...], groups: int) -> int:
    """How many of the ``groups`` bootstrap buckets hold rows of a slice: those where some numeric leaf of a
    statistic's bucket states (leading ``[groups]`` axis) differs from the statistic's zero state. The buckets
    are the resampled clusters, so with fewer than two every replicate is one state scaled and its interval
    would have width 0. Statistics whose bucket states do not have their zero state's shape (a label axis
    shared by the buckets) say which buckets hold rows themselves (:meth:`~evaluators.statistic.Statistic.
    occupied_groups`), or nothing; with none that says, every bucket counts as occupied."""
    occupied = np.zeros(groups, bool)
    compared = False
    for stat, state in zip(racc.statistics, bucket_states, strict=True):
        own = stat.occupied_groups(state, groups)
        if own is not None:
            compared = True
            occupied |= own
            continue
        zero = tree_leaves(stat.zero())
        leaves = tree_leaves(state)
        if len(leaves) != len(zero):
            continue
        for leaf, empty in zip(leaves, zero, strict=True):
            if leaf.dtype.kind in "biuf" and leaf.shape == (groups, *empty.shape):
                compared = True
                occupied |= (leaf != empty).reshape(groups, -1).any(axis=1)
    return int(occupied.sum()) if compared else groups


def _replicate_values(
    acc: Accumulator,
    racc: Accumulator,
    metrics: Sequence[tuple[MetricSpec, DerivedMetric]],
    bucket_states: tuple[State, ...],
    weights: np.ndarray,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``({key: [B] replicate values}, {key: value on all buckets at replicate resolution})``."""
    groups = weights.shape[1]
    w = weights
    replicas: dict[str, list[float]] = {}
    centre: dict[str, float] = {}
    replicates = w.shape[0]
    for i, stat in enumerate(racc.statistics):
        stacked = stat.resample_stacked(bucket_states[i], w)
        one_by_one: list[State] | None = None
        full = stat.resample(bucket_states[i], np.ones((1, groups)))[0]
        for spec, metric in metrics:
            if metric.statistic.for_replicates() != stat:
                continue
            rows = metric.interval_rows(stacked) if stacked is not None and metric.interval_rows else None
            if rows is not None:  # every replicate at once
                for suffix, column in rows.items():
                    replicas[spec.key + suffix] = [float(v) for v in column]
            else:
                one_by_one = stat.resample(bucket_states[i], w) if one_by_one is None else one_by_one
                for b, state in enumerate(one_by_one):
                    for name, value in flatten_values(spec.key, metric.compute_for_interval(state)).items():
                        replicas.setdefault(name, [float("nan")] * replicates)[b] = value
            centre.update(flatten_values(spec.key, metric.compute(full)))
    return {k: np.asarray(v) for k, v in replicas.items()}, centre


def build_points(
    scenario: str,
    acc: Accumulator,
    metrics: Sequence[tuple[MetricSpec, DerivedMetric]],
    merged: Partial,
    slices: Sequence[SliceSpec] = (),
    confidence: ConfidenceSpec | None = None,
    racc: Accumulator | None = None,
) -> tuple[list[Point], dict[str, Any]]:
    """One :class:`Point` per reported slice, with intervals when ``confidence`` is set.

    Returns the points and a report of slices dropped by ``max_slices`` and of slices below
    ``min_count`` (which keep only their row count).
    """
    kept, dropped = select_slices(merged.rows, slices)
    weights = poisson_weights(confidence.replicates, confidence.buckets, confidence.seed) if confidence else None
    buckets_by_slice = merged.bucket_states
    small = _below_min_count(kept, merged.rows, slices)
    below = set(small)
    valued = [key for key in kept if key not in below]
    values_by_key: dict[SliceKey, dict[str, float]] = {key: {} for key in valued}
    for spec, metric in metrics:  # each metric over every slice at once (ranking values: one pass for all)
        column = metric.compute_many([merged.states[key][acc.index(metric.statistic)] for key in valued])
        for key, computed in zip(valued, column, strict=True):
            values_by_key[key].update(flatten_values(spec.key, computed))
    points = []
    for key in kept:
        values: dict[str, Metric] = {}
        if key in values_by_key:
            point_values = values_by_key[key]
            replicas: dict[str, np.ndarray] = {}
            centre: dict[str, float] = {}
            percentile_keys = {spec.key for spec, metric in metrics if metric.interval_values is not None}
            ranges = {name: bounds for spec, metric in metrics for name, bounds in metric.ranges(spec.key).items()}
            one_cluster = False
            if confidence and racc is not None and key in buckets_by_slice:
                replicas, centre = _replicate_values(acc, racc, metrics, buckets_by_slice[key], weights)
                one_cluster = occupied_buckets(racc, buckets_by_slice[key], confidence.buckets) < 2
            for name, value in point_values.items():
                if name in replicas and not name.endswith(".error_bound"):
                    if one_cluster:  # one resampled unit (a slice of one row): no interval, as scipy's bootstrap
                        lower, upper = float("nan"), float("nan")
                    elif name in percentile_keys:
                        lower, upper = percentile_interval(replicas[name], confidence.level)
                    else:
                        lower, upper = basic_interval(replicas[name], confidence.level, value, centre.get(name, value))
                        lower, upper = _within(ranges, name, value, lower, upper)
                    samples = tuple(float(x) for x in replicas[name]) if confidence.samples else None
                    values[name] = Metric(value=value, lower=lower, upper=upper, samples=samples)
                else:
                    values[name] = Metric(value=value)
        values["rows"] = Metric(value=float(merged.rows[key]))
        points.append(Point(name=slice_name(key), scenario=scenario, tags=dict(key), metrics=values))
    report: dict[str, Any] = {}
    if dropped:
        report["dropped_slices"] = dropped
    if small:
        report["below_min_count"] = [slice_name(key) for key in small]
    undefined = _undefined_overall(acc, metrics, merged, values_by_key.get(OVERALL, {}))
    if undefined:
        report["undefined"] = undefined
    empty = [slice_name(((FILTER, s.name),)) for s in slices if s.is_filter and ((FILTER, s.name),) not in merged.rows]
    if empty:  # (a filter that matched no row has no point: named, so that a mistyped value is seen)
        report["empty_filters"] = empty
    return points, report


def _undefined_overall(
    acc: Accumulator, metrics: Sequence[tuple[MetricSpec, DerivedMetric]], merged: Partial, values: Mapping[str, float]
) -> dict[str, str]:
    """``{metric key: why}`` for each headline value of the overall point that is NaN and whose metric says why
    (:meth:`~evaluators.statistic.DerivedMetric.why_undefined`: ROC-AUC of rows of one label, ...)."""
    out = {}
    for spec, metric in metrics:
        if spec.key in values and np.isnan(values[spec.key]):
            why = metric.why_undefined(merged.states[OVERALL][acc.index(metric.statistic)])
            if why is not None:
                out[spec.key] = why
    return out


def _within(
    ranges: dict[str, tuple[float, float]], name: str, value: float, lower: float, upper: float
) -> tuple[float, float]:
    """A basic interval of the value ``name`` (a metric's key or a suffix of it, or its ``[i]`` per class) clipped to
    the range that value lies in (:meth:`~evaluators.statistic.DerivedMetric.ranges`), where it has one; widened to
    hold ``value`` itself where rounding put it a hair outside (an FID of -7e-15 between equal moments)."""
    key = name
    while key not in ranges and "[" in key and name.endswith("]"):  # (a key of its own may hold "[": ``as: mrr[v2]``)
        key = key[: key.rindex("[")]
    if key not in ranges:
        return lower, upper
    low, high = ranges[key]
    if np.isfinite(value):
        low, high = min(low, value), max(high, value)
    return float(np.clip(lower, low, high)), float(np.clip(upper, low, high))


_DIRECTIONS = {"higher": MetricDirection.HIGHER, "lower": MetricDirection.LOWER, "info": MetricDirection.INFO}


def metric_defs(metrics: Sequence[tuple[MetricSpec, DerivedMetric]], keys: Iterable[str]) -> dict[str, MetricDef]:
    """A :class:`MetricDef` for every emitted key (per-class and bound keys inherit from their metric)."""
    by_prefix = sorted(((spec.key, spec, metric) for spec, metric in metrics), key=lambda t: -len(t[0]))
    defs: dict[str, MetricDef] = {}
    for key in keys:
        if key == "rows":
            defs[key] = MetricDef("rows", unit="rows", direction=MetricDirection.INFO, group="count")
            continue
        for prefix, spec, metric in by_prefix:
            if key == prefix or key.startswith(prefix + "[") or key.startswith(prefix + "."):
                suffix = key[len(prefix) :]
                auxiliary = key != prefix and (
                    ".error_bound" in suffix or metric.direction == "info" or suffix.split("[")[0] in metric.info_parts
                )
                direction = MetricDirection.INFO if auxiliary else _DIRECTIONS[str(metric.direction)]
                defs[key] = MetricDef(
                    name=key,
                    unit=metric.unit,
                    direction=direction,
                    group=metric.name,
                    priority=_priority(spec.priority, suffix, auxiliary),
                    description=metric.description or _summary(catalog.factory(spec.name).__doc__),
                )
                break
    return defs


def _priority(given: str, suffix: str, auxiliary: bool) -> MetricPriority:
    """A key's priority: its metric's for the headline and its per-class values; a value beside a primary headline
    (``bleu.precision_1``) is secondary, so that a run has one primary metric; a bound or a count tertiary."""
    if auxiliary:
        return MetricPriority.TERTIARY
    if suffix.startswith(".") and given == MetricPriority.PRIMARY:
        return MetricPriority.SECONDARY
    return MetricPriority(given)


def _summary(text: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line (a summary that wraps is kept whole; a
    period inside code, ``(x . y)``, ends none), a cross-reference as the name it refers to."""
    paragraph = " ".join((text or "").strip().split("\n\n")[0].split())
    paragraph = re.sub(r":\w+:`([^`]*)`", lambda m: m.group(1).replace(" ", "").rsplit(".", 1)[-1], paragraph)
    return re.split(r"(?<=[\w)\]`'\"]\.)\s+(?=[A-Z(`])", paragraph, maxsplit=1)[0]
