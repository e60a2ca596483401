"""COCO detection metrics as a function over per-image dicts (torchmetrics' ``MeanAveragePrecision`` inputs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evaluators.detection import evaluate_coco


def mean_average_precision(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    *,
    iou_thresholds: Sequence[float] | None = None,
    max_detection_thresholds: Sequence[int] | None = None,
    box_format: str = "xyxy",
    iou_type: str = "bbox",
    class_metrics: bool = False,
) -> dict[str, float]:
    """``{"map", "map_50", ..., "mar_100", ...}`` for one dict per image.

    ``predictions[i]``: ``{"boxes": [k, 4], "scores": [k], "labels": [k]}``; ``targets[i]``:
    ``{"boxes": [m, 4], "labels": [m], "iscrowd": [m] (optional), "area": [m] (optional)}``. With
    ``iou_type="segm"`` both hold ``"masks"`` instead of ``"boxes"``: a ``[k, h, w]`` bool array (as
    torchmetrics) or a list of COCO RLE dicts, PNG bytes or 2-D arrays, one per instance (see
    :mod:`evaluators.detection`).
    """
    if len(predictions) != len(targets):
        raise ValueError(
            f"predictions hold {len(predictions)} images but targets {len(targets)}; give one dict per image to each"
        )
    images = []
    for i, (pred, target) in enumerate(zip(predictions, targets, strict=True)):
        image = {
            "pred_boxes": pred.get("boxes", ()),
            "pred_masks": pred.get("masks"),
            "pred_scores": pred.get("scores", ()),
            "pred_labels": pred.get("labels", ()),
            "gt_boxes": target.get("boxes", ()),
            "gt_masks": target.get("masks"),
            "gt_labels": target.get("labels", ()),
            "image_id": i,
        }
        if "iscrowd" in target:
            image["gt_iscrowd"] = target["iscrowd"]
        if "area" in target:
            image["gt_area"] = target["area"]
        images.append(image)
    return evaluate_coco(
        images,
        iou_thresholds=iou_thresholds,
        max_detection_thresholds=max_detection_thresholds,
        box_format=box_format,
        iou_type=iou_type,
        class_metrics=class_metrics,
    )
