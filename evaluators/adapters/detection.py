"""Inputs of a detection task: one row per image, each role a per-image list (boxes, scores, labels, crowd
flags, areas, instance masks), read as :class:`~evaluators.adapters.base.Ragged` rows and turned into the
columns of :class:`evaluators.detection.CocoDetectionStatistic`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluators.adapters.base import (
    BINARY,
    BOOLEAN,
    FLOATING,
    INTEGER,
    OTHER,
    STRUCT,
    ColumnKind,
    Columns,
    ColumnType,
    InputError,
    Ragged,
    TaskAdapter,
)
from evaluators.task import BadRows, flagged_rows

MASK_LISTS = (
    "instance masks, list<struct<size: list<int>, counts: string or list<int>>> (COCO RLE, compressed or "
    "not) or list<binary> (one PNG per instance)"
)
INSTANCE_MASKS = ColumnKind(f"a list column per image of {MASK_LISTS}", lambda t: t.list_of(STRUCT, BINARY))
_ELEMENTS = (INTEGER, FLOATING, BOOLEAN, OTHER)
"""Element kinds of a per-image list of numbers (``other``: ``list<null>``, a shard without any box)."""


def _numbers_or_boxes(t: ColumnType) -> bool:
    nested = t.is_list and t.value is not None and t.value.list_of(*_ELEMENTS)
    return t.list_of(*_ELEMENTS) or nested or INSTANCE_MASKS.accepts(t)


NUMBER_LISTS = ColumnKind(
    "a list column of numbers per image (list<float>, list<int> or list<bool>)", lambda t: t.list_of(*_ELEMENTS)
)
BOX_LISTS = ColumnKind(
    "a list column per image of boxes (list<list<float>> of 4 numbers per box, or list<float> of 4k numbers) or "
    f"of {MASK_LISTS}",
    _numbers_or_boxes,
)
STATISTIC_NAMES = {
    "predictions": "pred_boxes",
    "scores": "pred_scores",
    "labels": "pred_labels",
    "targets": "gt_boxes",
    "target_labels": "gt_labels",
    "iscrowd": "gt_iscrowd",
    "area": "gt_area",
    "masks": "pred_masks",
    "target_masks": "gt_masks",
}
"""Detection roles -> the columns :class:`evaluators.detection.CocoDetectionStatistic` reads."""
_PER_ROW = ("weights", "image_id")
"""Roles with one value per image (not a list)."""


@dataclass(frozen=True)
class DetectionAdapter(TaskAdapter):
    """Boxes (``[4k]`` numbers per image) or instance masks (COCO RLE structs or PNG bytes per instance)."""

    needed_roles: ClassVar[tuple[str, ...]] = ("scores", "labels", "target_labels")

    def roles_hint(self, missing: Collection[str]) -> str:
        return (
            f"a detection task needs columns for {', '.join(missing)} (predictions: predicted boxes, targets: "
            "ground-truth boxes, or masks for iou_type: segm; optional: iscrowd, area, image_id, masks, "
            "target_masks)."
        )

    def own_kind(self, role: str) -> ColumnKind:
        if role in ("masks", "target_masks"):
            return INSTANCE_MASKS
        if role in ("predictions", "targets"):
            return BOX_LISTS
        if role not in _PER_ROW:
            return NUMBER_LISTS
        return super().own_kind(role)

    def value_problems(self, predictions: Any, targets: Any, columns: Columns, n: int) -> list[BadRows]:
        """Per-image lists (boxes, scores, labels, areas): numbers must be finite, boxes of 4 numbers, labels
        integers within int32, and the lists of an image as long as its boxes (or masks); image ids integers."""
        problems: list[BadRows] = []
        ids = columns.get("image_id")
        if ids is not None and np.asarray(ids).dtype.kind == "f":  # (an id is compared as an int64)
            ids = np.asarray(ids, np.float64)
            with np.errstate(invalid="ignore"):
                whole = np.isfinite(ids) & (ids == np.round(ids)) & (np.abs(ids) < 2.0**63)
            problems += flagged_rows("image_id", "whose image_id is not an integer (NaN, inf or a fraction)", ~whole, n)
        for role, values in columns.items():
            if role != "weights" and isinstance(values, np.ndarray) and values.dtype == object:
                problems += flagged_rows(role, "with NaN or inf in their lists", _ragged_nonfinite(values), n)
                if role in ("predictions", "targets"):
                    ragged = _ragged_rows(values, lambda v: v.size % 4 != 0) | _misshapen(values)
                    problems += flagged_rows(role, "with boxes of other than 4 numbers", ragged, n)
                if role == "area":
                    problems += flagged_rows(
                        role, "with a negative area", _ragged_rows(values, lambda v: (v < 0).any()), n
                    )
                if role in ("labels", "target_labels"):
                    problems += _label_problems(role, values, n)
        for side, what, roles in _SAME_LENGTH:
            if side in columns:
                counts = _counts(columns[side], boxes=True)
                for role in roles:
                    if role in columns and columns[role] is not None:
                        other = _counts(columns[role])
                        differ = (counts >= 0) & (other >= 0) & (counts != other)
                        problems += flagged_rows(role, f"with another number of {_NOUNS[role]} than {what}", differ, n)
        return problems

    def refused_role(self, error: Exception) -> str | None:
        """``predictions`` / ``targets`` for ``iou_type: segm`` reading masks from a column of boxes."""
        from evaluators.detection import BoxesNotMasksError

        return error.role if isinstance(error, BoxesNotMasksError) else super().refused_role(error)

    def ragged_roles(self, roles: Collection[str]) -> frozenset[str]:
        return frozenset(r for r in roles if r not in _PER_ROW)

    def decode(self, columns: Columns, roles: Mapping[str, str], where: str, first_row: int) -> Columns:
        """:class:`Ragged` rows -> object arrays of per-image float64 ``[4k]`` arrays (nested lists flattened
        per row: ``[[x, y, w, h], ...]`` -> ``[4k]``), or of :class:`~evaluators.detection.InstanceMasks`
        for a mask list column."""
        out = dict(columns)
        for role, values in columns.items():
            if isinstance(values, Ragged):
                out[role] = _per_image(values, f"{where}, column {roles[role]!r}")
        return out

    def batch(self, columns: Columns, roles: Mapping[str, str], where: str) -> Columns:
        """Role columns -> the statistic's columns (:data:`STATISTIC_NAMES`). Without ``masks`` /
        ``target_masks`` roles, ``iou_type: segm`` reads its masks from ``predictions`` / ``targets``. An image
        whose predicted and ground-truth masks differ in size is an :class:`InputError` naming both columns."""
        out = {STATISTIC_NAMES.get(k, k): v for k, v in columns.items()}
        out.setdefault("pred_masks", out["pred_boxes"])
        out.setdefault("gt_masks", out["gt_boxes"])
        from evaluators.detection import first_mask_size_mismatch  # (the detection family: imported by its jobs only)

        found = first_mask_size_mismatch(out["pred_masks"], out["gt_masks"])
        if found is not None:
            row, pred, gt = found
            pred_role = "masks" if "masks" in roles else "predictions"
            gt_role = "target_masks" if "target_masks" in roles else "targets"
            ids = columns.get("image_id")
            image = f"image_id {ids[row]}" if ids is not None else f"the image in row {row} of the batch"
            raise InputError(
                f"{where}: the masks of {image} are {pred[0]}x{pred[1]} (height x width) in column "
                f"{roles[pred_role]!r} (data.columns.{pred_role}) but {gt[0]}x{gt[1]} in column "
                f"{roles[gt_role]!r} (data.columns.{gt_role}); every mask of an image, predicted or ground "
                "truth, has the image's size."
            )
        return out


def _per_image(column: Ragged, where: str) -> np.ndarray:
    """One ragged column -> an object array with one value per image (``where`` names file and column)."""
    if INSTANCE_MASKS.accepts(column.type):
        return _instance_masks(column, where)
    nested = column.type.value is not None and column.type.value.is_list
    out = np.empty(len(column), object)
    for i, row in enumerate(column.rows):
        out[i] = _numbers(row, nested)
    return out


@dataclass(frozen=True)
class _Misshapen:
    """A row of nested boxes not all of 4 numbers: a bad row of its column."""

    sizes: tuple[int | None, ...]


def _numbers(row: Any, nested: bool) -> np.ndarray | _Misshapen:
    """One row's numbers, flat (``[[x, y, w, h], ...]`` -> ``[4k]``), or :class:`_Misshapen` for nested boxes of
    other than 4 numbers (``nested``: the column is a list of lists)."""
    if nested:
        if all(isinstance(box, list) and len(box) == 4 for box in row):
            return np.asarray(row, np.float64).reshape(-1)
        return _Misshapen(tuple(len(box) if isinstance(box, list) else None for box in row))
    return np.asarray(row, np.float64).reshape(-1)


def _instance_masks(column: Ragged, where: str) -> np.ndarray:
    """A mask list column -> object array of per-row :class:`~evaluators.detection.InstanceMasks` (runs)."""
    from evaluators.detection import instance_masks

    value = column.type.value
    if value is not None and value.kind == STRUCT:
        fields = value.fields
        if "size" not in fields or "counts" not in fields:
            raise InputError(
                f"{where}: the masks are structs with fields {', '.join(fields)}; expected COCO RLE structs with "
                "the fields size ([height, width]) and counts (compressed RLE string or run lengths)."
            )
    out = np.empty(len(column), object)
    for i, row in enumerate(column.rows):
        try:
            out[i] = instance_masks(row)
        except ValueError as exc:
            raise InputError(
                f"{where}, row {i}: {exc}. A row holds one mask per instance, each a COCO RLE struct {{size: "
                "[height, width], counts: compressed string or run lengths} or the bytes of a single-channel "
                "PNG, all of the image's size."
            ) from None
    return out


_SAME_LENGTH = (
    ("predictions", "boxes in data.columns.predictions", ("scores", "labels", "masks")),
    ("targets", "boxes in data.columns.targets", ("target_labels", "iscrowd", "area", "target_masks")),
)
"""Per-image lists that hold one entry per predicted / ground-truth box (or mask) of the image."""
_NOUNS = {
    "scores": "scores",
    "labels": "labels",
    "masks": "masks",
    "target_labels": "labels",
    "iscrowd": "crowd flags",
    "area": "areas",
    "target_masks": "masks",
}
"""What the entries of each per-image list role are called in a message."""


def _counts(values: Any, boxes: bool = False) -> np.ndarray:
    """int64 ``[n]``: the entries of each row of a per-image column (masks, numbers, or with ``boxes`` boxes of 4
    numbers); -1 where a row is no list of whole boxes (a bad row reported as such)."""
    from evaluators.detection import InstanceMasks

    def count(v: Any) -> int:
        if isinstance(v, InstanceMasks):
            return v.count
        if not isinstance(v, np.ndarray):
            return -1
        if boxes:
            return v.size // 4 if v.size % 4 == 0 else -1
        return int(v.size)

    return np.fromiter((count(v) for v in values), np.int64, count=len(values))


def _label_problems(role: str, values: np.ndarray, n: int) -> list[BadRows]:
    """Rows of a label list column (float64 per row) with a label that is no integer, or outside int32."""
    low, high = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    fraction = _ragged_rows(values, lambda v: (np.isfinite(v) & (v != np.round(v))).any())
    outside = _ragged_rows(values, lambda v: (np.isfinite(v) & ((v < low) | (v > high))).any())
    return flagged_rows(role, "with labels that are not integers", fraction, n) + flagged_rows(
        role, f"with labels outside int32's range [{low}, {high}]", outside, n
    )


def _misshapen(values: np.ndarray) -> np.ndarray:
    """bool ``[n]``: rows of nested boxes not all of 4 numbers."""
    return np.fromiter((isinstance(v, _Misshapen) for v in values), bool, count=len(values))


def _ragged_rows(values: np.ndarray, bad: Any) -> np.ndarray:
    """bool ``[n]``: rows of an object array of per-row float arrays for which ``bad(row)`` holds (rows that are
    not float arrays, such as decoded instance masks, pass)."""
    return np.fromiter(
        (isinstance(v, np.ndarray) and v.dtype.kind == "f" and bool(bad(v)) for v in values), bool, count=len(values)
    )


def _ragged_nonfinite(values: np.ndarray) -> np.ndarray:
    """bool ``[n]``: rows of an object array of per-row number arrays that hold a NaN or inf (other rows, such
    as decoded instance masks, are not numbers and pass)."""
    return _ragged_rows(values, lambda v: not np.isfinite(v).all())
