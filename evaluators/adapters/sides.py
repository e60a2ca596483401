"""Inputs of image and text tasks: a candidate side (``predictions``) and a reference side (``targets``),
either of which a job may leave out (read as precomputed ``*_features`` columns, or from a stored
reference); the backbone turns the raw sides into features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from evaluators.adapters.base import BINARY, FLOATING, INTEGER, ColumnKind, Columns, TaskAdapter
from evaluators.task import BadRows, check_weights, flagged_rows

IMAGES = ColumnKind(
    "encoded image bytes (binary) or S*S*3 pixel values per row (list or fixed_size_list of numbers)",
    lambda t: t.kind == BINARY or t.list_of(INTEGER, FLOATING),
)
TEXTS = ColumnKind("a string column", lambda t: t.is_string)


@dataclass(frozen=True)
class SidedAdapter(TaskAdapter):
    """A task whose batches may hold one side only (and precomputed feature columns, checked where they are
    read)."""

    one_sided: ClassVar[bool] = True

    def bad_rows(self, columns: Columns) -> list[BadRows]:
        """Problems of a batch whose sides (``predictions`` / ``targets``) may be absent: sides of different
        lengths, bad weights, then :meth:`side_problems` of each side present."""
        n = len(next(iter(columns.values())))
        if "predictions" in columns and "targets" in columns and len(columns["predictions"]) != len(columns["targets"]):
            return [
                BadRows(
                    "predictions", f"have {len(columns['predictions'])} rows but targets have {len(columns['targets'])}"
                )
            ]
        problems = check_weights(columns["weights"], n) if columns.get("weights") is not None else []
        for role in ("predictions", "targets"):
            if role in columns:
                problems += self.side_problems(role, columns[role], n)
        for role in ("predictions_features", "targets_features"):  # (precomputed: read as numbers, [n, D])
            values = np.asarray(columns[role]) if role in columns else None
            if values is not None and values.dtype.kind == "f" and values.ndim == 2:
                problems += flagged_rows(role, "with NaN or inf features", ~np.isfinite(values).all(axis=1), n)
        return problems

    def side_problems(self, role: str, values: np.ndarray, n: int) -> list[BadRows]:
        """Problems of one side's ``n`` rows. Default: none."""
        return []


@dataclass(frozen=True)
class ImageAdapter(SidedAdapter):
    """Generated and real images: encoded bytes or ``[n, S*S*3]`` pixels."""

    def own_kind(self, role: str) -> ColumnKind:
        return IMAGES if role in ("predictions", "targets") else super().own_kind(role)

    def side_problems(self, role: str, values: np.ndarray, n: int) -> list[BadRows]:
        return _check_images(role, values, n)


@dataclass(frozen=True)
class TextAdapter(SidedAdapter):
    """Candidate and reference texts: one string per row (nulls are refused when read)."""

    def own_kind(self, role: str) -> ColumnKind:
        return TEXTS if role in ("predictions", "targets") else super().own_kind(role)


def _check_images(role: str, values: np.ndarray, n: int) -> list[BadRows]:
    """Encoded images (an object array of bytes) or ``[n, S*S*3]`` pixels: uint8-range integers or [0, 1] floats."""
    if values.dtype == object:
        bad = np.fromiter(
            (not isinstance(v, bytes | bytearray | memoryview) or len(v) == 0 for v in values), bool, count=n
        )
        return flagged_rows(role, "whose value is not non-empty encoded image bytes", bad, n)
    if values.ndim != 2:
        return [
            BadRows(
                role, f"expected encoded image bytes or a list of S*S*3 pixel values per row, got shape {values.shape}"
            )
        ]
    side = int(np.sqrt(values.shape[1] / 3))
    if side < 1 or 3 * side * side != values.shape[1]:
        return [BadRows(role, f"{values.shape[1]} pixel values per row is not S*S*3 for a square RGB image")]
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        what = "with pixel values outside [0, 1] or NaN (float pixels are read as [0, 1] intensities)"
    elif np.issubdtype(values.dtype, np.integer):
        bad = (values < 0) | (values > 255)
        what = "with pixel values outside [0, 255]"
    else:
        return [BadRows(role, f"expected numeric pixel values, got {values.dtype}")]
    return flagged_rows(role, what, bad, n)
