"""COCO detection through a YAML job: per-image list columns in Parquet shards, on the local and Ray runners,
equal to pycocotools' COCOeval."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import spec as spec_module
from pipelines.errors import DataError, SpecError
from pipelines.execute import run_job
from pipelines.results import list_runs
from tests.conftest import write_job

pytest.importorskip("pycocotools")
from tests.test_detection import SUMMARY_KEYS, coco_reference, random_images

COLUMNS = {
    "predictions": "boxes",
    "scores": "scores",
    "labels": "labels",
    "targets": "gt_boxes",
    "target_labels": "gt_labels",
    "iscrowd": "crowd",
    "area": "gt_area",
    "image_id": "image_id",
}
"""The job's column roles for :func:`detection_table`."""


def detection_table(images: list[dict]) -> pa.Table:
    """One row per image of :func:`random_images`: list columns of boxes (xywh), scores, labels, crowd, area."""
    return pa.table(
        {
            "image_id": [int(im["image_id"]) for im in images],
            "boxes": [np.asarray(im["pred_boxes"]).reshape(-1, 4).tolist() for im in images],
            "scores": [np.asarray(im["pred_scores"]).tolist() for im in images],
            "labels": [np.asarray(im["pred_labels"]).astype(int).tolist() for im in images],
            "gt_boxes": [np.asarray(im["gt_boxes"]).reshape(-1, 4).tolist() for im in images],
            "gt_labels": [np.asarray(im["gt_labels"]).astype(int).tolist() for im in images],
            "crowd": [np.asarray(im["gt_iscrowd"]).astype(int).tolist() for im in images],
            "gt_area": [np.asarray(im["gt_area"]).tolist() for im in images],
        },
        schema=pa.schema(
            [
                ("image_id", pa.int64()),
                ("boxes", pa.list_(pa.list_(pa.float64()))),
                ("scores", pa.list_(pa.float64())),
                ("labels", pa.list_(pa.int64())),
                ("gt_boxes", pa.list_(pa.list_(pa.float64()))),
                ("gt_labels", pa.list_(pa.int64())),
                ("crowd", pa.list_(pa.int64())),
                ("gt_area", pa.list_(pa.float64())),
            ]
        ),
    )


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    images = random_images(np.random.default_rng(11), n_images=60)
    table = detection_table(images)
    directory = tmp_path_factory.mktemp("detections")
    edges = np.linspace(0, len(table), 6).astype(int)  # 5 shards over every image
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        pq.write_table(table.slice(a, b - a), directory / f"part-{i}.parquet", row_group_size=5)
    return directory, images


def _job(tmp_path, directory, runner, *, on_bad_rows: str = "fail", iou_type: str = "bbox"):
    spec = {
        "name": "detection",
        "data": {
            "path": str(directory),
            "columns": COLUMNS,
            "on_bad_rows": on_bad_rows,
        },
        "task": "detection",
        "metrics": [{"name": "mean_average_precision", "box_format": "xywh", "iou_type": iou_type, "as": "map"}],
        "execution": {"runner": runner, "actors": 2, "unit_rows": 10},
        "output": {"uri": str(tmp_path / "out")},
    }
    (tmp_path / runner).mkdir(parents=True, exist_ok=True)
    return spec_module.load(str(write_job(tmp_path / runner / "job.yaml", spec)))


@pytest.mark.slow
@pytest.mark.ray
def test_detection_job_equals_pycocotools_on_local_and_ray(tmp_path, shards, ray_cluster):
    directory, images = shards
    reference = dict(zip(SUMMARY_KEYS, coco_reference(images).stats, strict=True))
    for runner in ("local", "ray"):
        run = run_job(_job(tmp_path, directory, runner), show_progress=False).run
        metrics = run.point("overall").metrics
        got = {k: metrics["map" if k == "map" else f"map.{k}"].value for k in SUMMARY_KEYS}
        for key in SUMMARY_KEYS:
            assert got[key] == pytest.approx(reference[key], abs=1e-6), (runner, key)
        assert run.metadata["units"] >= 6


