"""COCO mask evaluation (``iou_type="segm"``) against pycocotools' COCOeval (``iouType="segm"``).

Random images of different sizes with elliptic and rectangular instances of several classes (areas in
every COCO range), crowd regions with detections inside them, empty ground-truth masks and detection
masks, images without ground truth, images without predictions, one image with more than 100
detections of one class, and tied scores. Masks reach the statistic in every accepted form (compressed
RLE with ``bytes`` or ``str`` counts, uncompressed RLE, PNG bytes, 2-D arrays, ``[k, h, w]`` arrays)
and pycocotools gets them as compressed RLE (crowd regions as uncompressed RLE, as in COCO's files).
Every check compares the full precision / recall arrays and the twelve summary values; sharded
evaluation must give bit-identical states; YAML jobs read Parquet list columns of RLE structs and PNG
bytes on the local and Ray runners.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from evaluators.accumulate import Accumulator
from evaluators.detection import (
    CocoDetectionStatistic,
    detection_batch,
    evaluate_coco,
    instance_masks,
    mean_average_precision,
)
from evaluators.functional import mean_average_precision as functional_map
from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from tests._data import merge_randomly
from tests.conftest import write_job

pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.test_detection import SUMMARY_KEYS, TOLERANCE, coco_reference

# --- data ------------------------------------------------------------------------------------------


def _blob(rng: np.random.Generator, h: int, w: int, *, scale: float | None = None) -> np.ndarray:
    """An ellipse or rectangle in an ``h x w`` image: radius about ``scale``, else small, medium or large
    (for COCO's area ranges) at random."""
    if scale is None:
        scale = float(rng.choice([rng.uniform(2, 14), rng.uniform(20, 45), rng.uniform(60, 110)]))
    ry, rx = scale * np.exp(rng.uniform(-0.4, 0.4, 2))
    cy, cx = rng.uniform(min(ry, h / 2), max(h - ry, h / 2)), rng.uniform(min(rx, w / 2), max(w - rx, w / 2))
    yy, xx = np.mgrid[:h, :w]
    if rng.random() < 0.3:
        return (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _jitter(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """The mask shifted by a few pixels, with a random rectangle added or cut (or, sometimes, a copy)."""
    if rng.random() < 0.2:
        return mask.copy()
    h, w = mask.shape
    dy, dx = rng.integers(-2, 3, 2)
    out = np.zeros_like(mask)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    y, x = rng.integers(0, h), rng.integers(0, w)
    out[y : y + rng.integers(1, 8), x : x + rng.integers(1, 8)] = rng.random() < 0.5
    return out


def random_images(rng: np.random.Generator, n_images: int = 36, n_classes: int = 6) -> list[dict]:
    """Images as dicts of dense masks (``gt_masks`` / ``pred_masks`` bool ``[k, h, w]``), labels, scores,
    crowd flags and distinct, unsorted image ids."""
    ids = rng.permutation(np.arange(1, 1 + 4 * n_images))[:n_images]
    freq = rng.dirichlet(np.ones(n_classes - 1))  # the last class is never in the ground truth
    images = []
    for i in range(n_images):
        h, w = (int(v) for v in rng.integers(32, 240, 2))
        m = 0 if rng.random() < 0.15 else int(rng.poisson(3))
        crowd = rng.random(m) < 0.15
        gt = [_blob(rng, h, w, scale=max(h, w) * 0.4 if c else None) for c in crowd]
        if m and rng.random() < 0.1:
            gt[-1] = np.zeros((h, w), bool)  # an empty ground truth
        labels = rng.choice(n_classes - 1, m, p=freq)
        preds, plabels = [], []
        for mask, label, is_crowd in zip(gt, labels, crowd, strict=True):
            copies = int(rng.integers(2, 5)) if is_crowd else int(rng.choice([0, 1, 1, 1, 2]))
            for _ in range(copies):
                pm = _blob(rng, h, w, scale=rng.uniform(3, 20)) & mask if is_crowd else _jitter(rng, mask)
                preds.append(pm)
                plabels.append(label if rng.random() < 0.85 else rng.integers(n_classes))
        for _ in range(rng.poisson(1.5)):  # background detections, some of the never-true class
            preds.append(_blob(rng, h, w))
            plabels.append(rng.integers(n_classes))
        if preds and rng.random() < 0.1:
            preds.append(np.zeros((h, w), bool))  # an empty detection
            plabels.append(plabels[0])
        if rng.random() < 0.12:
            preds, plabels = [], []
        scores = rng.random(len(preds))
        if rng.random() < 0.3:
            scores = np.round(scores, 1)  # equal scores within and across images
        images.append(
            {
                "image_id": int(ids[i]),
                "size": (h, w),
                "gt_masks": np.array(gt, bool).reshape(m, h, w),
                "gt_labels": labels.astype(np.int64),
                "gt_iscrowd": crowd.astype(np.int64),
                "pred_masks": np.array(preds, bool).reshape(len(preds), h, w),
                "pred_scores": scores,
                "pred_labels": np.array(plabels, np.int64),
            }
        )
    # one image with 130 detections of one class around its three objects (maxDets=100 cuts them)
    h, w = 90, 120
    gt = np.array([_blob(rng, h, w, scale=12) for _ in range(3)])
    many = np.array([_jitter(rng, gt[j % 3]) for j in range(130)])
    images.append(
        {
            "image_id": int(ids.max()) + 1,
            "size": (h, w),
            "gt_masks": gt,
            "gt_labels": np.zeros(3, np.int64),
            "gt_iscrowd": np.zeros(3, np.int64),
            "pred_masks": many,
            "pred_scores": np.round(rng.random(130), 2),
            "pred_labels": np.zeros(130, np.int64),
        }
    )
    return images


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _uncompressed(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE (as its crowd annotations): run lengths, zeros first, column-major."""
    flat = np.concatenate([[False], mask.T.reshape(-1), [False]])
    changes = np.flatnonzero(flat[1:] != flat[:-1])
    return {"size": list(mask.shape), "counts": np.diff(np.r_[0, changes, mask.size]).tolist()}


def _png(mask: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(out, format="PNG")
    return out.getvalue()


def as_forms(images: list[dict], rng: np.random.Generator) -> list[dict]:
    """The same images with masks in mixed forms: per image a [k, h, w] array, or a list whose masks are
    compressed RLE (bytes or str counts), uncompressed RLE, PNG bytes or 2-D arrays."""

    def convert(masks: np.ndarray) -> object:
        if rng.random() < 0.2:
            return masks
        out = []
        for mask in masks:
            form = rng.integers(5)
            if form == 0:
                out.append(_rle(mask))
            elif form == 1:
                rle = _rle(mask)
                out.append({"size": rle["size"], "counts": rle["counts"].decode()})
            elif form == 2:
                out.append(_uncompressed(mask))
            elif form == 3:
                out.append(_png(mask))
            else:
                out.append(mask.astype(np.uint8))
        return out

    return [{**im, "pred_masks": convert(im["pred_masks"]), "gt_masks": convert(im["gt_masks"])} for im in images]


# --- reference -------------------------------------------------------------------------------------


def coco_segm_reference(images: list[dict], *, areas: bool = False) -> COCOeval:
    """pycocotools ``segm``: evaluate, accumulate, summarize (ground-truth ``area`` = ``gt_area`` with
    ``areas``, else the mask area, as COCO's annotations)."""
    gts, dts, cats = [], [], set()
    for im in images:
        for j, (mask, label, crowd) in enumerate(zip(im["gt_masks"], im["gt_labels"], im["gt_iscrowd"], strict=True)):
            rle = _rle(mask)
            area = float(im["gt_area"][j]) if areas else float(mask_utils.area(rle))
            segmentation = _uncompressed(mask) if crowd else {"size": rle["size"], "counts": rle["counts"].decode()}
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": im["image_id"],
                    "category_id": int(label),
                    "segmentation": segmentation,
                    "area": area,
                    "iscrowd": int(crowd),
                }
            )
            cats.add(int(label))
        for mask, score, label in zip(im["pred_masks"], im["pred_scores"], im["pred_labels"], strict=True):
            rle = _rle(mask)
            dts.append(
                {
                    "image_id": im["image_id"],
                    "category_id": int(label),
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                    "score": float(score),
                }
            )
            cats.add(int(label))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": im["image_id"], "height": im["size"][0], "width": im["size"][1]} for im in images],
            "annotations": gts,
            "categories": [{"id": c} for c in sorted(cats)],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dts), "segm")
        ev.params.useCats = 1
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


DIFFS: list[float] = []
"""Largest absolute difference from pycocotools of every comparison (for the record)."""


def assert_matches(stat: CocoDetectionStatistic, state: dict, ev: COCOeval) -> None:
    acc = stat.accumulate(state)
    assert acc.labels.tolist() == list(ev.params.catIds)
    arrays = max(
        float(np.max(np.abs(acc.precision - ev.eval["precision"]))),
        float(np.max(np.abs(acc.recall - ev.eval["recall"]))),
    )
    values = stat.summarize(state)
    summary = float(np.max(np.abs(np.array([values[k] for k in SUMMARY_KEYS]) - ev.stats)))
    DIFFS.append(max(arrays, summary))
    assert arrays <= TOLERANCE
    assert summary <= TOLERANCE, {k: (values[k], v) for k, v in zip(SUMMARY_KEYS, ev.stats, strict=True)}


def ours(images: list[dict]) -> tuple[CocoDetectionStatistic, dict]:
    stat = CocoDetectionStatistic(iou_type="segm")
    return stat, stat.update(stat.zero(), detection_batch(images))


@pytest.fixture(scope="module")
def data() -> tuple[list[dict], COCOeval]:
    images = random_images(np.random.default_rng(0))
    return images, coco_segm_reference(images)


# --- tests -----------------------------------------------------------------------------------------


def test_matches_pycocotools(data) -> None:
    images, ev = data
    stat, state = ours(as_forms(images, np.random.default_rng(1)))
    assert_matches(stat, state, ev)
    # the data exercise what they should
    assert sum(im["gt_iscrowd"].sum() for im in images) > 0
    assert any(len(im["gt_labels"]) == 0 for im in images)
    assert any(len(im["pred_labels"]) == 0 for im in images)
    assert len({im["size"] for im in images}) > 10
    assert (ev.eval["precision"] == -1).any()
    assert int(state["rank"].max()) == 99
    assert all(v > 0 for v in ev.stats), ev.stats  # every area range has objects and matches


@pytest.mark.parametrize("seed", [2, 3])
def test_matches_pycocotools_with_area_column(seed: int) -> None:
    """COCOeval ranks ground truths by the annotation's ``area``, not by the mask: so does ``gt_area``."""
    rng = np.random.default_rng(seed)
    images = random_images(rng, n_images=24)
    for im in images:
        im["gt_area"] = rng.uniform(0, 12000, len(im["gt_labels"]))
    ev = coco_segm_reference(images, areas=True)
    stat, state = ours(as_forms(images, rng))
    assert_matches(stat, state, ev)


def test_metric_and_functional_api(data) -> None:
    images, ev = data
    metric = mean_average_precision(None, iou_type="segm", class_metrics=True)
    stat = metric.statistic
    values = metric.compute(stat.update(stat.zero(), detection_batch(images)))
    named = {("map" if k == "" else k[1:]): v for k, v in values.items()}
    for key, expected in zip(SUMMARY_KEYS, ev.stats, strict=True):
        assert abs(named[key] - expected) <= TOLERANCE, key
    precision, recall = ev.eval["precision"], ev.eval["recall"]
    for k, cat in enumerate(ev.params.catIds):
        p, r = precision[:, :, k, 0, -1], recall[:, k, 0, -1]
        assert abs(named[f"map_per_class[{cat}]"] - (float(np.mean(p[p > -1])) if (p > -1).any() else -1.0)) <= 1e-12
        assert (
            abs(named[f"mar_100_per_class[{cat}]"] - (float(np.mean(r[r > -1])) if (r > -1).any() else -1.0)) <= 1e-12
        )
    assert metric.description.startswith("COCO mask mAP")
    # torchmetrics-style inputs, [k, h, w] bool masks per image; the image ids are the positions
    preds = [{"masks": im["pred_masks"], "scores": im["pred_scores"], "labels": im["pred_labels"]} for im in images]
    targets = [{"masks": im["gt_masks"], "labels": im["gt_labels"], "iscrowd": im["gt_iscrowd"]} for im in images]
    got = functional_map(preds, targets, iou_type="segm")
    numbered = coco_segm_reference([{**im, "image_id": i} for i, im in enumerate(images)])
    for key, expected in zip(SUMMARY_KEYS, numbered.stats, strict=True):
        assert abs(got[key] - expected) <= TOLERANCE, key
    assert evaluate_coco(images, iou_type="segm") == {k: v for k, v in named.items() if "per_class" not in k}


@pytest.mark.parametrize("n_shards", [1, 3, 7])
def test_sharding_invariance(data, n_shards: int) -> None:
    images, ev = data
    rng = np.random.default_rng(n_shards)
    forms = as_forms(images, rng)
    metric = mean_average_precision(None, iou_type="segm")
    acc = Accumulator.for_metrics([metric])
    whole = acc.update(acc.zero(), detection_batch(forms))[0]
    cuts = np.sort(rng.choice(np.arange(1, len(images)), n_shards - 1, replace=False))
    shards = np.split(rng.permutation(len(images)), cuts)
    parts = [acc.update(acc.zero(), detection_batch([forms[i] for i in idx])) for idx in shards]
    merged = merge_randomly(acc, [*parts, acc.zero()], rng)[0]
    for key, leaf in whole.items():
        np.testing.assert_array_equal(merged[key], leaf)
        assert merged[key].dtype == leaf.dtype
    assert_matches(metric.statistic, merged, ev)


_PARSED = None


def _parsed(data: list[dict]) -> list[dict]:
    """The images with masks already as runs (parsed once for the hypothesis examples)."""
    global _PARSED
    if _PARSED is None:
        _PARSED = [
            {**im, "pred_masks": instance_masks(im["pred_masks"]), "gt_masks": instance_masks(im["gt_masks"])}
            for im in data
        ]
    return _PARSED


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_sharding_gives_the_same_state(data, draw) -> None:
    images = _parsed(data[0])
    stat = CocoDetectionStatistic(iou_type="segm")
    shards = draw.draw(st.lists(st.integers(0, 5), min_size=len(images), max_size=len(images)))
    order = draw.draw(st.permutations(range(6)))
    whole = stat.update(stat.zero(), detection_batch(images))
    merged = stat.zero()
    for shard in order:
        part = [im for im, s in zip(images, shards, strict=True) if s == shard]
        merged = stat.merge(merged, stat.update(stat.zero(), detection_batch(part)))
    for key, leaf in whole.items():
        np.testing.assert_array_equal(merged[key], leaf)


def test_bad_masks_are_named() -> None:
    good = np.zeros((1, 8, 10), bool)
    good[0, 2:5, 3:7] = True
    base = {"pred_scores": [0.5], "pred_labels": [1], "gt_masks": good, "gt_labels": [1]}
    cases = [
        ({"size": [8, 10], "counts": "0!"}, r"pred_masks of row 0: mask 0: .*not a character"),
        ({"size": [8, 10], "counts": [5, 3]}, r"pred_masks of row 0: mask 0: .*add up to 8 pixels, not .* 80"),
        ({"size": [8], "counts": [80]}, r"mask 0: RLE 'size' must be \[height, width\]"),
        ({"counts": "abc"}, r"mask 0 is a dict with keys \['counts'\]"),
        (b"not a png", r"mask 0: its bytes are not a readable PNG"),
        (np.zeros((8, 11), bool), r"row 0: the pred_masks are 8x11 .* but the gt_masks 8x10"),
    ]
    for mask, message in cases:
        with pytest.raises(ValueError, match=message):
            evaluate_coco([{**base, "pred_masks": [mask]}], iou_type="segm")
    with pytest.raises(ValueError, match=r"mask 1 is 8x11 \(height x width\) but mask 0 is 8x10"):
        instance_masks([good[0], np.zeros((8, 11))])
    rgb = io.BytesIO()
    Image.new("RGB", (4, 3)).save(rgb, format="PNG")
    with pytest.raises(ValueError, match=r"mask 0: a PNG mask must have one channel .* mode 'RGB'"):
        instance_masks([rgb.getvalue()])
    with pytest.raises(ValueError, match=r"holds instance masks; evaluate masks with iou_type='segm'"):
        CocoDetectionStatistic().update(
            CocoDetectionStatistic().zero(),
            {**detection_batch([{**base, "pred_masks": good}]), "pred_boxes": np.array([instance_masks(good)])},
        )


# --- pipeline --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tmp_path_factory, data):
    images = data[0][:28] + data[0][-1:]
    rows = []
    for im in images:
        boxes = [mask_utils.toBbox(_rle(m)).tolist() for m in im["pred_masks"]]
        gt_boxes = [mask_utils.toBbox(_rle(m)).tolist() for m in im["gt_masks"]]
        rows.append(
            {
                "image_id": im["image_id"],
                "masks": [{"size": list(m.shape), "counts": _rle(m)["counts"].decode()} for m in im["pred_masks"]],
                "boxes": boxes,
                "scores": im["pred_scores"].tolist(),
                "labels": im["pred_labels"].tolist(),
                "gt_png": [_png(m) for m in im["gt_masks"]],
                "gt_rle": [_uncompressed(m) for m in im["gt_masks"]],
                "gt_boxes": gt_boxes,
                "gt_labels": im["gt_labels"].tolist(),
                "crowd": im["gt_iscrowd"].tolist(),
            }
        )
    schema = pa.schema(
        [
            ("image_id", pa.int64()),
            ("masks", pa.list_(pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.string())]))),
            ("boxes", pa.list_(pa.list_(pa.float64()))),
            ("scores", pa.list_(pa.float64())),
            ("labels", pa.list_(pa.int64())),
            ("gt_png", pa.list_(pa.binary())),
            ("gt_rle", pa.list_(pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.list_(pa.int64()))]))),
            ("gt_boxes", pa.list_(pa.list_(pa.float64()))),
            ("gt_labels", pa.list_(pa.int64())),
            ("crowd", pa.list_(pa.int64())),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    directory = tmp_path_factory.mktemp("segm")
    edges = np.linspace(0, len(table), 4).astype(int)  # 3 files over every image
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        pq.write_table(table.slice(a, b - a), directory / f"part-{i}.parquet", row_group_size=4)
    return directory, images, rows


