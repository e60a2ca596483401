"""Runners: where work units are evaluated.

* ``local``: in this process, no Ray;
* ``ray``: long-lived actors on a Ray cluster (the only module importing ray).

Both call ``on_result`` with every unit's :class:`~pipelines.worker.UnitResult`;
the caller merges them in unit order, so both give identical records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.planning import WorkUnit
from pipelines.spec import JobSpec
from pipelines.worker import UnitResult

OnResult = Callable[[UnitResult], None]


@dataclass(frozen=True)
class ExecutionReport:
    """What a runner did, for the Run's metadata."""

    runner: str
    workers: int
    startup_seconds: float
    compute_seconds: float
    attempts: int
    retried_units: tuple[int, ...] = ()
    cluster: dict[str, Any] = field(default_factory=dict)


def execute(
    spec: JobSpec, units: Sequence[WorkUnit], on_result: OnResult, on_started: Callable[[], None]
) -> ExecutionReport:
    """Evaluate ``units`` with the runner the spec names."""
    if spec.execution.runner == "local":
        from pipelines.runners.local import run_local

        return run_local(spec, units, on_result, on_started)
    from pipelines.runners.ray import run_ray

    return run_ray(spec, units, on_result, on_started)
