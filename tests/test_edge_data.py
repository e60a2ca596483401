"""Edge data that must give the reference's value or stop with exit 2 naming file, column and rows: segmentation
ids out of range and raw-byte masks, weights, metrics outside their task or parameter domain, user functions that
exit or return huge / complex scores, and catalogue metrics beside user functions. Through YAML jobs on the local
and Ray runners, and the functional API."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

import evaluators.functional as F
from evaluators import catalog, segmentation
from evaluators.segmentation import encode_mask
from evaluators.task import Task, TaskKind
from pipelines import spec as spec_module
from pipelines.errors import DataError, SpecError, UserCodeError
from pipelines.execute import run_job
from pipelines.results import list_runs
from pipelines.storage import read_run
from tests.conftest import accuracy_job, write_job

CLASSES, IGNORE = 21, 255


def _run(tmp_path, spec: dict, name: str = "job.yaml"):
    return run_job(spec_module.load(str(write_job(tmp_path / name, spec))), show_progress=False)


def _fails(tmp_path, spec: dict, error=DataError, *needles: str) -> str:
    with pytest.raises(error) as caught:
        _run(tmp_path, spec)
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    assert "\n" not in message
    assert not list_runs(str(tmp_path / "out"))
    return message


def _values(run) -> dict[str, float]:
    return {k: m.value for k, m in run.run.point("overall").metrics.items()}


# --- segmentation: ids out of range, raw-byte masks ------------------------------------------------------------


def _segmentation_masks(rng: np.random.Generator, n: int = 24) -> tuple[list[np.ndarray], list[np.ndarray]]:
    truths, preds = [], []
    for _ in range(n):
        h, w = rng.integers(6, 14, 2)
        truth = rng.integers(0, CLASSES, (h, w)).astype(np.uint8)
        truth[0, :3] = IGNORE
        pred = np.where(rng.random((h, w)) < 0.8, truth, rng.integers(0, CLASSES, (h, w))).astype(np.uint8)
        pred[pred == IGNORE] = 0
        truths.append(truth)
        preds.append(pred)
    return truths, preds


def _write_masks(directory, truths, preds, encode=encode_mask) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "mask": pa.array([encode(t) for t in truths], pa.binary()),
            "predicted": pa.array([encode(p) for p in preds], pa.binary()),
        }
    )
    half = len(truths) // 2
    pq.write_table(table.slice(0, half), directory / "part-0.parquet", row_group_size=5)
    pq.write_table(table.slice(half), directory / "part-1.parquet", row_group_size=5)


def _segmentation_job(tmp_path, data, runner: str, **data_extra) -> dict:
    return {
        "name": "segmentation-edges",
        "data": {"path": str(data), "columns": {"predictions": "predicted", "targets": "mask"}, **data_extra},
        "task": {"kind": "segmentation", "num_classes": CLASSES, "ignore_index": IGNORE},
        "metrics": ["pixel_accuracy", "mean_iou"],
        "execution": {"runner": runner, "actors": 2, "unit_rows": 6},
        "output": {"uri": str(tmp_path / "out")},
    }


def _pixel_reference(truths, preds, keep) -> dict[str, float]:
    """Pixel accuracy and macro IoU of the kept images from a numpy confusion matrix."""
    t = np.concatenate([x.ravel() for x, k in zip(truths, keep, strict=True) if k]).astype(np.int64)
    p = np.concatenate([x.ravel() for x, k in zip(preds, keep, strict=True) if k]).astype(np.int64)
    valid = t != IGNORE
    cm = np.bincount(t[valid] * CLASSES + p[valid], minlength=CLASSES * CLASSES).reshape(CLASSES, CLASSES)
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0
    return {"pixel_accuracy": tp.sum() / cm.sum(), "mean_iou": float((tp[present] / union[present]).mean())}


@pytest.fixture
def spoiled_masks(tmp_path):
    truths, preds = _segmentation_masks(np.random.default_rng(15))
    preds[2][1, 1:4] = 30  # three predicted pixels out of range
    truths[17][2, 2] = 30  # one target pixel out of range (not the ignore index)
    _write_masks(tmp_path / "data", truths, preds)
    return tmp_path / "data", truths, preds


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_segmentation_ids_out_of_range_exit_2_or_are_dropped_and_counted(tmp_path, spoiled_masks, runner, request):
    if runner == "ray":
        request.getfixturevalue("ray_cluster")
    data, truths, preds = spoiled_masks
    message = _fails(tmp_path, _segmentation_job(tmp_path, data, runner), DataError, "part-")
    assert "column 'predicted' (data.columns.predictions): 1 row with class ids outside [0, 20]" in message or (
        "column 'mask' (data.columns.targets): 1 row with class ids outside [0, 20] or 255" in message
    )
    run = _run(tmp_path, _segmentation_job(tmp_path, data, runner, on_bad_rows="drop"), "drop.yaml")
    assert run.run.metadata["dropped_rows"] == {
        "rows": 2,
        "by_reason": {
            "predictions: with class ids outside [0, 20]": 1,
            "targets: with class ids outside [0, 20] or 255": 1,
        },
    }
    keep = [i not in (2, 17) for i in range(len(truths))]
    want = _pixel_reference(truths, preds, keep)
    got = _values(run)
    assert got["pixel_accuracy"] == pytest.approx(want["pixel_accuracy"], abs=1e-12)
    assert got["mean_iou"] == pytest.approx(want["mean_iou"], abs=1e-12)


def test_segmentation_functional_api_refuses_the_same_masks_with_the_same_range_check(spoiled_masks):
    _, truths, preds = spoiled_masks
    for i in (2, 17):
        with pytest.raises(ValueError, match="class ids outside"):
            F.pixel_accuracy(preds[i][None], truths[i][None], CLASSES, ignore_index=IGNORE)
        rows = segmentation.bad_mask_rows([preds[i]], [truths[i]], CLASSES, IGNORE)
        assert [p.count for p in rows] == [1]
    clean = segmentation.bad_mask_rows([preds[0]], [truths[0]], CLASSES, IGNORE)
    assert clean == []
    want = _pixel_reference([truths[0]], [preds[0]], [True])["pixel_accuracy"]
    assert F.pixel_accuracy(preds[0][None], truths[0][None], CLASSES, ignore_index=IGNORE) == pytest.approx(want)


def test_raw_byte_masks_in_a_binary_column_are_refused_naming_file_column_and_row(tmp_path):
    truths, preds = _segmentation_masks(np.random.default_rng(4), 10)
    _write_masks(tmp_path / "data", truths, preds, encode=lambda m: m.tobytes())
    message = _fails(
        tmp_path,
        _segmentation_job(tmp_path, tmp_path / "data", "local"),
        DataError,
        "part-0.parquet",
        "(data.columns.",
        "row 0 of the file",
        "fixed_size_binary",
        "PNG",
    )
    assert "Traceback" not in message


# --- weights ---------------------------------------------------------------------------------------------------


def _binary_with_weights(directory, weights: np.ndarray, seed: int = 3):
    rng = np.random.default_rng(seed)
    n = len(weights)
    label = (rng.random(n) < 0.3).astype(np.int8)
    score = np.clip(0.3 * label + rng.random(n) * 0.7, 0, 1).astype(np.float64)
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table({"score": score, "label": label, "w": np.asarray(weights, np.float64)})
    pq.write_table(table.slice(0, n // 2), directory / "a.parquet", row_group_size=250)
    pq.write_table(table.slice(n // 2), directory / "b.parquet", row_group_size=250)
    return score, label


def _weighted_job(tmp_path, data, runner="local", **data_extra) -> dict:
    return {
        "name": "weights",
        "data": {
            "path": str(data),
            "columns": {"predictions": "score", "targets": "label", "weights": "w"},
            **data_extra,
        },
        "task": "binary",
        "metrics": ["accuracy", "log_loss", "brier_score"],
        "execution": {"runner": runner, "actors": 2, "unit_rows": 400},
        "output": {"uri": str(tmp_path / "out")},
    }


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_nan_inf_and_negative_weights_exit_2_or_are_dropped_and_counted(tmp_path, runner, request):
    if runner == "ray":
        request.getfixturevalue("ray_cluster")
    weights = np.random.default_rng(1).uniform(0.5, 2.0, 2_000)
    weights[[5, 1_500]] = [np.nan, np.inf]
    weights[1_700] = -1.0
    score, label = _binary_with_weights(tmp_path / "data", weights)
    _fails(
        tmp_path,
        _weighted_job(tmp_path, tmp_path / "data", runner),
        DataError,
        "column 'w' (data.columns.weights): 1 row with a NaN, infinite or negative weight",
        "on_bad_rows: drop",
    )
    run = _run(tmp_path, _weighted_job(tmp_path, tmp_path / "data", runner, on_bad_rows="drop"), "drop.yaml")
    assert run.run.metadata["dropped_rows"] == {
        "rows": 3,
        "by_reason": {"weights: with a NaN, infinite or negative weight": 3},
    }
    keep = np.isfinite(weights) & (weights >= 0)
    y, p, w = label[keep], score[keep], weights[keep]
    got = _values(run)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p > 0.5, sample_weight=w), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p, sample_weight=w), rel=1e-9)
    assert got["brier_score"] == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w), rel=1e-9)


def test_the_functional_api_runs_the_same_row_checks_as_the_pipeline():
    p, y = np.array([0.2, 0.9, 0.6]), np.array([0, 1, 1])
    with pytest.raises(ValueError, match="weights: 2 rows with a NaN, infinite or negative weight"):
        F.accuracy(p, y, weights=np.array([np.nan, 1.0, -2.0]))
    with pytest.raises(ValueError, match="predictions: 1 row with NaN or inf"):
        F.log_loss(np.array([0.2, np.inf, 0.6]), y)
    with pytest.raises(ValueError, match=r"targets: 1 row with labels outside \[0, 1\]"):
        F.brier_score(p, np.array([0, 1, 2]))
    w = np.array([0.5, 2.0, 1.0])
    assert F.accuracy(p, y, weights=w) == pytest.approx(skm.accuracy_score(y, p > 0.5, sample_weight=w))


def test_all_zero_weights_exit_2_as_scikit_learn_refuses_them(tmp_path):
    score, label = _binary_with_weights(tmp_path / "data", np.zeros(600))
    with pytest.raises(ValueError, match="at least one non-zero"):
        skm.accuracy_score(label, score > 0.5, sample_weight=np.zeros(600))
    _fails(
        tmp_path,
        _weighted_job(tmp_path, tmp_path / "data"),
        DataError,
        "column 'w' (data.columns.weights): all 600 rows have weight 0",
    )


# --- metrics outside their task or parameter domain ---------------------------------------------------------------


def test_every_metric_declares_its_tasks_and_build_refuses_the_others():
    tasks = {k: Task(k, num_classes=3 if k in ("multiclass", "multilabel", "segmentation") else None) for k in TaskKind}
    assert set(catalog.TASKS) == set(catalog.METRICS)
    for name, kinds in catalog.TASKS.items():
        for kind, task in tasks.items():
            if kind in kinds:
                catalog.build(name, task)  # a declared task builds with the defaults
            else:
                with pytest.raises(ValueError, match=f"metric '{name}' serves .* not {kind};"):
                    catalog.build(name, task)


def test_every_parameter_has_a_domain_that_holds_its_default():
    for name in catalog.METRICS:
        for key, parameter in catalog.parameters(name).items():
            assert key in catalog.PARAMETERS, (name, key)
            assert catalog.PARAMETERS[key].accepts(parameter.default), (name, key, parameter.default)


def _validate(tmp_path, task, metrics) -> subprocess.CompletedProcess:
    spec = {
        "name": "validate-edges",
        "data": {"path": str(tmp_path), "columns": {"predictions": "score", "targets": "label"}},
        "task": task,
        "metrics": metrics,
        "output": {"uri": str(tmp_path / "out")},
    }
    job = write_job(tmp_path / "job.yaml", spec)
    return subprocess.run(
        [sys.executable, "-m", "pipelines", "validate", str(job)], capture_output=True, text=True, check=False
    )


def test_validate_refuses_a_metric_outside_its_task_and_parameters_outside_their_domain(tmp_path):
    result = _validate(tmp_path, "binary", ["mean_average_precision"])
    assert result.returncode == 2, result.stderr
    assert "metrics[0]" in result.stderr and "serves detection, ranking tasks, not binary" in result.stderr
    assert "metrics for a binary task: accuracy" in result.stderr and "Traceback" not in result.stderr
    cases = [
        ({"log_loss": {"eps": 2}}, "parameter 'eps' of metric 'log_loss' must be a finite number > 0 and < 0.5"),
        ({"precision": {"zero_division": 7}}, "parameter 'zero_division' of metric 'precision' must be"),
        ({"fbeta_score": {"beta": float("nan")}}, "parameter 'beta' of metric 'fbeta_score' must be"),
        ({"expected_calibration_error": {"n_bins": True}}, "parameter 'n_bins'"),
        ({"accuracy": {"top_k": 0}}, "parameter 'top_k'"),
    ]
    for metric, needle in cases:
        with pytest.raises(SpecError, match="metrics\\[0\\]") as caught:
            spec_module.load(
                str(
                    write_job(
                        tmp_path / "p.yaml",
                        {
                            "name": "p",
                            "data": {"path": str(tmp_path), "columns": {"predictions": "s", "targets": "l"}},
                            "task": "binary",
                            "metrics": [metric],
                            "output": {"uri": str(tmp_path / "out")},
                        },
                    )
                )
            )
        assert needle in str(caught.value), str(caught.value)
    with pytest.raises(ValueError, match="parameter 'eps' of metric 'log_loss'"):
        F.log_loss(np.array([0.2, 0.9]), np.array([0, 1]), eps=2.0)


# --- user functions ------------------------------------------------------------------------------------------------


def _function_job(tmp_path, data, function: str, runner: str = "local", metrics=()) -> dict:
    return {
        "name": "functions-edges",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": list(metrics),
        "functions": [
            {"function": f"tests.user_metrics.{function}", "outputs": ["words"], "columns": {"samples": "t"}}
        ],
        "allow_modules": ["tests.user_metrics"],
        "execution": {"runner": runner, "actors": 2, "unit_rows": 300},
        "output": {"uri": str(tmp_path / "out")},
    }


@pytest.fixture
def scored_texts(tmp_path):
    rng = np.random.default_rng(9)
    n = 900
    label = (rng.random(n) < 0.4).astype(np.int8)
    score = np.clip(0.4 * label + rng.random(n) * 0.6, 0, 1)
    texts = [" ".join(["w"] * int(k)) for k in rng.integers(1, 6, n)]
    data = tmp_path / "data"
    data.mkdir()
    table = pa.table({"score": score, "label": label, "t": texts})
    pq.write_table(table.slice(0, 450), data / "a.parquet", row_group_size=200)
    pq.write_table(table.slice(450), data / "b.parquet", row_group_size=200)
    return data, score, label, texts


@pytest.mark.slow
@pytest.mark.ray
def test_a_function_calling_sys_exit_on_a_ray_actor_is_a_user_code_error(tmp_path, scored_texts, ray_cluster):
    _fails(
        tmp_path,
        _function_job(tmp_path, scored_texts[0], "exits", "ray"),
        UserCodeError,
        "metric function tests.user_metrics.exits raised SystemExit",
    )


def test_a_function_calling_sys_exit_fails_the_run_with_exit_2_naming_it(tmp_path, scored_texts):
    job = write_job(tmp_path / "job.yaml", _function_job(tmp_path, scored_texts[0], "exits"))
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", str(job)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "tests.user_metrics.exits raised SystemExit" in result.stderr and "Traceback" not in result.stderr
    assert not list_runs(str(tmp_path / "out"))
    _fails(tmp_path, _function_job(tmp_path, scored_texts[0], "interrupted"), UserCodeError, "raised KeyboardInterrupt")


@pytest.mark.parametrize(
    ("function", "needle"),
    [
        ("huge", "'words' has 1 scores of magnitude above 1e+12"),
        ("complex_scores", "'words' is not a list of real numbers"),
    ],
)
def test_huge_or_complex_user_scores_exit_2_naming_the_function(tmp_path, scored_texts, function, needle):
    _fails(tmp_path, _function_job(tmp_path, scored_texts[0], function), DataError, f"user_metrics.{function}", needle)


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_a_catalogue_metric_beside_a_user_function_reads_the_task_columns(tmp_path, scored_texts, runner, request):
    if runner == "ray":
        request.getfixturevalue("ray_cluster")
    data, score, label, texts = scored_texts
    run = _run(tmp_path, _function_job(tmp_path, data, "word_count", runner, ["accuracy", "log_loss"]))
    got = _values(run)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(label, score > 0.5), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(label, score), rel=1e-9)
    words = np.array([len(t.split()) for t in texts], np.float64)
    assert got["word_count.words"] == pytest.approx(words.mean(), rel=1e-12)


def test_dropping_every_row_exits_2_instead_of_committing_an_empty_run(tmp_path):
    """``on_bad_rows: drop`` over rows that are all bad left a committed run of 0 rows and NaN metrics; every metric
    is undefined there, as with all weights 0: nothing is committed."""
    (tmp_path / "data").mkdir()
    score = np.full(50, np.nan)
    score[:10] = 2.0  # (probabilities outside [0, 1]: a second reason)
    pq.write_table(pa.table({"score": score, "label": np.arange(50) % 2}), tmp_path / "data" / "part.parquet")
    spec = accuracy_job("all-dropped", str(tmp_path / "data"), {"uri": str(tmp_path / "out")})
    spec["data"]["on_bad_rows"] = "drop"
    _fails(tmp_path, spec, DataError, "left out all 50 rows read", "with NaN or inf: 40", "outside [0, 1]")
    score[:10] = 0.7  # ten good rows: a run of those
    pq.write_table(pa.table({"score": score, "label": np.arange(50) % 2}), tmp_path / "data" / "part.parquet")
    run = _run(tmp_path, spec, "some.yaml")
    assert _values(run)["accuracy"] == skm.accuracy_score(np.arange(10) % 2, np.ones(10)) and _values(run)["rows"] == 10


def test_integer_weights_beyond_int64_and_int32_weigh_what_they_hold(tmp_path):
    """A uint64 weight of 2**63 + 1 was read as 1 (integer columns went to int32): accuracy 0.5 instead of
    scikit-learn's value with those weights."""
    (tmp_path / "data").mkdir()
    score, label = np.array([0.9, 0.1, 0.9, 0.1]), np.array([1, 1, 0, 0])
    for dtype, heavy in ((np.uint64, 2**63 + 1), (np.int64, 2**40)):
        weights = np.array([heavy, 1, 1, 1], dtype)
        table = pa.table({"score": score, "label": label, "w": weights})
        pq.write_table(table, tmp_path / "data" / "part.parquet")
        spec = _weighted_job(tmp_path, tmp_path / "data")
        spec["metrics"] = ["accuracy"]
        got = _values(_run(tmp_path, spec, f"{np.dtype(dtype).name}.yaml"))["accuracy"]
        expected = skm.accuracy_score(label, score > 0.5, sample_weight=weights.astype(np.float64))
        assert got == pytest.approx(expected, rel=1e-15), dtype


