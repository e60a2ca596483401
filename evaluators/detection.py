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
without one, equal scores of different images are ordered by rank, then by their match flags.

Example::

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

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np

from evaluators.segmentation import MASK_MODES
from evaluators.statistic import Batch, DerivedMetric, Direction, State, Statistic
from evaluators.task import Task

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
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
_MATCH_BUDGET = 1 << 22
"""Elements of the padded arrays of one vectorised matching block (a single group may exceed it)."""
_RUN_BUDGET = 1 << 22
"""Mask runs looked up at once when counting the common pixels of (detection, ground truth) pairs."""


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

    def update(self, state: State, batch: Batch) -> State:
        return self.merge(state, self._evaluate(_gather(batch, self.box_format, self.iou_type)))

    def merge(self, a: State, b: State) -> State:
        records = {k: np.concatenate([np.asarray(a[k]), np.asarray(b[k])]) for k in _RECORD_KEYS}
        labels = np.union1d(np.asarray(a["gt_label"]), np.asarray(b["gt_label"])).astype(np.int32)
        counts = np.zeros((len(labels), len(self.area_ranges)), np.int64)
        for part in (a, b):
            counts[np.searchsorted(labels, part["gt_label"])] += np.asarray(part["gt_count"], np.int64)
        return {**_canonical(records), "gt_label": labels, "gt_count": counts}

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


_RECORD_KEYS = ("score", "image_id", "label", "rank", "tp", "fp")


def _mean_defined(values: np.ndarray) -> float:
    """Mean of the entries ``> -1`` (pycocotools' ``_summarize``), ``-1.0`` when there are none."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def _canonical(records: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Records sorted by ``(label, -score, image_id, rank, flags)``: a function of their multiset."""
    n = len(records["score"])
    if n <= 1:
        return records
    flags = np.concatenate([records["tp"].reshape(n, -1), records["fp"].reshape(n, -1)], axis=1)
    pad = -flags.shape[1] % 8
    words = np.ascontiguousarray(np.pad(flags, ((0, 0), (0, pad)))).view(np.uint64)
    order = np.lexsort((*words.T, records["rank"], records["image_id"], -records["score"], records["label"]))
    return {k: v[order] for k, v in records.items()}


