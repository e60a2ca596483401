"""Per-image matching as pycocotools' ``COCOeval.evaluateImg``: box IoU, greedy matching by score, the
vectorised blocks of (image, class) groups, and the canonical order of the detection records."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_MATCH_BUDGET = 1 << 22
"""Elements of the padded arrays of one vectorised matching block (a single group may exceed it)."""


_RECORD_KEYS = ("score", "image_id", "label", "rank", "tp", "fp")


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
