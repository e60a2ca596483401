"""``backend: torchmetrics``: torchmetrics objects as mergeable statistics, and the classes evalpipe computes
natively, each against torchmetrics run once on all rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchmetrics
from scipy.special import softmax

from evaluators.catalog import build
from evaluators.task import Task
from evaluators.torchmetrics_backend import native_equivalent, torchmetrics_metric
from pipelines import spec as spec_module
from pipelines.errors import SpecError
from pipelines.execute import run_job
from pipelines.synthetic import concatenated, write_shards
from tests._data import make_shards, sharded_values
from tests.conftest import write_job

C = 4


def _multiclass(rng, n=2000):
    logits = rng.normal(0, 1.5, (n, C))
    y = np.array([rng.choice(C, p=row) for row in softmax(logits * 0.6, axis=1)])
    return softmax(logits, axis=1).astype(np.float32), y


def _binary(rng, n=2000):
    y = (rng.random(n) < 0.35).astype(np.int64)
    p = np.clip(0.35 + 0.3 * (y - 0.35) + rng.normal(0, 0.2, n), 0.001, 0.999).astype(np.float32)
    return p, y


def _reference(class_name: str, params: dict, preds: np.ndarray, targets: np.ndarray) -> np.ndarray:
    metric = getattr(torchmetrics, class_name)(**params)
    metric.update(torch.from_numpy(preds), torch.from_numpy(targets))
    return np.asarray(metric.compute(), np.float64)


def _sharded(metric, preds, targets, rng) -> dict:
    shards = make_shards(rng, len(targets), targets, pieces=5)
    return sharded_values([metric], {"predictions": preds, "targets": targets, "weights": None}, shards, rng)[0]


@pytest.mark.parametrize(
    ("class_name", "params"),
    [
        ("AUROC", {"task": "multiclass", "average": "macro"}),  # a list ("cat") state
        ("F1Score", {"task": "multiclass", "average": "weighted", "multidim_average": "global"}),
        ("CalibrationError", {"task": "multiclass", "n_bins": 10, "norm": "max"}),
        ("HammingDistance", {"task": "multiclass"}),
    ],
)
def test_torchmetrics_objects_merged_from_shards_equal_one_object_on_all_rows(class_name, params):
    rng = np.random.default_rng(7)
    probs, y = _multiclass(rng)
    task = Task("multiclass", C)
    metric = torchmetrics_metric(task, class_name, params, "m")
    # AUROC (thresholds=None) and CalibrationError keep every prediction: list states that grow with the rows
    assert metric.statistic.bounded is (class_name not in ("AUROC", "CalibrationError"))
    values = _sharded(metric, probs, y, rng)
    expected = _reference(class_name, {**params, "num_classes": C}, probs, y)
    assert values[""] == pytest.approx(float(expected), rel=1e-6)


def test_per_class_vectors_come_back_as_indexed_values():
    rng = np.random.default_rng(8)
    probs, y = _multiclass(rng, 600)
    metric = torchmetrics_metric(Task("multiclass", C), "Recall", {"task": "multiclass", "average": "none"}, "r")
    values = _sharded(metric, probs, y, rng)
    expected = _reference("Recall", {"task": "multiclass", "average": "none", "num_classes": C}, probs, y)
    np.testing.assert_allclose([values[f"[{i}]"] for i in range(C)], expected, rtol=1e-6)


def test_sample_weights_are_refused_by_torchmetrics_objects():
    rng = np.random.default_rng(9)
    probs, y = _multiclass(rng, 100)
    metric = torchmetrics_metric(Task("multiclass", C), "HammingDistance", {"task": "multiclass"}, "h")
    with pytest.raises(ValueError, match="takes no sample weights"):
        sharded_values(
            [metric], {"predictions": probs, "targets": y, "weights": np.full(100, 2.0)}, [np.arange(100)], rng
        )


MULTICLASS_NATIVE = [
    ("Accuracy", {"task": "multiclass"}),
    ("Accuracy", {"task": "multiclass", "top_k": 2}),
    ("Accuracy", {"task": "multiclass", "average": "macro"}),
    ("F1Score", {"task": "multiclass"}),
    ("F1Score", {"task": "multiclass", "average": "weighted"}),
    ("Precision", {"task": "multiclass", "average": "macro"}),
    ("Recall", {"task": "multiclass", "average": "micro"}),
    ("Specificity", {"task": "multiclass", "average": "macro"}),
    ("MatthewsCorrCoef", {"task": "multiclass"}),
    ("CohenKappa", {"task": "multiclass", "weights": "quadratic"}),
    ("AUROC", {"task": "multiclass", "average": "macro"}),
    ("AveragePrecision", {"task": "multiclass", "average": "macro"}),
    ("CalibrationError", {"task": "multiclass", "n_bins": 10}),
]
BINARY_NATIVE = [
    ("Accuracy", {"task": "binary"}),
    ("F1Score", {"task": "binary"}),
    ("Precision", {"task": "binary"}),
    ("Recall", {"task": "binary"}),
    ("Specificity", {"task": "binary"}),
    ("MatthewsCorrCoef", {"task": "binary"}),
    ("AUROC", {"task": "binary"}),
    ("AveragePrecision", {"task": "binary"}),
    ("CalibrationError", {"task": "binary"}),
]


@pytest.mark.parametrize(
    ("kind", "class_name", "params"),
    [("multiclass", *e) for e in MULTICLASS_NATIVE] + [("binary", *e) for e in BINARY_NATIVE],
)
def test_native_equivalents_equal_torchmetrics(kind, class_name, params):
    rng = np.random.default_rng(11)
    if kind == "multiclass":
        preds, y = _multiclass(rng)
        task = Task("multiclass", C)
        ref_params = {**params, "num_classes": C}
    else:
        preds, y = _binary(rng)
        task, ref_params = Task("binary"), params
    found = native_equivalent(task, class_name, params)
    assert found is not None
    name, native_params = found
    values = _sharded(build(name, task, native_params), preds, y, rng)
    expected = _reference(class_name, ref_params, preds, y)
    assert values[""] == pytest.approx(float(expected), rel=1e-5, abs=1e-7)


def test_parameters_without_a_native_counterpart_fall_back_to_torchmetrics():
    task = Task("multiclass", C)
    assert native_equivalent(task, "F1Score", {"task": "multiclass", "multidim_average": "samplewise"}) is None
    assert native_equivalent(task, "CalibrationError", {"task": "multiclass", "norm": "max"}) is None
    assert native_equivalent(task, "F1Score", {"task": "binary"}) is None
    assert native_equivalent(task, "HammingDistance", {"task": "multiclass"}) is None
    with pytest.raises(ValueError, match="has no metric class 'F1Scor'"):
        torchmetrics_metric(task, "F1Scor", {}, "x")


# --- AutoTimm's MetricConfig entries in a YAML job ----------------------------------------------------------------

AUTOTIMM_CONFIGS = [
    # the seed's configs, as AutoTimm writes them (MetricConfig fields as YAML keys)
    {
        "name": "accuracy",
        "backend": "torchmetrics",
        "metric_class": "Accuracy",
        "params": {"task": "multiclass"},
        "stages": ["train", "val", "test"],
        "prog_bar": True,
    },
    {
        "name": "top5_accuracy",
        "backend": "torchmetrics",
        "metric_class": "Accuracy",
        "params": {"task": "multiclass", "top_k": 5},
        "stages": ["val", "test"],
    },
    {
        "name": "f1_macro",
        "backend": "torchmetrics",
        "metric_class": "F1Score",
        "params": {"task": "multiclass", "average": "macro"},
        "stages": ["val", "test"],
        "prog_bar": True,
    },
    {
        "name": "f1_weighted",
        "backend": "torchmetrics",
        "metric_class": "F1Score",
        "params": {"task": "multiclass", "average": "weighted"},
        "stages": ["val", "test"],
    },
    {
        "name": "f1_per_class",
        "backend": "torchmetrics",
        "metric_class": "F1Score",
        "params": {"task": "multiclass", "average": "none"},
        "stages": ["test"],
    },
    {
        "name": "precision",
        "backend": "torchmetrics",
        "metric_class": "Precision",
        "params": {"task": "multiclass", "average": "macro"},
        "stages": ["val", "test"],
    },
    {
        "name": "recall",
        "backend": "torchmetrics",
        "metric_class": "Recall",
        "params": {"task": "multiclass", "average": "macro"},
        "stages": ["val", "test"],
    },
    {
        "name": "auroc",
        "backend": "torchmetrics",
        "metric_class": "AUROC",
        "params": {"task": "multiclass", "num_classes": 10, "average": "macro"},
        "stages": ["val", "test"],
    },
    # classes and parameters evalpipe has no native counterpart for: torchmetrics runs in each worker
    {"name": "hamming", "backend": "torchmetrics", "metric_class": "HammingDistance", "params": {"task": "multiclass"}},
    {
        "name": "mce",
        "backend": "torchmetrics",
        "metric_class": "CalibrationError",
        "params": {"task": "multiclass", "norm": "max", "n_bins": 10},
    },
]


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_autotimm_configs_pasted_into_a_job_equal_torchmetrics_on_all_rows(tmp_path, runner, request):
    if runner == "ray":
        request.getfixturevalue("ray_cluster")
    paths = write_shards(str(tmp_path / "data"), "multiclass", 3_000, 4, seed=5, num_classes=10)
    job = {
        "name": "autotimm",
        "data": {"path": f"{tmp_path}/data/*.parquet", "columns": {"predictions": "probs", "targets": "label"}},
        "task": {"kind": "multiclass", "num_classes": 10},
        "metrics": AUTOTIMM_CONFIGS,
        "execution": {"runner": runner, "actors": 2, "unit_rows": 700},
        "output": {"uri": str(tmp_path / "out")},
    }
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False).run
    values = {k: m.value for k, m in run.point("overall").metrics.items()}
    columns = concatenated(paths, ["probs", "label"])
    probs = np.stack(columns["probs"]).astype(np.float32)
    labels = columns["label"].astype(np.int64)
    for config in AUTOTIMM_CONFIGS:
        params = {**config["params"], "num_classes": 10}
        expected = _reference(config["metric_class"], params, probs, labels)
        if expected.ndim:
            got = [values[f"{config['name']}[{i}]"] for i in range(10)]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
        else:
            assert values[config["name"]] == pytest.approx(float(expected), rel=1e-5, abs=1e-7), config["name"]
    backends = run.metadata["metric_backends"]
    assert backends["f1_macro"] == "evalpipe (torchmetrics.F1Score)"
    assert backends["hamming"] == backends["mce"] == "torchmetrics"
    assert run.metadata["unbounded_metrics"] == ["mce"]


def test_unknown_torchmetrics_class_is_a_spec_error_naming_the_entry(tmp_path):
    write_shards(str(tmp_path / "data"), "multiclass", 100, 1, seed=5, num_classes=3)
    job = {
        "name": "autotimm-bad",
        "data": {"path": f"{tmp_path}/data/*.parquet", "columns": {"predictions": "probs", "targets": "label"}},
        "task": {"kind": "multiclass", "num_classes": 3},
        "metrics": [{"name": "f1", "backend": "torchmetrics", "metric_class": "F1Scor", "params": {}}],
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(SpecError, match=r"metrics\[0\].metric_class.*torchmetrics has no metric class 'F1Scor'"):
        spec_module.load(str(write_job(tmp_path / "job.yaml", job)))


def _config_job(tmp_path, kind: str, metric: dict) -> dict:
    """A 4-class (or binary) job over 3 shards of 300 rows, with one torchmetrics entry besides accuracy."""
    data = tmp_path / "data"
    if not data.exists():
        write_shards(str(data), kind, 900, 3, seed=3, num_classes=C)
    columns = {"predictions": "probs", "targets": "label"} if kind == "multiclass" else {"predictions": "score"}
    columns.setdefault("targets", "label")
    return {
        "name": "pasted",
        "data": {"path": f"{data}/*.parquet", "columns": columns},
        "task": {"kind": "multiclass", "num_classes": C} if kind == "multiclass" else "binary",
        "metrics": ["accuracy", {"name": "pasted", "backend": "torchmetrics", **metric}],
        "execution": {"runner": "local", "unit_rows": 250},
        "output": {"uri": str(tmp_path / "out")},
    }


@pytest.mark.parametrize(
    ("kind", "metric", "message"),
    [
        (  # the seed's auroc_multiclass on a job of 4 classes: torchmetrics failed in every worker (a traceback)
            "multiclass",
            {"metric_class": "AUROC", "params": {"task": "multiclass", "num_classes": 10, "average": "macro"}},
            "AUROC: num_classes is 10 but the job's task has 4 classes (task.num_classes): give num_classes: 4",
        ),
        (  # AutoTimm's default Accuracy on a binary job: probabilities read as labels, an accuracy of 0 committed
            "binary",
            {"metric_class": "Accuracy", "params": {"task": "multiclass"}},
            "Accuracy: task is 'multiclass' but the job's task is binary: give task: binary (or leave it out)",
        ),
        ("multiclass", {"metric_class": "AUROC", "params": {"task": "binary"}}, "task is 'binary' but the job's"),
        ("multiclass", {"metric_class": "Dice"}, "evalpipe computes it as the metric 'dice_score'"),
        ("multiclass", {"metric_class": "F1Scor"}, "has no metric class 'F1Scor' (did you mean 'F1Score'?)"),
    ],
    ids=["num_classes", "task on a binary job", "task on a multiclass job", "a class evalpipe names", "a typo"],
)
def test_pasted_configs_of_another_task_are_spec_errors_naming_the_entry(tmp_path, kind, metric, message):
    path = write_job(tmp_path / "job.yaml", _config_job(tmp_path, kind, metric))
    with pytest.raises(SpecError) as caught:
        spec_module.load(str(path))
    assert "metrics[1]." in str(caught.value) and message in str(caught.value), str(caught.value)


def test_backend_of_another_name_points_to_statistic_classes_and_functions(tmp_path):
    metric = {"metric_class": "mypackage.metrics.CustomMetric"}
    job = _config_job(tmp_path, "multiclass", metric)
    job["metrics"][1]["backend"] = "custom"
    with pytest.raises(SpecError, match=r"metrics\[1\]\.backend.*got 'custom'.*statistic: package.module.Class"):
        spec_module.load(str(write_job(tmp_path / "job.yaml", job)))


@pytest.mark.parametrize(
    ("metric", "reference"),
    [
        (  # int64 targets, as torchmetrics takes them (int32 ones failed its one_hot: a traceback)
            {"metric_class": "AUROC", "params": {"task": "multiclass", "thresholds": 100}},
            ("AUROC", {"task": "multiclass", "thresholds": 100, "num_classes": C}),
        ),
        (  # AutoTimm's full path
            {"metric_class": "torchmetrics.HammingDistance", "params": {"task": "multiclass"}},
            ("HammingDistance", {"task": "multiclass", "num_classes": C}),
        ),
        (  # num_classes from the job for a class without the task wrapper
            {"metric_class": "classification.MulticlassF1Score", "params": {"average": "weighted"}},
            ("classification.MulticlassF1Score", {"average": "weighted", "num_classes": C}),
        ),
        (  # no task given: the job's
            {"metric_class": "CalibrationError", "params": {"norm": "max", "n_bins": 7}},
            ("CalibrationError", {"task": "multiclass", "norm": "max", "n_bins": 7, "num_classes": C}),
        ),
    ],
    ids=["thresholds", "full path", "class of one task", "task left out"],
)
def test_pass_through_configs_equal_torchmetrics_on_all_rows(tmp_path, metric, reference):
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", _config_job(tmp_path, "multiclass", metric)))))
    columns = concatenated(sorted(str(p) for p in (tmp_path / "data").glob("*.parquet")), ["probs", "label"])
    probs, labels = np.stack(columns["probs"]).astype(np.float32), columns["label"].astype(np.int64)
    class_name, params = reference
    cls = torchmetrics
    for part in class_name.split("."):
        cls = getattr(cls, part)
    expected = cls(**params)
    expected.update(torch.from_numpy(probs), torch.from_numpy(labels))
    assert run.run.point("overall").metrics["pasted"].value == pytest.approx(float(expected.compute()), rel=1e-6)


def test_torchmetrics_failing_on_the_rows_is_exit_2_naming_the_metric(tmp_path, capsys):
    """A class that cannot read the job's rows (``segmentation.MeanIoU`` of class scores against class ids: "the same
    shape" expected) fails every worker: exit 2 naming the metric, its class and torchmetrics' message, not retried,
    nothing committed (it was an internal error with a traceback)."""
    from pipelines.cli import main

    job = _config_job(tmp_path, "multiclass", {"metric_class": "segmentation.MeanIoU"})
    code = main(["run", str(write_job(tmp_path / "job.yaml", job)), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "the statistic torchmetrics.segmentation.MeanIoU(num_classes=4) of metric 'pasted' raised" in err, err
    assert "expected to have the same shape" in err
    assert not list((tmp_path / "out").glob("pasted/2*/_COMMITTED"))


def test_the_full_class_path_keeps_the_native_metric_and_a_pass_through_class_reads_the_jobs_threshold(tmp_path):
    """``torchmetrics.F1Score`` ran torchmetrics (no interval, no weights) where ``F1Score`` is computed natively;
    a multilabel ``HammingDistance`` scored at 0.5 beside the job's own metrics at ``task.threshold: 0.3``."""
    job = _config_job(tmp_path, "multiclass", {"metric_class": "torchmetrics.F1Score", "params": {"average": "macro"}})
    spec = spec_module.load(str(write_job(tmp_path / "job.yaml", job)))
    assert spec.metrics[1].name == "f1_score" and spec.metrics[1].backend == "evalpipe (torchmetrics.F1Score)"
    task = Task("multilabel", 3, threshold=0.3)
    rng = np.random.default_rng(8)
    scores, targets = rng.random((400, 3)).astype(np.float32), rng.integers(0, 2, (400, 3))
    metric = torchmetrics_metric(task, "HammingDistance", {}, "h")
    expected = torchmetrics.HammingDistance(task="multilabel", num_labels=3, threshold=0.3)
    expected.update(torch.from_numpy(scores), torch.from_numpy(targets))
    from evaluators.accumulate import evaluate

    (values,) = evaluate([metric], scores, targets)
    assert values[""] == pytest.approx(float(expected.compute()), rel=1e-6)
    at_half = torchmetrics.HammingDistance(task="multilabel", num_labels=3)
    at_half.update(torch.from_numpy(scores), torch.from_numpy(targets))
    assert float(at_half.compute()) != pytest.approx(values[""], rel=1e-6)  # (the data tell 0.3 from 0.5)