def test_detection_needs_score_and_label_columns(tmp_path, shards):
    directory, _ = shards
    spec = {
        "name": "detection",
        "data": {"path": str(directory), "columns": {"predictions": "boxes", "targets": "gt_boxes"}},
        "task": "detection",
        "metrics": ["mean_average_precision"],
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(
        SpecError, match=r"data\.columns.*detection task needs columns for scores, labels, target_labels"
    ):
        spec_module.load(str(write_job(tmp_path / "bad.yaml", spec)))


@pytest.mark.parametrize(
    ("column", "change", "needle"),
    [
        (
            "gt_area",
            lambda rows: [[-a - 1.0 for a in rows[2]], *rows[3:]],
            "column 'gt_area' (data.columns.area): 1 row with a negative area",
        ),
        (
            "boxes",
            lambda rows: [[box[:3] for box in rows[2]] or [[1.0, 2.0, 3.0]], *rows[3:]],
            "column 'boxes' (data.columns.predictions): 1 row with boxes of other than 4 numbers",
        ),
    ],
)
def test_negative_areas_and_short_boxes_are_bad_rows(tmp_path, column, change, needle):
    """A negative ``area`` (left every area range before: the object silently out of the evaluation) or a box
    of other than 4 numbers fails the job naming the file, column and row count (exit 2), writing nothing."""
    table = detection_table(random_images(np.random.default_rng(3), n_images=6))
    rows = table.column(column).to_pylist()
    rows = [*rows[:2], *change(rows)]
    table = table.set_column(
        table.schema.get_field_index(column), column, pa.array(rows, table.schema.field(column).type)
    )
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "part.parquet")
    job = _job(tmp_path, tmp_path / "data", "local")
    with pytest.raises(DataError) as caught:
        run_job(job, show_progress=False)
    assert needle in str(caught.value) and "part.parquet" in str(caught.value)
    assert not list_runs(str(tmp_path / "out"))


def _shorter(row: list) -> list:
    return row[:-1]


BAD_ROWS = [
    (
        "scores",
        None,
        _shorter,
        "column 'scores' (data.columns.scores): 1 row with another number of scores than boxes",
    ),
    (
        "labels",
        None,
        _shorter,
        "column 'labels' (data.columns.labels): 1 row with another number of labels than boxes",
    ),
    (
        "gt_labels",
        None,
        _shorter,
        "column 'gt_labels' (data.columns.target_labels): 1 row with another number of labels than boxes",
    ),
    ("gt_area", None, _shorter, "column 'gt_area' (data.columns.area): 1 row with another number of areas than boxes"),
    ("crowd", None, _shorter, "column 'crowd' (data.columns.iscrowd): 1 row with another number of crowd flags"),
    (
        "labels",
        pa.list_(pa.float64()),
        lambda row: [1.5, *row[1:]],
        "column 'labels' (data.columns.labels): 1 row with labels that are not integers",
    ),
    (
        "labels",
        None,
        lambda row: [2**40, *row[1:]],
        "column 'labels' (data.columns.labels): 1 row with labels outside int32's range",
    ),
    (
        "gt_labels",
        None,
        lambda row: [-(2**31) - 1, *row[1:]],
        "column 'gt_labels' (data.columns.target_labels): 1 row with labels outside int32's range",
    ),
    (
        "boxes",
        None,
        lambda row: [row[0][:3], *row[1:]],
        "column 'boxes' (data.columns.predictions): 1 row with boxes of other than 4 numbers",
    ),
    (
        "gt_boxes",
        None,
        lambda row: [*row[:-1], [*row[-1], 1.0]],
        "column 'gt_boxes' (data.columns.targets): 1 row with boxes of other than 4 numbers",
    ),
]


def _with_one_changed_image(tmp_path, seed, n_images, column, change, kind=None):
    """Random images written to ``data/part.parquet`` with ``column`` of one image (of 2 scores and 2 labels or more)
    passed through ``change`` (as ``kind``, else the column's type); ``(images, that image's index)``."""
    images = random_images(np.random.default_rng(seed), n_images=n_images)
    bad = next(i for i, im in enumerate(images) if len(im["pred_scores"]) >= 2 and len(im["gt_labels"]) >= 2)
    table = detection_table(images)
    rows = table.column(column).to_pylist()
    rows[bad] = change(rows[bad])
    field = table.schema.get_field_index(column)
    table = table.set_column(field, column, pa.array(rows, kind or table.schema.field(column).type))
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "part.parquet")
    return images, bad


