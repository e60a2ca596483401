"""Instance masks for COCO ``segm`` evaluation: decoding (COCO RLE, compressed or not, PNG bytes, arrays) into
runs of pixels, and the IoU of (detection, ground truth) mask pairs counted from those runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.mask_png import MASK_MODES

_RUN_BUDGET = 1 << 22
"""Mask runs looked up at once when counting the common pixels of (detection, ground truth) pairs."""


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
