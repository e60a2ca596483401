"""COCO box evaluation against pycocotools' COCOeval (``iouType="bbox"``, ``useCats=1``).

Random images with many categories (one only ever predicted), crowd regions with detections inside,
images without ground truth, images without predictions, duplicated and overlapping boxes, one image
with more than 100 detections of one category, and (for some seeds) scores on a coarse grid, so that
equal scores across images are common. Box coordinates lie on a 1/4 grid, so every box format converts
exactly and IoUs land exactly on thresholds now and then; one test uses arbitrary float boxes instead.

Every comparison is against the full ``COCOeval.eval`` arrays (precision ``[T, R, K, A, M]`` and recall
``[T, K, A, M]``) and the summary values; sharded evaluation (1, 3 and 7 shards merged in random order)
must give bit-identical states and values.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from evaluators.accumulate import Accumulator
from evaluators.detection import (
    COCO_IOU_THRESHOLDS,
    CocoDetectionStatistic,
    detection_batch,
    evaluate_coco,
    mean_average_precision,
)
from evaluators.task import Task
from tests._data import merge_randomly

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

SUMMARY_KEYS = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
"""Our names of ``COCOeval.stats[0..11]``."""

TOLERANCE = 1e-6


# --- data ------------------------------------------------------------------------------------------


def _grid(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x, np.float64) * 4) / 4


def random_images(
    rng: np.random.Generator, n_images: int = 48, n_classes: int = 9, *, tied_scores: bool = False
) -> list[dict]:
    """Images as dicts in ``xywh`` (1/4 grid) with COCO-style ``gt_area = w * h`` and distinct image ids."""
    ids = rng.permutation(np.arange(100, 100 + 5 * n_images))[:n_images]  # unsorted, so order by id matters
    freq = rng.dirichlet(np.ones(n_classes - 1))  # the last class is never in the ground truth
    images = []
    for i in range(n_images):
        m = 0 if rng.random() < 0.15 else int(rng.poisson(4))
        size = np.maximum(_grid(np.exp(rng.uniform(np.log(3), np.log(250), (m, 2)))), 0.25)
        gt = np.concatenate([_grid(rng.uniform(0, 400, (m, 2))), size], axis=1)
        labels = rng.choice(n_classes - 1, m, p=freq)
        crowd = rng.random(m) < 0.12
        gt[crowd, 2:] = np.maximum(gt[crowd, 2:], 120.0)  # crowd regions are large
        preds, plabels = [], []
        for box, label, is_crowd in zip(gt, labels, crowd, strict=True):
            copies = rng.integers(2, 6) if is_crowd else rng.choice([0, 1, 1, 1, 2])
            for _ in range(copies):
                if is_crowd:  # detections inside the region
                    w, h = _grid(rng.uniform(5, 60, 2))
                    x, y = box[0] + _grid(rng.uniform(0, box[2] - w)), box[1] + _grid(rng.uniform(0, box[3] - h))
                    pb = np.array([x, y, w, h])
                else:
                    pb = box + _grid(rng.normal(0, 0.12, 4) * np.r_[box[2:], box[2:]])
                    pb[2:] = np.maximum(pb[2:], 0.25)
                preds.append(pb)
                plabels.append(label if rng.random() < 0.85 else rng.integers(n_classes))
        for _ in range(rng.poisson(2)):  # background detections, some of the never-true class
            preds.append(np.r_[_grid(rng.uniform(0, 400, 2)), np.maximum(_grid(rng.uniform(2, 150, 2)), 0.25)])
            plabels.append(rng.integers(n_classes))
        if preds and rng.random() < 0.1:  # exact duplicates
            preds.append(preds[0].copy())
            plabels.append(plabels[0])
        if rng.random() < 0.12:
            preds, plabels = [], []
        scores = rng.random(len(preds))
        if tied_scores:
            scores = np.round(scores, 1)
        images.append(
            {
                "image_id": int(ids[i]),
                "gt_boxes": gt.reshape(-1, 4),
                "gt_labels": labels.astype(np.int64),
                "gt_iscrowd": crowd.astype(np.int64),
                "gt_area": gt[:, 2] * gt[:, 3],
                "pred_boxes": np.array(preds, np.float64).reshape(-1, 4),
                "pred_scores": scores,
                "pred_labels": np.array(plabels, np.int64),
            }
        )
    # one crowded image: 130 detections of one category around its ground truths (maxDets=100 cuts them)
    gt = np.array([[10.0, 10.0, 40.0, 30.0], [60.0, 20.0, 80.0, 90.0], [200.0, 200.0, 12.0, 9.0]])
    many = np.repeat(gt, 44, axis=0)[:130] + _grid(rng.normal(0, 3, (130, 4)))
    many[:, 2:] = np.maximum(many[:, 2:], 0.25)
    images.append(
        {
            "image_id": int(ids.max()) + 1,
            "gt_boxes": gt,
            "gt_labels": np.zeros(3, np.int64),
            "gt_iscrowd": np.zeros(3, np.int64),
            "gt_area": gt[:, 2] * gt[:, 3],
            "pred_boxes": many,
            "pred_scores": np.round(rng.random(130), 1) if tied_scores else rng.random(130),
            "pred_labels": np.zeros(130, np.int64),
        }
    )
    return images


def in_format(images: list[dict], box_format: str) -> list[dict]:
    """The same images with boxes converted from ``xywh`` (exact on the 1/4 grid)."""

    def convert(b: np.ndarray) -> np.ndarray:
        x, y, w, h = b.T
        if box_format == "xyxy":
            return np.stack([x, y, x + w, y + h], axis=1)
        if box_format == "cxcywh":
            return np.stack([x + w / 2, y + h / 2, w, h], axis=1)
        return b.copy()

    return [{**im, "pred_boxes": convert(im["pred_boxes"]), "gt_boxes": convert(im["gt_boxes"])} for im in images]


# --- reference -------------------------------------------------------------------------------------


def coco_reference(
    images: list[dict], *, iou_thresholds: tuple[float, ...] | None = None, max_dets: tuple[int, ...] | None = None
) -> COCOeval:
    """pycocotools on ``xywh`` images: evaluate, accumulate and (default parameters) summarize."""
    gts, dts, cats = [], [], set()
    for im in images:
        for box, label, crowd, area in zip(
            im["gt_boxes"], im["gt_labels"], im["gt_iscrowd"], im["gt_area"], strict=True
        ):
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": im["image_id"],
                    "category_id": int(label),
                    "bbox": [float(v) for v in box],
                    "area": float(area),
                    "iscrowd": int(crowd),
                }
            )
            cats.add(int(label))
        for box, score, label in zip(im["pred_boxes"], im["pred_scores"], im["pred_labels"], strict=True):
            dts.append(
                {
                    "image_id": im["image_id"],
                    "category_id": int(label),
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
            cats.add(int(label))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": im["image_id"]} for im in images],
            "annotations": gts,
            "categories": [{"id": c} for c in sorted(cats)],
        }
        gt.createIndex()
        dt = gt.loadRes(dts)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.useCats = 1
        if iou_thresholds is not None:
            ev.params.iouThrs = np.array(iou_thresholds)
        if max_dets is not None:
            ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        if iou_thresholds is None and max_dets is None:
            ev.summarize()
    return ev


def ours(images: list[dict], box_format: str = "xywh", **params) -> tuple[CocoDetectionStatistic, dict]:
    stat = CocoDetectionStatistic(box_format=box_format, **params)
    return stat, stat.update(stat.zero(), detection_batch(images))


def assert_arrays_match(stat: CocoDetectionStatistic, state: dict, ev: COCOeval) -> float:
    """Our precision / recall arrays equal COCOeval's; returns the largest absolute difference."""
    acc = stat.accumulate(state)
    assert acc.labels.tolist() == list(ev.params.catIds)
    assert acc.precision.shape == ev.eval["precision"].shape
    diff = max(
        float(np.max(np.abs(acc.precision - ev.eval["precision"]))),
        float(np.max(np.abs(acc.recall - ev.eval["recall"]))),
    )
    assert diff <= TOLERANCE
    return diff


