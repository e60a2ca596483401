"""Inputs of image and text tasks: a candidate side (``predictions``) and a reference side (``targets``),
either of which a job may leave out (read as precomputed ``*_features`` columns, or from a stored
reference); the backbone turns the raw sides into features."""

from __future__ import annotations

from dataclasses import dataclass

from evaluators.adapters.base import BINARY, FLOATING, INTEGER, ColumnKind, TaskAdapter

IMAGES = ColumnKind(
    "encoded image bytes (binary) or S*S*3 pixel values per row (list or fixed_size_list of numbers)",
    lambda t: t.kind == BINARY or t.list_of(INTEGER, FLOATING),
)
TEXTS = ColumnKind("a string column", lambda t: t.is_string)


@dataclass(frozen=True)
class ImageAdapter(TaskAdapter):
    """Generated and real images: encoded bytes or ``[n, S*S*3]`` pixels."""

    def own_kind(self, role: str) -> ColumnKind:
        return IMAGES if role in ("predictions", "targets") else super().own_kind(role)


@dataclass(frozen=True)
class TextAdapter(TaskAdapter):
    """Candidate and reference texts: one string per row."""

    def own_kind(self, role: str) -> ColumnKind:
        return TEXTS if role in ("predictions", "targets") else super().own_kind(role)
