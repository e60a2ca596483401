"""Inputs of a ranking task: one row per (query, item), ``predictions`` the item's score, ``targets`` its
relevance, beside the ``query_id`` column that groups the rows into queries."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

from evaluators.adapters.base import GROUPS, ColumnKind, TaskAdapter
from evaluators.retrieval import QUERY, QueryRowsError


@dataclass(frozen=True)
class RankingAdapter(TaskAdapter):
    """Scores and relevance as plain ``[n]`` columns; query ids as integers or strings."""

    needed_roles: ClassVar[tuple[str, ...]] = ("query_id",)
    own_roles: ClassVar[tuple[str, ...]] = ("query_id",)

    def roles_hint(self, missing: Collection[str]) -> str:
        return (
            "a ranking task needs `query_id` (the column of query ids; predictions: item scores, targets: "
            "relevance), and only a ranking task takes it."
        )

    def own_kind(self, role: str) -> ColumnKind:
        return GROUPS if role == "query_id" else super().own_kind(role)

    def refused_role(self, error: Exception) -> str | None:
        """``query_id`` for rows of a query that cannot be ranked together (split, or of different weights)."""
        return QUERY if isinstance(error, QueryRowsError) else None
