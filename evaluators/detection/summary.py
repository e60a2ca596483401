"""The ``mean_average_precision`` metric read off the statistic's summary, and the one-shot evaluation of a list
of images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from evaluators.detection.boxes import detection_batch
from evaluators.detection.state import COCO_IOU_THRESHOLDS, COCO_MAX_DETECTIONS, CocoDetectionStatistic
from evaluators.statistic import DerivedMetric, Direction, State
from evaluators.task import Task


def _finalize(statistic: CocoDetectionStatistic, class_metrics: bool, state: State) -> dict[str, float]:
    values = statistic.summarize(state, class_metrics=class_metrics)
    return {("" if k == "map" else f".{k}"): v for k, v in values.items()}


def mean_average_precision(
    task: Task | None,
    *,
    iou_thresholds: Sequence[float] | None = None,
    max_detection_thresholds: Sequence[int] | None = None,
    box_format: str = "xyxy",
    iou_type: str = "bbox",
    class_metrics: bool = False,
) -> DerivedMetric:
    """COCO mean average precision and recall for boxes or instance masks (pycocotools' ``COCOeval``,
    ``iouType="bbox"`` or ``"segm"``).

    ``iou_type="bbox"`` matches the boxes (``pred_boxes`` / ``gt_boxes`` in ``box_format``),
    ``iou_type="segm"`` the instance masks (``pred_masks`` / ``gt_masks``, see the module docstring;
    the area ranges then use the ground truth's ``gt_area`` when given, else its mask area, and the
    detection's mask area, as COCOeval).

    Values (suffixes of the metric's key; torchmetrics' ``MeanAveragePrecision`` names):

    * ``""``: ``map``, mean over IoU thresholds, categories and recall points, area ``all``, the largest
      max-detections value (pycocotools ``stats[0]``);
    * ``.map_50`` / ``.map_75``: the same at IoU 0.5 / 0.75, present when that threshold is in
      ``iou_thresholds``;
    * ``.map_small``, ``.map_medium``, ``.map_large``; ``.mar_{m}`` for each max-detections value ``m``
      (area ``all``); ``.mar_small``, ``.mar_medium``, ``.mar_large`` (largest ``m``);
    * with ``class_metrics``: ``.map_per_class[c]`` and ``.mar_{m}_per_class[c]`` (largest ``m``) for
      every category ``c`` seen in ground truths or detections.

    A value without any category having ground truth is ``-1`` (COCO's convention); categories without
    ground truth are left out of every mean. With the defaults the twelve summary values are
    pycocotools' ``stats``; with custom ``max_detection_thresholds`` the summaries use the largest value
    where pycocotools' ``summarize`` reads ``maxDets[2]`` (and 100 for ``stats[0]``). Max detections
    count per image *and category*, as COCOeval.

    The ``task`` is not read (boxes or masks, scores and labels come from the detection columns).
    """
    del task
    statistic = CocoDetectionStatistic(
        iou_thresholds=COCO_IOU_THRESHOLDS if iou_thresholds is None else tuple(iou_thresholds),
        max_detections=COCO_MAX_DETECTIONS if max_detection_thresholds is None else tuple(max_detection_thresholds),
        box_format=box_format,
        iou_type=iou_type,
    )
    what = "mask" if iou_type == "segm" else "box"
    return DerivedMetric(
        "mean_average_precision",
        statistic,
        partial(_finalize, statistic, bool(class_metrics)),
        Direction.HIGHER,
        description=f"COCO {what} mAP@[.50:.95] (pycocotools COCOeval), with mAP@.50/.75, by area and mean recall",
    )


def evaluate_coco(
    images: Sequence[Mapping[str, Any]],
    *,
    iou_thresholds: Sequence[float] | None = None,
    max_detection_thresholds: Sequence[int] | None = None,
    box_format: str = "xyxy",
    iou_type: str = "bbox",
    class_metrics: bool = False,
) -> dict[str, float]:
    """COCO box or mask evaluation of per-image dicts (keys as the batch columns, see the module docstring).

    Returns ``{"map": ..., "map_50": ..., "mar_100": ..., ...}``: the values of
    :func:`mean_average_precision` named without the leading dot.
    """
    metric = mean_average_precision(
        None,
        iou_thresholds=iou_thresholds,
        max_detection_thresholds=max_detection_thresholds,
        box_format=box_format,
        iou_type=iou_type,
        class_metrics=class_metrics,
    )
    stat = metric.statistic
    state = stat.update(stat.zero(), detection_batch(images))
    return {("map" if k == "" else k[1:]): v for k, v in metric.compute(state).items()}
