"""The mergeable COCO statistic: per-image evaluation into detection records (the state), their merge in a
canonical order, and pycocotools' ``accumulate`` and ``summarize`` over the merged records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from evaluators.detection.boxes import BOX_FORMATS, ImageRowsError, _gather, _Images
from evaluators.detection.masks import _Masks, mask_iou
from evaluators.detection.matching import _RECORD_KEYS, _blocks, _canonical, _groups, _ragged, box_iou, greedy_match
from evaluators.statistic import Batch, State, Statistic

IOU_TYPES = ("bbox", "segm")
COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
"""``0.50, 0.55, ..., 0.95`` exactly as pycocotools' ``Params.iouThrs``."""
COCO_MAX_DETECTIONS: tuple[int, ...] = (1, 10, 100)
COCO_AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 0.0, 1e10),
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, 1e10),
)
"""``(label, lo, hi)``: a ground truth is outside the range when ``area < lo or area > hi``."""
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
"""The 101 recall points of COCO's interpolated precision (``Params.recThrs``)."""


@dataclass(frozen=True)
class CocoAccumulation:
    """``COCOeval.eval`` of a merged state.

    Attributes:
        labels: int64 ``[K]``: categories seen in ground truths or kept detections (pycocotools' ``catIds``).
        precision: float64 ``[T, R, K, A, M]``: interpolated precision at the ``R = 101`` recall points,
            ``-1`` where a category has no non-ignored ground truth.
        recall: float64 ``[T, K, A, M]``: final recall, ``-1`` likewise.
    """

    labels: np.ndarray
    precision: np.ndarray
    recall: np.ndarray


