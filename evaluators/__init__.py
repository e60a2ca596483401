"""evalpipe's metrics: mergeable sufficient statistics and the metrics derived from them.

This package knows nothing of Ray, storage or YAML. See
:mod:`evaluators.statistic` for the abstraction, :mod:`evaluators.catalog`
for the metric names, and :mod:`evaluators.functional` for one-shot
functions.

The names below are imported on first use, so that ``evaluators.statistic``
(NumPy only) can be imported without JAX, as reading stored runs does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evaluators.accumulate import Accumulator, evaluate
    from evaluators.catalog import METRICS, build
    from evaluators.statistic import DerivedMetric, Direction, Statistic
    from evaluators.task import PredictionKind, Task, TaskKind

_HOMES = {
    "Accumulator": "accumulate",
    "evaluate": "accumulate",
    "METRICS": "catalog",
    "build": "catalog",
    "DerivedMetric": "statistic",
    "Direction": "statistic",
    "Statistic": "statistic",
    "PredictionKind": "task",
    "Task": "task",
    "TaskKind": "task",
}

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


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'evaluators' has no attribute {name!r}")
    return getattr(importlib.import_module(f"evaluators.{_HOMES[name]}"), name)
