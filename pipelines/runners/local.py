"""The in-process runner: one :class:`UnitEvaluator`, units in order."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pipelines.planning import WorkUnit
from pipelines.runners import ExecutionReport, OnResult
from pipelines.spec import JobSpec
from pipelines.worker import UnitEvaluator


def run_local(
    spec: JobSpec, units: Sequence[WorkUnit], on_result: OnResult, on_started: Callable[[], None]
) -> ExecutionReport:
    t0 = time.perf_counter()
    evaluator = UnitEvaluator(spec)
    startup = time.perf_counter() - t0
    on_started()
    t1 = time.perf_counter()
    for unit in units:
        on_result(evaluator.process(unit))
    return ExecutionReport("local", 1, startup, time.perf_counter() - t1, attempts=len(units))
