"""Inputs of a ranking task: one row per (query, item), ``predictions`` the item's score, ``targets`` its
relevance, beside the ``query_id`` column that groups the rows into queries."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluators.adapters.base import GROUPS, ColumnKind, Columns, TaskAdapter
from evaluators.task import BadRows, flagged_rows


@dataclass(frozen=True)
class RankingAdapter(TaskAdapter):
    """Scores and relevance as plain ``[n]`` columns; query ids as integers or strings."""

    needed_roles: ClassVar[tuple[str, ...]] = ("query_id",)
    own_roles: ClassVar[tuple[str, ...]] = ("query_id",)
    whole_files: ClassVar[bool] = True  # a query's rows are ranked together, in one unit
    bucket_key_role: ClassVar[str] = "query_id"  # statistics are sums over queries: a query is resampled whole

    def roles_hint(self, missing: Collection[str]) -> str:
        return (
            "a ranking task needs `query_id` (the column of query ids; predictions: item scores, targets: "
            "relevance), and only a ranking task takes it."
        )

    def own_kind(self, role: str) -> ColumnKind:
        return GROUPS if role in ("query_id", "item_id") else super().own_kind(role)

    def value_problems(self, predictions: Any, targets: Any, columns: Columns, n: int) -> list[BadRows]:
        """Item scores: finite numbers; relevance: finite numbers >= 0."""
        return _check_ranking(predictions, targets, n)


def _check_ranking(scores: np.ndarray, relevance: np.ndarray, n: int) -> list[BadRows]:
    """Item scores: finite numbers; relevance: finite numbers >= 0."""
    problems: list[BadRows] = []
    for role, values in (("predictions", scores), ("targets", relevance)):
        if values.ndim != 1 or values.dtype.kind not in "biuf":
            return [BadRows(role, f"expected one number per row, got {values.dtype} of shape {values.shape[1:]}")]
    if scores.dtype.kind == "f":
        problems += flagged_rows("predictions", "with NaN or inf", ~np.isfinite(scores), n)
    bad = ~np.isfinite(relevance) | (relevance < 0) if relevance.dtype.kind == "f" else relevance < 0
    return problems + flagged_rows("targets", "with a relevance that is negative, NaN or inf", bad, n)
