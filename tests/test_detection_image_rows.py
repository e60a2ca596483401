"""An image on two rows: detection data is one row per image, so a repeated ``image_id`` is refused (exit 2 naming
``data.columns.image_id``), in one batch, in two batches of a unit and in two work units. pycocotools pools the
rows of an ``image_id``; evaluating them row by row had given a value of its own (0 where pycocotools gives 1)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from evaluators.detection import CocoDetectionStatistic, ImageRowsError, detection_batch, evaluate_coco
from pipelines.errors import DataError
from pipelines.results import list_runs
from tests.test_detection import SUMMARY_KEYS, coco_reference, random_images
from tests.test_detection_pipeline import _job, detection_table

pytest.importorskip("pycocotools")

_IMAGE = {"image_id": 7, "gt_iscrowd": [], "gt_area": []}
_DETECTION_ONLY = {**_IMAGE, "pred_boxes": [[0.0, 0.0, 10.0, 10.0]], "pred_scores": [0.9], "pred_labels": [0]}
_TRUTH_ONLY = {
    **_IMAGE,
    "pred_boxes": [],
    "pred_scores": [],
    "pred_labels": [],
    "gt_boxes": [[0.0, 0.0, 10.0, 10.0]],
    "gt_labels": [0],
    "gt_iscrowd": [0],
    "gt_area": [100.0],
}
_DETECTION_ONLY = {**_DETECTION_ONLY, "gt_boxes": [], "gt_labels": []}


def test_the_rows_of_one_image_pooled_equal_pycocotools():
    """The reference the refusal protects: one exact detection of the one ground-truth box of image 7 is a map of
    1.0 in pycocotools whether the annotations came in one list or two; evalpipe gives 1.0 from the one row."""
    pooled = {**_TRUTH_ONLY, **{k: _DETECTION_ONLY[k] for k in ("pred_boxes", "pred_scores", "pred_labels")}}
    reference = coco_reference([pooled]).stats[0]
    assert reference == pytest.approx(1.0)
    assert evaluate_coco([pooled], box_format="xywh")["map"] == pytest.approx(reference, abs=1e-12)


def test_two_rows_of_one_image_in_a_batch_are_refused():
    with pytest.raises(ImageRowsError, match=r"image_id 7 is on more than one row \(twice in one batch\)"):
        evaluate_coco([_DETECTION_ONLY, _TRUTH_ONLY], box_format="xywh")


def test_states_that_share_an_image_do_not_merge_and_states_without_ids_still_do():
    statistic = CocoDetectionStatistic(box_format="xywh")
    first = statistic.update(statistic.zero(), detection_batch([_DETECTION_ONLY]))
    second = statistic.update(statistic.zero(), detection_batch([_TRUTH_ONLY]))
    assert first["images"].tolist() == [7]
    with pytest.raises(ImageRowsError, match="image_id 7 is on more than one row"):
        statistic.merge(first, second)
    with pytest.raises(ImageRowsError, match="image_id 7"):
        statistic.merge(second, first)
    other = statistic.update(statistic.zero(), detection_batch([{**_TRUTH_ONLY, "image_id": 8}]))
    assert statistic.merge(first, other)["images"].tolist() == [7, 8]
    # a state stored before the image ids (or of rows without an image_id column) merges as before
    legacy = {k: v for k, v in other.items() if k != "images"}
    assert statistic.merge(first, legacy)["images"].tolist() == [7]
    without_ids = [{k: v for k, v in image.items() if k != "image_id"} for image in (_DETECTION_ONLY, _TRUTH_ONLY)]
    assert "images" not in statistic.update(statistic.zero(), detection_batch(without_ids))


@pytest.mark.parametrize("placement", ["one file", "two files"])
def test_a_job_with_an_image_on_two_rows_exits_2_naming_the_column(tmp_path, placement):
    """Image 7's detection and its ground truth on two rows, in one file (one batch) or in two files (two work
    units): exit 2 naming ``data.columns.image_id`` and the id, and nothing committed. Before, the run committed a
    map of 0 (each row matched alone), where pycocotools gives 1."""
    images = random_images(np.random.default_rng(4), n_images=6)
    table = detection_table([*images, {**_DETECTION_ONLY, "image_id": int(images[0]["image_id"])}])
    data = tmp_path / "data"
    data.mkdir()
    if placement == "one file":
        pq.write_table(table, data / "part-0.parquet")
    else:
        pq.write_table(table.slice(0, len(images)), data / "part-0.parquet")
        pq.write_table(table.slice(len(images)), data / "part-1.parquet")  # (the second row of image 0)
    from pipelines.execute import run_job

    with pytest.raises(DataError) as caught:
        run_job(_job(tmp_path, data, "local"), show_progress=False)
    message = str(caught.value)
    assert "data.columns.image_id" in message and f"image_id {images[0]['image_id']} is on more than one row" in message
    if placement == "one file":
        assert "part-0.parquet" in message
    assert not list_runs(str(tmp_path / "out"))


def test_distinct_image_ids_in_several_files_equal_pycocotools(tmp_path):
    """The check refuses no valid job: images with distinct ids over three files equal pycocotools."""
    images = random_images(np.random.default_rng(5), n_images=12)
    table = detection_table(images)
    data = tmp_path / "data"
    data.mkdir()
    edges = np.linspace(0, len(table), 4).astype(int)
    for i in range(3):
        pq.write_table(table.slice(edges[i], edges[i + 1] - edges[i]), data / f"part-{i}.parquet")
    from pipelines.execute import run_job

    metrics = run_job(_job(tmp_path, data, "local"), show_progress=False).run.point("overall").metrics
    reference = dict(zip(SUMMARY_KEYS, coco_reference(images).stats, strict=True))
    for key in SUMMARY_KEYS:
        assert metrics["map" if key == "map" else f"map.{key}"].value == pytest.approx(reference[key], abs=1e-9), key
