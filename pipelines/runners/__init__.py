"""Runners: where work units are evaluated, each found by name in :data:`pipelines.spec_execution.RUNNER_TABLE`.

* ``local``: in this process, no Ray;
* ``ray``: long-lived actors on a Ray cluster (the only module importing ray);
* ``beam``: an Apache Beam pipeline (the only module importing apache_beam), on
  the DirectRunner, Dataflow, Flink...

All call ``on_result`` with every unit's :class:`~pipelines.unit_result.UnitResult`;
the caller merges them in unit order, so all give identical records. (The Beam
runner can instead merge the states inside its pipeline, in the same order; it
then returns them as :attr:`ExecutionReport.merged`.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelines.planning import WorkUnit
from pipelines.spec import JobSpec
from pipelines.spec_execution import RUNNER_TABLE
from pipelines.unit_result import Partial, UnitResult

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
    worker_failures: tuple[dict[str, Any], ...] = ()
    """Workers lost mid-run: ``{"worker", "units" (in flight), "charged" (the unit charged an attempt, or
    None), "why"}`` each."""
    merged: Partial | None = field(default=None, compare=False, repr=False)
    """The merge of every unit's states when the runner merged them itself (the results it passed to
    ``on_result`` then carry no states); None when the caller merges what ``on_result`` got."""


def execute(
    spec: JobSpec, units: Sequence[WorkUnit], on_result: OnResult, on_started: Callable[[], None]
) -> ExecutionReport:
    """Evaluate ``units`` with the runner the spec names (found in :data:`~pipelines.spec_execution.RUNNER_TABLE`)."""
    run = RUNNER_TABLE[spec.execution.runner].load(spec.execution.runner)
    return run(spec, units, on_result, on_started)