def assert_summary_matches(values: dict[str, float], ev: COCOeval) -> float:
    got = np.array([values[k] for k in SUMMARY_KEYS])
    diff = float(np.max(np.abs(got - np.asarray(ev.stats))))
    assert diff <= TOLERANCE, dict(zip(SUMMARY_KEYS, zip(got, ev.stats, strict=True), strict=True))
    return diff


# --- tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "tied"), [(0, False), (1, False), (2, True), (3, True), (4, False)])
def test_matches_pycocotools(seed: int, tied: bool) -> None:
    images = random_images(np.random.default_rng(seed), tied_scores=tied)
    ev = coco_reference(images)
    stat, state = ours(images)
    assert_arrays_match(stat, state, ev)
    assert_summary_matches(stat.summarize(state), ev)
    # the data exercise what they should: crowds, empty images, undefined areas / categories, truncation
    assert sum(im["gt_iscrowd"].sum() for im in images) > 0
    assert any(len(im["gt_labels"]) == 0 for im in images)
    assert any(len(im["pred_labels"]) == 0 for im in images)
    assert (ev.eval["precision"] == -1).any()
    assert int(state["rank"].max()) == 99


def test_metric_keys_and_functional_api() -> None:
    images = random_images(np.random.default_rng(5))
    ev = coco_reference(images)
    metric = mean_average_precision(Task("binary"))
    stat = metric.statistic
    values = metric.compute(stat.update(stat.zero(), detection_batch(in_format(images, "xyxy"))))
    assert set(values) == {"", *(f".{k}" for k in SUMMARY_KEYS[1:])}
    named = {("map" if k == "" else k[1:]): v for k, v in values.items()}
    assert_summary_matches(named, ev)
    assert evaluate_coco(in_format(images, "xyxy")) == named