@pytest.mark.parametrize(
    ("column", "kind", "change", "needle"), BAD_ROWS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_inconsistent_lists_and_bad_labels_are_bad_rows(tmp_path, column, kind, change, needle):
    """Per-image lists of another length than the image's boxes, labels that are no int32 integers, a nested box
    of other than 4 numbers: the job fails naming file, row group and column (exit 2); ``on_bad_rows: drop``
    leaves the image out, counts it, and equals pycocotools on the other images."""
    images, bad = _with_one_changed_image(tmp_path, 3, 8, column, change, kind)
    with pytest.raises(DataError) as caught:
        run_job(_job(tmp_path, tmp_path / "data", "local"), show_progress=False)
    message = str(caught.value)
    assert needle in message and "part.parquet row group 0" in message and "\n" not in message, message
    assert not list_runs(str(tmp_path / "out"))

    run = run_job(_job(tmp_path, tmp_path / "data", "local", on_bad_rows="drop"), show_progress=False).run
    assert run.metadata["dropped_rows"]["rows"] == 1 and run.metadata["rows"] == len(images) - 1
    reference = dict(zip(SUMMARY_KEYS, coco_reference(images[:bad] + images[bad + 1 :]).stats, strict=True))
    metrics = run.point("overall").metrics
    for key in SUMMARY_KEYS:
        assert metrics["map" if key == "map" else f"map.{key}"].value == pytest.approx(reference[key], abs=1e-6), key


def test_segm_over_a_box_column_names_the_column_and_iou_type(tmp_path):
    """``iou_type: segm`` without mask columns reads masks from ``predictions``; a column of boxes there fails
    naming the column, its role and ``iou_type`` (exit 2), writing nothing."""
    (tmp_path / "data").mkdir()
    pq.write_table(
        detection_table(random_images(np.random.default_rng(4), n_images=4)), tmp_path / "data" / "a.parquet"
    )
    with pytest.raises(DataError) as caught:
        run_job(_job(tmp_path, tmp_path / "data", "local", iou_type="segm"), show_progress=False)
    message = str(caught.value)
    assert "column 'boxes' (data.columns.predictions)" in message and "a.parquet" in message, message
    assert "iou_type: segm" in message and "data.columns.masks" in message and "\n" not in message
    assert not list_runs(str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("column", "change"),
    [
        ("scores", lambda row: [None, *row[1:]]),  # (a null first entry read as a null box before: exit 1)
        ("scores", lambda row: [*row[:-1], None]),
        ("labels", lambda row: [None, *row[1:]]),
        ("gt_labels", lambda row: [None, *row[1:]]),
        ("boxes", lambda row: [None, *row[1:]]),
        ("gt_boxes", lambda row: [[row[0][0], None, *row[0][2:]], *row[1:]]),
    ],
    ids=["first score", "last score", "label", "target label", "box", "number in a target box"],
)
@pytest.mark.parametrize("on_bad_rows", ["fail", "drop"])
def test_a_null_inside_a_list_is_refused_even_when_dropping_bad_rows(tmp_path, column, change, on_bad_rows):
    """A null entry in an image's list (a score, a label, a box, a box's number) is a missing value, as a null row
    is: exit 2 naming the file and column, with ``on_bad_rows: drop`` too, wherever it sits in the list."""
    _with_one_changed_image(tmp_path, 5, 6, column, change)
    with pytest.raises(DataError) as caught:
        run_job(_job(tmp_path, tmp_path / "data", "local", on_bad_rows=on_bad_rows), show_progress=False)
    message = str(caught.value)
    assert f"part.parquet row group 0: column {column!r}" in message and "1 entries" in message, message
    assert "null" in message and "\n" not in message
    assert not list_runs(str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("column", "kind", "expected"),
    [
        ("scores", pa.list_(pa.string()), "a list column of numbers per image"),  # ('0.9' was read as 0.9)
        ("labels", pa.list_(pa.string()), "a list column of numbers per image"),  # ('cat': a traceback)
        ("scores", pa.list_(pa.list_(pa.float64())), "a list column of numbers per image"),
        ("crowd", pa.list_(pa.list_(pa.int64())), "a list column of numbers per image"),
        ("boxes", pa.list_(pa.list_(pa.string())), "a list column per image of boxes"),
        ("scores", pa.list_(pa.timestamp("ms")), "a list column of numbers per image"),
        ("labels", pa.list_(pa.date32()), "a list column of numbers per image"),
        ("boxes", pa.list_(pa.list_(pa.duration("s"))), "a list column per image of boxes"),
    ],
    ids=[
        "string scores",
        "string labels",
        "nested scores",
        "nested crowd flags",
        "string boxes",
        "timestamp scores",
        "date labels",
        "duration boxes",
    ],
)
def test_lists_of_strings_or_nested_lists_are_refused_by_type(tmp_path, column, kind, expected):
    """A per-image list of strings (read as numbers, or a traceback), of lists where numbers belong, or of dates,
    times or durations (passed the type check as ``list<null>`` does): exit 2 naming the file, the column, its role
    and the type expected, before any row is read; nothing is written."""
    images = random_images(np.random.default_rng(6), n_images=5)
    table = detection_table(images)
    values = table.column(column)
    if "string" in str(kind):  # (the same numbers written as text)
        values = values.cast(kind)
    elif column == "boxes":  # (boxes of whole seconds)
        values = pa.array([[[round(v) for v in box] for box in row] for row in values.to_pylist()], kind)
    elif not pa.types.is_list(kind.value_type):  # (dates, times: the numbers as whole units)
        values = pa.array([[round(v * 1000) for v in row] for row in values.to_pylist()], kind)
    else:  # (each number a list of one)
        values = pa.array([[[v] for v in row] for row in values.to_pylist()], kind)
    table = table.set_column(table.schema.get_field_index(column), column, values)
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "part.parquet")
    with pytest.raises(DataError) as caught:
        run_job(_job(tmp_path, tmp_path / "data", "local"), show_progress=False)
    message = str(caught.value)
    role = next(role for role, name in COLUMNS.items() if name == column)
    assert f"column {column!r} (data.columns.{role})" in message and "part.parquet" in message, message
    assert f"expected {expected}" in message and "\n" not in message
    assert not list_runs(str(tmp_path / "out"))


