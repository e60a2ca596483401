"""Inputs of a segmentation task: one image per row, predicted and true class-id masks as encoded
single-channel images (PNG), class ids per pixel or raw 8-bit pixels; decoded, then cut into the fixed-width
pixel rows :class:`evaluators.segmentation.PixelConfusion` counts."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.adapters.base import (
    BINARY,
    BOOLEAN,
    FIXED_BINARY,
    FLOATING,
    INTEGER,
    ColumnKind,
    Columns,
    InputError,
    TaskAdapter,
)
from evaluators.task import BadRows

MASKS = ColumnKind(
    "single-channel PNG masks of class ids (binary), class ids per pixel (list of integers) or 8-bit class "
    "ids per pixel as raw bytes (fixed_size_binary)",
    lambda t: t.kind in (BINARY, FIXED_BINARY) or t.list_of(INTEGER, BOOLEAN, FLOATING),
)
_SIDES = ("predictions", "targets")


@dataclass(frozen=True)
class SegmentationAdapter(TaskAdapter):
    """Masks per image of any sizes; one weight per image."""

    def own_kind(self, role: str) -> ColumnKind:
        return MASKS if role in _SIDES else super().own_kind(role)

    def varying_roles(self, roles: Collection[str]) -> frozenset[str]:
        return frozenset(_SIDES) & frozenset(roles)  # (class ids per pixel of images of several sizes)

    def counted_rows(self, batch: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The images with at least one pixel whose target is not ``ignore_index`` (decoded masks)."""
        if self.task.ignore_index is None or "targets" not in batch:
            return None
        targets = _masks(np.asarray(batch["targets"]))
        if isinstance(targets, list):
            return np.array([bool(np.any(np.asarray(t) != self.task.ignore_index)) for t in targets], bool)
        return (targets != self.task.ignore_index).reshape(len(targets), -1).any(axis=1)

    def value_problems(self, predictions: Any, targets: Any, columns: Columns, n: int) -> list[BadRows]:
        """Masks of one size per image, integer class ids in range (see :func:`~evaluators.segmentation.bad_mask_rows`)."""
        from evaluators.segmentation import bad_mask_rows  # (the segmentation family: imported by its jobs only)

        return bad_mask_rows(predictions, targets, self.task.classes, self.task.ignore_index)

    def decode(self, columns: Columns, roles: Mapping[str, str], where: str, first_row: int) -> Columns:
        out = dict(columns)
        for role in _SIDES:
            out[role] = decoded_masks(columns[role], role, roles[role], where, first_row)
        return out

    def expand(self, columns: Columns, bucket: np.ndarray | None) -> tuple[Columns, np.ndarray | None]:
        """Images -> fixed-width pixel rows (each inside one image); an image's bucket repeats over its rows,
        so the bootstrap still resamples images."""
        predictions, targets = _masks(columns["predictions"]), _masks(columns["targets"])
        if isinstance(predictions, list) or isinstance(targets, list):  # per image, in row-major order: a flat id
            predictions, targets = _flat(predictions), _flat(targets)  # list beside a decoded [H, W] mask
        from evaluators.segmentation import pixel_rows

        rows = pixel_rows(predictions, targets, columns.get("weights"))
        if bucket is not None:
            width = rows["targets"].shape[1]
            if isinstance(targets, list):  # (an image has at least one row, padded: an empty one too)
                per_image = [max(1, -(-np.asarray(t).size // width)) for t in targets]
            else:  # (images of one size: as many rows each)
                per_image = [len(rows["targets"]) // max(1, len(targets))] * len(targets)
            bucket = np.repeat(bucket, per_image)
        return rows, bucket


def _flat(masks: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
    """Each image's class ids as one row-major ``[P]`` array (views where they can be)."""
    return [np.asarray(mask).reshape(-1) for mask in masks]


def _masks(column: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """A mask column after :func:`decoded_masks`: per-image arrays as a list; pixel lists ``[n, P]`` as they are."""
    return list(column) if column.dtype == object else column


def decoded_masks(column: np.ndarray, role: str, name: str, where: str, first_row: int) -> np.ndarray:
    """A segmentation mask column as read: encoded images per row (object array of bytes) -> an object array of
    decoded ``[H, W]`` arrays; pixel lists ``[n, P]`` (or per row, of images of several sizes) come back as they are.
    A payload that is no image (raw
    bytes without a shape, a colour image) is an :class:`InputError` naming the file, column and row."""
    if column.dtype != object:
        return column
    from evaluators.segmentation import decode_mask

    if len(column) and isinstance(column[0], np.ndarray):  # (class ids per pixel, rows of several lengths)
        return column
    out = np.empty(len(column), object)
    for i, payload in enumerate(column):
        try:
            out[i] = decode_mask(bytes(payload))
        except Exception as exc:  # PIL raises UnidentifiedImageError, OSError or ValueError
            raise InputError(
                f"{where}: column {name!r} (data.columns.{role}), row {first_row + i} of the file: cannot read "
                f"the mask ({type(exc).__name__}: {_without_addresses(str(exc))}). A mask is a single-channel PNG (or another lossless "
                "single-channel image) of class ids in a binary column, a list of class ids per pixel "
                "(list<int>), or 8-bit class ids per pixel as fixed_size_binary; raw bytes in a variable-length "
                "binary column carry no shape or dtype and are not read: store them as fixed_size_binary or PNG."
            ) from None
    return out


def _without_addresses(text: str) -> str:
    """``text`` with Python object reprs (``<_io.BytesIO object at 0x7f...>``, which Pillow's errors quote) read as
    ``the bytes``: a message names the row, not a memory address."""
    return re.sub(r"<[\w.]+ object at 0x[0-9a-fA-F]+>", "the bytes", text)