@pytest.mark.parametrize("with_ids", [True, False])
def test_sharding_invariance(with_ids: bool) -> None:
    rng = np.random.default_rng(6)
    images = random_images(rng, n_images=60)
    if not with_ids:
        images = [{k: v for k, v in im.items() if k != "image_id"} for im in images]
    metric = mean_average_precision(None, box_format="xywh", class_metrics=True)
    acc = Accumulator.for_metrics([metric])
    results, states = [], []
    for n_shards in (1, 3, 7):
        cuts = np.sort(rng.choice(np.arange(1, len(images)), n_shards - 1, replace=False))
        shards = np.split(rng.permutation(len(images)), cuts)
        parts = [acc.update(acc.zero(), detection_batch([images[i] for i in idx])) for idx in shards]
        merged = merge_randomly(acc, [*parts, acc.zero()], rng)[0]
        states.append(merged)
        results.append(metric.compute(merged))
    for state in states[1:]:
        for key, leaf in state.items():
            np.testing.assert_array_equal(leaf, states[0][key])
            assert leaf.dtype == states[0][key].dtype
    assert results[0] == results[1] == results[2]
    ev = coco_reference([{**im, "image_id": i + 1} for i, im in enumerate(images)])
    assert_summary_matches({("map" if k == "" else k[1:]): v for k, v in results[0].items()}, ev)


def test_box_formats_agree() -> None:
    images = random_images(np.random.default_rng(7))
    ev = coco_reference(images)
    values = {fmt: evaluate_coco(in_format(images, fmt), box_format=fmt) for fmt in ("xyxy", "xywh", "cxcywh")}
    assert values["xyxy"] == values["xywh"] == values["cxcywh"]
    assert_summary_matches(values["xywh"], ev)


def test_float_boxes_in_xyxy() -> None:
    rng = np.random.default_rng(8)
    images = []
    for i in range(40):
        m = int(rng.integers(0, 7))
        xy = rng.uniform(0, 300, (m, 2))
        gt = np.concatenate([xy, xy + np.exp(rng.uniform(1, 5.5, (m, 2)))], axis=1)  # xyxy
        pred = np.concatenate(
            [gt + rng.normal(0, 4, gt.shape), rng.uniform(0, 300, (3, 2)) @ np.c_[np.eye(2), np.eye(2)]]
        )
        pred[-3:, 2:] += rng.uniform(5, 80, (3, 2))
        images.append(
            {
                "image_id": i + 1,
                "gt_boxes": gt,
                "gt_labels": rng.integers(0, 4, m),
                "gt_iscrowd": (rng.random(m) < 0.1).astype(np.int64),
                "pred_boxes": pred,
                "pred_scores": rng.random(len(pred)),
                "pred_labels": rng.integers(0, 4, len(pred)),
            }
        )

    def xywh(b: np.ndarray) -> np.ndarray:
        return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)

    reference = []
    for im in images:
        g = xywh(im["gt_boxes"])
        reference.append({**im, "gt_boxes": g, "pred_boxes": xywh(im["pred_boxes"]), "gt_area": g[:, 2] * g[:, 3]})
    ev = coco_reference(reference)
    stat, state = ours(images, box_format="xyxy")  # gt_area defaults to the box's w * h
    assert_arrays_match(stat, state, ev)
    assert_summary_matches(stat.summarize(state), ev)


