"""Semantic segmentation masks as single-channel images (PNG) of class ids: decoding and encoding."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

MASK_MODES = ("1", "L", "P", "I;16", "I;16L", "I;16B", "I")
"""Pillow modes of single-channel images, read as one integer per pixel."""


def decode_mask(payload: bytes) -> np.ndarray:
    """One encoded single-channel image of class ids -> ``[H, W]`` array.

    Expects a PNG (any format Pillow reads losslessly works) whose pixel values *are* the class ids: 8-bit
    grayscale (``L``) or palette (``P``, the Pascal VOC layout: the palette index is the class id, the colours
    are ignored) -> uint8; 16-bit grayscale -> int32; 1-bit -> uint8 0 / 1. Colour images (``RGB``, ``RGBA``,
    ``LA``) are refused: their class ids would depend on a colour map.
    """
    from PIL import Image

    with Image.open(io.BytesIO(bytes(payload))) as image:
        if image.mode not in MASK_MODES:
            raise ValueError(
                f"a mask must be a single-channel image of class ids (PNG mode L, P, I;16 or 1), got mode {image.mode!r}"
            )
        values = np.asarray(image)
    if values.dtype == np.bool_ or values.dtype == np.uint8:
        return values.astype(np.uint8, copy=False)
    return values.astype(np.int32)


def decode_masks(column: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """A column of encoded masks (see :func:`decode_mask`) -> ``[n, H, W]`` uint8 (all 8-bit) or int32.

    All masks must share one size; for masks of different sizes decode them one by one and pass the list to
    :func:`pixel_rows`.
    """
    masks = [decode_mask(v) for v in column]
    if not masks:
        return np.zeros((0, 0, 0), np.uint8)
    shapes = {m.shape for m in masks}
    if len(shapes) > 1:
        raise ValueError(
            f"masks of {len(shapes)} different sizes {sorted(shapes)[:3]}; decode them with decode_mask and "
            "pass the list to pixel_rows"
        )
    dtype = np.uint8 if all(m.dtype == np.uint8 for m in masks) else np.int32
    return np.stack([m.astype(dtype, copy=False) for m in masks])


def encode_mask(mask: np.ndarray) -> bytes:
    """``[H, W]`` class ids (0 .. 65535) -> PNG bytes: 8-bit grayscale when every id fits, else 16-bit."""
    from PIL import Image

    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"a mask is a non-empty [H, W] array, got shape {mask.shape}")
    if mask.min() < 0 or mask.max() > 65535:
        raise ValueError("PNG masks hold class ids in [0, 65535]")
    array = mask.astype(np.uint8) if mask.max() <= 255 else mask.astype(np.uint16)
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()
