"""The in-process runner: one :class:`UnitEvaluator`, units in order."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pipelines.errors import JobFailed, is_transient_error
from pipelines.planning import WorkUnit
from pipelines.runners import ExecutionReport, OnResult
from pipelines.spec import JobSpec
from pipelines.worker import READ_ATTEMPTS, UnitEvaluator


def run_local(
    spec: JobSpec, units: Sequence[WorkUnit], on_result: OnResult, on_started: Callable[[], None]
) -> ExecutionReport:
    t0 = time.perf_counter()
    evaluator = UnitEvaluator(spec)
    startup = time.perf_counter() - t0
    on_started()
    t1 = time.perf_counter()
    for unit in units:
        try:
            result = evaluator.process(unit)
        except Exception as exc:
            if not is_transient_error(exc):
                raise
            raise JobFailed(
                f"work unit {unit.index} ({unit.describe()}): storage kept failing after {READ_ATTEMPTS} attempts; "
                f"last error: {type(exc).__name__}: {exc}. Nothing was committed."
            ) from None
        on_result(result)
    return ExecutionReport("local", 1, startup, time.perf_counter() - t1, attempts=len(units))
