"""Inputs of classification (binary, multiclass, multilabel) and regression tasks: plain ``[n]`` / ``[n, C]``
columns, read as they are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.adapters.base import NUMERIC, ColumnKind, Columns, TaskAdapter, numbers_per_row
from evaluators.task import BadRows, PredictionKind, Task, TaskKind, flagged_rows


@dataclass(frozen=True)
class ClassificationAdapter(TaskAdapter):
    """Binary: ``[n]`` scores or labels and ``[n]`` labels. Multiclass: ``[n, C]`` scores (a list column of C
    numbers) or ``[n]`` labels, ``[n]`` labels. Multilabel: ``[n, L]`` on both sides."""

    def counted_rows(self, batch: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The rows with a target other than ``ignore_index`` (multilabel: in at least one label)."""
        if self.task.ignore_index is None or "targets" not in batch:
            return None
        keep = np.asarray(batch["targets"]) != self.task.ignore_index
        return keep.reshape(len(keep), -1).any(axis=1)

    def own_kind(self, role: str) -> ColumnKind:
        task = self.task
        per_row = task.kind is TaskKind.MULTILABEL or (
            task.kind is TaskKind.MULTICLASS and role == "predictions" and task.prediction is not PredictionKind.LABELS
        )
        if per_row and role in ("predictions", "targets"):
            return numbers_per_row(task.classes)
        return super().own_kind(role)

    def task_words(self, role: str) -> str:
        """Predictions' kind decides their column (labels, scores per row), so their errors name it."""
        words = super().task_words(role)
        return f"{words} with {self.task.prediction} predictions" if role == "predictions" else words

    def value_problems(self, predictions: Any, targets: Any, columns: Columns, n: int) -> list[BadRows]:
        """Scores: finite (probabilities in [0, 1], a multiclass row summing to 1); labels: integers in range
        (``ignore_index`` aside); class scores ``[n, C]`` and multilabel predictions and targets ``[n, L]`` of the
        task's width."""
        task, preds = self.task, predictions
        problems = score_problems(task, preds, n)
        problems.extend(_label_problems(task, "targets", targets, n))
        if task.prediction is PredictionKind.LABELS:
            problems.extend(_label_problems(task, "predictions", preds, n))
        if task.kind is TaskKind.MULTICLASS and task.has_scores and (preds.ndim != 2 or preds.shape[1] != task.classes):
            problems.append(
                BadRows("predictions", f"expected {task.classes} class scores per row, got shape {preds.shape[1:]}")
            )
        if task.kind is TaskKind.MULTILABEL:
            for role, values in (("predictions", preds), ("targets", targets)):
                if values.ndim != 2 or values.shape[1] != task.classes:
                    shape = values.shape[1:]
                    problems.append(BadRows(role, f"expected {task.classes} labels per row, got shape {shape}"))
        return problems


@dataclass(frozen=True)
class RegressionAdapter(TaskAdapter):
    """``[n]`` numbers on both sides."""

    def own_kind(self, role: str) -> ColumnKind:
        return NUMERIC

    def value_problems(self, predictions: Any, targets: Any, columns: Columns, n: int) -> list[BadRows]:
        """Predictions and targets: finite."""
        problems = score_problems(self.task, predictions, n)
        if np.issubdtype(targets.dtype, np.floating):
            problems += flagged_rows("targets", "with NaN or inf", ~np.isfinite(targets), n)
        return problems


def score_problems(task: Task, preds: np.ndarray, n: int) -> list[BadRows]:
    """Rows of float predictions (``[n]`` or ``[n, C]``) with NaN or inf; for probabilities (float or integer
    columns: an integer 5 is no probability either), also values outside [0, 1] and multiclass rows that do not sum to
    1 (within :data:`SUM_TOLERANCE`)."""
    problems: list[BadRows] = []
    if np.issubdtype(preds.dtype, np.floating) or np.issubdtype(preds.dtype, np.integer):
        # Two reductions clear a clean batch (NaN propagates through both); masks only when they do not.
        lo, hi = (float(np.min(preds)), float(np.max(preds))) if preds.size else (0.0, 0.0)
        all_finite = bool(np.isfinite(lo) and np.isfinite(hi))
        finite = None if all_finite else np.isfinite(preds)
        if finite is not None:
            problems += flagged_rows("predictions", "with NaN or inf", ~finite, n)
        if task.kind is not TaskKind.REGRESSION and task.prediction is PredictionKind.PROBABILITIES:
            logits = "(declare `prediction: logits` if these are logits)"
            if not (lo >= 0 and hi <= 1):
                outside = (preds < 0) | (preds > 1)
                if finite is not None and outside.any():
                    outside &= finite  # +-inf is counted once, as NaN or inf
                problems += flagged_rows("predictions", f"with probabilities outside [0, 1] {logits}", outside, n)
            if task.kind is TaskKind.MULTICLASS and preds.ndim == 2:
                off = _off_one(preds, SUM_TOLERANCE)
                problems += flagged_rows("predictions", f"whose class probabilities do not sum to 1 {logits}", off, n)
    return problems


SUM_TOLERANCE = 1e-3
"""Class probabilities of a row may sum to 1 within this (in float64)."""


def _off_one(preds: np.ndarray, tolerance: float) -> np.ndarray:
    """Rows whose float64 sum is further than ``tolerance`` from 1. Rows are summed in their own dtype
    first (no float64 copy of the batch); only rows within rounding of the tolerance are summed again in
    float64, so the answer is the float64 one."""
    if preds.dtype == np.float64 or not np.issubdtype(preds.dtype, np.floating) or preds.shape[1] == 0:
        return np.abs(preds.sum(axis=1, dtype=np.float64) - 1.0) > tolerance
    sums = preds.sum(axis=1)
    slack = preds.shape[1] * float(np.finfo(preds.dtype).eps) * 4.0  # bound on the own-dtype rounding
    distance = np.abs(sums.astype(np.float64) - 1.0)
    off = distance > tolerance
    near = np.flatnonzero(np.abs(distance - tolerance) <= slack)
    if len(near):
        off[near] = np.abs(preds[near].sum(axis=1, dtype=np.float64) - 1.0) > tolerance
    return off


def _label_problems(task: Task, role: str, values: np.ndarray, n: int) -> list[BadRows]:
    problems: list[BadRows] = []
    if np.issubdtype(values.dtype, np.floating):
        problems += flagged_rows(
            role, "whose labels are not integers", ~np.isfinite(values) | (values != np.round(values)), n
        )
    elif not np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_:
        return [BadRows(role, f"expected integer labels, got {values.dtype}")]
    upper = 2 if task.kind in (TaskKind.BINARY, TaskKind.MULTILABEL) else task.classes
    bad = (values < 0) | (values >= upper)
    if task.ignore_index is not None and role == "targets":
        bad &= values != task.ignore_index
    classes = f" (task.num_classes: {upper})" if task.kind is TaskKind.MULTICLASS else ""
    return problems + flagged_rows(role, f"with labels outside [0, {upper - 1}]{classes}", bad, n)
