"""Segmentation through a YAML job: PNG mask columns, sliced, on the local and Ray runners, equal to scikit-learn on
the pooled pixels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from evaluators.segmentation import encode_mask
from pipelines import spec as spec_module
from pipelines.execute import run_job
from tests.conftest import write_job

CLASSES = 5


def _masks(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    truths, preds = [], []
    for _ in range(n):
        h, w = rng.integers(9, 40, 2)
        truth = rng.integers(0, CLASSES, (h, w)).astype(np.uint8)
        truth[: h // 4, : w // 4] = 255  # ignored region
        pred = np.where(rng.random((h, w)) < 0.7, truth, rng.integers(0, CLASSES, (h, w))).astype(np.uint8)
        pred[pred == 255] = 0
        truths.append(truth)
        preds.append(pred)
    return truths, preds


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    rng = np.random.default_rng(7)
    truths, preds = _masks(rng, 120)
    site = rng.choice(["a", "b"], len(truths))
    table = pa.table(
        {
            "row_id": np.arange(len(truths), dtype=np.int64),
            "mask": pa.array([encode_mask(t) for t in truths], pa.binary()),
            "predicted": pa.array([encode_mask(p) for p in preds], pa.binary()),
            "site": site,
        }
    )
    directory = tmp_path_factory.mktemp("masks")
    for i in range(6):
        pq.write_table(table.slice(i * 20, 20), directory / f"part-{i}.parquet", row_group_size=7)
    return directory, truths, preds, site


def _job(tmp_path, directory, runner):
    spec = {
        "name": "segmentation",
        "data": {
            "path": str(directory),
            "columns": {"predictions": "predicted", "targets": "mask", "row_id": "row_id"},
        },
        "task": {"kind": "segmentation", "num_classes": CLASSES, "ignore_index": 255},
        "metrics": ["mean_iou", "dice_score", "pixel_accuracy", {"name": "mean_iou", "average": "none", "as": "iou"}],
        "slices": [{"column": "site"}],
        "confidence": {"replicates": 50},
        "execution": {"runner": runner, "actors": 2, "unit_rows": 15},
        "output": {"uri": str(tmp_path / "out")},
    }
    (tmp_path / runner).mkdir(parents=True, exist_ok=True)
    return spec_module.load(str(write_job(tmp_path / runner / "job.yaml", spec)))


def _reference(truths, preds, keep):
    t = np.concatenate([x.ravel() for x, k in zip(truths, keep, strict=True) if k])
    p = np.concatenate([x.ravel() for x, k in zip(preds, keep, strict=True) if k])
    valid = t != 255
    t, p = t[valid], p[valid]
    return {
        "mean_iou": skm.jaccard_score(t, p, average="macro"),
        "dice_score": skm.f1_score(t, p, average="macro"),
        "pixel_accuracy": skm.accuracy_score(t, p),
        "per_class": skm.jaccard_score(t, p, average=None, labels=list(range(CLASSES))),
    }


@pytest.mark.slow
@pytest.mark.ray
def test_segmentation_job_equals_sklearn_on_local_and_ray(tmp_path, masks, ray_cluster):
    directory, truths, preds, site = masks
    local = run_job(_job(tmp_path, directory, "local"), show_progress=False).run
    ray_run = run_job(_job(tmp_path, directory, "ray"), show_progress=False).run
    for name, keep in (("overall", np.ones(len(truths), bool)), ("site=a", site == "a")):
        want = _reference(truths, preds, keep)
        for run in (local, ray_run):
            got = run.point(name).metrics
            for key in ("mean_iou", "dice_score", "pixel_accuracy"):
                assert got[key].value == pytest.approx(want[key], abs=1e-12), (name, key)
            per_class = [got[f"iou[{c}]"].value for c in range(CLASSES)]
            np.testing.assert_allclose(per_class, want["per_class"], atol=1e-12)
    a, b = local.point("overall").metrics["mean_iou"], ray_run.point("overall").metrics["mean_iou"]
    assert (a.value, a.lower, a.upper) == (b.value, b.lower, b.upper)  # intervals too: bit for bit
    assert a.lower < a.value < a.upper


def _run_masks(tmp_path, table: pa.Table):
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "part-0.parquet")
    spec = {
        "name": "masks",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "predicted", "targets": "mask"}},
        "task": {"kind": "segmentation", "num_classes": 3},
        "metrics": ["mean_iou", "pixel_accuracy"],
        "execution": {"runner": "local"},  # (how masks are read: no cluster needed)
        "output": {"uri": str(tmp_path / "out")},
    }
    return spec_module.load(str(write_job(tmp_path / "job.yaml", spec)))


def test_masks_of_one_pixel_count_but_other_shapes_are_refused(tmp_path):
    """A 2 x 3 predicted mask beside a 3 x 2 true one has as many pixels, not the same ones: refused, exit 2."""
    from pipelines.errors import DataError

    mask = np.array([[0, 1, 2], [1, 1, 0]], np.uint8)
    table = pa.table({"predicted": [encode_mask(mask)], "mask": [encode_mask(mask.reshape(3, 2))]})
    with pytest.raises(DataError, match=r"data.columns.predictions\): 1 row whose mask differs in shape"):
        run_job(_run_masks(tmp_path, table), show_progress=False)


def test_raw_bytes_in_a_binary_mask_column_are_refused_naming_the_row_not_an_address(tmp_path):
    """``mask.tobytes()`` in a variable-length binary column: refused (exit 2) naming the file, column and row; the
    message quoted Pillow's error with a memory address (``<_io.BytesIO object at 0x7f586a342ac0>``)."""
    from pipelines.errors import DataError

    mask = np.array([[0, 1, 2], [1, 1, 0]], np.uint8)
    table = pa.table({"predicted": pa.array([mask.tobytes()], pa.binary()), "mask": [encode_mask(mask)]})
    with pytest.raises(DataError, match=r"column 'predicted' \(data.columns.predictions\), row 0") as caught:
        run_job(_run_masks(tmp_path, table), show_progress=False)
    assert "object at 0x" not in str(caught.value) and "cannot identify image file the bytes" in str(caught.value)


