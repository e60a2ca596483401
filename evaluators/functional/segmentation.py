"""Segmentation metrics with calibrax's names: ``(pred_mask, gt_mask, num_classes=None, average=...)``.

``iou(pred_mask, gt_mask)`` on two-class id masks is the foreground (class 1) IoU, as calibrax;
``iou(pred, gt, num_classes=3, average="macro")`` the mean over classes.

>>> import numpy as np
>>> pred_mask = np.array([1, 1, 0, 1, 0, 0, 1, 1])
>>> gt_mask = np.array([1, 0, 0, 1, 0, 1, 1, 1])
>>> round(iou(pred_mask, gt_mask), 6), round(dice_coefficient(pred_mask, gt_mask), 6), pixel_accuracy(pred_mask, gt_mask)
(0.666667, 0.8, 0.75)
"""

from evaluators.segmentation import (
    dice_coefficient,
    dice_score,
    iou,
    jaccard_index,
    mean_iou,
    mean_pixel_accuracy,
    pixel_accuracy,
    pixel_confusion_matrix,
)

__all__ = [
    "dice_coefficient",
    "dice_score",
    "iou",
    "jaccard_index",
    "mean_iou",
    "mean_pixel_accuracy",
    "pixel_accuracy",
    "pixel_confusion_matrix",
]