@pytest.mark.parametrize(
    ("kind", "class_name", "params"),
    [("multilabel", "HammingDistance", {"task": "multilabel"}), ("multiclass", "Accuracy", {"task": "multiclass"})],
)
def test_a_pass_through_class_takes_the_jobs_ignore_index(kind, class_name, params):
    """A job's ``task.ignore_index`` reached its own metrics but not a torchmetrics class (which took the job's
    threshold): targets of 255 made torchmetrics raise ("Detected the following values in `target`"), exit 2. The
    class now gets it as the threshold, and equals torchmetrics given it."""
    rng = np.random.default_rng(9)
    if kind == "multilabel":
        probs, y = rng.random((1500, C)).astype(np.float32), (rng.random((1500, C)) < 0.4).astype(np.int64)
        y[rng.random(y.shape) < 0.1] = 255
        task = Task("multilabel", C, threshold=0.3, ignore_index=255)
        reference = {**params, "num_labels": C, "threshold": 0.3, "ignore_index": 255}
    else:
        probs, y = _multiclass(rng, 1500)
        y[rng.random(len(y)) < 0.1] = 255
        task = Task("multiclass", C, ignore_index=255)
        reference = {**params, "num_classes": C, "ignore_index": 255}
    metric = torchmetrics_metric(task, class_name, params, "m")
    shards = make_shards(rng, len(y), None, pieces=5)
    columns = {"predictions": probs, "targets": y, "weights": None}
    values = sharded_values([metric], columns, shards, rng)[0]
    assert values[""] == pytest.approx(float(_reference(class_name, reference, probs, y)), rel=1e-6)
