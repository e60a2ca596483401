"""Detection inputs: per-image columns (boxes in any of :data:`BOX_FORMATS`, masks, scores, labels, crowd flags,
areas) gathered into the flat arrays the statistic matches, and the batch of a list of per-image dicts."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.detection.masks import InstanceMasks, _Masks, instance_masks
from evaluators.statistic import Batch, RowsError

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
DETECTION_COLUMNS = (
    "pred_boxes",
    "pred_masks",
    "pred_scores",
    "pred_labels",
    "gt_boxes",
    "gt_masks",
    "gt_labels",
    "gt_iscrowd",
    "gt_area",
)


class BoxesNotMasksError(ValueError):
    """``iou_type="segm"`` given boxes (numbers per image) where it reads instance masks: ``role`` is the job's
    column role that holds them (``"predictions"`` for ``pred_masks``, ``"targets"`` for ``gt_masks``)."""

    def __init__(self, key: str, role: str) -> None:
        mask_role = "masks" if role == "predictions" else "target_masks"
        super().__init__(
            f"iou_type: segm evaluates instance masks and, without data.columns.{mask_role}, reads the {key} from "
            f"data.columns.{role}, which holds boxes (numbers per image), not a list of masks per image; map the "
            "mask columns to data.columns.masks and data.columns.target_masks, or evaluate the boxes with "
            "iou_type: bbox"
        )
        self.role = role


class ImageRowsError(RowsError):
    """An ``image_id`` on more than one row (in one batch, or in two batches, work units or slices): detection data
    holds one row per image, and an image's boxes are matched within its row."""

    role = "image_id"

    def __init__(self, image_id: int, where: str) -> None:
        super().__init__(
            f"image_id {image_id} is on more than one row ({where}); detection data holds one row per image, with "
            "all of the image's detections and ground-truth boxes in that row (pycocotools would match them "
            "together: evaluated row by row they would give another value)"
        )


@dataclass(frozen=True)
class _Images:
    """A batch's live images flattened: one entry per instance, ``*_row`` the image's row in the batch;
    ``*_shape`` the boxes (float64 ``[k, 4]`` as x, y, w, h) or the masks."""

    image_id: np.ndarray  # int64 [n rows]
    seen: np.ndarray | None  # int64 [live rows], ascending: the live rows' image ids (None: no image_id column)
    pred_row: np.ndarray  # int64 [k]
    pred_score: np.ndarray  # float64 [k]
    pred_label: np.ndarray  # int64 [k]
    pred_area: np.ndarray  # float64 [k]
    pred_shape: np.ndarray | _Masks
    gt_row: np.ndarray  # int64 [m]
    gt_label: np.ndarray  # int64 [m]
    gt_crowd: np.ndarray  # bool [m]
    gt_area: np.ndarray  # float64 [m]
    gt_shape: np.ndarray | _Masks


def to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """Boxes ``[k, 4]`` in ``box_format`` -> float64 ``[k, 4]`` as ``x, y, w, h`` (COCO's ``bbox``)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if box_format == "xywh":
        return b.copy()
    if box_format == "xyxy":
        return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
    if box_format == "cxcywh":
        return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]], axis=1)
    raise ValueError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")


def _labels(value: Any, what: str, row: int) -> np.ndarray:
    raw = np.asarray(value if value is not None else (), dtype=None).reshape(-1)
    labels = raw.astype(np.int64)
    if raw.size and not np.issubdtype(raw.dtype, np.integer) and np.any(labels != raw):
        raise ValueError(f"{what} of row {row} must be integer category ids")
    if labels.size and (labels.min() < np.iinfo(np.int32).min or labels.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{what} of row {row} must fit in int32")
    return labels


def _floats(value: Any) -> np.ndarray:
    return np.asarray(value if value is not None else (), np.float64).reshape(-1)


def _shapes(value: Any, key: str, row: int, box_format: str, masks: bool) -> np.ndarray | InstanceMasks:
    """One row's boxes (float64 ``[k, 4]`` as x, y, w, h) or masks."""
    if masks:
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.size and value.dtype.kind in "fiu":
            raise BoxesNotMasksError(key, "predictions" if key.startswith("pred") else "targets")
        try:
            return instance_masks(value)
        except ValueError as exc:
            raise ValueError(f"{key} of row {row}: {exc}") from None
    if isinstance(value, InstanceMasks):
        raise ValueError(f"{key} of row {row} holds instance masks; evaluate masks with iou_type='segm'")
    boxes = np.asarray(value if value is not None else (), np.float64)
    if not (boxes.size == 0 or (boxes.ndim == 1 and boxes.size % 4 == 0) or (boxes.ndim == 2 and boxes.shape[1] == 4)):
        raise ValueError(
            f"{key} of row {row} must hold boxes as [k, 4] or 4 * k flat numbers, got shape {list(boxes.shape)}"
        )
    if not np.isfinite(boxes).all():
        raise ValueError(f"{key} of row {row} holds a NaN or infinite coordinate")
    return to_xywh(boxes, box_format)


def _count_and_area(shapes: np.ndarray | InstanceMasks) -> tuple[int, np.ndarray]:
    if isinstance(shapes, InstanceMasks):
        return shapes.count, shapes.areas.astype(np.float64)
    return len(shapes), shapes[:, 2] * shapes[:, 3]


def image_digest(*arrays: np.ndarray) -> int:
    """A non-negative int64 digest of an image's detections and ground truths (its scores, labels, areas and crowd
    flags, as :func:`_gather` reads them), which orders equal scores of different images where the data have no
    ``image_id``: a function of each image alone, so of neither the sharding nor the outcome of the matching
    (ordering a tie's true positives first had read mAP up to 8% above pycocotools' for any numbering of the
    images); pycocotools gives the same values with the images numbered in this order."""
    digest = hashlib.blake2b(digest_size=8)
    for array in arrays:
        digest.update(np.ascontiguousarray(array, np.float64).tobytes())  # (whatever the columns' types)
        digest.update(b"|")
    return int.from_bytes(digest.digest(), "little") >> 1