def _job(tmp_path, directory, runner: str, columns: dict, metrics: list, name: str = "segm"):
    spec = {
        "name": name,
        "data": {
            "path": str(directory),
            "columns": {"scores": "scores", "labels": "labels", "target_labels": "gt_labels", **columns},
        },
        "task": "detection",
        "metrics": metrics,
        "execution": {"runner": runner, "actors": 2, "unit_rows": 8},
        "output": {"uri": str(tmp_path / name / runner / "out")},
    }
    (tmp_path / name / runner).mkdir(parents=True, exist_ok=True)
    return spec_module.load(str(write_job(tmp_path / name / runner / "job.yaml", spec)))


def _values(run, key: str) -> dict[str, float]:
    metrics = run.point("overall").metrics
    return {k: metrics[key if k == "map" else f"{key}.{k}"].value for k in SUMMARY_KEYS}


def _check(values: dict[str, float], reference: COCOeval) -> None:
    diff = max(abs(values[k] - v) for k, v in zip(SUMMARY_KEYS, reference.stats, strict=True))
    DIFFS.append(diff)
    assert diff <= TOLERANCE, values


def test_segm_only_job_reads_masks_from_predictions_and_targets(tmp_path, shards) -> None:
    directory, images, _ = shards
    columns = {"predictions": "masks", "targets": "gt_png", "iscrowd": "crowd", "image_id": "image_id"}
    metrics = [{"name": "mean_average_precision", "iou_type": "segm", "as": "mask_map"}]
    run = run_job(_job(tmp_path, directory, "local", columns, metrics), show_progress=False).run
    _check(_values(run, "mask_map"), coco_segm_reference(images))
    assert run.metadata["units"] >= 3


