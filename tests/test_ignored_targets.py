"""A job whose every target is ``task.ignore_index`` counts no row: every metric would be undefined, so it is refused
(exit 2 naming ``task.ignore_index``, nothing committed), as a job whose every weight is 0. A job with some rows
left to count gives scikit-learn's values over those rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from pipelines import cli
from pipelines.results import list_runs, load_run
from tests.conftest import write_job


def _job(tmp_path: Path, table: pa.Table, task: dict, metrics: list, weights: bool = False) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), data / "a.parquet", row_group_size=37)
    pq.write_table(table.slice(half), data / "b.parquet", row_group_size=50)
    columns = {"predictions": "p", "targets": "y", **({"weights": "w"} if weights else {})}
    spec = {
        "name": "ignored",
        "data": {"path": str(data), "columns": columns},
        "task": task,
        "metrics": metrics,
        "execution": {"runner": "local", "unit_rows": 60},
        "output": {"uri": str(tmp_path / "out")},
    }
    return write_job(tmp_path / "job.yaml", spec)


CASES = {
    "binary": (
        {"kind": "binary", "ignore_index": 255},
        lambda rng, n: (rng.random(n), np.full(n, 255, np.int64)),
        ["accuracy", "f1_score", "roc_auc", "log_loss", "expected_calibration_error"],
    ),
    "multiclass": (
        {"kind": "multiclass", "num_classes": 3, "ignore_index": -100},
        lambda rng, n: (list(rng.dirichlet(np.ones(3), n)), np.full(n, -100, np.int64)),
        ["accuracy", {"f1_score": {"average": "none"}}, "log_loss"],
    ),
    "multilabel": (
        {"kind": "multilabel", "num_classes": 2, "ignore_index": -1},
        lambda rng, n: (list(rng.random((n, 2))), list(np.full((n, 2), -1, np.int64))),
        ["accuracy", {"f1_score": {"average": "macro"}}],
    ),
}


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_a_job_whose_every_target_is_ignored_is_refused_naming_ignore_index(tmp_path, capsys, case, weights):
    task, rows, metrics = CASES[case]
    rng = np.random.default_rng(len(case))
    p, y = rows(rng, 300)
    table = pa.table({"p": p, "y": y, "w": rng.uniform(0.5, 2.0, 300)})
    job = _job(tmp_path, table, task, metrics, weights)
    assert cli.main(["run", str(job)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ignore_index" in err and "300 rows" in err, err
    assert ("data.columns.weights" in err) == weights, err
    assert list_runs(str(tmp_path / "out")) == []


def test_one_counted_row_is_enough_and_gives_scikit_learns_values_over_the_counted_rows(tmp_path, capsys):
    rng = np.random.default_rng(11)
    p = rng.random(300)
    y = np.full(300, 255, np.int64)
    y[[17, 250]] = [1, 0]  # two counted rows, one in each file
    job = _job(tmp_path, pa.table({"p": p, "y": y}), {"kind": "binary", "ignore_index": 255}, ["accuracy", "log_loss"])
    assert cli.main(["run", str(job), "--quiet"]) == 0, capsys.readouterr().err
    (run,) = list_runs(str(tmp_path / "out"))
    metrics = load_run(run.uri).point("overall").metrics
    kept = y != 255
    assert metrics["accuracy"].value == skm.accuracy_score(y[kept], p[kept] >= 0.5)
    assert metrics["log_loss"].value == pytest.approx(skm.log_loss(y[kept], p[kept], labels=[0, 1]), rel=1e-12)


@pytest.mark.parametrize("counted_pixels", [0, 1])
def test_segmentation_masks_whose_every_pixel_is_ignored(tmp_path, capsys, counted_pixels):
    """Masks of the target 255 alone (``ignore_index: 255``) in every image: refused as above (before, NaN mean IoU,
    pixel accuracy and Dice were committed with exit 0). One pixel left to count in one image: scikit-learn's values
    over that pixel."""
    from evaluators.segmentation import encode_mask

    rng = np.random.default_rng(5)
    truths = [np.full((9, 13), 255, np.uint8) for _ in range(40)]
    preds = [rng.integers(0, 3, (9, 13)).astype(np.uint8) for _ in range(40)]
    if counted_pixels:
        truths[23][4, 7] = 2
    table = pa.table({"p": [encode_mask(m) for m in preds], "y": [encode_mask(m) for m in truths]})
    task = {"kind": "segmentation", "num_classes": 3, "ignore_index": 255}
    job = _job(tmp_path, table, task, ["pixel_accuracy", "mean_iou"])
    code = cli.main(["run", str(job), "--quiet"])
    err = capsys.readouterr().err
    if not counted_pixels:
        assert code == 2 and "Traceback" not in err and "task.ignore_index" in err and "40 rows" in err, err
        assert list_runs(str(tmp_path / "out")) == []
        return
    assert code == 0, err
    (run,) = list_runs(str(tmp_path / "out"))
    metrics = load_run(run.uri).point("overall").metrics
    assert metrics["pixel_accuracy"].value == skm.accuracy_score([2], [preds[23][4, 7]])