def _groups(rows: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index of each run of equal ``(row, label)`` and each element's run number."""
    new = np.ones(len(rows), bool)
    new[1:] = (rows[1:] != rows[:-1]) | (labels[1:] != labels[:-1])
    return np.flatnonzero(new), np.cumsum(new) - 1


def _ragged(starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For groups ``q`` of ``sizes[q]`` consecutive elements from ``starts[q]``: ``(q, position, index)``."""
    q = np.repeat(np.arange(len(sizes)), sizes)
    position = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return q, position, starts[q] + position


def _blocks(det_sizes: np.ndarray, gt_sizes: np.ndarray, flags: int) -> Iterable[slice]:
    """Consecutive slices of groups (detection counts non-increasing) whose padded matching arrays
    (``[P, D, G]`` IoUs, ``[P, A, T, G]`` taken flags, ``[P, D, A, T]`` outcomes) stay within budget."""
    i, n = 0, len(det_sizes)
    while i < n:
        d = int(det_sizes[i])
        widest = np.maximum.accumulate(gt_sizes[i : i + _MATCH_BUDGET])
        cost = np.arange(1, len(widest) + 1) * (d * widest + flags * (widest + d))
        size = max(1, int(np.searchsorted(cost, _MATCH_BUDGET, side="right")))
        yield slice(i, i + size)
        i += size


def box_iou(det: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """``maskUtils.iou`` for boxes, batched: ``det`` ``[P, D, 4]`` and ``gt`` ``[P, G, 4]`` as ``x, y, w, h``,
    ``crowd`` bool ``[P, G]`` -> float64 ``[P, D, G]``.

    The arithmetic is pycocotools' ``bbIou`` term by term (``w = min(dx + dw, gx + gw) - max(dx, gx)``, zero
    unless both overlaps are positive, union ``da + ga - i``, or ``da`` for a crowd region), so thresholds
    compare equal values.
    """
    dx, dy, dw, dh = (det[:, :, None, i] for i in range(4))
    gx, gy, gw, gh = (gt[:, None, :, i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    da, ga = dw * dh, gw * gh
    union = np.where(crowd[:, None, :], da, da + ga - inter)
    overlap = (w > 0) & (h > 0)
    return np.divide(inter, union, out=np.zeros(overlap.shape), where=overlap)


def greedy_match(
    iou: np.ndarray, regular: np.ndarray, crowd: np.ndarray, n_dets: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """COCO's greedy matching for ``P`` independent (image, category) groups at once.

    Args:
        iou: float64 ``[P, D, G]``, detections in score order; ``-1`` marks padding ground truths.
        regular: bool ``[P, A, G]``: the ground truth is not ignored in area range ``a``.
        crowd: bool ``[P, G]``: crowd regions, which stay available after a match.
        n_dets: int ``[P]``, non-increasing: the number of real detections of each group.
        thresholds: float64 ``[T]``, already capped at ``1 - 1e-10``.

    Returns:
        ``(matched, to_ignored)``, bool ``[P, D, A, T]``: the detection was matched, and matched to an
        ignored ground truth. Detections run one rank at a time, every group, area range and threshold
        in one vectorised step: a detection takes, among the available ground truths with IoU at least
        the threshold, the non-ignored one of highest IoU (the last one on ties, as pycocotools' ``>=``
        scan), else the ignored one of highest IoU.
    """
    p, d, g = iou.shape
    n_a, n_t = regular.shape[1], len(thresholds)
    taken = np.zeros((p, n_a, n_t, g), bool)
    matched = np.zeros((p, d, n_a, n_t), bool)
    to_ignored = np.zeros((p, d, n_a, n_t), bool)
    lowest, thr = thresholds.min(), thresholds[None, None, :, None]
    for r in range(d):
        active = int(np.count_nonzero(n_dets > r))
        live = np.flatnonzero(iou[:active, r].max(axis=1) >= lowest)
        if live.size == 0:
            continue
        x = iou[live, r][:, None, None, :]  # [l, 1, 1, G]
        candidate = (x >= thr) & (~taken[live] | crowd[live][:, None, None, :])  # [l, A, T, G]
        counted = regular[live][:, :, None, :]
        first, has_first = _last_best(candidate & counted, x)
        second, has_second = _last_best(candidate & ~counted, x)
        choice = np.where(has_first, first, second)
        hit = has_first | has_second
        li, ai, ti = np.nonzero(hit)
        taken[live[li], ai, ti, choice[li, ai, ti]] = True
        matched[live, r] = hit
        to_ignored[live, r] = ~has_first & has_second
    return matched, to_ignored


def _last_best(mask: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the last maximum of ``x`` over the last axis where ``mask``, and whether there is one."""
    values = np.where(mask, x, -np.inf)
    best = mask & (values == values.max(axis=-1, keepdims=True))
    return mask.shape[-1] - 1 - np.argmax(best[..., ::-1], axis=-1), best.any(axis=-1)


# --- masks -----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class InstanceMasks:
    """One image's instance masks as runs of foreground pixels in COCO RLE's column-major pixel order
    (pixel ``(y, x)`` of an ``h x w`` image is number ``x * h + y``).

    Attributes:
        size: ``(h, w)`` of the image; ``None`` when there is no mask.
        starts: int64 ``[r]``: first pixel of each run, ascending within a mask.
        lengths: int64 ``[r]``: pixels of each run (positive).
        offsets: int64 ``[k + 1]``: the runs of mask ``j`` are ``offsets[j]:offsets[j + 1]``.
    """

    size: tuple[int, int] | None
    starts: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    @property
    def count(self) -> int:
        """The number of masks ``k``."""
        return len(self.offsets) - 1

    @property
    def areas(self) -> np.ndarray:
        """int64 ``[k]``: the pixels of each mask (``maskUtils.area``)."""
        before = np.concatenate([[0], np.cumsum(self.lengths)])
        return before[self.offsets[1:]] - before[self.offsets[:-1]]


_NO_MASKS = InstanceMasks(None, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64))
_BYTES = (bytes, bytearray, memoryview)