def _gather(batch: Batch, box_format: str, iou_type: str = "bbox") -> _Images:
    """Flatten the per-image columns of the rows with positive weight (see the module docstring)."""
    masks = iou_type == "segm"
    pred_key, gt_key = ("pred_masks", "gt_masks") if masks else ("pred_boxes", "gt_boxes")
    missing = [k for k in (pred_key, "pred_scores", "pred_labels", gt_key, "gt_labels") if k not in batch]
    if missing:
        raise ValueError(f"detection batches (iou_type={iou_type}) need the columns {', '.join(missing)}")
    n = len(batch[pred_key])
    weights = batch.get("weights")
    live = np.ones(n, bool) if weights is None else np.asarray(weights, np.float64) > 0
    ids = batch.get("image_id")
    image_id = np.zeros(n, np.int64) if ids is None else np.asarray(ids).astype(np.int64).reshape(n)
    seen = None if ids is None else np.sort(image_id[live])
    repeated = np.zeros(0, np.int64) if seen is None else seen[1:][seen[1:] == seen[:-1]]
    if len(repeated):
        raise ImageRowsError(int(repeated[0]), "twice in one batch")
    crowd_col, area_col = batch.get("gt_iscrowd"), batch.get("gt_area")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("pr", "ps", "pl", "pa", "gr", "gl", "gc", "ga")}
    pred_shapes: list[Any] = []
    gt_shapes: list[Any] = []
    for i in np.flatnonzero(live).tolist():
        pred = _shapes(batch[pred_key][i], pred_key, i, box_format, masks)
        gt = _shapes(batch[gt_key][i], gt_key, i, box_format, masks)
        if masks and pred.size is not None and gt.size is not None and pred.size != gt.size:
            raise ValueError(
                f"row {i}: the {pred_key} are {pred.size[0]}x{pred.size[1]} (height x width) but the {gt_key} "
                f"{gt.size[0]}x{gt.size[1]}; all masks of an image have the image's size"
            )
        k, pa = _count_and_area(pred)
        ps = _floats(batch["pred_scores"][i]) + 0.0  # -0.0 -> 0.0
        pl = _labels(batch["pred_labels"][i], "pred_labels", i)
        if not k == len(ps) == len(pl):
            raise ValueError(f"row {i}: {k} {pred_key}, {len(ps)} pred_scores and {len(pl)} pred_labels")
        if np.isnan(ps).any():
            raise ValueError(f"row {i}: pred_scores contains NaN")
        m, mask_area = _count_and_area(gt)
        gl = _labels(batch["gt_labels"][i], "gt_labels", i)
        crowd = None if crowd_col is None else crowd_col[i]
        gc = np.zeros(m, bool) if crowd is None else _floats(crowd) != 0
        area = None if area_col is None else area_col[i]
        ga = mask_area if area is None else _floats(area)
        if area is not None and not (np.isfinite(ga) & (ga >= 0)).all():
            raise ValueError(f"gt_area of row {i} must be finite and non-negative")
        if not m == len(gl) == len(gc) == len(ga):
            raise ValueError(f"row {i}: {gt_key}, gt_labels, gt_iscrowd and gt_area differ in length")
        for key, value in zip(parts, (np.full(k, i), ps, pl, pa, np.full(m, i), gl, gc, ga), strict=True):
            parts[key].append(value)
        if ids is None:  # (equal scores of two images: ordered by a digest of each image, see image_digest)
            image_id[i] = image_digest(ps, pl, pa, gl, gc, ga)
        pred_shapes.append(pred)
        gt_shapes.append(gt)
    flat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}

    def shapes(rows: list[Any]) -> np.ndarray | _Masks:
        if masks:
            return _Masks.of(rows)
        return np.concatenate(rows).reshape(-1, 4) if rows else np.zeros((0, 4))

    return _Images(
        image_id=image_id,
        seen=seen,
        pred_row=flat["pr"].astype(np.int64),
        pred_score=flat["ps"].astype(np.float64),
        pred_label=flat["pl"].astype(np.int64),
        pred_area=flat["pa"].astype(np.float64),
        pred_shape=shapes(pred_shapes),
        gt_row=flat["gr"].astype(np.int64),
        gt_label=flat["gl"].astype(np.int64),
        gt_crowd=flat["gc"].astype(bool),
        gt_area=flat["ga"].astype(np.float64),
        gt_shape=shapes(gt_shapes),
    )


def detection_batch(images: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """A batch (object columns, one row per image) from per-image dicts with the batch's keys.

    Missing prediction or ground-truth keys mean none; ``gt_iscrowd`` / ``gt_area`` / ``image_id``
    columns are added when some image has them (``None`` elsewhere: defaults apply). Masks are kept as
    given (see :func:`instance_masks`).
    """
    n = len(images)
    batch: dict[str, np.ndarray] = {}
    for key in DETECTION_COLUMNS:
        optional = key in ("gt_iscrowd", "gt_area")
        if optional and not any(key in image for image in images):
            continue
        column = np.empty(n, object)
        for i, image in enumerate(images):
            value = image.get(key)
            if key in ("pred_masks", "gt_masks"):
                column[i] = value
            else:
                column[i] = None if value is None and optional else np.asarray(value if value is not None else ())
        batch[key] = column
    if any("image_id" in image for image in images):
        batch["image_id"] = np.array([int(image.get("image_id", 0)) for image in images], np.int64)
    batch["weights"] = np.ones(n, np.float64)
    return batch