def test_custom_thresholds() -> None:
    images = random_images(np.random.default_rng(9), tied_scores=True)
    thresholds, max_dets = (0.3, 0.5, 0.65, 0.9), (2, 5)
    ev = coco_reference(images, iou_thresholds=thresholds, max_dets=max_dets)
    stat, state = ours(images, iou_thresholds=thresholds, max_detections=max_dets)
    assert_arrays_match(stat, state, ev)
    values = stat.summarize(state)
    precision, recall = ev.eval["precision"], ev.eval["recall"]

    def mean(s: np.ndarray) -> float:
        return float(np.mean(s[s > -1])) if (s > -1).any() else -1.0

    expected = {
        "map": mean(precision[:, :, :, 0, -1]),
        "map_50": mean(precision[1:2, :, :, 0, -1]),
        "map_small": mean(precision[:, :, :, 1, -1]),
        "map_medium": mean(precision[:, :, :, 2, -1]),
        "map_large": mean(precision[:, :, :, 3, -1]),
        "mar_2": mean(recall[:, :, 0, 0]),
        "mar_5": mean(recall[:, :, 0, 1]),
        "mar_small": mean(recall[:, :, 1, -1]),
        "mar_medium": mean(recall[:, :, 2, -1]),
        "mar_large": mean(recall[:, :, 3, -1]),
    }
    assert set(values) == set(expected)  # no map_75: 0.75 is not a threshold
    for key, value in expected.items():
        assert abs(values[key] - value) <= TOLERANCE, key
    assert int(state["rank"].max()) == 4


def test_per_class_values() -> None:
    images = random_images(np.random.default_rng(10))
    ev = coco_reference(images)
    values = evaluate_coco(in_format(images, "cxcywh"), box_format="cxcywh", class_metrics=True)
    precision, recall = ev.eval["precision"], ev.eval["recall"]
    undefined = 0
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        r = recall[:, k, 0, -1]
        expected_ap = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
        expected_ar = float(np.mean(r[r > -1])) if (r > -1).any() else -1.0
        undefined += expected_ap == -1.0
        assert abs(values[f"map_per_class[{cat}]"] - expected_ap) <= TOLERANCE
        assert abs(values[f"mar_100_per_class[{cat}]"] - expected_ar) <= TOLERANCE
    assert undefined >= 1  # the never-true category


def test_no_ground_truth_and_zero_weights() -> None:
    rng = np.random.default_rng(11)
    images = random_images(rng, n_images=20)
    empty = [
        {
            **im,
            "gt_boxes": np.zeros((0, 4)),
            "gt_labels": np.zeros(0, np.int64),
            "gt_iscrowd": np.zeros(0, np.int64),
            "gt_area": np.zeros(0),
        }
        for im in images
    ]
    ev = coco_reference(empty)
    assert_summary_matches(evaluate_coco(empty, box_format="xywh"), ev)
    assert all(v == -1.0 for v in ev.stats)

    # rows of weight 0 are absent images
    stat = CocoDetectionStatistic(box_format="xywh")
    batch = detection_batch(images + empty)
    batch["weights"] = np.r_[np.ones(len(images)), np.zeros(len(empty))]
    weighted = stat.update(stat.zero(), batch)
    _, plain = ours(images)
    for key, leaf in plain.items():
        np.testing.assert_array_equal(weighted[key], leaf)


def test_state_is_compact() -> None:
    stat, state = ours(random_images(np.random.default_rng(12)))
    n = len(state["score"])
    per_detection = sum(state[k].nbytes for k in ("score", "image_id", "label", "rank", "tp", "fp")) / n
    assert per_detection == 38
    # plus the optional ascending ids of the images held (8 bytes an image), where the rows have image ids
    assert state.keys() - stat.zero().keys() == set(stat.optional_leaves()) == {"images"}
    assert state["images"].dtype == np.int64 and np.all(np.diff(state["images"]) > 0)
    blank = stat.update(stat.zero(), detection_batch([{}, {}]))  # images without boxes: an empty state
    for key, leaf in stat.zero().items():
        assert state[key].dtype == blank[key].dtype == leaf.dtype
        assert blank[key].shape == leaf.shape
    assert tuple(COCOeval(iouType="bbox").params.iouThrs.tolist()) == COCO_IOU_THRESHOLDS