def instance_masks(value: Any) -> InstanceMasks:
    """One image's masks (a row of ``pred_masks`` / ``gt_masks``: a sequence of COCO RLE dicts, PNG bytes
    or 2-D arrays, one per instance, or a ``[k, h, w]`` array; see the module docstring) as runs.

    Raises:
        ValueError: a malformed mask (named by its position, from 0), or masks of different sizes.
    """
    if isinstance(value, InstanceMasks):
        return value
    if value is None:
        return _NO_MASKS
    if isinstance(value, np.ndarray) and value.dtype != object:
        if value.ndim in (1, 3) and len(value) == 0:
            return _NO_MASKS
        if value.ndim != 3 or value.size == 0:
            raise ValueError(
                f"expected a list of masks or a non-empty [k, h, w] array, got an array of shape {value.shape}"
            )
        return _assemble(value.shape[1:], len(value), [], [_dense_runs(value, np.arange(len(value)))])
    if isinstance(value, (str, dict, *_BYTES)):
        raise ValueError(f"expected a list of masks (one per instance), got a single {type(value).__name__}")
    items = list(value)
    sizes: list[tuple[int, int]] = []
    strings: list[bytes] = []
    string_masks: list[int] = []
    lists: list[np.ndarray] = []
    list_masks: list[int] = []
    dense: dict[int, np.ndarray] = {}
    for j, item in enumerate(items):
        if isinstance(item, Mapping):
            sizes.append(_rle_size(item, j))
            counts = item["counts"]
            if isinstance(counts, str):
                if not counts.isascii():
                    raise ValueError(f"mask {j}: the RLE counts string holds characters outside ASCII")
                counts = counts.encode("ascii")
            if isinstance(counts, _BYTES):
                strings.append(bytes(counts))
                string_masks.append(j)
            else:
                lists.append(_run_lengths(counts, j))
                list_masks.append(j)
        elif isinstance(item, _BYTES):
            dense[j] = _image_mask(item, j)
            sizes.append(dense[j].shape)
        else:
            array = np.asarray(item)
            if array.ndim != 2 or array.dtype == object or array.size == 0:
                raise ValueError(
                    f"mask {j} is neither a COCO RLE dict, PNG bytes nor a non-empty 2-D array "
                    f"(got {type(item).__name__} of shape {array.shape})"
                )
            dense[j] = array
            sizes.append(array.shape)
    if not items:
        return _NO_MASKS
    for j, size in enumerate(sizes):
        if size != sizes[0]:
            raise ValueError(
                f"mask {j} is {size[0]}x{size[1]} (height x width) but mask 0 is {sizes[0][0]}x{sizes[0][1]}; "
                "all masks of an image have the image's size"
            )
    counts_parts = [(*_decode_rle_strings(strings, string_masks), string_masks)] if strings else []
    if lists:
        counts_parts.append((np.concatenate(lists), np.repeat(list_masks, [len(c) for c in lists]), list_masks))
    runs = []
    if dense:
        runs.append(_dense_runs(np.stack(list(dense.values())), np.fromiter(dense, np.int64, len(dense))))
    return _assemble(sizes[0], len(items), counts_parts, runs)


def _rle_size(rle: Mapping[str, Any], j: int) -> tuple[int, int]:
    if "size" not in rle or "counts" not in rle:
        raise ValueError(f"mask {j} is a dict with keys {sorted(map(str, rle))}; a COCO RLE has 'size' and 'counts'")
    try:
        size = np.asarray(rle["size"], dtype=None).reshape(-1)
        ok = size.shape == (2,) and np.issubdtype(size.dtype, np.integer) and bool((size > 0).all())
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"mask {j}: RLE 'size' must be [height, width], two positive integers, got {rle['size']!r}")
    return int(size[0]), int(size[1])


def _run_lengths(counts: Any, j: int) -> np.ndarray:
    try:
        array = np.asarray(counts)
    except (TypeError, ValueError):
        array = np.asarray(None)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise ValueError(
            f"mask {j}: RLE 'counts' must be a compressed string or a list of run lengths (integers), "
            f"got {type(counts).__name__}"
        )
    return array.astype(np.int64)


