"""The job's statistics: its metrics, the accumulator that updates and merges their states in one fused
step, and the replicate accumulator of its bootstrap intervals.

The driver (to merge and finalize), every worker (to fold rows in), the Beam combiner and the benchmarks
build them here, from the spec alone, so all hold the same statistics in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evaluators.accumulate import Accumulator
from evaluators.statistic import DerivedMetric
from pipelines.spec import ConfidenceSpec, JobSpec, MetricSpec

BATCH_ROWS = 1 << 20
"""Row groups are gathered up to this many rows (or :data:`~pipelines.worker.FOLD_BYTES`) before they are folded
in: fewer, larger compiled updates, and a unit of up to this many narrow rows folded at once, so that a state kept
on the host (a binary ranking state's cells) is not merged batch by batch (a unit's rows are folded in file order
whatever the row-group size)."""


@dataclass(frozen=True)
class JobStatistics:
    """A job's metrics (spec entry, derived metric) in spec order, their accumulator and, for a job with
    ``confidence:``, the accumulator of per-bucket replicate states (None without)."""

    metrics: tuple[tuple[MetricSpec, DerivedMetric], ...]
    accumulator: Accumulator
    replicates: Accumulator | None

    @classmethod
    def of(
        cls, metrics: Sequence[tuple[MetricSpec, DerivedMetric]], confidence: ConfidenceSpec | None
    ) -> JobStatistics:
        """The statistics of ``metrics`` (as a spec or a recorded run lists them) under ``confidence``."""
        accumulator = Accumulator.for_metrics(m for _, m in metrics)
        return cls(tuple(metrics), accumulator, accumulator.replicates() if confidence else None)


def job_statistics(spec: JobSpec) -> JobStatistics:
    """The statistics ``spec`` computes: its catalogue, backend, custom and function metrics."""
    return JobStatistics.of(spec.derived_metrics(), spec.confidence)