def _flat(masks: list[np.ndarray], kind: str) -> pa.Array:
    """Masks as flat row-major id lists (``list``) or raw bytes (``fixed_size_binary``)."""
    if kind == "list":
        return pa.array([m.reshape(-1).tolist() for m in masks], pa.list_(pa.int32()))
    return pa.array([m.tobytes() for m in masks], pa.binary(masks[0].size))


@pytest.mark.parametrize(
    ("flat", "kind"), [("mask", "list"), ("predicted", "list"), ("predicted", "fixed_size_binary")]
)
def test_an_id_list_beside_a_png_mask_reads_in_row_major_order(tmp_path, flat, kind):
    """A flat mask (id list, raw bytes) takes the PNG mask's shape on either side (predictions were refused as
    of another shape than the PNG targets)."""
    rng = np.random.default_rng(4)
    truths = [rng.integers(0, 3, (4, 5)).astype(np.uint8) for _ in range(3)]
    preds = [np.where(rng.random(t.shape) < 0.7, t, rng.integers(0, 3, t.shape)).astype(np.uint8) for t in truths]
    masks = {"predicted": preds, "mask": truths}
    table = pa.table({c: _flat(m, kind) if c == flat else [encode_mask(x) for x in m] for c, m in masks.items()})
    values = run_job(_run_masks(tmp_path, table), show_progress=False).run.point("overall").metrics
    t, p = np.concatenate([x.ravel() for x in truths]), np.concatenate([x.ravel() for x in preds])
    assert values["mean_iou"].value == pytest.approx(skm.jaccard_score(t, p, average="macro"), abs=1e-12)
    assert values["pixel_accuracy"].value == pytest.approx(skm.accuracy_score(t, p), abs=1e-12)


