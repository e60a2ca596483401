"""COCO-style object detection evaluation (``bbox`` and ``segm`` IoU) as a mergeable statistic.

:class:`CocoDetectionStatistic` does per image what pycocotools' ``COCOeval.evaluateImg`` does for
``iouType="bbox"`` or ``iouType="segm"`` with ``useCats=1``, keeps the outcome of every detection as a
compact record, and reproduces ``COCOeval.accumulate`` and ``summarize`` from the merged records, with
pycocotools' arithmetic step by step: the precision / recall arrays and the twelve summary numbers come
out equal to pycocotools' (bit for bit on the reference tests).

Batch (one row per image; the per-image columns are object arrays of per-image values):

==================  ==========================  ====================================================
key                 one row                     meaning
==================  ==========================  ====================================================
``pred_boxes``      float ``[k, 4]``            predicted boxes in ``box_format`` (``bbox``)
``pred_masks``      ``k`` masks                 predicted instance masks (``segm``, see below)
``pred_scores``     float ``[k]``               confidences (NaN is rejected)
``pred_labels``     int ``[k]``                 predicted category ids
``gt_boxes``        float ``[m, 4]``            ground-truth boxes in ``box_format`` (``bbox``)
``gt_masks``        ``m`` masks                 ground-truth instance masks (``segm``)
``gt_labels``       int ``[m]``                 ground-truth category ids
``gt_iscrowd``      0/1 ``[m]`` (optional)      crowd regions (COCO ``iscrowd``); default 0
``gt_area``         float ``[m]`` (optional)    object area (COCO ``area``); default box ``w * h``
                                                (``bbox``) or mask area in pixels (``segm``)
``image_id``        int (optional)              image id; only breaks ties between equal scores
``weights``         float                       rows of weight 0 are left out; every other row is one
                                                image (weights do not scale anything)
==================  ==========================  ====================================================

With ``iou_type="segm"`` a row of ``pred_masks`` / ``gt_masks`` is a sequence with one mask per
instance, each of them one of: a COCO RLE dict ``{"size": [h, w], "counts": ...}`` whose ``counts``
is the compressed string (``str`` or ``bytes``, as pycocotools' ``mask.encode`` and COCO results files
hold) or the uncompressed list of run lengths (as COCO's crowd annotations); the bytes of a
single-channel PNG (1-, 8- or 16-bit grey or palette; nonzero pixels are the instance); a 2-D array
(nonzero is the instance). A ``[k, h, w]`` array or an :class:`InstanceMasks` also fills a row. Every
mask of an image, predicted or ground truth, must have the same size; a malformed mask or a size that
differs raises :class:`ValueError` naming the column, row and mask. Masks become runs of foreground
pixels in COCO's column-major order as soon as they are read (:func:`instance_masks`); the IoU of a
detection and a ground truth counts their common pixels from those runs, exactly as ``maskUtils.iou``
(intersection over union, over the detection's area for a crowd region), and a detection's area is
its mask area, as ``COCO.loadRes`` sets it.

Per image and category, exactly as ``evaluateImg``: detections are sorted by descending score (stable,
ties keep their input order) and cut to the largest ``max_detections`` value; ground truths are sorted
with ignored ones (crowd, or area outside the area range) last; the IoU follows ``maskUtils.iou``
(boxes as ``x, y, w, h``, no ``+1``, or masks; for a crowd ground truth the denominator is the
detection's area); every IoU threshold runs COCO's greedy matching (each detection in score order
takes the unmatched ground truth of highest IoU at or above the threshold, the later one on equal IoU,
a non-ignored one whenever there is any; crowd regions can be matched repeatedly); a detection matched
to an ignored ground truth, or unmatched with an area outside the range, is ignored.

State (a dict of numpy arrays; ``n`` kept detections, ``A`` area ranges, ``T`` IoU thresholds,
``B = ceil(T / 8)``, ``C`` categories with ground truth):

* ``score`` float64 ``[n]``, ``image_id`` int64 ``[n]``, ``label`` int32 ``[n]``;
* ``rank`` uint16 ``[n]`` (uint32 when ``max(max_detections) > 65535``): the detection's position in
  its image and category by descending score, so each ``max_detections`` value is a filter;
* ``tp``, ``fp`` uint8 ``[n, A, B]``: bit ``t`` (little-endian within each byte) tells whether the
  detection is a true positive / false positive at threshold ``t`` and area range ``a``; a detection
  that is neither is ignored there;
* ``gt_label`` int32 ``[C]`` (sorted) and ``gt_count`` int64 ``[C, A]``: the non-ignored ground truths
  per category and area range.

Only the top ``max(max_detections)`` detections per image and category are kept, each in
``8 + 8 + 4 + 2 + 2 * A * B`` bytes: **38 bytes** with the COCO defaults (``A = 4``, ``T = 10``), plus
``4 + 8 * A`` bytes per category. The state grows linearly with the number of kept detections, as
COCOeval's own. ``update`` and ``merge`` return the records sorted by ``(label, -score, image_id, rank,
flags)``, so the state depends only on the multiset of images: any sharding, order or tree of merges
gives the same arrays. Host-side (``jittable = False``); no bootstrap intervals (``bootstrap = False``).

Ties: pycocotools orders equal scores of one category by image id (then by rank in the image). With
an ``image_id`` column the statistic does the same and equals pycocotools even with tied scores;
without one, equal scores of different images are ordered by a digest of each image (``boxes.image_digest``),
then by rank.

Example::

    >>> import numpy as np
    >>> from evaluators.detection import evaluate_coco
    >>> image = {"pred_boxes": [[10, 10, 50, 50], [60, 60, 90, 90]], "pred_scores": [0.9, 0.4],
    ...          "pred_labels": [1, 1], "gt_boxes": [[12, 10, 50, 52]], "gt_labels": [1]}
    >>> values = evaluate_coco([image])
    >>> round(values["map_50"], 6), round(values["mar_1"], 6), values["map_small"]
    (1.0, 0.9, -1.0)
    >>> mask = np.zeros((20, 30), bool)
    >>> mask[2:12, 5:25] = True
    >>> image = {"pred_masks": [mask], "pred_scores": [0.8], "pred_labels": [3], "gt_masks": [mask],
    ...          "gt_labels": [3]}
    >>> round(evaluate_coco([image], iou_type="segm")["map"], 6)
    1.0
"""

