"""Seeded, realistic synthetic prediction shards, for the example jobs, tests and benchmarks.

Binary shards have a calibrated-but-imperfect score, an imbalanced label and
slice columns; multiclass shards have softmax probabilities as a
``fixed_size_list<float32>[C]`` column and a long-tailed label distribution;
image shards have generated and real 32 x 32 images as PNG bytes; segmentation shards have
true and predicted class-id masks (pixel lists or PNG).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

COUNTRIES = ("US", "DE", "FR", "JP", "BR")
DEVICES = ("ios", "android", "web")


def _split(rows: int, shards: int) -> list[int]:
    base, extra = divmod(rows, shards)
    return [base + (1 if i < extra else 0) for i in range(shards)]


def binary_table(rng: np.random.Generator, rows: int, start_id: int = 0, prevalence: float = 0.2) -> pa.Table:
    """Columns: row_id (int64), score (float32 probability), label (int8), country, device (strings)."""
    label = (rng.random(rows) < prevalence).astype(np.int8)
    country = rng.choice(len(COUNTRIES), size=rows, p=[0.4, 0.2, 0.15, 0.15, 0.1])
    device = rng.choice(len(DEVICES), size=rows, p=[0.35, 0.45, 0.2])
    # Signal strength varies by country, so slices differ.
    strength = np.array([1.6, 1.3, 1.1, 1.8, 0.8])[country]
    logit = -1.4 + strength * (2.0 * label - 1.0) + rng.normal(0.0, 1.0, rows)
    score = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return pa.table(
        {
            "row_id": pa.array(np.arange(start_id, start_id + rows, dtype=np.int64)),
            "score": pa.array(score),
            "label": pa.array(label),
            "country": pa.array(np.asarray(COUNTRIES, dtype=object)[country]),
            "device": pa.array(np.asarray(DEVICES, dtype=object)[device]),
        }
    )


def multiclass_table(rng: np.random.Generator, rows: int, num_classes: int, start_id: int = 0) -> pa.Table:
    """Columns: row_id, probs (fixed_size_list<float32>[C]), label (int16), country."""
    weights = 1.0 / np.arange(1, num_classes + 1) ** 0.8
    label = rng.choice(num_classes, size=rows, p=weights / weights.sum())
    logits = rng.normal(0.0, 1.0, (rows, num_classes)).astype(np.float32)
    logits[np.arange(rows), label] += rng.normal(2.0, 1.0, rows).astype(np.float32)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    flat = pa.array(probs.astype(np.float32).reshape(-1))
    country = rng.choice(len(COUNTRIES), size=rows)
    return pa.table(
        {
            "row_id": pa.array(np.arange(start_id, start_id + rows, dtype=np.int64)),
            "probs": pa.FixedSizeListArray.from_arrays(flat, num_classes),
            "label": pa.array(label.astype(np.int16)),
            "country": pa.array(np.asarray(COUNTRIES, dtype=object)[country]),
        }
    )


_SUBJECTS = ("the model", "a small cat", "our service", "the new release", "this report", "the weather", "a user")
_VERBS = ("improves", "breaks", "explains", "ignores", "summarises", "predicts", "changes")
_OBJECTS = ("the results", "every request", "the night sky", "its latency", "the old answer", "a long document")
_TAILS = ("", " today", " in Paris", " very quickly", " without errors", " again and again", " for 10 minutes")
_SYNONYMS = {
    "improves": "makes better",
    "breaks": "damages",
    "explains": "clarifies",
    "quickly": "fast",
    "small": "little",
}


def text_pairs_table(rng: np.random.Generator, rows: int, start_id: int = 0) -> pa.Table:
    """Columns: row_id, candidate, reference (strings: a reference sentence and a candidate that
    copies it, paraphrases it with synonyms, or says something unrelated), country."""

    def sentence() -> str:
        parts = (rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS), rng.choice(_TAILS))
        return f"{parts[0]} {parts[1]} {parts[2]}{parts[3]}.".capitalize()

    references, candidates = [], []
    for _ in range(rows):
        reference = sentence()
        kind = rng.random()
        if kind < 0.3:
            candidate = reference
        elif kind < 0.7:
            candidate = " ".join(_SYNONYMS.get(w, w) for w in reference.split(" "))
        else:
            candidate = sentence()
        references.append(reference)
        candidates.append(candidate)
    country = rng.choice(len(COUNTRIES), size=rows)
    return pa.table(
        {
            "row_id": pa.array(np.arange(start_id, start_id + rows, dtype=np.int64)),
            "candidate": pa.array(candidates),
            "reference": pa.array(references),
            "country": pa.array(np.asarray(COUNTRIES, dtype=object)[country]),
        }
    )


def synthetic_images(rng: np.random.Generator, rows: int, size: int = 32) -> np.ndarray:
    """``rows`` smooth RGB images ``[rows, size, size, 3]`` uint8: a colour gradient, a sinusoidal texture
    and a disc, with random colours, frequencies and positions, plus a little pixel noise."""
    grid = (np.arange(size) + 0.5) / size
    y, x = grid[None, :, None], grid[None, None, :]
    angle = rng.uniform(0, 2 * np.pi, (rows, 1, 1))
    ramp = np.cos(angle) * x + np.sin(angle) * y
    freq = rng.uniform(1.0, 6.0, (rows, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (rows, 1, 1))
    wave = np.sin(2 * np.pi * freq * (np.sin(angle) * x - np.cos(angle) * y) + phase)
    cx, cy, radius = (rng.uniform(lo, hi, (rows, 1, 1)) for lo, hi in ((0.2, 0.8), (0.2, 0.8), (0.1, 0.35)))
    disc = ((x - cx) ** 2 + (y - cy) ** 2 < radius**2).astype(np.float64)
    colours = rng.uniform(0, 1, (4, rows, 1, 1, 3))
    image = (
        colours[0] * (1 - ramp[..., None]) * 0.6
        + colours[1] * ramp[..., None] * 0.6
        + 0.15 * wave[..., None] * colours[2]
        + disc[..., None] * (colours[3] - 0.3) * 0.5
        + rng.normal(0, 0.02, (rows, size, size, 3))
    )
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def encode_png(images: np.ndarray) -> list[bytes]:
    """``[n, h, w, 3]`` uint8 -> PNG bytes per image (Pillow)."""
    import io

    from PIL import Image

    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image, "RGB").save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def image_table(
    rng: np.random.Generator, rows: int, start_id: int = 0, *, size: int = 32, encoding: str = "png"
) -> pa.Table:
    """Columns: row_id, generated, real (images), country.

    ``real`` images are :func:`synthetic_images`; each ``generated`` image is its row's real image with
    noise (40%), with shifted colours (30%), or an unrelated image (30%). ``encoding="png"``: binary columns
    of PNG bytes; ``"pixels"``: ``fixed_size_list<uint8>[size * size * 3]`` (row-major height x width x RGB).
    """
    real = synthetic_images(rng, rows, size)
    kind = rng.random(rows)[:, None, None, None]
    noisy = real + rng.normal(0, 12, real.shape)
    shifted = real * rng.uniform(0.7, 1.0, (rows, 1, 1, 3)) + rng.uniform(0, 60, (rows, 1, 1, 3))
    other = synthetic_images(rng, rows, size)
    generated = np.where(kind < 0.4, noisy, np.where(kind < 0.7, shifted, other))
    generated = np.clip(np.round(generated), 0, 255).astype(np.uint8)
    if encoding == "png":
        columns = {
            "generated": pa.array(encode_png(generated), pa.binary()),
            "real": pa.array(encode_png(real), pa.binary()),
        }
    elif encoding == "pixels":
        width = size * size * 3
        columns = {
            name: pa.FixedSizeListArray.from_arrays(pa.array(images.reshape(-1)), width)
            for name, images in (("generated", generated), ("real", real))
        }
    else:
        raise ValueError(f"encoding must be 'png' or 'pixels', got {encoding!r}")
    return _with_ids_and_country(rng, rows, start_id, columns)


SEGMENTATION_IGNORE = 255
"""Target value of the unlabelled band along object boundaries in :func:`segmentation_table`."""


def segmentation_masks(
    rng: np.random.Generator, rows: int, size: int = 256, num_classes: int = 21, cell: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, predictions)``, uint8 ``[rows, size, size]`` class-id masks.

    Targets are blocky scenes: a ``size / cell`` grid of regions, mostly background (class 0), the rest
    long-tailed object classes, with a one-pixel band of ``SEGMENTATION_IGNORE`` along region boundaries
    (as Pascal VOC). Predictions are the same scene with a tenth of the regions given another class,
    shifted by up to 3 pixels, with 1% of the pixels replaced by a random class.
    """
    grid = -(-size // cell)
    weights = 1.0 / np.arange(1, num_classes) ** 1.2
    objects = rng.choice(np.arange(1, num_classes), size=(rows, grid, grid), p=weights / weights.sum())
    coarse = np.where(rng.random((rows, grid, grid)) < 0.6, 0, objects).astype(np.uint8)
    truth = coarse.repeat(cell, axis=1).repeat(cell, axis=2)[:, :size, :size]
    boundary = np.zeros(truth.shape, bool)
    boundary[:, 1:, :] |= truth[:, 1:, :] != truth[:, :-1, :]
    boundary[:, :, 1:] |= truth[:, :, 1:] != truth[:, :, :-1]
    swapped = rng.random((rows, grid, grid)) < 0.1
    wrong = np.where(swapped, rng.integers(0, num_classes, (rows, grid, grid)), coarse).astype(np.uint8)
    predicted = wrong.repeat(cell, axis=1).repeat(cell, axis=2)[:, :size, :size]
    shift = rng.integers(-3, 4, (2,))
    predicted = np.roll(predicted, tuple(int(s) for s in shift), axis=(1, 2))
    noise = rng.random(predicted.shape) < 0.01
    predicted = np.where(noise, rng.integers(0, num_classes, predicted.shape), predicted).astype(np.uint8)
    truth = np.where(boundary, np.uint8(SEGMENTATION_IGNORE), truth)
    return truth, predicted


def segmentation_table(
    rng: np.random.Generator,
    rows: int,
    start_id: int = 0,
    *,
    size: int = 256,
    num_classes: int = 21,
    encoding: str = "bytes",
) -> pa.Table:
    """Columns: row_id, mask (true class ids), predicted (predicted class ids), country.

    ``encoding="bytes"``: ``fixed_size_binary(size * size)``, one byte per pixel, row-major (the fastest to
    read); ``"pixels"``: ``fixed_size_list<uint8>[size * size]``; ``"png"``: 8-bit PNG bytes.
    """
    truth, predicted = segmentation_masks(rng, rows, size, num_classes)
    if encoding == "bytes":
        width = size * size
        columns = {
            name: pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(width), rows, [None, pa.py_buffer(np.ascontiguousarray(masks).tobytes())]
            )
            for name, masks in (("mask", truth), ("predicted", predicted))
        }
    elif encoding == "pixels":
        width = size * size
        columns = {
            name: pa.FixedSizeListArray.from_arrays(pa.array(masks.reshape(-1)), width)
            for name, masks in (("mask", truth), ("predicted", predicted))
        }
    elif encoding == "png":
        from evaluators.segmentation import encode_mask

        columns = {
            name: pa.array([encode_mask(m) for m in masks], pa.binary())
            for name, masks in (("mask", truth), ("predicted", predicted))
        }
    else:
        raise ValueError(f"encoding must be 'bytes', 'pixels' or 'png', got {encoding!r}")
    return _with_ids_and_country(rng, rows, start_id, columns)


