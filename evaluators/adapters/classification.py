"""Inputs of classification (binary, multiclass, multilabel) and regression tasks: plain ``[n]`` / ``[n, C]``
columns, read as they are."""

from __future__ import annotations

from dataclasses import dataclass

from evaluators.adapters.base import NUMERIC, ColumnKind, TaskAdapter, numbers_per_row
from evaluators.task import PredictionKind, TaskKind


@dataclass(frozen=True)
class ClassificationAdapter(TaskAdapter):
    """Binary: ``[n]`` scores or labels and ``[n]`` labels. Multiclass: ``[n, C]`` scores (a list column of C
    numbers) or ``[n]`` labels, ``[n]`` labels. Multilabel: ``[n, L]`` on both sides."""

    def own_kind(self, role: str) -> ColumnKind:
        task = self.task
        per_row = task.kind is TaskKind.MULTILABEL or (
            task.kind is TaskKind.MULTICLASS and role == "predictions" and task.prediction is not PredictionKind.LABELS
        )
        if per_row and role in ("predictions", "targets"):
            return numbers_per_row(task.classes)
        return super().own_kind(role)


@dataclass(frozen=True)
class RegressionAdapter(TaskAdapter):
    """``[n]`` numbers on both sides."""

    def own_kind(self, role: str) -> ColumnKind:
        return NUMERIC