def _image_mask(payload: Any, j: int) -> np.ndarray:
    """PNG (or any single-channel image Pillow reads) -> ``[h, w]`` bool, nonzero pixels set."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(payload))) as image:
            mode = image.mode
            values = np.asarray(image) if mode in MASK_MODES else None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"mask {j}: its bytes are not a readable PNG image ({exc})") from None
    if values is None:
        raise ValueError(
            f"mask {j}: a PNG mask must have one channel (mode 1, L, P or I;16; nonzero pixels are the "
            f"instance), got mode {mode!r}"
        )
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"mask {j}: the image has shape {values.shape}; expected height x width pixels")
    return values != 0


def _decode_rle_strings(strings: list[bytes], masks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """COCO's compressed RLE strings (pycocotools' ``rleFrString``, all at once) -> run lengths int64
    ``[c]`` and the mask of each, ``masks[i]`` for the counts of ``strings[i]``."""
    lengths = np.array([len(s) for s in strings], np.int64)
    chars = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48
    if not len(chars):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    string_of = np.repeat(np.arange(len(strings)), lengths)
    bad = (chars < 0) | (chars > 63)
    if bad.any():
        at = int(np.argmax(bad))
        raise ValueError(
            f"mask {masks[string_of[at]]}: the RLE counts string holds {chr(chars[at] + 48)!r}, which is not a "
            "character of COCO's compressed RLE ('0' to 'o')"
        )
    more = (chars & 0x20) != 0
    last = np.cumsum(lengths)[lengths > 0] - 1
    if more[last].any():
        raise ValueError(
            f"mask {masks[string_of[last[np.argmax(more[last])]]]}: the RLE counts string ends inside a number"
        )
    end = ~more
    first = np.flatnonzero(np.concatenate([[True], end[:-1]]))  # first character of each number
    number = np.cumsum(end) - end
    digit = np.arange(len(chars)) - first[number]
    if len(chars) and digit.max() > 6:
        at = int(np.argmax(digit > 6))
        raise ValueError(f"mask {masks[string_of[at]]}: the RLE counts string holds a number beyond 32 bits")
    values = np.add.reduceat((chars & 0x1F) << (5 * digit), first)
    ends = np.flatnonzero(end)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (digit[ends][negative] + 1))
    # counts[i] = values[i] + counts[i - 2] for i >= 3: a running sum per string over odd and even positions
    owner = string_of[ends]
    position = np.arange(len(values)) - np.searchsorted(owner, np.arange(len(strings)))[owner]
    chain = np.where(position == 0, 0, 1 + position % 2)
    order = np.argsort(owner * 3 + chain, kind="stable")
    ordered = values[order]
    total = np.cumsum(ordered)
    head = np.ones(len(order), bool)
    head[1:] = (owner[order][1:] != owner[order][:-1]) | (chain[order][1:] != chain[order][:-1])
    heads = np.flatnonzero(head)
    counts = np.empty_like(values)
    counts[order] = total - np.repeat(total[heads] - ordered[heads], np.diff(np.append(heads, len(order))))
    return counts, np.asarray(masks, np.int64)[owner]


def _dense_runs(masks: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[k, h, w]`` masks (nonzero set) -> runs ``(starts, lengths, mask)`` in column-major pixel order,
    ``index[i]`` naming mask ``i``."""
    k, h, w = masks.shape
    flat = np.zeros((k, h * w + 2), np.int8)
    flat[:, 1:-1] = masks.transpose(0, 2, 1).reshape(k, h * w) != 0
    steps = np.diff(flat, axis=1)
    mask, starts = np.nonzero(steps == 1)
    _, stops = np.nonzero(steps == -1)
    return starts.astype(np.int64), (stops - starts).astype(np.int64), index[mask]


