"""torchmetrics classes run on a segmentation job: they see the job's pixels (the padding that ends each image's pixel
rows and the ``ignore_index`` pixels left out, as evalpipe's own segmentation metrics leave them out), and a class that
scores each image (torchmetrics' ``segmentation`` package) is refused unless it pools its samples."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torchmetrics import classification as tmc
from torchmetrics import segmentation as tms

from pipelines.cli import main
from pipelines.results import load_run
from tests.conftest import write_job

CLASSES = 3
IGNORE = 255


def _masks(path, seed: int, sizes: tuple[int, ...], ignore: bool):
    """Flat class-id masks of several sizes (a size that is a multiple of the 1,024-pixel row and others)."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(24):
        n = sizes[i % len(sizes)]
        t = rng.integers(0, CLASSES, n)
        if ignore:
            t[rng.random(n) < 0.1] = IGNORE
        p = np.where(rng.random(n) < 0.7, np.where(t == IGNORE, 0, t), rng.integers(0, CLASSES, n))
        preds.append(p)
        targets.append(t)
    table = pa.table(
        {
            "pred": pa.array([p.tolist() for p in preds], pa.list_(pa.int64())),
            "mask": pa.array([t.tolist() for t in targets], pa.list_(pa.int64())),
        }
    )
    pq.write_table(table, path)
    return np.concatenate(preds), np.concatenate(targets)


METRICS = [
    {
        "name": "acc",
        "backend": "torchmetrics",
        "metric_class": "classification.MulticlassAccuracy",
        "params": {"average": "macro"},
    },
    {
        "name": "f1w",
        "backend": "torchmetrics",
        "metric_class": "classification.MulticlassF1Score",
        "params": {"average": "weighted"},
    },
    {"name": "kappa", "backend": "torchmetrics", "metric_class": "classification.MulticlassCohenKappa"},
    {
        "name": "dice",
        "backend": "torchmetrics",
        "metric_class": "segmentation.DiceScore",
        "params": {"num_classes": CLASSES, "input_format": "index", "aggregation_level": "global"},
    },
    "dice_score",
]


@pytest.mark.parametrize(("sizes", "ignore"), [((16, 1500, 36), False), ((1024, 2048), False), ((16, 1500, 36), True)])
def test_classes_on_pixels_equal_torchmetrics_on_the_pooled_pixels(tmp_path, capsys, sizes, ignore) -> None:
    # -1, the padding of each image's last pixel row, reached torchmetrics: "Detected more unique values in target"
    # (exit 2 blaming the metric's class)
    preds, targets = _masks(tmp_path / "m.parquet", 0, sizes, ignore)
    task = {"kind": "segmentation", "num_classes": CLASSES, **({"ignore_index": IGNORE} if ignore else {})}
    spec = {
        "name": "seg",
        "data": {"path": str(tmp_path / "m.parquet"), "columns": {"predictions": "pred", "targets": "mask"}},
        "task": task,
        "metrics": METRICS,
        "execution": {"runner": "local", "unit_rows": 5},  # (several units: states merged through merge_state)
        "output": {"uri": str(tmp_path / "out")},
    }
    code = main(["run", str(write_job(tmp_path / "job.yaml", spec)), "--quiet"])
    assert code == 0, capsys.readouterr().err
    values = load_run(str(tmp_path / "out" / "seg" / "latest")).point("overall").metrics
    counted = targets != IGNORE
    p, t = torch.from_numpy(preds[counted]), torch.from_numpy(targets[counted])
    expected = {
        "acc": tmc.MulticlassAccuracy(CLASSES, average="macro")(p, t),
        "f1w": tmc.MulticlassF1Score(CLASSES, average="weighted")(p, t),
        "kappa": tmc.MulticlassCohenKappa(CLASSES)(p, t),
        "dice": tms.DiceScore(CLASSES, input_format="index", aggregation_level="global")(p[None], t[None]),
    }
    for key, value in expected.items():
        assert values[key].value == pytest.approx(float(value), abs=1e-6), key
    assert values["dice"].value == pytest.approx(values["dice_score"].value, abs=1e-6)  # (as the README says)


def test_a_class_that_scores_each_image_is_refused_naming_the_dataset_level_metrics(tmp_path, capsys) -> None:
    # MeanIoU over the job's 1,024-pixel rows read 0.688 where torchmetrics on the 12 images of 64 x 64 reads 0.667
    _masks(tmp_path / "m.parquet", 1, (4096,), False)
    for metric_class, params in (("segmentation.MeanIoU", {"input_format": "index"}), ("segmentation.DiceScore", {})):
        spec = {
            "name": "seg",
            "data": {"path": str(tmp_path / "m.parquet"), "columns": {"predictions": "pred", "targets": "mask"}},
            "task": {"kind": "segmentation", "num_classes": CLASSES},
            "metrics": [{"name": "m", "backend": "torchmetrics", "metric_class": metric_class, "params": params}],
            "execution": {"runner": "local"},
            "output": {"uri": str(tmp_path / "out")},
        }
        assert main(["validate", str(write_job(tmp_path / "job.yaml", spec))]) == 2
        err = capsys.readouterr().err
        assert (
            f"metrics[0].metric_class (line 13): torchmetrics: torchmetrics.{metric_class} averages a score per image"
            in err
        )
        assert "mean_iou and dice_score" in err and "Traceback" not in err


def test_a_class_its_package_exports_is_named_with_its_package(tmp_path, capsys) -> None:
    _masks(tmp_path / "m.parquet", 1, (16,), False)
    spec = {
        "name": "seg",
        "data": {"path": str(tmp_path / "m.parquet"), "columns": {"predictions": "pred", "targets": "mask"}},
        "task": {"kind": "segmentation", "num_classes": CLASSES},
        "metrics": [{"name": "m", "backend": "torchmetrics", "metric_class": "MulticlassAccuracy"}],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    assert main(["validate", str(write_job(tmp_path / "job.yaml", spec))]) == 2
    assert "(did you mean 'classification.MulticlassAccuracy'?)" in capsys.readouterr().err  # (was: 'Accuracy')
