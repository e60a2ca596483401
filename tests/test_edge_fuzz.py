"""Random edge rows through YAML jobs (hypothesis): labels at ``num_classes - 1``, ``num_classes`` and
``ignore_index``, scores at 0, the threshold and 1, masks of one class, NaN. Every job either commits finite
values equal to the reference (scikit-learn, a numpy confusion matrix) or stops with a DataError naming the
column; nothing is committed then."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from pipelines.results import list_runs
from tests.conftest import write_job

FUZZ = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_jobs = itertools.count()


def _outcome(tmp_path, columns: dict, task, metrics: list, roles: dict) -> tuple[dict[str, float] | None, str]:
    """Run a job over ``columns`` (two files): ``(overall values, "")`` or ``(None, the DataError message)``."""
    k = next(_jobs)
    data = tmp_path / f"data{k}"
    data.mkdir()
    table = pa.table(columns)
    half = max(1, len(table) // 2)
    pq.write_table(table.slice(0, half), data / "a.parquet", row_group_size=3)
    if len(table) > half:
        pq.write_table(table.slice(half), data / "b.parquet", row_group_size=3)
    out = tmp_path / f"out{k}"
    spec = {
        "name": "fuzz",
        "data": {"path": str(data), "columns": roles},
        "task": task,
        "metrics": metrics,
        "execution": {"runner": "local", "unit_rows": 4},
        "output": {"uri": str(out)},
    }
    try:
        run = run_job(spec_module.load(str(write_job(tmp_path / f"job{k}.yaml", spec))), show_progress=False)
    except DataError as exc:
        assert not list_runs(str(out))
        return None, str(exc)
    values = {key: m.value for key, m in run.run.point("overall").metrics.items()}
    return values, ""


BINARY_SCORES = st.sampled_from([0.0, 0.5, 1.0, 0.25, 0.75, float("nan")])


@FUZZ
@given(rows=st.lists(st.tuples(BINARY_SCORES, st.sampled_from([0, 1, 2])), min_size=1, max_size=9))
def test_binary_edge_rows(tmp_path, rows):
    p = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows], np.int64)
    values, message = _outcome(
        tmp_path,
        {"score": p, "label": y},
        "binary",
        ["accuracy", "log_loss"],
        {"predictions": "score", "targets": "label"},
    )
    if np.isnan(p).any() or (y == 2).any():
        assert values is None
        named = ["'score' (data.columns.predictions)"] * bool(np.isnan(p).any())
        named += ["'label' (data.columns.targets)"] * bool((y == 2).any())
        assert any(column in message for column in named), message
        return
    assert values is not None, message
    assert values["accuracy"] == pytest.approx(skm.accuracy_score(y, p > 0.5), abs=1e-12)
    assert math.isfinite(values["log_loss"])
    assert values["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-9)


C, IGNORE = 4, 9


@FUZZ
@given(
    rows=st.lists(
        st.tuples(st.sampled_from([0, C - 1, C]), st.sampled_from([0, 1, C - 1, C, IGNORE])), min_size=1, max_size=9
    )
)
def test_multiclass_labels_at_the_edges(tmp_path, rows):
    pred = np.array([r[0] for r in rows], np.int64)
    y = np.array([r[1] for r in rows], np.int64)
    values, message = _outcome(
        tmp_path,
        {"pred": pred, "label": y},
        {"kind": "multiclass", "num_classes": C, "prediction": "labels", "ignore_index": IGNORE},
        ["accuracy"],
        {"predictions": "pred", "targets": "label"},
    )
    if (pred == C).any() or (y == C).any():
        assert values is None
        assert "outside [0, 3]" in message and "(data.columns." in message, message
        return
    kept = y != IGNORE
    if not kept.any():  # no counted row: every metric undefined, so refused (as a job whose every weight is 0)
        assert values is None and "task.ignore_index" in message, message
        return
    assert values is not None, message
    assert values["accuracy"] == pytest.approx(skm.accuracy_score(y[kept], pred[kept]), abs=1e-12)


SEG_IGNORE = 255


@FUZZ
@given(
    masks=st.lists(
        st.tuples(
            st.lists(st.sampled_from([0, 1, 2, 3]), min_size=4, max_size=4),
            st.lists(st.sampled_from([0, 2, 3, SEG_IGNORE]), min_size=4, max_size=4),
        ),
        min_size=1,
        max_size=6,
    ),
    one_class=st.booleans(),
)
def test_segmentation_masks_at_the_edges(tmp_path, masks, one_class):
    pred = np.array([m[0] for m in masks], np.int64)
    truth = np.array([m[1] for m in masks], np.int64)
    if one_class:  # every pixel of every mask in one class
        pred[:] = 2
        truth[:] = 2
    values, message = _outcome(
        tmp_path,
        {"pred": list(pred), "mask": list(truth)},
        {"kind": "segmentation", "num_classes": 3, "ignore_index": SEG_IGNORE},
        ["pixel_accuracy", "mean_iou"],
        {"predictions": "pred", "targets": "mask"},
    )
    if (pred >= 3).any() or (truth == 3).any():
        assert values is None
        assert "class ids outside [0, 2]" in message and "(data.columns." in message, message
        return
    assert values is not None, message
    valid = truth != SEG_IGNORE
    cm = np.bincount(truth[valid] * 3 + pred[valid], minlength=9).reshape(3, 3).astype(np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    if cm.sum() == 0:
        assert math.isnan(values["pixel_accuracy"])
        return
    assert values["pixel_accuracy"] == pytest.approx(tp.sum() / cm.sum(), abs=1e-12)
    assert values["mean_iou"] == pytest.approx((tp[union > 0] / union[union > 0]).mean(), abs=1e-12)


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), zero_side=st.sampled_from([2, 3]))
def test_detection_zero_area_boxes_equal_pycocotools(seed, zero_side):
    """Ground truths and detections of zero width or height: the statistic the pipeline runs equals COCOeval."""
    pytest.importorskip("pycocotools")
    import contextlib
    import io

    from tests.test_detection import SUMMARY_KEYS, coco_reference, ours, random_images

    rng = np.random.default_rng(seed)
    images = random_images(rng, n_images=5)
    for im in images:
        gt = np.asarray(im["gt_boxes"], np.float64).reshape(-1, 4).copy()
        if len(gt):
            gt[rng.integers(0, len(gt)), zero_side] = 0.0
        im["gt_boxes"], im["gt_area"] = gt, gt[:, 2] * gt[:, 3]
        pred = np.asarray(im["pred_boxes"], np.float64).reshape(-1, 4).copy()
        if len(pred):
            pred[0, 5 - zero_side] = 0.0
        im["pred_boxes"] = pred
    with contextlib.redirect_stdout(io.StringIO()):
        reference = coco_reference(images).stats
    stat, state = ours(images)
    values = stat.summarize(state)
    got = np.array([values[k] for k in SUMMARY_KEYS])
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, reference, atol=1e-6)


@FUZZ
@given(
    lengths=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=5),
    seed=st.integers(0, 2**32 - 1),
    weighted=st.booleans(),
)
def test_bertscore_matching_with_all_padding_sides(lengths, seed, weighted):
    """Token sequences of 0 to 4 content tokens (0: all padding, an empty text): finite scores, 0 for a pair with an
    empty side (bert-score's convention), else greedy matching computed in numpy."""
    from evaluators.backbones.bert import greedy_match

    rng = np.random.default_rng(seed)
    b, length, hidden = len(lengths), 4, 6
    cand, ref = rng.normal(size=(b, length, hidden)), rng.normal(size=(b, length, hidden))
    cand_mask = np.array([[i < c for i in range(length)] for c, _ in lengths], np.float32)
    ref_mask = np.array([[i < r for i in range(length)] for _, r in lengths], np.float32)
    cw, rw = (rng.uniform(0.1, 2.0, (b, length)) for _ in range(2)) if weighted else (None, None)
    got = np.asarray(
        greedy_match(
            cand.astype(np.float32),
            cand_mask,
            ref.astype(np.float32),
            ref_mask,
            None if cw is None else cw.astype(np.float32),
            None if rw is None else rw.astype(np.float32),
        )
    )
    assert np.isfinite(got).all()
    for row, (c, r) in enumerate(lengths):
        if c == 0 or r == 0:
            np.testing.assert_array_equal(got[row], 0.0)
            continue
        a = cand[row, :c] / np.linalg.norm(cand[row, :c], axis=1, keepdims=True)
        z = ref[row, :r] / np.linalg.norm(ref[row, :r], axis=1, keepdims=True)
        sim = a @ z.T
        wc = np.ones(c) if cw is None else cw[row, :c]
        wr = np.ones(r) if rw is None else rw[row, :r]
        p, rec = (sim.max(1) * wc).sum() / wc.sum(), (sim.max(0) * wr).sum() / wr.sum()
        f = 2 * p * rec / (p + rec) if p + rec > 0 else 0.0
        np.testing.assert_allclose(got[row, :2], [p, rec], atol=1e-5)
        # F from float32 precision and recall: an error of 1e-5 in them moves F by that much times the condition
        # number of 2pr/(p+r), large where p + r is near 0 (e.g. p = 0.48, r = -0.47: F = -44)
        condition = 1.0 + (abs(p) + abs(rec)) / abs(p + rec) if p + rec > 0 else 1.0
        np.testing.assert_allclose(got[row, 2], f, atol=1e-5 * condition**2)