def _assemble(
    size: tuple[int, int],
    k: int,
    counts_parts: list[tuple[np.ndarray, np.ndarray, list[int]]],
    runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> InstanceMasks:
    """One image's :class:`InstanceMasks` of masks ``0 .. k-1`` from RLE run lengths (``(counts, mask of
    each count, masks)``, ``[z0, o0, z1, o1, ...]`` per mask, checked to cover ``h * w`` pixels) and from
    ready runs ``(starts, lengths, mask)``."""
    h, w = int(size[0]), int(size[1])
    for counts, mask, expected in counts_parts:
        if (counts < 0).any():
            raise ValueError(f"mask {int(mask[np.argmax(counts < 0)])}: RLE run lengths must not be negative")
        totals = np.bincount(mask, weights=counts, minlength=k)
        for j in expected:
            if totals[j] != h * w:
                raise ValueError(
                    f"mask {j}: its RLE run lengths add up to {int(totals[j])} pixels, not height x width = "
                    f"{h}x{w} = {h * w}"
                )
        cut = np.flatnonzero(np.concatenate([[True], mask[1:] != mask[:-1]])) if len(mask) else np.zeros(0, int)
        first_of = np.repeat(cut, np.diff(np.append(cut, len(mask))))
        upto = np.cumsum(counts)
        upto -= (upto - counts)[first_of]  # pixels up to the end of each run, within its mask
        ones = ((np.arange(len(mask)) - first_of) % 2 == 1) & (counts > 0)
        runs.append((upto[ones] - counts[ones], counts[ones], mask[ones]))
    if runs:
        starts, lengths, mask = (np.concatenate(parts).astype(np.int64) for parts in zip(*runs, strict=True))
        order = np.lexsort((starts, mask))
        starts, lengths, mask = starts[order], lengths[order], mask[order]
    else:
        starts = lengths = mask = np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(mask, minlength=k))]).astype(np.int64)
    return InstanceMasks((h, w), starts, lengths, offsets)


@dataclass(frozen=True)
class _Masks:
    """A batch's masks, flattened: mask ``j`` has the runs ``offsets[j]:offsets[j + 1]`` (pixel numbers
    within its own image); ``first`` / ``last`` are its first and last pixel (``last < first`` when
    empty); ``pixels`` is the largest image's pixel count."""

    starts: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    area: np.ndarray
    first: np.ndarray
    last: np.ndarray
    pixels: int

    @classmethod
    def of(cls, images: Sequence[InstanceMasks]) -> _Masks:
        starts = np.concatenate([np.zeros(0, np.int64), *(m.starts for m in images)])
        lengths = np.concatenate([np.zeros(0, np.int64), *(m.lengths for m in images)])
        runs = np.concatenate([np.zeros(0, np.int64), *(np.diff(m.offsets) for m in images)])
        offsets = np.concatenate([[0], np.cumsum(runs)]).astype(np.int64)
        before = np.concatenate([[0], np.cumsum(lengths)])
        nonempty = runs > 0
        first = np.full(len(runs), np.iinfo(np.int64).max)
        first[nonempty] = starts[offsets[:-1][nonempty]]
        last = np.full(len(runs), -1)
        tail = offsets[1:][nonempty] - 1
        last[nonempty] = starts[tail] + lengths[tail] - 1
        pixels = max((m.size[0] * m.size[1] for m in images if m.size is not None), default=0)
        return cls(starts, lengths, offsets, before[offsets[1:]] - before[offsets[:-1]], first, last, pixels)