def _image(image_id: int, gt: list, gt_labels: list, preds: list, scores: list, labels: list, crowd=None) -> dict:
    gt_boxes = np.asarray(gt, np.float64).reshape(-1, 4)
    return {
        "image_id": image_id,
        "gt_boxes": gt_boxes,
        "gt_labels": np.asarray(gt_labels, np.int64),
        "gt_iscrowd": np.zeros(len(gt_boxes), np.int64) if crowd is None else np.asarray(crowd, np.int64),
        "gt_area": gt_boxes[:, 2] * gt_boxes[:, 3],
        "pred_boxes": np.asarray(preds, np.float64).reshape(-1, 4),
        "pred_scores": np.asarray(scores, np.float64),
        "pred_labels": np.asarray(labels, np.int64),
    }


def test_edge_images_match_pycocotools() -> None:
    """Images without ground truth or without detections, detections only on images without ground truth,
    a crowd region, zero-area boxes, duplicate detections with tied scores and a category only among the
    detections: the twelve values equal pycocotools'."""
    cases = {
        "no ground truth in one image": [
            _image(1, [[10, 10, 40, 40]], [1], [[12, 10, 38, 42]], [0.9], [1]),
            _image(2, [], [], [[0, 0, 20, 20], [5, 5, 30, 30]], [0.95, 0.3], [1, 1]),
        ],
        "no detections in one image": [
            _image(1, [[10, 10, 40, 40]], [1], [[12, 10, 38, 42]], [0.9], [1]),
            _image(2, [[0, 0, 20, 20]], [1], [], [], []),
        ],
        "detections only where no ground truth": [
            _image(1, [[10, 10, 40, 40]], [1], [], [], []),
            _image(2, [], [], [[10, 10, 40, 40]], [0.9], [1]),
        ],
        "crowd region": [
            _image(
                1,
                [[10, 10, 40, 40], [0, 0, 100, 100]],
                [1, 1],
                [[12, 10, 38, 42], [0, 0, 100, 100], [60, 60, 10, 10]],
                [0.9, 0.8, 0.7],
                [1, 1, 1],
                crowd=[0, 1],
            )
        ],
        "zero-area boxes": [
            _image(1, [[10, 10, 40, 40], [5, 5, 0, 4]], [1, 1], [[10, 10, 40, 40], [5, 5, 0, 4]], [0.9, 0.5], [1, 1])
        ],
        "duplicates with tied scores": [
            _image(1, [[10, 10, 40, 40]], [1], [[10, 10, 40, 40]] * 3, [0.5] * 3, [1] * 3),
            _image(2, [[0, 0, 4, 4]], [1], [[0, 0, 3, 3], [80, 80, 9, 9]], [0.5, 0.5], [1, 1]),
        ],
        "category only among detections": [
            _image(1, [[10, 10, 40, 40]], [1], [[12, 10, 38, 42], [60, 60, 30, 30]], [0.9, 0.95], [1, 2])
        ],
    }
    for name, images in cases.items():
        ev = coco_reference(images)
        values = evaluate_coco(images, box_format="xywh")
        got = np.array([values[k] for k in SUMMARY_KEYS])
        np.testing.assert_allclose(got, ev.stats, atol=TOLERANCE, rtol=0, err_msg=name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pred_boxes": np.array([[np.nan, 10, 40, 40]])}, "pred_boxes of row 0 holds a NaN or infinite"),
        ({"gt_boxes": np.array([[10, 10, np.inf, 40]])}, "gt_boxes of row 0 holds a NaN or infinite"),
        ({"pred_boxes": np.array([[10, 10, 40]])}, r"pred_boxes of row 0 must hold boxes as \[k, 4\]"),
        ({"gt_boxes": np.arange(7.0)}, r"gt_boxes of row 0 must hold boxes as \[k, 4\] .* got shape \[7\]"),
        ({"gt_area": np.array([np.nan])}, "gt_area of row 0 must be finite and non-negative"),
        ({"gt_area": np.array([-1.0])}, "gt_area of row 0 must be finite and non-negative"),
    ],
)
def test_malformed_boxes_and_areas_raise(change: dict, message: str) -> None:
    """A box that is not 4 finite numbers or an area that is NaN or negative is an error, not a match
    that silently never happens (pycocotools gives 0 for a NaN box)."""
    image = _image(0, [[10, 10, 40, 40]], [1], [[12, 10, 38, 42]], [0.9], [1])
    with pytest.raises(ValueError, match=message):
        evaluate_coco([{**image, **change}], box_format="xywh")