def test_image_ids_that_are_no_integers_are_bad_rows(tmp_path):
    """A float ``image_id`` column is compared as int64: 1.2 and 1.7 were one image ("on more than one row"), and a
    NaN id was committed. Whole floats are ids; a fraction or NaN is a bad row (exit 2; dropped with
    ``on_bad_rows: drop``, the other images equal pycocotools)."""
    images = random_images(np.random.default_rng(8), n_images=6)
    table = detection_table(images)
    ids = np.array([im["image_id"] for im in images], np.float64)
    whole = table.set_column(0, "image_id", pa.array(ids))
    (tmp_path / "whole").mkdir()
    pq.write_table(whole, tmp_path / "whole" / "part.parquet")
    run = run_job(_job(tmp_path, tmp_path / "whole", "local"), show_progress=False).run
    reference = dict(zip(SUMMARY_KEYS, coco_reference(images).stats, strict=True))
    assert run.point("overall").metrics["map"].value == pytest.approx(reference["map"], abs=1e-6)
    for bad_id in (ids[2] + 0.5, np.nan):
        broken = ids.copy()
        broken[2] = bad_id
        directory = tmp_path / f"bad-{bad_id}"
        directory.mkdir()
        pq.write_table(table.set_column(0, "image_id", pa.array(broken)), directory / "part.parquet")
        out = tmp_path / f"out-{bad_id}"
        job = _job(out, directory, "local")
        with pytest.raises(DataError) as caught:
            run_job(job, show_progress=False)
        message = str(caught.value)
        assert "column 'image_id' (data.columns.image_id): 1 row whose image_id is not an integer" in message
        assert not list_runs(str(out / "out"))
        run = run_job(_job(out, directory, "local", on_bad_rows="drop"), show_progress=False).run
        assert run.metadata["dropped_rows"]["rows"] == 1
        reference = dict(zip(SUMMARY_KEYS, coco_reference(images[:2] + images[3:]).stats, strict=True))
        assert run.point("overall").metrics["map"].value == pytest.approx(reference["map"], abs=1e-6)