@dataclass(frozen=True)
class CocoDetectionStatistic(Statistic):
    """Per-detection COCO match records and per-category ground-truth counts (see the module docstring).

    Attributes:
        iou_thresholds: IoU thresholds ``T`` in ``[0, 1]``, in the order of the precision array's first axis.
        max_detections: detections kept per image and category (sorted ascending; the largest bounds
            the state, each one gives a recall ``mar_{m}``).
        area_ranges: ``(label, lo, hi)`` area ranges; one must be labelled ``"all"``.
        box_format: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"`` for both predicted and ground-truth boxes.
        iou_type: ``"bbox"`` (IoU of the ``*_boxes`` columns) or ``"segm"`` (IoU of the ``*_masks``
            columns), as pycocotools' ``iouType``; the state and the summaries are the same.
    """

    iou_thresholds: tuple[float, ...] = COCO_IOU_THRESHOLDS
    max_detections: tuple[int, ...] = COCO_MAX_DETECTIONS
    area_ranges: tuple[tuple[str, float, float], ...] = COCO_AREA_RANGES
    box_format: str = "xyxy"
    iou_type: str = "bbox"
    jittable: ClassVar[bool] = False
    bootstrap: ClassVar[bool] = False

    def __post_init__(self) -> None:
        thresholds = tuple(float(t) for t in self.iou_thresholds)
        if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"iou_thresholds must be a non-empty list of values in [0, 1], got {thresholds!r}")
        max_dets = tuple(sorted({int(m) for m in self.max_detections}))
        if not max_dets or max_dets[0] < 1:
            raise ValueError(f"max_detection_thresholds must be positive integers, got {self.max_detections!r}")
        areas = tuple((str(label), float(lo), float(hi)) for label, lo, hi in self.area_ranges)
        labels = [a[0] for a in areas]
        if "all" not in labels or len(set(labels)) != len(labels):
            raise ValueError(f"area_ranges need distinct labels including 'all', got {labels!r}")
        if self.box_format not in BOX_FORMATS:
            raise ValueError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {self.box_format!r}")
        if self.iou_type not in IOU_TYPES:
            raise ValueError(f"iou_type must be one of {', '.join(IOU_TYPES)}, got {self.iou_type!r}")
        object.__setattr__(self, "iou_thresholds", thresholds)
        object.__setattr__(self, "max_detections", max_dets)
        object.__setattr__(self, "area_ranges", areas)

    # --- state -----------------------------------------------------------------------------------

    @property
    def _rank_dtype(self) -> type[np.unsignedinteger]:
        return np.uint16 if self.max_detections[-1] <= np.iinfo(np.uint16).max + 1 else np.uint32

    @property
    def _flag_shape(self) -> tuple[int, int]:
        return len(self.area_ranges), (len(self.iou_thresholds) + 7) // 8

    def zero(self) -> State:
        a, b = self._flag_shape
        return {
            "score": np.zeros(0, np.float64),
            "image_id": np.zeros(0, np.int64),
            "label": np.zeros(0, np.int32),
            "rank": np.zeros(0, self._rank_dtype),
            "tp": np.zeros((0, a, b), np.uint8),
            "fp": np.zeros((0, a, b), np.uint8),
            "gt_label": np.zeros(0, np.int32),
            "gt_count": np.zeros((0, a), np.int64),
        }

    def optional_leaves(self) -> tuple[str, ...]:
        """``images``: the ascending image ids of the rows a state holds, where the data has an ``image_id`` column
        (two states that share one are refused: :class:`~evaluators.detection.boxes.ImageRowsError`)."""
        return ("images",)

    def update(self, state: State, batch: Batch) -> State:
        return self.merge(state, self._evaluate(_gather(batch, self.box_format, self.iou_type)))

    def merge(self, a: State, b: State) -> State:
        records = {k: np.concatenate([np.asarray(a[k]), np.asarray(b[k])]) for k in _RECORD_KEYS}
        labels = np.union1d(np.asarray(a["gt_label"]), np.asarray(b["gt_label"])).astype(np.int32)
        counts = np.zeros((len(labels), len(self.area_ranges)), np.int64)
        for part in (a, b):
            counts[np.searchsorted(labels, part["gt_label"])] += np.asarray(part["gt_count"], np.int64)
        return {**_canonical(records), "gt_label": labels, "gt_count": counts, **_merged_images(a, b)}

    # --- per image evaluation --------------------------------------------------------------------

    def _area_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([a[1] for a in self.area_ranges]), np.array([a[2] for a in self.area_ranges])

    def _evaluate(self, images: _Images) -> State:
        """Match records of one batch of images (unsorted) and its ground-truth counts."""
        lo, hi = self._area_bounds()
        max_det = self.max_detections[-1]

        # ground truths, grouped by (row, label) in input order
        g_inst = np.lexsort((images.gt_label, images.gt_row))  # index into the batch's ground truths
        g_row, g_label = images.gt_row[g_inst], images.gt_label[g_inst]
        g_crowd, g_area = images.gt_crowd[g_inst], images.gt_area[g_inst]
        g_ignore = g_crowd[:, None] | (g_area[:, None] < lo) | (g_area[:, None] > hi)  # [m, A]
        gt_labels, g_inverse = np.unique(g_label, return_inverse=True)
        gt_count = np.zeros((len(gt_labels), len(lo)), np.int64)
        np.add.at(gt_count, g_inverse, (~g_ignore).astype(np.int64))

        # detections, grouped by (row, label), by descending score (stable), cut to max_det per group
        d_inst = np.lexsort((-images.pred_score, images.pred_label, images.pred_row))
        d_row, d_label, d_score = images.pred_row[d_inst], images.pred_label[d_inst], images.pred_score[d_inst]
        d_start, d_group = _groups(d_row, d_label)
        rank = np.arange(len(d_row)) - d_start[d_group]
        keep = rank < max_det
        d_row, d_label, d_score, d_inst, rank = d_row[keep], d_label[keep], d_score[keep], d_inst[keep], rank[keep]
        d_start, _ = _groups(d_row, d_label)
        d_size = np.diff(np.append(d_start, len(d_row)))

        # each detection group's ground-truth group (same row and label), if any
        g_start, _ = _groups(g_row, g_label)
        g_size = np.diff(np.append(g_start, len(g_row)))
        all_labels = np.union1d(d_label, g_label)
        width = max(len(all_labels), 1)
        g_key = g_row[g_start] * width + np.searchsorted(all_labels, g_label[g_start])
        d_key = d_row[d_start] * width + np.searchsorted(all_labels, d_label[d_start])
        partner = np.searchsorted(g_key, d_key)
        found = partner < len(g_key)
        found[found] = g_key[partner[found]] == d_key[found]

        thresholds = np.minimum(np.asarray(self.iou_thresholds), 1 - 1e-10)
        n_t, n_a = len(thresholds), len(lo)
        matched = np.zeros((len(d_row), n_a, n_t), bool)
        to_ignored = np.zeros((len(d_row), n_a, n_t), bool)
        todo = np.flatnonzero(found)
        todo = todo[np.argsort(-d_size[todo], kind="stable")]  # largest groups first: active groups are a prefix
        for block in _blocks(d_size[todo], g_size[partner[todo]], n_a * n_t):
            dg, gg = todo[block], partner[todo[block]]
            dq, dr, d_idx = _ragged(d_start[dg], d_size[dg])
            gq, gr, g_idx = _ragged(g_start[gg], g_size[gg])
            p, dmax, gmax = len(dg), int(d_size[dg].max()), int(g_size[gg].max())
            crowd = np.zeros((p, gmax), bool)
            crowd[gq, gr] = g_crowd[g_idx]
            regular = np.zeros((p, gmax, n_a), bool)
            regular[gq, gr] = ~g_ignore[g_idx]
            if isinstance(images.pred_shape, _Masks):
                # every (detection, ground truth) pair of each group: position ``dp * G + gp`` in a group of D * G
                q, within, _ = _ragged(np.zeros(p, np.int64), d_size[dg] * g_size[gg])
                dp, gp = np.divmod(within, g_size[gg][q])
                di, gi = d_start[dg][q] + dp, g_start[gg][q] + gp  # positions in the kept / sorted arrays
                iou = np.full((p, dmax, gmax), -1.0)
                iou[q, dp, gp] = mask_iou(images.pred_shape, images.gt_shape, d_inst[di], g_inst[gi], g_crowd[gi])
            else:
                det = np.zeros((p, dmax, 4))
                det[dq, dr] = images.pred_shape[d_inst[d_idx]]
                gt = np.zeros((p, gmax, 4))
                gt[gq, gr] = images.gt_shape[g_inst[g_idx]]
                valid = np.zeros((p, gmax), bool)
                valid[gq, gr] = True
                iou = np.where(valid[:, None, :], box_iou(det, gt, crowd), -1.0)
            m, ig = greedy_match(iou, regular.transpose(0, 2, 1), crowd, d_size[dg], thresholds)
            matched[d_idx], to_ignored[d_idx] = m[dq, dr], ig[dq, dr]

        d_area = images.pred_area[d_inst]
        outside = (d_area[:, None] < lo) | (d_area[:, None] > hi)  # [n, A]
        tp = matched & ~to_ignored
        fp = ~matched & ~outside[:, :, None]
        return {
            "score": d_score,
            "image_id": images.image_id[d_row],
            "label": d_label.astype(np.int32),
            "rank": rank.astype(self._rank_dtype),
            "tp": np.packbits(tp, axis=-1, bitorder="little"),
            "fp": np.packbits(fp, axis=-1, bitorder="little"),
            "gt_label": gt_labels.astype(np.int32),
            "gt_count": gt_count,
            **({} if images.seen is None else {"images": images.seen}),
        }

    # --- accumulate and summarize ----------------------------------------------------------------

    def accumulate(self, state: State) -> CocoAccumulation:
        """``COCOeval.accumulate`` from a merged state: precision ``[T, R, K, A, M]`` and recall ``[T, K, A, M]``."""
        records = _canonical({k: np.asarray(state[k]) for k in _RECORD_KEYS})
        gt_label, gt_count = np.asarray(state["gt_label"]), np.asarray(state["gt_count"], np.int64)
        labels = np.union1d(records["label"], gt_label).astype(np.int64)
        n_t, n_r, n_k = len(self.iou_thresholds), len(RECALL_THRESHOLDS), len(labels)
        n_a, n_m = len(self.area_ranges), len(self.max_detections)
        precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
        recall = -np.ones((n_t, n_k, n_a, n_m))
        positives = np.zeros((n_k, n_a), np.int64)
        positives[np.searchsorted(labels, gt_label)] = gt_count
        bounds = (
            np.searchsorted(records["label"], labels, side="left"),
            np.searchsorted(records["label"], labels, side="right"),
        )
        for k in range(n_k):
            npig = positives[k]
            areas = np.flatnonzero(npig > 0)
            if areas.size == 0:
                continue
            part = slice(bounds[0][k], bounds[1][k])
            tp_all = np.unpackbits(records["tp"][part][:, areas], axis=-1, count=n_t, bitorder="little")
            fp_all = np.unpackbits(records["fp"][part][:, areas], axis=-1, count=n_t, bitorder="little")
            rank = records["rank"][part]
            for m, max_det in enumerate(self.max_detections):
                keep = rank < max_det
                tps = np.cumsum(tp_all[keep].transpose(1, 2, 0), axis=-1).astype(float)  # [A', T, n]
                fps = np.cumsum(fp_all[keep].transpose(1, 2, 0), axis=-1).astype(float)
                nd = tps.shape[-1]
                rc = tps / npig[areas][:, None, None]
                pr = tps / (fps + tps + np.spacing(1))
                envelope = np.maximum.accumulate(pr[..., ::-1], axis=-1)[..., ::-1]
                for j, a in enumerate(areas):
                    recall[:, k, a, m] = rc[j, :, -1] if nd else 0.0
                    for t in range(n_t):
                        inds = np.searchsorted(rc[j, t], RECALL_THRESHOLDS, side="left")
                        q = np.zeros(n_r)
                        ok = inds < nd
                        q[ok] = envelope[j, t, inds[ok]]
                        precision[t, :, k, a, m] = q
        return CocoAccumulation(labels, precision, recall)

    def summarize(self, state: State, *, class_metrics: bool = False) -> dict[str, float]:
        """The summary values with torchmetrics' names (see :func:`mean_average_precision`)."""
        acc = self.accumulate(state)
        p, r = acc.precision, acc.recall
        labels = [a[0] for a in self.area_ranges]
        whole, last = labels.index("all"), len(self.max_detections) - 1
        thresholds = np.asarray(self.iou_thresholds)
        out = {"map": _mean_defined(p[:, :, :, whole, last])}
        for value, name in ((0.5, "map_50"), (0.75, "map_75")):
            t = np.flatnonzero(np.abs(thresholds - value) < 1e-12)
            if t.size:
                out[name] = _mean_defined(p[t][:, :, :, whole, last])
        for a, label in enumerate(labels):
            if a != whole:
                out[f"map_{label}"] = _mean_defined(p[:, :, :, a, last])
        for m, max_det in enumerate(self.max_detections):
            out[f"mar_{max_det}"] = _mean_defined(r[:, :, whole, m])
        for a, label in enumerate(labels):
            if a != whole:
                out[f"mar_{label}"] = _mean_defined(r[:, :, a, last])
        if class_metrics:
            top = self.max_detections[-1]
            for k, c in enumerate(acc.labels.tolist()):
                out[f"map_per_class[{c}]"] = _mean_defined(p[:, :, k, whole, last])
                out[f"mar_{top}_per_class[{c}]"] = _mean_defined(r[:, k, whole, last])
        return out


def _merged_images(a: State, b: State) -> State:
    """The ``images`` leaf of the merge of ``a`` and ``b`` (none where neither has one); an id both hold is an
    :class:`~evaluators.detection.boxes.ImageRowsError`."""
    if "images" not in a and "images" not in b:
        return {}
    first, second = (np.asarray(s.get("images", np.zeros(0, np.int64)), np.int64) for s in (a, b))
    shared = np.intersect1d(first, second, assume_unique=True)
    if len(shared):
        raise ImageRowsError(int(shared[0]), "in two batches, work units, files or slices")
    return {"images": np.union1d(first, second)}


def _mean_defined(values: np.ndarray) -> float:
    """Mean of the entries ``> -1`` (pycocotools' ``_summarize``), ``-1.0`` when there are none."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0