def test_functional_image_counts_must_agree() -> None:
    from evaluators.functional import mean_average_precision as functional_map

    target = {"boxes": [[10, 10, 50, 50]], "labels": [1]}
    with pytest.raises(ValueError, match="predictions hold 0 images but targets 1"):
        functional_map([], [target])


def _digest_numbered(images: list[dict]) -> list[dict]:
    """The images numbered in the order of their digests (:func:`~evaluators.detection.boxes.image_digest`), for
    pycocotools, without ``image_id`` for evalpipe's side."""
    from evaluators.detection.boxes import image_digest

    stat = CocoDetectionStatistic(box_format="xywh")
    digests = []
    for image in images:  # (the arrays image_digest reads, as the statistic reads one image)
        records = stat.update(stat.zero(), detection_batch([{k: v for k, v in image.items() if k != "image_id"}]))
        digests.append(records["image_id"][0] if len(records["image_id"]) else -1)
    order = np.argsort(digests, kind="stable")
    assert image_digest(np.zeros(1)) >= 0
    return [{**images[i], "image_id": rank + 1} for rank, i in enumerate(order)]


@pytest.mark.parametrize("seed", [2, 3])
def test_tied_scores_without_image_ids_are_not_ordered_by_their_matches(seed) -> None:
    """Without ``image_id``, equal scores of different images were ordered by rank, then by their match flags:
    true positives first, the highest AP any order gives (two images at score 0.9, a miss then a hit: mAP 0.505
    where pycocotools with ids in row order gives 0.252; 500 images of scores rounded to 0.1: 5-8% above
    pycocotools for any numbering). Now ordered by a digest of each image: pycocotools' values with the images
    numbered in that order, whatever the sharding."""
    miss = _image(0, [[0.0, 0.0, 10.0, 10.0]], [1], [[200.0, 200.0, 10.0, 10.0]], [0.9], [1])
    hit = _image(0, [[0.0, 0.0, 10.0, 10.0]], [1], [[0.0, 0.0, 10.0, 10.0]], [0.9], [1])
    pair = _digest_numbered([miss, hit])
    expected = coco_reference(pair).stats[0]
    assert expected in (pytest.approx(0.252475, abs=1e-6), pytest.approx(0.504950, abs=1e-6))
    without_ids = [{k: v for k, v in im.items() if k != "image_id"} for im in (miss, hit)]
    assert evaluate_coco(without_ids)["map"] == pytest.approx(expected, abs=TOLERANCE)
    assert evaluate_coco(without_ids[::-1])["map"] == pytest.approx(expected, abs=TOLERANCE)  # (any order)

    images = random_images(np.random.default_rng(seed), n_images=120, tied_scores=True)
    ev = coco_reference(_digest_numbered(images))
    rng = np.random.default_rng(seed + 10)
    without_ids = [{k: v for k, v in im.items() if k != "image_id"} for im in images]
    metric = mean_average_precision(None, box_format="xywh")
    acc = Accumulator.for_metrics([metric])
    for n_shards in (1, 4):
        shards = np.array_split(rng.permutation(len(images)), n_shards)
        parts = [acc.update(acc.zero(), detection_batch([without_ids[i] for i in idx])) for idx in shards]
        values = metric.compute(merge_randomly(acc, parts, rng)[0])
        assert_summary_matches({("map" if k == "" else k[1:]): v for k, v in values.items()}, ev)
    numbered = _digest_numbered(images)
    reversed_order = [{**im, "image_id": len(images) - im["image_id"] + 1} for im in numbered]
    assert abs(coco_reference(reversed_order).stats[0] - ev.stats[0]) > 1e-4  # (ties the order moves)
