"""Image jobs whose input the backbone cannot take were internal errors (exit 1, a traceback): bytes that are no
image, or a truncated PNG, are bad rows of the built-in backbones (exit 2 naming file, column and count, or left out
under ``on_bad_rows: drop``; a user backbone reads its own bytes); decoding refuses what passes those checks; a
metric's ``dimension`` or ``classes`` other than the backbone's is refused naming the metric once it loads."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines import spec as spec_module
from pipelines.errors import DataError, SpecError
from pipelines.execute import run_job
from tests.conftest import write_job
from tests.test_image_metrics import backbone_dir  # noqa: F401 (fixture)


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _job(tmp_path, backbone, generated, metrics=("fid",), **data):
    (tmp_path / "data").mkdir()
    real = [_png(100 + i) for i in range(len(generated))]
    pq.write_table(
        pa.table({"g": pa.array(generated, pa.binary()), "r": pa.array(real, pa.binary())}),
        tmp_path / "data" / "p.parquet",
    )
    spec = {
        "name": "images",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "g", "targets": "r"}, **data},
        "task": "image",
        "backbone": {"kind": "cnn", "weights": str(backbone)},
        "metrics": list(metrics),
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    return spec_module.load(str(write_job(tmp_path / "job.yaml", spec)))


def test_bytes_that_are_no_image_are_bad_rows(tmp_path, backbone_dir):  # noqa: F811
    generated = [_png(i) for i in range(6)]
    generated[2] = b"notapng"
    with pytest.raises(DataError, match=r"column 'g' \(data.columns.predictions\): 1 rows whose bytes are no image"):
        run_job(_job(tmp_path, backbone_dir, generated), show_progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("_COMMITTED"))


def test_bytes_that_are_no_image_are_left_out_when_dropping_bad_rows(tmp_path, backbone_dir):  # noqa: F811
    generated = [_png(i) for i in range(6)]
    generated[2] = b"notapng"
    run = run_job(_job(tmp_path, backbone_dir, generated, on_bad_rows="drop"), show_progress=False).run
    assert run.metadata["dropped_rows"]["rows"] == 1 and run.metadata["rows"] == 5


def test_a_truncated_png_is_a_bad_row(tmp_path, backbone_dir):  # noqa: F811
    generated = [_png(i) for i in range(6)]
    generated[4] = generated[4][: len(generated[4]) // 2]  # (its header reads; its checksums and end do not)
    with pytest.raises(
        DataError, match=r"p.parquet row group 0: column 'g' \(data.columns.predictions\): 1 rows whose"
    ):
        run_job(_job(tmp_path, backbone_dir, generated), show_progress=False)


def test_an_image_pillow_cannot_decode_past_its_checks_fails_naming_it():
    """The last line of defence, at decoding: a row whose checks pass but whose pixels do not decode."""
    from evaluators.backbones.cnn import UndecodableImage, image_groups

    column = np.empty(2, object)
    column[0], column[1] = _png(0), _png(1)[:60]
    with pytest.raises(UndecodableImage, match="row 1 of the batch holds image bytes Pillow cannot decode"):
        image_groups(column)


@pytest.mark.parametrize(
    ("metric", "field", "width"),
    [
        ({"name": "fid", "dimension": 32}, "dimension", 64),
        ({"name": "kid", "dimension": 32}, "dimension", 64),
        ({"name": "inception_score", "classes": 5}, "classes", 10),
    ],
)
def test_a_metric_width_other_than_the_backbones_is_refused(tmp_path, backbone_dir, metric, field, width):  # noqa: F811
    job = _job(tmp_path, backbone_dir, [_png(i) for i in range(4)], metrics=(metric,))
    with pytest.raises(SpecError, match=rf"metric '{metric['name']}\(.*\)': {field} \d+, but the backbone") as caught:
        run_job(job, show_progress=False)
    assert f"set the metric's `{field}` to {width}" in str(caught.value)