from evaluators.detection.boxes import (
    BOX_FORMATS,
    DETECTION_COLUMNS,
    BoxesNotMasksError,
    ImageRowsError,
    detection_batch,
    to_xywh,
)
from evaluators.detection.masks import InstanceMasks, first_mask_size_mismatch, instance_masks, mask_iou
from evaluators.detection.matching import box_iou, greedy_match
from evaluators.detection.state import (
    COCO_AREA_RANGES,
    COCO_IOU_THRESHOLDS,
    COCO_MAX_DETECTIONS,
    IOU_TYPES,
    RECALL_THRESHOLDS,
    CocoAccumulation,
    CocoDetectionStatistic,
)
from evaluators.detection.summary import evaluate_coco, mean_average_precision

__all__ = [
    "BOX_FORMATS",
    "COCO_AREA_RANGES",
    "COCO_IOU_THRESHOLDS",
    "COCO_MAX_DETECTIONS",
    "DETECTION_COLUMNS",
    "IOU_TYPES",
    "RECALL_THRESHOLDS",
    "BoxesNotMasksError",
    "CocoAccumulation",
    "CocoDetectionStatistic",
    "ImageRowsError",
    "InstanceMasks",
    "box_iou",
    "detection_batch",
    "evaluate_coco",
    "first_mask_size_mismatch",
    "greedy_match",
    "instance_masks",
    "mask_iou",
    "mean_average_precision",
    "to_xywh",
]