@pytest.mark.parametrize("layout", ["one row group", "a row group a row", "a file a row", "png predictions"])
def test_id_lists_of_images_of_several_sizes(tmp_path, layout):
    """Class ids per pixel as ``list<int>`` of images of several sizes (the README's id lists, which were refused as
    "list rows have different lengths", also one row group a row and one file a row): each image's pixels pair up,
    and the values equal scikit-learn's over all pixels; with slices and intervals too, and a row whose two lists
    differ in length is a bad row (dropped with ``on_bad_rows: drop``)."""
    rng = np.random.default_rng(12)
    shapes = [(4, 5), (6, 7), (3, 3), (4, 5), (8, 2), (5, 9)]
    truths = [rng.integers(0, CLASSES, s) for s in shapes]
    truths[2][0, 0] = 255  # (an ignored pixel)
    preds = [np.where(rng.random(t.shape) < 0.7, t, rng.integers(0, CLASSES, t.shape)) % 255 for t in truths]  # (id 0
    # where the ignored pixel was copied)
    site = np.array(["a", "b", "a", "b", "a", "b"])
    predicted = (
        [encode_mask(p.astype(np.uint8)) for p in preds] if layout == "png predictions" else _flat(preds, "list")
    )
    table = pa.table({"row_id": np.arange(6), "predicted": predicted, "mask": _flat(truths, "list"), "site": site})
    (tmp_path / "data").mkdir()
    if layout == "a file a row":
        for i in range(6):
            pq.write_table(table.slice(i, 1), tmp_path / "data" / f"part-{i}.parquet")
    else:
        pq.write_table(table, tmp_path / "data" / "part.parquet", row_group_size=1 if layout != "one row group" else 6)
    job = _job(tmp_path, tmp_path / "data", "local")
    run = run_job(job, show_progress=False).run
    for name, keep in (("overall", np.ones(6, bool)), ("site=b", site == "b")):
        want = _reference(truths, preds, keep)
        got = run.point(name).metrics
        for key in ("mean_iou", "dice_score", "pixel_accuracy"):
            assert got[key].value == pytest.approx(want[key], abs=1e-12), (name, key)
        assert got["mean_iou"].lower <= got["mean_iou"].value <= got["mean_iou"].upper

    from pipelines.errors import DataError

    short = [p if i != 3 else p[:, :-1] for i, p in enumerate(preds)]  # (4 x 4 ids beside a 4 x 5 mask)
    table = table.set_column(1, "predicted", _flat(short, "list"))
    (tmp_path / "short").mkdir()
    pq.write_table(table, tmp_path / "short" / "part.parquet", row_group_size=2)
    with pytest.raises(DataError, match=r"data.columns.predictions\): 1 row whose mask differs in shape"):
        run_job(_job(tmp_path / "fail", tmp_path / "short", "local"), show_progress=False)
    spec = _job(tmp_path / "drop", tmp_path / "short", "local")
    spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, on_bad_rows="drop"))
    run = run_job(spec, show_progress=False).run
    keep = np.arange(6) != 3
    assert run.metadata["dropped_rows"]["rows"] == 1
    assert run.point("overall").metrics["mean_iou"].value == pytest.approx(
        _reference(truths, preds, keep)["mean_iou"], abs=1e-12
    )


def test_an_empty_id_list_beside_others_with_intervals(tmp_path):
    """An image of no pixels (an empty id list) has one padded row of pixels counted nowhere: its bootstrap bucket
    goes with that row (a job with intervals failed, the rows and buckets of different lengths)."""
    rng = np.random.default_rng(3)
    sizes = [20, 0, 12, 30]
    truths = [rng.integers(0, 3, s) for s in sizes]
    preds = [np.where(rng.random(s) < 0.6, t, rng.integers(0, 3, s)) for s, t in zip(sizes, truths, strict=True)]
    table = pa.table({"row_id": np.arange(4), "predicted": _flat(preds, "list"), "mask": _flat(truths, "list")})
    table = table.append_column("site", pa.array(["a", "b", "a", "b"]))
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "part.parquet")
    run = run_job(_job(tmp_path, tmp_path / "data", "local"), show_progress=False).run
    want = _reference(truths, preds, np.ones(4, bool))
    got = run.point("overall").metrics
    for key in ("mean_iou", "dice_score", "pixel_accuracy"):
        assert got[key].value == pytest.approx(want[key], abs=1e-12), key
    assert got["mean_iou"].lower <= got["mean_iou"].value <= got["mean_iou"].upper
