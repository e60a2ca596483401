"""Segmentation metrics against scikit-learn and torchmetrics, sharding invariance and PNG masks.

References run on the flattened valid pixels (targets != ignore_index, weight > 0) of all images:

* scikit-learn: ``confusion_matrix`` (the state itself, exactly), ``jaccard_score`` (IoU), ``f1_score`` (Dice),
  ``accuracy_score`` (pixel accuracy) and ``recall_score`` (per-class / mean pixel accuracy), with the per-pixel
  weight of its image as ``sample_weight``; ``average="none"`` against ``labels=range(C)``;
* torchmetrics (float32): ``MulticlassJaccardIndex``, ``MulticlassF1Score`` and ``MulticlassAccuracy`` with the
  same ``average`` and ``ignore_index`` on the unflattened masks (scores as ``[n, C, H, W]``), and the
  ``segmentation`` package's ``DiceScore(aggregation_level="global")`` and ``MeanIoU`` (one image).
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from sklearn import metrics as skm

from evaluators import segmentation as seg
from evaluators.accumulate import Accumulator
from evaluators.functional import segmentation as fseg
from evaluators.task import Task, TaskKind

torch = pytest.importorskip("torch")
tm_cls = pytest.importorskip("torchmetrics.classification")
tm_seg = pytest.importorskip("torchmetrics.segmentation")

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning"),
    pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true:UserWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

IGNORE = 255
SK_TOL = {"rtol": 1e-12, "atol": 1e-12}
TM_TOL = {"rtol": 1e-6, "atol": 1e-6}
CASES = [(seed, c) for c in (2, 5, 21) for seed in (0, 1, 2)]
SHAPES = {0: (7, 37, 53), 1: (5, 19, 70), 2: (9, 23, 31)}
"""seed -> (images, H, W): heights and widths that are not powers of two."""


def make_masks(
    rng: np.random.Generator, n: int, h: int, w: int, c: int, *, ignore: int | None = IGNORE
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predicted class ids ``[n, h, w]`` (int64) with skewed class frequencies.

    Each image uses a random subset of the classes (so classes are absent from some images); with ``c >= 5`` one
    class never occurs in the targets but is predicted, and one occurs nowhere. A random rectangle of each image
    is ``ignore`` (when given); 35 % of the pixels are predicted as a random class.
    """
    never = c - 1 if c >= 5 else None
    only_predicted = c - 2 if c >= 5 else None
    target_classes = [k for k in range(c) if k not in (never, only_predicted)]
    predicted_classes = [k for k in range(c) if k != never]
    freq = rng.dirichlet(np.full(len(target_classes), 0.7))
    targets = np.empty((n, h, w), np.int64)
    for i in range(n):
        subset = rng.choice(len(target_classes), size=rng.integers(1, len(target_classes) + 1), replace=False)
        p = freq[subset] / freq[subset].sum()
        targets[i] = np.asarray(target_classes)[subset][rng.choice(len(subset), size=(h, w), p=p)]
    preds = targets.copy()
    flip = rng.random((n, h, w)) < 0.35
    preds[flip] = rng.choice(predicted_classes, size=int(flip.sum()))
    if ignore is not None:
        for i in range(n):
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            targets[i, y : y + rng.integers(1, h // 2 + 1), x : x + rng.integers(1, w // 2 + 1)] = ignore
    return preds, targets


def scores_for(rng: np.random.Generator, preds: np.ndarray, c: int) -> np.ndarray:
    """float32 logits ``[n, h, w, c]`` whose argmax is ``preds``."""
    scores = rng.normal(0.0, 1.0, (*preds.shape, c)).astype(np.float32)
    np.put_along_axis(scores, preds[..., None], 10.0, axis=-1)
    return scores


def flat_valid(
    preds: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None, ignore: int | None = IGNORE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened pixels with a valid target and positive weight: (y_true, y_pred, sample_weight)."""
    w = np.ones(len(targets)) if weights is None else np.asarray(weights, np.float64)
    pixel_w = np.broadcast_to(w.reshape(-1, *([1] * (targets.ndim - 1))), targets.shape)
    keep = pixel_w > 0
    if ignore is not None:
        keep &= targets != ignore
    return targets[keep], preds[keep], pixel_w[keep]


def evaluate_all(metrics: list, columns: dict[str, np.ndarray]) -> list[dict[str, object]]:
    acc = Accumulator.for_metrics(metrics)
    states = acc.update(acc.zero(), columns)
    return [m.compute(states[acc.index(m.statistic)]) for m in metrics]


def per_class(values: dict[str, object], c: int) -> np.ndarray:
    return np.array([values[f"[{i}]"] for i in range(c)])


@pytest.mark.parametrize(("seed", "c"), CASES)
def test_against_sklearn(seed: int, c: int) -> None:
    rng = np.random.default_rng(100 * seed + c)
    n, h, w = SHAPES[seed]
    preds, targets = make_masks(rng, n, h, w, c)
    weights = rng.integers(0, 4, n).astype(np.float64)
    weights[0] = 1.0
    y, p, sw = flat_valid(preds, targets, weights)
    labels = list(range(c))
    task = Task(TaskKind.MULTICLASS, c, ignore_index=IGNORE)

    averages = ("macro", "micro", "weighted", "none")
    metrics = [seg.mean_iou_metric(task, average=a) for a in averages]
    metrics += [seg.dice_score_metric(task, average=a) for a in averages]
    metrics += [seg.pixel_accuracy_metric(task, average=a) for a in averages]
    metrics += [seg.mean_pixel_accuracy_metric(task), seg.pixel_confusion_matrix_metric(task)]
    assert len({m.statistic for m in metrics}) == 1  # one confusion matrix for every metric
    values = evaluate_all(metrics, seg.pixel_rows(preds, targets, weights))
    iou, dice, acc = values[0:4], values[4:8], values[8:12]
    mean_acc, cm = values[12], values[13][""]

    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, p, labels=labels, sample_weight=sw))
    for a, got in zip(averages, iou, strict=True):
        if a == "none":
            ref = skm.jaccard_score(y, p, labels=labels, average=None, sample_weight=sw, zero_division=0)
            np.testing.assert_allclose(per_class(got, c), ref, **SK_TOL)
        else:
            ref = skm.jaccard_score(y, p, average=a, sample_weight=sw, zero_division=0)
            np.testing.assert_allclose(got[""], ref, **SK_TOL)
    for a, got in zip(averages, dice, strict=True):
        if a == "none":
            ref = skm.f1_score(y, p, labels=labels, average=None, sample_weight=sw, zero_division=0)
            np.testing.assert_allclose(per_class(got, c), ref, **SK_TOL)
        else:
            ref = skm.f1_score(y, p, average=a, sample_weight=sw, zero_division=0)
            np.testing.assert_allclose(got[""], ref, **SK_TOL)
    np.testing.assert_allclose(acc[0][""], skm.recall_score(y, p, average="macro", sample_weight=sw), **SK_TOL)
    np.testing.assert_allclose(acc[1][""], skm.accuracy_score(y, p, sample_weight=sw), **SK_TOL)
    np.testing.assert_allclose(acc[2][""], skm.recall_score(y, p, average="weighted", sample_weight=sw), **SK_TOL)
    ref = skm.recall_score(y, p, labels=labels, average=None, sample_weight=sw, zero_division=0)
    np.testing.assert_allclose(per_class(acc[3], c), ref, **SK_TOL)
    np.testing.assert_allclose(mean_acc[""], acc[0][""], **SK_TOL)
    # Micro Dice is pixel accuracy.
    np.testing.assert_allclose(dice[1][""], acc[1][""], **SK_TOL)

    # The functional API gives the same numbers (class ids, and class scores through the argmax).
    np.testing.assert_allclose(fseg.mean_iou(preds, targets, c, ignore_index=IGNORE, weights=weights), iou[0][""])
    scores = scores_for(rng, preds, c)
    np.testing.assert_allclose(
        fseg.dice_score(scores, targets, ignore_index=IGNORE, weights=weights, average="none"), per_class(dice[3], c)
    )
    np.testing.assert_allclose(fseg.pixel_accuracy(scores, targets, ignore_index=IGNORE, weights=weights), acc[1][""])


@pytest.mark.parametrize(("seed", "c"), CASES)
def test_against_torchmetrics(seed: int, c: int) -> None:
    rng = np.random.default_rng(200 + 100 * seed + c)
    n, h, w = SHAPES[seed]
    preds, targets = make_masks(rng, n, h, w, c)
    scores = scores_for(rng, preds, c)
    t_targets = torch.from_numpy(targets)
    inputs = {"ids": torch.from_numpy(preds), "scores": torch.from_numpy(np.moveaxis(scores, -1, 1).copy())}
    ours_inputs = {"ids": preds, "scores": scores}
    for average in ("macro", "micro", "weighted", "none"):
        kw = {"num_classes": c, "average": average, "ignore_index": IGNORE}
        references = {
            "iou": tm_cls.MulticlassJaccardIndex(**kw),
            "dice": tm_cls.MulticlassF1Score(**kw),
            "acc": tm_cls.MulticlassAccuracy(**kw),
        }
        for kind, t_preds in inputs.items():
            ours = {
                "iou": fseg.mean_iou(ours_inputs[kind], targets, c, average=average, ignore_index=IGNORE),
                "dice": fseg.dice_score(ours_inputs[kind], targets, c, average=average, ignore_index=IGNORE),
                "acc": fseg.pixel_accuracy(ours_inputs[kind], targets, c, average=average, ignore_index=IGNORE),
            }
            for name, reference in references.items():
                reference.reset()
                # Two updates: torchmetrics accumulates too.
                reference.update(t_preds[: n // 2], t_targets[: n // 2])
                reference.update(t_preds[n // 2 :], t_targets[n // 2 :])
                expected = reference.compute().double().numpy()
                np.testing.assert_allclose(ours[name], expected, **TM_TOL, err_msg=f"{name} {average} {kind}")


@pytest.mark.parametrize("c", [2, 5, 21])
def test_against_torchmetrics_segmentation_package(c: int) -> None:
    """``DiceScore(aggregation_level="global")`` pools pixels as we do; ``MeanIoU`` averages images, so one image."""
    rng = np.random.default_rng(c)
    preds, targets = make_masks(rng, 6, 29, 45, c, ignore=None)
    present = np.isin(np.arange(c), np.concatenate([preds.ravel(), targets.ravel()]))
    for average in ("macro", "micro", "weighted", "none"):
        metric = tm_seg.DiceScore(c, average=average, input_format="index", aggregation_level="global")
        metric.update(torch.from_numpy(preds), torch.from_numpy(targets))
        expected = metric.compute().double().numpy()
        ours = fseg.dice_score(preds, targets, c, average=average)
        if average == "none":  # torchmetrics: NaN for a class absent from both; here zero_division
            np.testing.assert_allclose(ours[present], expected[present], **TM_TOL)
            assert np.isnan(expected[~present]).all() and (ours[~present] == 0).all()
        else:
            np.testing.assert_allclose(ours, expected, **TM_TOL)
    one_p, one_t = torch.from_numpy(preds[:1]), torch.from_numpy(targets[:1])
    metric = tm_seg.MeanIoU(c, per_class=True, input_format="index")
    metric.update(one_p, one_t)
    expected = metric.compute().double().numpy().ravel()
    ours = fseg.mean_iou(preds[:1], targets[:1], c, average="none")
    seen = expected >= 0  # -1: absent from the image
    np.testing.assert_allclose(ours[seen], expected[seen], **TM_TOL)
    metric = tm_seg.MeanIoU(c, input_format="index")
    metric.update(one_p, one_t)
    np.testing.assert_allclose(fseg.mean_iou(preds[:1], targets[:1], c), float(metric.compute()), **TM_TOL)


@pytest.mark.parametrize("ignore", [0, 2])
def test_ignore_index_inside_the_classes(ignore: int) -> None:
    """An ``ignore_index`` in ``[0, C)`` drops its pixels. IoU leaves its class out of every reduction, as
    torchmetrics' JaccardIndex; Dice and the per-class accuracy keep it where it is predicted on a counted pixel (an
    error each time), as torchmetrics' F1 score and accuracy and scikit-learn over the counted pixels, so micro Dice is
    pixel accuracy. (Dice and the accuracy once left it out too: macro Dice 0.45 where both references give 0.30.)"""
    rng = np.random.default_rng(7 + ignore)
    c = 5
    preds, targets = make_masks(rng, 6, 33, 41, c, ignore=None)
    y, p, _ = flat_valid(preds, targets, ignore=ignore)
    assert ignore in set(p) and ignore not in set(y)  # (predicted on counted pixels: the case where they differ)
    others = [k for k in range(c) if k != ignore]
    present = [k for k in others if k in set(y) | set(p)]
    torch_inputs = (torch.from_numpy(preds), torch.from_numpy(targets))
    for average in ("macro", "micro", "weighted"):
        labels = present if average == "macro" else others
        ref = skm.jaccard_score(y, p, labels=labels, average=average, zero_division=0)
        ours = fseg.mean_iou(preds, targets, c, average=average, ignore_index=ignore)
        np.testing.assert_allclose(ours, ref, **SK_TOL)
        reference = tm_cls.MulticlassJaccardIndex(c, average=average, ignore_index=ignore)
        np.testing.assert_allclose(ours, float(reference(*torch_inputs)), **TM_TOL)
        dice = fseg.dice_score(preds, targets, c, average=average, ignore_index=ignore)
        np.testing.assert_allclose(dice, skm.f1_score(y, p, average=average, zero_division=0), **SK_TOL)
        reference = tm_cls.MulticlassF1Score(c, average=average, ignore_index=ignore)
        np.testing.assert_allclose(dice, float(reference(*torch_inputs)), **TM_TOL)
        if average == "macro":  # (mean pixel accuracy: the mean of the classes' recalls)
            recall = fseg.mean_pixel_accuracy(preds, targets, c, ignore_index=ignore)
            np.testing.assert_allclose(recall, skm.recall_score(y, p, average=average, zero_division=0), **SK_TOL)
            reference = tm_cls.MulticlassAccuracy(c, average=average, ignore_index=ignore)
            np.testing.assert_allclose(recall, float(reference(*torch_inputs)), **TM_TOL)
    accuracy = fseg.pixel_accuracy(preds, targets, c, ignore_index=ignore)
    np.testing.assert_allclose(accuracy, skm.accuracy_score(y, p), **SK_TOL)
    micro_dice = fseg.dice_score(preds, targets, c, average="micro", ignore_index=ignore)
    np.testing.assert_allclose(micro_dice, accuracy, **SK_TOL)
    ref = skm.jaccard_score(y, p, labels=list(range(c)), average=None, zero_division=0)
    np.testing.assert_allclose(fseg.mean_iou(preds, targets, c, average="none", ignore_index=ignore), ref, **SK_TOL)


def test_fractional_weights_and_zero_weight_images() -> None:
    rng = np.random.default_rng(11)
    c = 5
    preds, targets = make_masks(rng, 8, 21, 34, c)
    weights = rng.uniform(0.1, 3.0, 8)
    y, p, sw = flat_valid(preds, targets, weights)
    np.testing.assert_allclose(
        fseg.mean_iou(preds, targets, c, ignore_index=IGNORE, weights=weights),
        skm.jaccard_score(y, p, average="macro", sample_weight=sw),
        rtol=1e-12,
    )
    # Zero-weight images (padding) change nothing, even with a class that occurs only there.
    extra_p = np.full((3, 21, 34), c - 1)
    extra_t = np.full((3, 21, 34), c - 1)
    all_p, all_t = np.concatenate([preds, extra_p]), np.concatenate([targets, extra_t])
    all_w = np.concatenate([weights, np.zeros(3)])
    stat = seg.PixelConfusion(c, IGNORE)
    acc = Accumulator([stat])
    (base,) = acc.update(acc.zero(), seg.pixel_rows(preds, targets, weights))
    (padded,) = acc.update(acc.zero(), seg.pixel_rows(all_p, all_t, all_w))
    np.testing.assert_array_equal(base, padded)
    assert fseg.mean_iou(all_p, all_t, c, ignore_index=IGNORE, weights=all_w) == fseg.mean_iou(
        preds, targets, c, ignore_index=IGNORE, weights=weights
    )


def test_sharding_invariance() -> None:
    """Per-shard states merged in any order or tree equal the one-pass state bit for bit (integer weights), and
    the pixel-row layout equals feeding whole ``[n, H, W]`` images."""
    rng = np.random.default_rng(3)
    c = 21
    preds, targets = make_masks(rng, 14, 27, 43, c)
    weights = rng.integers(1, 5, 14).astype(np.float64)
    stat = seg.PixelConfusion(c, IGNORE)
    acc = Accumulator([stat])
    (whole,) = acc.update(acc.zero(), seg.pixel_rows(preds, targets, weights))
    (images,) = acc.update(acc.zero(), {"predictions": preds, "targets": targets, "weights": weights})
    np.testing.assert_array_equal(whole, images)
    y, p, sw = flat_valid(preds, targets, weights)
    np.testing.assert_array_equal(whole, skm.confusion_matrix(y, p, labels=range(c), sample_weight=sw))

    bounds = [0, 0, 1, 5, 6, 14]  # an empty shard, one-image shards, larger ones
    shards = []
    for lo, hi in itertools.pairwise(bounds):
        (state,) = acc.update(acc.zero(), seg.pixel_rows(preds[lo:hi], targets[lo:hi], weights[lo:hi]))
        shards.append(state)
    metric = seg.mean_iou_metric(Task(TaskKind.MULTICLASS, c, ignore_index=IGNORE), average="none")
    expected = metric.compute(whole)
    for order in itertools.permutations(range(len(shards))):
        merged = stat.zero()
        for i in order:
            merged = stat.merge(merged, shards[i])
        np.testing.assert_array_equal(merged, whole)
        assert metric.compute(merged) == expected
    for _ in range(20):  # random trees
        pool = [shards[i] for i in rng.permutation(len(shards))]
        while len(pool) > 1:
            i = int(rng.integers(0, len(pool) - 1))
            pool[i : i + 2] = [stat.merge(pool[i], pool[i + 1])]
        np.testing.assert_array_equal(pool[0], whole)


def test_png_masks_round_trip() -> None:
    from PIL import Image

    rng = np.random.default_rng(5)
    c = 21
    preds, targets = make_masks(rng, 4, 35, 50, c)
    encoded = [seg.encode_mask(m) for m in targets]
    decoded = seg.decode_masks(encoded)
    assert decoded.dtype == np.uint8 and decoded.shape == targets.shape
    np.testing.assert_array_equal(decoded, targets)

    # Palette PNG (the Pascal VOC layout): the palette index is the class id.
    out = io.BytesIO()
    image = Image.fromarray(targets[0].astype(np.uint8), mode="P")
    image.putpalette(list(rng.integers(0, 256, 768)))
    image.save(out, format="PNG")
    np.testing.assert_array_equal(seg.decode_mask(out.getvalue()), targets[0])

    # 16-bit class ids.
    wide = rng.integers(0, 1000, (17, 23))
    wide_png = seg.encode_mask(wide)
    with Image.open(io.BytesIO(wide_png)) as im:
        assert im.mode.startswith("I")
    np.testing.assert_array_equal(seg.decode_mask(wide_png), wide)

    # Metrics on decoded PNG columns equal those on the arrays.
    pred_png = np.array([seg.encode_mask(m) for m in preds], dtype=object)
    for average in ("macro", "none"):
        np.testing.assert_array_equal(
            fseg.mean_iou(seg.decode_masks(pred_png), decoded, c, average=average, ignore_index=IGNORE),
            fseg.mean_iou(preds, targets, c, average=average, ignore_index=IGNORE),
        )

    # Masks of different sizes go through pixel_rows as a list.
    small_t, small_p = targets[0, :11, :13], preds[0, :11, :13]
    rows = seg.pixel_rows([*preds, small_p], [*targets, small_t])
    acc = Accumulator([seg.PixelConfusion(c, IGNORE)])
    (state,) = acc.update(acc.zero(), rows)
    y, p, _ = flat_valid(
        np.concatenate([preds.ravel(), small_p.ravel()]), np.concatenate([targets.ravel(), small_t.ravel()])
    )
    np.testing.assert_array_equal(state, skm.confusion_matrix(y, p, labels=range(c)))
    with pytest.raises(ValueError, match="different sizes"):
        seg.decode_masks([encoded[0], seg.encode_mask(small_t)])

    rgb = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(rgb, format="PNG")
    with pytest.raises(ValueError, match="single-channel"):
        seg.decode_mask(rgb.getvalue())


def test_calibrax_examples_and_binary_masks() -> None:
    pred = np.array([1, 1, 0, 1, 0, 0, 1, 1])
    gt = np.array([1, 0, 0, 1, 0, 1, 1, 1])
    assert fseg.iou(pred, gt) == pytest.approx(skm.jaccard_score(gt, pred), abs=1e-15)
    assert fseg.jaccard_index(pred, gt) == fseg.iou(pred, gt)
    assert fseg.dice_coefficient(pred, gt) == pytest.approx(skm.f1_score(gt, pred), abs=1e-15)
    assert fseg.pixel_accuracy(pred, gt) == pytest.approx(skm.accuracy_score(gt, pred), abs=1e-15)
    pm, gm = np.array([0, 1, 2, 0, 1, 2]), np.array([0, 1, 1, 0, 2, 2])
    assert fseg.iou(pm, gm, num_classes=3, average="macro") == pytest.approx(5 / 9, abs=1e-15)
    assert fseg.dice_coefficient(pm, gm, num_classes=3, average="macro") == pytest.approx(2 / 3, abs=1e-15)

    # Foreground probability maps of a binary task, thresholded as p > threshold.
    rng = np.random.default_rng(9)
    probs = rng.random((5, 30, 41))
    probs[0, :3] = 0.5  # exactly on the threshold: background
    gt = (rng.random((5, 30, 41)) < probs).astype(np.int64)
    hard = (probs > 0.5).astype(np.int64)
    assert fseg.iou(probs, gt, threshold=0.5) == pytest.approx(skm.jaccard_score(gt.ravel(), hard.ravel()), abs=1e-12)
    task = Task(TaskKind.BINARY, threshold=0.5)
    metric = seg.mean_iou_metric(task, average="binary")
    (value,) = evaluate_all([metric], {"predictions": probs, "targets": gt})
    assert value[""] == pytest.approx(skm.jaccard_score(gt.ravel(), hard.ravel()), abs=1e-12)
    logits = np.log(probs / (1 - probs))
    (value,) = evaluate_all(
        [seg.mean_iou_metric(Task(TaskKind.BINARY, prediction="logits"), average="binary")],
        {"predictions": logits, "targets": gt},
    )
    assert value[""] == pytest.approx(skm.jaccard_score(gt.ravel(), hard.ravel()), abs=1e-12)


def test_checks_and_parameters() -> None:
    preds = np.zeros((2, 4, 5), np.int64)
    targets = np.zeros((2, 4, 5), np.int64)
    targets[0, 0, 0] = 7
    with pytest.raises(ValueError, match="1 pixels with class ids outside"):
        fseg.mean_iou(preds, targets, 5)
    assert seg.check_masks(preds, targets, 8) == []
    assert seg.check_masks(np.zeros((2, 4, 5, 3)), targets, 3) != []
    with pytest.raises(ValueError, match="average"):
        seg.mean_iou_metric(Task(TaskKind.MULTICLASS, 5), average="samples")
    with pytest.raises(ValueError, match="two classes"):
        seg.dice_score_metric(Task(TaskKind.MULTICLASS, 5), average="binary")
    with pytest.raises(ValueError, match="num_classes"):
        seg.mean_iou_metric(None)
    with pytest.raises(ValueError, match="not regression"):
        seg.mean_iou_metric(Task(TaskKind.REGRESSION), num_classes=3)
    # num_classes is a whole number; without it, the ids give it (finite, and not past 65,536 classes)
    for count in (3.5, 0, True):
        with pytest.raises(ValueError, match="num_classes must be a whole number"):
            fseg.mean_iou(preds, preds, count)
    with pytest.raises(ValueError, match="1 pixels with NaN or inf values"):
        fseg.iou(np.array([[0.2, np.nan]]), np.array([[0, 1]]), threshold=0.5)
    with pytest.raises(ValueError, match="class ids up to 4294967297: pass num_classes"):
        fseg.iou(np.array([[0, 1]]), np.array([[0, 2**32 + 1]]))
    # The task supplies C and ignore_index; the same settings share one statistic.
    task = Task(TaskKind.MULTICLASS, 4, ignore_index=IGNORE)
    assert seg.mean_iou_metric(task).statistic == seg.PixelConfusion(4, IGNORE)
    assert seg.dice_score_metric(None, num_classes=4, ignore_index=IGNORE).statistic == seg.PixelConfusion(4, IGNORE)
    # Nothing valid: the functions refuse it, as a job does (exit 2) and scikit-learn (empty input); a state of no
    # counted pixel (a slice's) gives NaN for every average (torchmetrics' macro JaccardIndex too), whatever
    # zero_division, and zero_division per class.
    empty = np.full((1, 3, 3), IGNORE)
    nothing = np.zeros((1, 3, 3), np.int64)
    for function in (fseg.mean_iou, fseg.dice_score, fseg.pixel_accuracy, fseg.mean_pixel_accuracy):
        with pytest.raises(ValueError, match="targets: no counted pixel"):
            function(nothing, empty, 3, ignore_index=IGNORE, zero_division=1.0)
    with pytest.raises(ValueError, match="every image weighs 0"):
        fseg.mean_iou(nothing, nothing, 3, weights=np.zeros(1))
    zero = np.zeros((4, 4))  # (the state of the 4-class task above)
    for factory in (seg.mean_iou_metric, seg.dice_score_metric, seg.pixel_accuracy_metric):
        assert np.isnan(factory(task, zero_division=1.0).compute(zero)[""]), factory
    none = seg.mean_iou_metric(task, average="none", zero_division=1.0).compute(zero)
    np.testing.assert_array_equal([none[f"[{i}]"] for i in range(4)], [1.0] * 4)


def test_image_all_ignored_and_bad_weights() -> None:
    """An image whose every target pixel is ``ignore_index`` adds nothing (scikit-learn on the other images'
    pixels); a NaN, infinite or negative image weight is an error, not a NaN or sign-flipped value."""
    rng = np.random.default_rng(21)
    c = 4
    preds, targets = make_masks(rng, 4, 9, 13, c)
    targets[1] = IGNORE
    y, p, _ = flat_valid(preds, targets)
    np.testing.assert_allclose(
        fseg.mean_iou(preds, targets, c, ignore_index=IGNORE), skm.jaccard_score(y, p, average="macro"), **SK_TOL
    )
    np.testing.assert_allclose(
        fseg.dice_score(preds, targets, c, ignore_index=IGNORE), skm.f1_score(y, p, average="macro"), **SK_TOL
    )
    for bad in (-1.0, np.nan, np.inf):
        weights = np.ones(4)
        weights[2] = bad
        for metric in (fseg.mean_iou, fseg.dice_score, fseg.pixel_accuracy):
            with pytest.raises(ValueError, match="weights: 1 row with a NaN, infinite or negative weight"):
                metric(preds, targets, c, ignore_index=IGNORE, weights=weights)


@pytest.mark.parametrize("zero_division", [7.0, -5.0, float("inf")])
@pytest.mark.parametrize("name", ["iou", "mean_iou", "dice_score"])
def test_the_functional_api_checks_zero_division_as_a_job_does(name, zero_division):
    """An absent class's ratio is ``zero_division``: outside [0, 1] it read as an IoU of 7.0 or a Dice of -5.0,
    which a YAML job refuses; the functional API refuses it too, and takes 0, 1, values between and NaN
    (scikit-learn's), and a negative ``ignore_index`` (as ``task.ignore_index: -1``)."""
    from evaluators.functional import segmentation as functional

    predictions, targets = np.array([[0, 1, 1, 0]]), np.array([[0, 1, 0, 0]])  # (class 2 absent on both sides)
    with pytest.raises(ValueError, match=r"zero_division.*must be a finite number >= 0 and <= 1"):
        getattr(functional, name)(predictions, targets, num_classes=3, average="none", zero_division=zero_division)
    values = getattr(functional, name)(predictions, targets, num_classes=3, average="none", zero_division=0.5)
    tp, fp, fn = np.array([2, 1]), np.array([0, 1]), np.array([1, 0])  # (classes 0 and 1, by hand)
    ratio = (tp / (tp + fp + fn)) if name != "dice_score" else (2 * tp / (2 * tp + fp + fn))
    np.testing.assert_allclose(values, [*ratio, 0.5], atol=1e-15)
    values = getattr(functional, name)(predictions, targets, num_classes=3, average="none", zero_division=float("nan"))
    np.testing.assert_allclose(values, [*ratio, np.nan], atol=1e-15)
    ignored = np.array([[0, 1, -1, 0]])  # (the third pixel left out: class 1's false positive goes)
    values = getattr(functional, name)(predictions, ignored, num_classes=3, average="none", ignore_index=-1)
    assert values[1] == 1.0