def mask_iou(det: _Masks, gt: _Masks, d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """``maskUtils.iou`` of the pairs ``(det mask d[i], gt mask g[i])``, float64: common pixels over the
    union, or over the detection's area when ``crowd[i]``; 0 without common pixels."""
    common = _common_pixels(det, gt, d, g)
    area = det.area[d]
    union = np.where(crowd, area, area + gt.area[g] - common)
    return np.divide(common, union, out=np.zeros(len(d)), where=common > 0)


def _common_pixels(det: _Masks, gt: _Masks, d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """int64: pixels set in both masks of each pair, from the runs.

    Every ground truth gets a lane of its own on one pixel axis (mask ``j`` shifted by ``j * lane``), so
    ``covered(x)``, the ground-truth pixels before position ``x`` over all lanes, is one binary search;
    a detection run ``[a, b)`` shifted into the lane of its pair's ground truth has ``covered(b) -
    covered(a)`` pixels in common with it. Pairs whose pixel spans do not overlap are 0 without a look-up.
    """
    out = np.zeros(len(d), np.int64)
    live = np.flatnonzero((det.first[d] <= gt.last[g]) & (gt.first[g] <= det.last[d]))
    if live.size == 0:
        return out
    lane = gt.pixels + 1
    g_runs = np.diff(gt.offsets)
    starts = np.concatenate([[-1], gt.starts + np.repeat(np.arange(len(g_runs)) * lane, g_runs)])
    lengths = np.concatenate([[0], gt.lengths])
    before = np.concatenate([[0], np.cumsum(lengths)[:-1]])

    def covered(x: np.ndarray) -> np.ndarray:
        j = np.searchsorted(starts, x, side="right") - 1
        return before[j] + np.clip(x - starts[j], 0, lengths[j])

    d_runs = np.diff(det.offsets)[d[live]]
    total = np.cumsum(d_runs)
    lo = 0
    while lo < len(live):
        hi = max(lo + 1, int(np.searchsorted(total, (total[lo - 1] if lo else 0) + _RUN_BUDGET, side="right")))
        pairs, runs = live[lo:hi], d_runs[lo:hi]
        head = np.cumsum(runs) - runs
        run = np.repeat(det.offsets[d[pairs]] - head, runs) + np.arange(int(runs.sum()))
        a = det.starts[run] + np.repeat(g[pairs] * lane, runs)
        out[pairs] = np.add.reduceat(covered(a + det.lengths[run]) - covered(a), head)
        lo = hi
    return out


def first_mask_size_mismatch(
    pred_masks: Sequence[Any], gt_masks: Sequence[Any]
) -> tuple[int, tuple[int, int], tuple[int, int]] | None:
    """``(row, predicted size, ground-truth size)`` of the first row whose :class:`InstanceMasks` differ in
    size, or ``None`` (rows not yet read as :class:`InstanceMasks` are skipped)."""
    for i, (pred, gt) in enumerate(zip(pred_masks, gt_masks, strict=True)):
        if not (isinstance(pred, InstanceMasks) and isinstance(gt, InstanceMasks)):
            continue
        if pred.size is not None and gt.size is not None and pred.size != gt.size:
            return i, pred.size, gt.size
    return None


# --- input -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Images:
    """A batch's live images flattened: one entry per instance, ``*_row`` the image's row in the batch;
    ``*_shape`` the boxes (float64 ``[k, 4]`` as x, y, w, h) or the masks."""

    image_id: np.ndarray  # int64 [n rows]
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
        try:
            return instance_masks(value)
        except ValueError as exc:
            raise ValueError(f"{key} of row {row}: {exc}") from None
    if isinstance(value, InstanceMasks):
        raise ValueError(f"{key} of row {row} holds instance masks; evaluate masks with iou_type='segm'")
    return to_xywh(_floats(value), box_format)


def _count_and_area(shapes: np.ndarray | InstanceMasks) -> tuple[int, np.ndarray]:
    if isinstance(shapes, InstanceMasks):
        return shapes.count, shapes.areas.astype(np.float64)
    return len(shapes), shapes[:, 2] * shapes[:, 3]


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
        if not m == len(gl) == len(gc) == len(ga):
            raise ValueError(f"row {i}: {gt_key}, gt_labels, gt_iscrowd and gt_area differ in length")
        for key, value in zip(parts, (np.full(k, i), ps, pl, pa, np.full(m, i), gl, gc, ga), strict=True):
            parts[key].append(value)
        pred_shapes.append(pred)
        gt_shapes.append(gt)
    flat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}

    def shapes(rows: list[Any]) -> np.ndarray | _Masks:
        if masks:
            return _Masks.of(rows)
        return np.concatenate(rows).reshape(-1, 4) if rows else np.zeros((0, 4))

    return _Images(
        image_id=image_id,
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


# --- metric ----------------------------------------------------------------------------------------


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
