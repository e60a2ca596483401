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
from dataclasses import dataclass
from typing import Any

from evaluators.accumulate import Accumulator
from evaluators.statistic import DerivedMetric, State
from evaluators.task import check_batch
from pipelines.errors import DataError
from pipelines.planning import WorkUnit
from pipelines.reading import read_part
from pipelines.spec import JobSpec, MetricSpec

SliceKey = tuple[tuple[str, str], ...]
"""``()`` for the whole dataset; ``(("country", "US"),)`` for a slice."""

OVERALL: SliceKey = ()


@dataclass(frozen=True)
class UnitResult:
    """States of one work unit, per slice, in the accumulator's statistic order."""

    index: int
    key: str
    states: Mapping[SliceKey, tuple[State, ...]]
    rows: int
    seconds: float
    worker: str


class UnitEvaluator:
    """Evaluates work units of one job. Construct once; call :meth:`process` per unit."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.metrics: list[tuple[MetricSpec, DerivedMetric]] = spec.derived_metrics()
        self.accumulator = Accumulator.for_metrics(m for _, m in self.metrics)
        roles = spec.data.columns.roles()
        roles.pop("row_id", None)
        self.roles = roles
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def process(self, unit: WorkUnit) -> UnitResult:
        start = time.perf_counter()
        states = self.accumulator.zero()
        rows = 0
        for part in unit.parts:
            for group, columns in enumerate(read_part(part, self.roles, self.spec.data.storage_options), part.start):
                problems = check_batch(self.spec.task, columns)
                if problems:
                    raise DataError(
                        f"{part.path} row group {group}: " + "; ".join(problems) + " "
                        f"(columns: {', '.join(f'{r}={c!r}' for r, c in self.roles.items())})."
                    )
                states = self.accumulator.update(states, columns)
                rows += len(columns["targets"])
        return UnitResult(unit.index, unit.key, {OVERALL: states}, rows, time.perf_counter() - start, self.worker)

    def ready(self) -> dict[str, Any]:
        """Called once after construction: proves the worker can start (imports, compile)."""
        return {"worker": self.worker, "statistics": len(self.accumulator.statistics)}