@pytest.mark.slow
@pytest.mark.ray
def test_box_and_mask_job_on_local_and_ray(tmp_path, shards, ray_cluster) -> None:
    directory, images, rows = shards
    columns = {
        "predictions": "boxes",
        "targets": "gt_boxes",
        "masks": "masks",
        "target_masks": "gt_rle",
        "iscrowd": "crowd",
        "image_id": "image_id",
    }
    metrics = [
        {"name": "mean_average_precision", "box_format": "xywh", "as": "box_map"},
        {"name": "mean_average_precision", "iou_type": "segm", "as": "mask_map"},
    ]
    box_images = [
        {
            "image_id": row["image_id"],
            "gt_boxes": np.array(row["gt_boxes"]).reshape(-1, 4),
            "gt_labels": np.array(row["gt_labels"]),
            "gt_iscrowd": np.array(row["crowd"]),
            "gt_area": np.array([b[2] * b[3] for b in row["gt_boxes"]]),
            "pred_boxes": np.array(row["boxes"]).reshape(-1, 4),
            "pred_scores": np.array(row["scores"]),
            "pred_labels": np.array(row["labels"]),
        }
        for row in rows
    ]
    box_reference, mask_reference = coco_reference(box_images), coco_segm_reference(images)
    for runner in ("local", "ray"):
        run = run_job(_job(tmp_path, directory, runner, columns, metrics, "both"), show_progress=False).run
        _check(_values(run, "mask_map"), mask_reference)
        _check(_values(run, "box_map"), box_reference)