def ranking_table(rng: np.random.Generator, rows: int, start_id: int = 0, items: int = 10) -> pa.Table:
    """Columns: row_id, query_id (int64; a query's ``items`` rows are contiguous and its id is its first row's
    id), score (float32), relevance (int8, graded 0..3, a tenth of the queries without a relevant item),
    country (one per query), item_id (int64, from a catalogue of ``rows // 10`` items, popular ones more often)."""
    sizes = np.full(-(-rows // items), items)
    sizes[-1] -= sizes.sum() - rows
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    query = np.repeat(start_id + starts, sizes)
    relevance = (rng.random(rows) < 0.3) * rng.integers(1, 4, rows)
    relevance[np.repeat(rng.random(len(sizes)) < 0.1, sizes)] = 0
    score = (1.0 / (1.0 + np.exp(-(0.8 * relevance + rng.normal(0.0, 1.0, rows))))).astype(np.float32)
    country = np.repeat(rng.choice(len(COUNTRIES), size=len(sizes)), sizes)
    item = np.minimum(rng.zipf(1.3, rows), max(1, rows // 10)) - 1
    return pa.table(
        {
            "row_id": pa.array(np.arange(start_id, start_id + rows, dtype=np.int64)),
            "query_id": pa.array(query.astype(np.int64)),
            "score": pa.array(score),
            "relevance": pa.array(relevance.astype(np.int8)),
            "country": pa.array(np.asarray(COUNTRIES, dtype=object)[country]),
            "item_id": pa.array(item.astype(np.int64)),
        }
    )


def _with_ids_and_country(rng: np.random.Generator, rows: int, start_id: int, columns: dict[str, pa.Array]) -> pa.Table:
    """``row_id``, then ``columns``, then a random ``country`` slice column."""
    country = rng.choice(len(COUNTRIES), size=rows)
    return pa.table(
        {
            "row_id": pa.array(np.arange(start_id, start_id + rows, dtype=np.int64)),
            **columns,
            "country": pa.array(np.asarray(COUNTRIES, dtype=object)[country]),
        }
    )


def write_shards(
    directory: str,
    kind: str,
    rows: int,
    shards: int,
    *,
    seed: int = 0,
    num_classes: int = 10,
    row_group_rows: int = 65_536,
    size: int = 256,
    encoding: str = "bytes",
) -> list[str]:
    """Write ``shards`` Parquet files with ``rows`` rows in all; returns their paths.

    ``size`` and ``encoding`` apply to segmentation masks (see :func:`segmentation_table`)."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths: list[str] = []
    start = 0
    for i, n in enumerate(_split(rows, shards)):
        if kind == "binary":
            table = binary_table(rng, n, start)
        elif kind == "multiclass":
            table = multiclass_table(rng, n, num_classes, start)
        elif kind == "text":
            table = text_pairs_table(rng, n, start)
        elif kind == "image":
            table = image_table(rng, n, start)
        elif kind == "segmentation":
            table = segmentation_table(rng, n, start, size=size, num_classes=num_classes, encoding=encoding)
        elif kind == "ranking":
            table = ranking_table(rng, n, start)
        else:
            raise ValueError(
                f"kind must be 'binary', 'multiclass', 'text', 'image', 'segmentation' or 'ranking', got {kind!r}"
            )
        path = os.path.join(directory, f"part-{i:05d}.parquet")
        pq.write_table(table, path, row_group_size=row_group_rows)
        paths.append(path)
        start += n
    return paths


def concatenated(paths: Sequence[str], columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Read ``columns`` of all ``paths`` into numpy (lists -> 2-D), for reference computations."""
    table = pa.concat_tables([pq.read_table(p, columns=list(columns)) for p in paths])
    out = {}
    for name in columns:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            width = col.type.list_size if pa.types.is_fixed_size_list(col.type) else len(col[0])
            out[name] = col.flatten().to_numpy().reshape(len(col), width)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out
