"""The unit evaluator: built once per worker (actor or process), then fed work units.

It holds the compiled statistic update (and, for backbone metrics, the loaded
backbone), reads a unit's row groups and returns the unit's states. A unit
is a pure function of its rows, so running it twice (a retry) gives the same
states.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluators.accumulate import Accumulator
from evaluators.statistic import DerivedMetric, State
from evaluators.task import check_batch
from pipelines.bootstrap import buckets, row_keys
from pipelines.errors import DataError
from pipelines.planning import WorkUnit
from pipelines.reading import read_part
from pipelines.slicing import assign
from pipelines.spec import JobSpec, MetricSpec

SliceKey = tuple[tuple[str, str], ...]
"""``()`` for the whole dataset; ``(("country", "US"),)`` for a slice."""

OVERALL: SliceKey = ()
DISTINCT_SLICES_FACTOR = 10
"""A unit refuses more than ``max_slices * DISTINCT_SLICES_FACTOR`` distinct values of one slice entry."""


@dataclass
class Partial:
    """Mergeable partial result: states per slice, bootstrap-bucket states per slice (each leaf with a
    leading ``[buckets]`` axis), and rows per slice."""

    states: dict[SliceKey, tuple[State, ...]] = field(default_factory=dict)
    bucket_states: dict[SliceKey, tuple[State, ...]] = field(default_factory=dict)
    rows: dict[SliceKey, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitResult:
    """States of one work unit, in the accumulators' statistic order."""

    index: int
    key: str
    partial: Partial
    rows: int
    seconds: float
    worker: str


def _take(columns: Mapping[str, np.ndarray], rows: np.ndarray | None) -> dict[str, np.ndarray]:
    return dict(columns) if rows is None else {k: v[rows] for k, v in columns.items()}


class UnitEvaluator:
    """Evaluates work units of one job. Construct once; call :meth:`process` per unit."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.metrics: list[tuple[MetricSpec, DerivedMetric]] = spec.derived_metrics()
        self.accumulator = Accumulator.for_metrics(m for _, m in self.metrics)
        self.replicate_accumulator = (
            Accumulator(s.for_replicates() for s in self.accumulator.statistics) if spec.confidence else None
        )
        roles = spec.data.columns.roles()
        row_id = roles.pop("row_id", None)
        self.roles = roles
        self.read_roles = dict(roles)
        for spec_entry in spec.slices:
            for column in spec_entry.needed_columns():
                self.read_roles[f"slice:{column}"] = column
        if spec.confidence and row_id:
            self.read_roles["row_id"] = row_id
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def groups(self, columns: Mapping[str, np.ndarray], where: str) -> dict[SliceKey, np.ndarray | None]:
        """Rows of each slice in this batch (None: all rows)."""
        out: dict[SliceKey, np.ndarray | None] = {OVERALL: None}
        slice_columns = {k.removeprefix("slice:"): v for k, v in columns.items() if k.startswith("slice:")}
        for entry in self.spec.slices:
            found = assign(entry, slice_columns)
            if len(found) > entry.max_slices * DISTINCT_SLICES_FACTOR:
                raise DataError(
                    f"{where}: slice {entry.name!r} has {len(found)} distinct values in one work unit, more than "
                    f"{DISTINCT_SLICES_FACTOR} x max_slices ({entry.max_slices}); bucket the column "
                    "(`boundaries:`) or raise `max_slices`."
                )
            out.update(found)
        return out

    def process(self, unit: WorkUnit) -> UnitResult:
        start = time.perf_counter()
        acc, racc = self.accumulator, self.replicate_accumulator
        partial = Partial()
        total = 0
        for part in unit.parts:
            for group, first_row, columns in read_part(part, self.read_roles, self.spec.data.storage_options):
                where = f"{part.path} row group {group}"
                metric_columns = {r: columns[r] for r in self.roles}
                problems = check_batch(self.spec.task, metric_columns)
                if problems:
                    raise DataError(
                        f"{where}: " + "; ".join(problems) + " "
                        f"(columns: {', '.join(f'{r}={c!r}' for r, c in self.roles.items())})."
                    )
                n = len(metric_columns["targets"])
                if n == 0:
                    continue
                total += n
                bucket = None
                if racc is not None:
                    conf = self.spec.confidence
                    keys = row_keys(columns.get("row_id"), part.path, first_row, n)
                    bucket = buckets(keys, conf.buckets, conf.seed)
                for key, rows in self.groups(columns, where).items():
                    subset = _take(metric_columns, rows)
                    partial.states[key] = acc.update(partial.states.get(key) or acc.zero(), subset)
                    partial.rows[key] = partial.rows.get(key, 0) + (n if rows is None else len(rows))
                    if racc is None:
                        continue
                    b = bucket if rows is None else bucket[rows]
                    previous = partial.bucket_states.get(key) or racc.zero_grouped(self.spec.confidence.buckets)
                    partial.bucket_states[key] = racc.update_grouped(previous, subset, b)
        partial.states.setdefault(OVERALL, acc.zero())
        partial.rows.setdefault(OVERALL, 0)
        return UnitResult(unit.index, unit.key, partial, total, time.perf_counter() - start, self.worker)

    def ready(self) -> dict[str, Any]:
        """Called once after construction: proves the worker can start (imports, compile)."""
        return {"worker": self.worker, "statistics": len(self.accumulator.statistics)}
