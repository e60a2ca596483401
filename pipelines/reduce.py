"""Merging unit states in a fixed order, and turning merged states into records.

Results arrive in any order (fast workers take more units, retries finish
late); :class:`OrderedMerger` merges them in unit-index order as a balanced
binary tree, so the floating-point result depends only on the plan, never on
scheduling. Memory: O(log units) merged states plus results waiting for an
earlier unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.statistic import DerivedMetric, State
from pipelines.records import Metric, MetricDef, MetricDirection, MetricPriority, Point
from pipelines.spec import MetricSpec
from pipelines.worker import OVERALL, SliceKey, UnitResult

SliceStates = dict[SliceKey, tuple[State, ...]]


def merge_slices(acc: Accumulator, a: Mapping[SliceKey, tuple], b: Mapping[SliceKey, tuple]) -> SliceStates:
    """Merge two ``{slice: states}`` maps; a slice missing on one side is taken as is."""
    out = dict(a)
    for key, states in b.items():
        out[key] = acc.merge(out[key], states) if key in out else states
    return out


class OrderedMerger:
    """Merge per-unit states in index order ``0, 1, 2, ...`` as a binary tree."""

    def __init__(self, acc: Accumulator) -> None:
        self.acc = acc
        self.next_index = 0
        self.waiting: dict[int, SliceStates] = {}
        self.stack: list[tuple[int, SliceStates]] = []  # (level, merged states)

    def add(self, index: int, states: Mapping[SliceKey, tuple]) -> None:
        if index < self.next_index or index in self.waiting:
            return  # a duplicate (a retried unit that also finished): identical states, keep one
        self.waiting[index] = dict(states)
        while self.next_index in self.waiting:
            self._push(self.waiting.pop(self.next_index))
            self.next_index += 1

    def _push(self, states: SliceStates) -> None:
        level = 0
        while self.stack and self.stack[-1][0] == level:
            _, left = self.stack.pop()
            states = merge_slices(self.acc, left, states)
            level += 1
        self.stack.append((level, states))

    def result(self) -> SliceStates:
        if self.waiting:
            raise RuntimeError(f"units missing before {min(self.waiting)}: results incomplete")
        merged: SliceStates | None = None
        for _, states in reversed(self.stack):
            merged = states if merged is None else merge_slices(self.acc, states, merged)
        return merged if merged is not None else {OVERALL: self.acc.zero()}


def merge_results(acc: Accumulator, results: Iterable[UnitResult]) -> SliceStates:
    merger = OrderedMerger(acc)
    for r in results:
        merger.add(r.index, r.states)
    return merger.result()


# --- records ---------------------------------------------------------------------


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


def slice_name(key: SliceKey) -> str:
    return "overall" if not key else ",".join(f"{k}={v}" for k, v in key)


def build_points(
    scenario: str,
    acc: Accumulator,
    metrics: Sequence[tuple[MetricSpec, DerivedMetric]],
    merged: Mapping[SliceKey, tuple[State, ...]],
    rows: Mapping[SliceKey, float] | None = None,
) -> list[Point]:
    """One :class:`Point` per slice with every metric's values."""
    points = []
    for key in sorted(merged, key=lambda k: (len(k), k)):
        states = merged[key]
        values: dict[str, Metric] = {}
        for spec, metric in metrics:
            computed = metric.compute(states[acc.index(metric.statistic)])
            for name, value in flatten_values(spec.key, computed).items():
                values[name] = Metric(value=value)
        if rows is not None and key in rows:
            values["rows"] = Metric(value=float(rows[key]))
        points.append(Point(name=slice_name(key), scenario=scenario, tags=dict(key), metrics=values))
    return points


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
                auxiliary = key != prefix and (".error_bound" in key[len(prefix) :] or metric.direction == "info")
                direction = MetricDirection.INFO if auxiliary else _DIRECTIONS[str(metric.direction)]
                defs[key] = MetricDef(
                    name=key,
                    unit=metric.unit,
                    direction=direction,
                    group=metric.name,
                    priority=MetricPriority(spec.priority),
                    description=metric.description or _first_line(catalog.METRICS[spec.name].__doc__),
                )
                break
    return defs


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n")[0]
