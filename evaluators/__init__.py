"""evalpipe's metrics: mergeable sufficient statistics and the metrics derived from them.

This package knows nothing of Ray, storage or YAML. See
:mod:`evaluators.statistic` for the abstraction, :mod:`evaluators.catalog`
for the metric names, and :mod:`evaluators.functional` for one-shot
functions.
"""

from evaluators.accumulate import Accumulator, evaluate
from evaluators.catalog import METRICS, build
from evaluators.statistic import DerivedMetric, Direction, Statistic
from evaluators.task import PredictionKind, Task, TaskKind

__all__ = [
    "METRICS",
    "Accumulator",
    "DerivedMetric",
    "Direction",
    "PredictionKind",
    "Statistic",
    "Task",
    "TaskKind",
    "build",
    "evaluate",
]
