"""Task input adaptation: for each task, the column roles it reads, the kind of column each role takes, and
the conversion of the columns a reader hands over into the batch the task's statistics take.

The pipeline is task-agnostic: it asks :func:`adapter_for` for the job's adapter and calls it at fixed
points (see :class:`~evaluators.adapters.base.TaskAdapter`): which roles to read as per-row lists,
:meth:`decode` right after reading, :meth:`bad_rows` to find the rows it must refuse or drop, :meth:`batch` on
checked rows, :meth:`expand` per slice, :meth:`refused_role` to name the column of rows the statistics refuse.
A new task adds its adapter module here and one line to :data:`ADAPTERS`.

Adapters work on numpy and Python values only (no storage library): a reader describes its column types as
:class:`~evaluators.adapters.base.ColumnType`, hands list columns of varying length over as
:class:`~evaluators.adapters.base.Ragged`, and turns an :class:`~evaluators.adapters.base.InputError` into
its own error for bad data.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from evaluators.adapters.base import (
    ColumnKind,
    Columns,
    ColumnType,
    InputError,
    Ragged,
    TaskAdapter,
)
from evaluators.adapters.classification import ClassificationAdapter, RegressionAdapter
from evaluators.adapters.detection import DetectionAdapter
from evaluators.adapters.ranking import RankingAdapter
from evaluators.adapters.segmentation import SegmentationAdapter
from evaluators.adapters.sides import ImageAdapter, TextAdapter
from evaluators.task import Task, TaskKind

ADAPTERS: Mapping[TaskKind, type[TaskAdapter]] = {
    TaskKind.BINARY: ClassificationAdapter,
    TaskKind.MULTICLASS: ClassificationAdapter,
    TaskKind.MULTILABEL: ClassificationAdapter,
    TaskKind.REGRESSION: RegressionAdapter,
    TaskKind.TEXT: TextAdapter,
    TaskKind.IMAGE: ImageAdapter,
    TaskKind.SEGMENTATION: SegmentationAdapter,
    TaskKind.DETECTION: DetectionAdapter,
    TaskKind.RANKING: RankingAdapter,
}
"""The adapter class of each task kind."""


def adapter_for(task: Task) -> TaskAdapter:
    """The input adapter of ``task``."""
    return ADAPTERS[task.kind](task)


def roles_problem(task: Task, roles: Collection[str]) -> str | None:
    """What is wrong with the column roles a job of ``task`` maps (``roles``), as a spec error says it after
    the location of ``data.columns``; None when nothing is. A role the task needs is missing, or a role
    another task owns (:attr:`TaskAdapter.own_roles`) is mapped."""
    adapter = adapter_for(task)
    missing = [r for r in adapter.needed_roles if r not in roles]
    if missing:
        return adapter.roles_hint(missing)
    for kind, cls in ADAPTERS.items():
        if cls is not type(adapter) and any(r in roles for r in cls.own_roles):
            return cls(Task(kind, num_classes=2)).roles_hint(())
    return None


__all__ = [
    "ADAPTERS",
    "ColumnKind",
    "ColumnType",
    "Columns",
    "InputError",
    "Ragged",
    "TaskAdapter",
    "adapter_for",
    "roles_problem",
]