def _bad_shards(tmp_path, rows: list[dict], column: str, value: object, row: int = 5) -> str:
    bad = [dict(r) for r in rows]
    bad[row][column] = value
    directory = tmp_path / f"bad-{column}"
    directory.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(bad), directory / "part-0.parquet", row_group_size=4)
    return str(directory)


def test_malformed_and_mismatched_masks_fail_naming_the_column(tmp_path, shards) -> None:
    _, _, rows = shards
    columns = {"predictions": "masks", "targets": "gt_png", "image_id": "image_id"}
    metrics = [{"name": "mean_average_precision", "iou_type": "segm"}]
    image = next(i for i, r in enumerate(rows) if r["masks"] and r["gt_png"])
    h, w = rows[image]["masks"][0]["size"]
    cases = [
        (
            "masks",
            [{"size": [h, w], "counts": "0\x7f"}],
            [r"column 'masks'", rf"row {image % 4}: mask 0: the RLE counts string holds", r"one mask per instance"],
        ),
        (
            "gt_png",
            [_png(np.ones((h, w + 1), bool))] * len(rows[image]["gt_png"]),  # as many masks as labels
            [
                rf"image_id {rows[image]['image_id']}",
                rf"are {h}x{w} \(height x width\) in column 'masks' \(data.columns.predictions\)",
                rf"but {h}x{w + 1} in column 'gt_png' \(data.columns.targets\)",
            ],
        ),
        (
            "gt_png",
            [_png(np.ones((h, w), bool)), _png(np.ones((h + 2, w), bool))],
            [r"column 'gt_png'", rf"mask 1 is {h + 2}x{w} \(height x width\) but mask 0 is {h}x{w}"],
        ),
    ]
    for k, (column, value, needles) in enumerate(cases):
        directory = _bad_shards(tmp_path / str(k), rows, column, value, row=image)
        with pytest.raises(DataError) as caught:
            run_job(_job(tmp_path / str(k), directory, "local", columns, metrics), show_progress=False)
        message = str(caught.value)
        assert "\n" not in message
        for needle in needles:
            assert re.search(needle, message), (needle, message)


def test_report_agreement() -> None:
    """Runs last in this module: the largest difference from pycocotools over every comparison above."""
    if not DIFFS:
        pytest.skip("no comparison ran")
    assert max(DIFFS) <= TOLERANCE
    print(f"\nsegm: {len(DIFFS)} comparisons with pycocotools, largest absolute difference {max(DIFFS):.3g}")