def test_top_k_beyond_the_classes_is_refused_and_top_k_of_every_class_is_1():
    """``top_k: 10`` on 4 classes reported 1.0 for any model; torchmetrics refuses it, and ``top_k`` equal to the
    classes counts every row a hit (torchmetrics' value)."""
    import torch
    from torchmetrics.functional.classification import multiclass_accuracy

    probs, labels = np.random.default_rng(3).dirichlet(np.ones(4), 50), np.arange(50) % 4
    with pytest.raises(ValueError, match="top_k 10 is more than the task's 4 classes"):
        F.accuracy(probs, labels, top_k=10, task="multiclass", num_classes=4)
    with pytest.raises(ValueError):
        multiclass_accuracy(torch.tensor(probs), torch.tensor(labels), num_classes=4, top_k=10)
    reference = multiclass_accuracy(torch.tensor(probs), torch.tensor(labels), num_classes=4, top_k=4, average="micro")
    assert F.accuracy(probs, labels, top_k=4, task="multiclass", num_classes=4) == float(reference) == 1.0


@pytest.mark.parametrize(("labels", "lacking"), [(0, "no positive row"), (1, "no negative row")])
def test_ranking_values_of_one_label_are_null_and_say_why(tmp_path, capsys, labels, lacking):
    """All-negative rows leave ROC-AUC and average precision undefined, all-positive rows ROC-AUC (average precision
    is 1): the run commits them as NaN (null in run.json), records why in ``metadata.undefined``, and ``evalpipe run``
    says so on stderr."""
    from pipelines.cli import main

    rng = np.random.default_rng(31)
    scores, y = rng.random(3_000), np.full(3_000, labels)
    pq.write_table(pa.table({"score": scores, "label": y}), tmp_path / "part-0.parquet")
    spec = {
        "name": "one-label",
        "data": {"path": str(tmp_path / "part-0.parquet"), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy", "roc_auc", "average_precision"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    assert main(["run", str(write_job(tmp_path / "job.yaml", spec)), "--quiet"]) == 0
    err = capsys.readouterr().err
    (info,) = list_runs(str(tmp_path / "out"), job="one-label")
    run = read_run(info.uri)
    values = run.point("overall").metrics
    assert np.isnan(values["roc_auc"].value) and values["accuracy"].value == skm.accuracy_score(y, scores > 0.5)
    undefined = run.metadata["undefined"]
    assert undefined["roc_auc"] == f"{lacking}; roc_auc needs rows of both labels"
    assert f"evalpipe: note: roc_auc is undefined (NaN) at overall: {lacking}" in err
    if labels == 0:
        with pytest.warns(UserWarning, match="Only one class"):  # (scikit-learn's UndefinedMetricWarning: NaN)
            assert np.isnan(skm.roc_auc_score(y, scores))
        assert np.isnan(values["average_precision"].value)  # (scikit-learn warns and reads 0: see the README)
        assert undefined["average_precision"] == "no positive row; average_precision needs a positive row"
    else:
        assert values["average_precision"].value == skm.average_precision_score(y, scores) == 1.0
        assert set(undefined) == {"roc_auc"} and "average_precision is undefined" not in err
