"""Fairness metrics against fairlearn on generated data (groups with one class, string and integer labels,
probabilities, logits and labels, sample weights), under any sharding and merge order; a YAML binary job with a
sensitive column on the local and Ray runners; a fairness metric without its column is refused."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fairlearn import metrics as fl
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from sklearn import metrics as skm

import evaluators.functional as F
from evaluators.accumulate import Accumulator
from evaluators.catalog import build
from evaluators.fairness import SENSITIVE
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from tests._data import make_shards, sharded_values
from tests.conftest import write_job

NAMES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equal_opportunity_difference",
)


def fairlearn_values(y, predicted, groups, weights=None) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fairlearn warns on groups with one class (their rate is 0)
        out = {
            name: float(getattr(fl, name)(y, predicted, sensitive_features=groups, sample_weight=weights))
            for name in NAMES
        }
        frame = fl.MetricFrame(
            metrics={
                "selection_rate": fl.selection_rate,
                "true_positive_rate": fl.true_positive_rate,
                "false_positive_rate": fl.false_positive_rate,
            },
            y_true=y,
            y_pred=predicted,
            sensitive_features=groups,
            sample_params={
                name: {"sample_weight": weights}
                for name in ("selection_rate", "true_positive_rate", "false_positive_rate")
            }
            if weights is not None
            else None,
        )
    for group, row in frame.by_group.iterrows():
        for rate, value in row.items():
            out[f".{rate}[{group}]"] = float(value)
    return out


def data(rng: np.random.Generator, n: int, labels: list) -> dict[str, np.ndarray]:
    """Binary rows in groups ``labels`` of skewed sizes; the last group has only positives, the one before only
    negatives."""
    groups = np.asarray(labels, object)[
        rng.choice(len(labels), n, p=np.arange(1, len(labels) + 1) / sum(range(1, len(labels) + 1)))
    ]
    y = (rng.random(n) < 0.4).astype(np.int64)
    y[groups == labels[-1]] = 1
    y[groups == labels[-2]] = 0
    logits = rng.normal(size=n) + (2 * y - 1) * rng.uniform(0, 2, n) + (groups == labels[0]) * 0.7
    return {"targets": y, "logits": logits, SENSITIVE: groups}


@pytest.mark.parametrize(("seed", "kind"), [(0, "probabilities"), (1, "logits"), (2, "labels")])
def test_sharded_values_equal_fairlearn(seed, kind):
    rng = np.random.default_rng(seed)
    rows = data(rng, 600, ["DE", "FR", "日本", "US", "only-neg", "only-pos"])
    y, groups = rows["targets"], rows[SENSITIVE]
    predictions = {
        "probabilities": expit(rows["logits"]),
        "logits": rows["logits"],
        "labels": (rows["logits"] > 0).astype(np.int64),
    }[kind]
    weights = rng.integers(1, 4, len(y)).astype(np.float64) if seed == 1 else None
    task = Task("binary", prediction=kind, threshold=0.5)
    metrics = [build(name, task) for name in NAMES]
    columns = {"predictions": predictions, "targets": y, SENSITIVE: groups, "weights": weights}
    values = sharded_values(metrics, columns, make_shards(rng, len(y), y, pieces=5, max_rows=200), rng)
    expected = fairlearn_values(y, (rows["logits"] > 0).astype(np.int64), groups, weights)
    for name, got in zip(NAMES, values, strict=True):
        assert got[""] == pytest.approx(expected[name], abs=1e-12), name
        for key, value in got.items():
            if key.startswith("."):
                assert value == pytest.approx(expected[key], abs=1e-12) if key != ".groups" else value == 6, key


@pytest.mark.parametrize("ignore_index", [255, -100])
def test_rows_of_an_ignored_target_take_no_part(ignore_index):
    """``task.ignore_index`` rows (a fifth of them, and every row of one group) count nowhere: the values equal
    fairlearn's over the other rows, in any sharding. (They counted as positives, the group included.)"""
    rng = np.random.default_rng(7)
    rows = data(rng, 600, ["DE", "FR", "US", "ignored", "only-neg", "only-pos"])
    y, groups = rows["targets"].copy(), rows[SENSITIVE]
    ignored = (rng.random(len(y)) < 0.2) | (groups == "ignored")
    y[ignored] = ignore_index
    task = Task("binary", prediction="logits", ignore_index=ignore_index)
    metrics = [build(name, task) for name in NAMES]
    columns = {"predictions": rows["logits"], "targets": y, SENSITIVE: groups, "weights": None}
    values = sharded_values(metrics, columns, make_shards(rng, len(y), y, pieces=4, max_rows=200), rng)
    kept = ~ignored
    expected = fairlearn_values(y[kept], (rows["logits"][kept] > 0).astype(np.int64), groups[kept])
    for name, got in zip(NAMES, values, strict=True):
        assert got[""] == pytest.approx(expected[name], abs=1e-12), name
        assert got[".groups"] == 5, name  # (the group of ignored rows only takes no part)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 3)), min_size=2, max_size=40),
    st.integers(0, 2**31),
)
def test_any_rows_and_sharding_equal_fairlearn(rows, seed):
    y, predicted, groups = (np.array(column) for column in zip(*rows, strict=True))
    rng = np.random.default_rng(seed)
    task = Task("binary", prediction="labels")
    metrics = [build(name, task) for name in NAMES]
    columns = {"predictions": predicted, "targets": y, SENSITIVE: groups, "weights": None}
    values = sharded_values(metrics, columns, make_shards(rng, len(y), y, pieces=3, max_rows=50), rng)
    expected = fairlearn_values(y, predicted, groups)
    for name, got in zip(NAMES, values, strict=True):
        assert got[""] == pytest.approx(expected[name], abs=1e-12, nan_ok=True), (name, rows)


def test_functions_and_edges():
    # every selection rate 0: the ratio is NaN (0 / 0), as fairlearn's
    assert math.isnan(F.demographic_parity_ratio([0, 0, 0, 0], [1, 0, 1, 0], ["a", "a", "b", "b"]))
    assert F.disparate_impact_ratio([1, 1, 0, 1], [1, 0, 1, 0], ["a", "a", "b", "b"]) == 0.5
    assert F.equal_opportunity_difference([0.9, 0.2, 0.7, 0.8], [1, 1, 1, 0], [1, 1, 2, 2]) == 0.5
    with pytest.raises(ValueError, match="metric 'demographic_parity_ratio' serves binary tasks, not multiclass"):
        build("demographic_parity_ratio", Task("multiclass", num_classes=3))


def test_edge_groups_against_fairlearn():
    """A single group, a group without positives, and a group whose every row has weight 0 (fairlearn's
    rates then raise; here the group takes no part, as the rows of weight 0 everywhere): equal to fairlearn
    on the rows that count."""
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 1, 0])
    predicted = np.array([1, 0, 0, 1, 1, 1, 0, 0, 1, 1])
    groups = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 2, object)
    for name, value in fairlearn_values(y[:8], predicted[:8], groups[:8]).items():  # "b" has no positive
        if name in NAMES:
            assert getattr(F, name)(predicted[:8], y[:8], groups[:8], prediction="labels") == value, name
    for name, value in fairlearn_values(y, predicted, np.array(["a"] * 10)).items():  # one group
        if name in NAMES:
            assert getattr(F, name)(predicted, y, ["a"] * 10, prediction="labels") == value, name
    weights = np.r_[np.ones(4), [2.0, 1.0, 0.5, 1.0], [0.0, 0.0]]
    expected = fairlearn_values(y[:8], predicted[:8], groups[:8], weights[:8])
    for name in NAMES:
        got = getattr(F, name)(predicted, y, groups, prediction="labels", weights=weights)
        assert got == pytest.approx(expected[name], abs=1e-15), name


def test_group_labels_that_would_be_misread_raise():
    """``1`` and ``"1"`` are two groups to fairlearn but would share the name ``"1"``; a missing label is refused
    by fairlearn too: both are errors, not a number over wrongly formed groups (before: 0.0 where fairlearn
    gives 0.5 for the equalized odds difference of ``[1] * 4 + ["1"] * 4``)."""
    y = [1, 1, 0, 0, 1, 0, 0, 0]
    predicted = [1, 0, 0, 1, 1, 1, 0, 0]
    reference = fairlearn_values(y, predicted, np.array([1] * 4 + ["1"] * 4, object))
    assert reference["equalized_odds_difference"] == 0.5
    for groups in ([1] * 4 + ["1"] * 4, np.array([1.0] * 4 + [1] * 4, object)):
        with pytest.raises(ValueError, match=r"sensitive_features: \d distinct group labels read as \d groups"):
            F.equalized_odds_difference(predicted, y, groups, prediction="labels")
    for missing in (None, float("nan")):
        with pytest.raises(ValueError, match=r"sensitive_features: 1 row has no group label \(None or NaN\)"):
            F.demographic_parity_difference(predicted, y, ["a"] * 7 + [missing], prediction="labels")
    # one type throughout: integer, string and bool labels give fairlearn's values
    for groups in ([0] * 4 + [1] * 4, ["0"] * 4 + ["1"] * 4, [True] * 4 + [False] * 4):
        expected = fairlearn_values(y, predicted, groups)["equalized_odds_difference"]
        assert F.equalized_odds_difference(predicted, y, groups, prediction="labels") == expected


def _job(tmp_path, runner: str, columns: dict) -> dict:
    return {
        "name": "fairness",
        "data": {"path": f"{tmp_path}/data/*.parquet", "columns": columns},
        "task": "binary",
        # roc_auc / average_precision: device statistics that take small batches directly, beside a string column
        "metrics": ["accuracy", "roc_auc", "average_precision", *NAMES],
        "execution": {"runner": runner, "actors": 2, "unit_rows": 300},
        "output": {"uri": str(tmp_path / "out")},
    }


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_fairness_job_equals_fairlearn(tmp_path, runner, request):
    if runner == "ray":
        request.getfixturevalue("ray_cluster")
    rows = data(np.random.default_rng(7), 1200, ["a", "b", "c", "d"])
    scores = expit(rows["logits"]).astype(np.float32)
    (tmp_path / "data").mkdir()
    for i in range(3):
        part = slice(400 * i, 400 * (i + 1))
        table = pa.table({"score": scores[part], "label": rows["targets"][part], "group": list(rows[SENSITIVE][part])})
        pq.write_table(table, tmp_path / "data" / f"part-{i}.parquet", row_group_size=150)
    columns = {"predictions": "score", "targets": "label", "sensitive": "group"}
    job = write_job(tmp_path / "job.yaml", _job(tmp_path, runner, columns))
    run = run_job(spec_module.load(str(job)), show_progress=False).run
    values = {k: m.value for k, m in run.point("overall").metrics.items()}
    expected = fairlearn_values(rows["targets"], (scores > 0.5).astype(np.int64), rows[SENSITIVE])
    for name in NAMES:
        assert values[name] == pytest.approx(expected[name], abs=1e-12), name
    assert values["demographic_parity_difference.selection_rate[b]"] == pytest.approx(expected[".selection_rate[b]"])
    # the binned default's guarantee: within the reported bound of scikit-learn
    for name, reference in (("roc_auc", skm.roc_auc_score), ("average_precision", skm.average_precision_score)):
        bound = values[f"{name}.error_bound"]
        assert abs(values[name] - reference(rows["targets"], scores)) <= bound < 1e-3, name


def test_a_fairness_metric_without_its_column_is_refused(tmp_path):
    job = write_job(tmp_path / "job.yaml", _job(tmp_path, "local", {"predictions": "score", "targets": "label"}))
    with pytest.raises(
        spec_module.SpecError, match="metric 'demographic_parity_difference' reads the column role sensitive"
    ):
        spec_module.load(str(job))


def test_bootstrap_replicates_equal_fairlearn_with_the_replicate_weights():
    """Bucket states from the grouped update, resampled with integer weights per bucket: each replicate equals
    fairlearn with each row weighted by its bucket's weight."""
    rng = np.random.default_rng(11)
    rows = data(rng, 500, ["a", "b", "c", "only-neg", "only-pos"])
    predicted = (rows["logits"] > 0).astype(np.int64)
    bucket = rng.integers(0, 8, len(predicted))
    task = Task("binary", prediction="labels")
    metrics = [build(name, task) for name in NAMES]
    racc = Accumulator.for_metrics(metrics).replicates()
    columns = {"predictions": predicted, "targets": rows["targets"], SENSITIVE: rows[SENSITIVE]}
    halves = [
        racc.update_grouped(racc.zero_grouped(8), {k: v[part] for k, v in columns.items()}, bucket[part])
        for part in (slice(0, 230), slice(230, None))
    ]
    (stacked,) = racc.merge(*halves)
    weights = rng.poisson(1.0, (5, 8))
    for b, state in enumerate(racc.statistics[0].resample(stacked, weights)):
        row_weights = weights[b, bucket].astype(np.float64)
        keep = row_weights > 0  # fairlearn keeps a group whose rows all weigh 0; a replicate does not
        expected = fairlearn_values(rows["targets"][keep], predicted[keep], rows[SENSITIVE][keep], row_weights[keep])
        for metric in metrics:
            assert metric.compute(state)[""] == pytest.approx(expected[metric.name], abs=1e-12), (b, metric.name)


def test_a_fairness_job_has_bootstrap_intervals(tmp_path):
    rows = data(np.random.default_rng(12), 900, ["a", "b", "c"])
    (tmp_path / "data").mkdir()
    table = pa.table({"score": expit(rows["logits"]), "label": rows["targets"], "group": list(rows[SENSITIVE])})
    pq.write_table(table, tmp_path / "data" / "part-0.parquet", row_group_size=300)
    job = _job(tmp_path, "local", {"predictions": "score", "targets": "label", "sensitive": "group"})
    job["confidence"] = {"replicates": 50}
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False).run
    for name in NAMES:
        metric = run.point("overall").metrics[name]
        assert metric.lower is not None and metric.lower <= metric.value <= metric.upper, name


def test_a_one_row_slice_of_a_fairness_only_job_has_no_interval(tmp_path):
    """A slice whose rows lie in one bootstrap bucket has a NaN interval (every replicate is its one state scaled),
    also where every metric of the job is a fairness metric, whose bucket states share a label axis: the buckets
    holding rows are those with a non-zero count."""
    rng = np.random.default_rng(2)
    n = 500
    part = np.array(["big"] * n, object)
    part[7] = "solo"
    (tmp_path / "data").mkdir()
    table = pa.table(
        {"score": rng.random(n), "label": rng.integers(0, 2, n), "group": rng.integers(0, 3, n), "part": list(part)}
    )
    pq.write_table(table, tmp_path / "data" / "part-0.parquet")
    job = _job(tmp_path, "local", {"predictions": "score", "targets": "label", "sensitive": "group"})
    job.update(
        metrics=["demographic_parity_difference"],
        slices=[{"column": "part"}],
        confidence={"replicates": 30, "seed": 1, "buckets": 16},
    )
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False).run
    solo = run.point("part=solo").metrics["demographic_parity_difference"]
    assert solo.value == 0.0 and math.isnan(solo.lower) and math.isnan(solo.upper)
    big = run.point("part=big").metrics["demographic_parity_difference"]
    assert math.isfinite(big.lower) and math.isfinite(big.upper) and big.lower < big.upper
    stat = build("demographic_parity_difference", Task("binary")).statistic
    stacked = stat.update_grouped(
        {
            SENSITIVE: np.array(["a", "b"]),
            "predictions": np.array([0.2, 0.9]),
            "targets": np.array([0, 1]),
            "weights": np.array([1.0, 0.0]),
        },
        stat.zero_grouped(4),
        np.array([1, 3]),
    )
    assert stat.occupied_groups(stacked, 4).tolist() == [False, True, False, False]  # (bucket 3's row weighs 0)


def test_group_labels_of_integers_in_one_file_and_strings_in_another_are_refused(tmp_path):
    """The functional API refuses mixed label types; a job read 1 in one file and "1" in another as one group."""
    (tmp_path / "data").mkdir()
    for i, groups in enumerate((pa.array([1, 2, 1, 2]), pa.array(["1", "2", "1", "2"]))):
        table = pa.table({"score": [0.9, 0.2, 0.4, 0.7], "label": [1, 0, 0, 1], "group": groups})
        pq.write_table(table, tmp_path / "data" / f"part-{i}.parquet")
    job = _job(tmp_path, "local", {"predictions": "score", "targets": "label", "sensitive": "group"})
    with pytest.raises(
        DataError, match=r"part-1\.parquet: column 'group' \(data\.columns\.sensitive\) has type string"
    ):
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False)


def test_group_labels_beyond_int32_stay_apart():
    """Integer columns went to int32 on the host update, so groups 1 and 2**32 + 1 were one group (difference 0)."""
    groups = np.array([1, 1, 2**32 + 1, 2**32 + 1], np.int64)
    predictions, targets = np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 0, 1, 0])
    expected = fl.demographic_parity_difference(targets, predictions > 0.5, sensitive_features=groups)
    assert F.demographic_parity_difference(predictions, targets, groups) == expected == 1.0


def test_a_row_is_positive_to_the_fairness_metrics_as_to_the_confusion_counts():
    """A float32 score of 0.3 is not above a threshold of 0.3 in float32 (NumPy's, torchmetrics' and recall's
    comparison); the fairness metrics widened it to float64 first and counted it positive, so one run read recall 0
    beside a true positive rate of 1. Logits: the same sigmoid as the confusion counts (SciPy's differed in the last
    bit at a logit on the threshold's)."""
    scores = np.array([0.3, 0.3, 0.9, 0.9], np.float32)
    y, groups = np.ones(4, np.int64), np.array(["a", "a", "b", "b"])
    assert F.recall(scores[:2], y[:2], threshold=0.3) == 0.0
    for name in NAMES:
        expected = getattr(fl, name)(y, (scores > 0.3).astype(int), sensitive_features=groups)
        assert getattr(F, name)(scores, y, groups, threshold=0.3) == pytest.approx(expected, abs=1e-15), name
    assert F.equal_opportunity_difference(scores, y, groups, threshold=0.3) == 1.0  # (group a: 0 of 2, group b: 2)
    for threshold, logit in ((0.15, -1.7346010553881064), *((t, math.log(t / (1 - t))) for t in (0.1, 0.3, 0.7))):
        logits = np.array([logit, np.nextafter(logit, -np.inf), np.nextafter(logit, np.inf), 5.0])
        for row in range(3):
            pair = np.array([logits[row], 5.0])  # (a second row, always positive, in another group)
            recall = F.recall(pair, np.array([1, 1]), threshold=threshold, prediction="logits")
            gap = F.equal_opportunity_difference(
                pair, np.array([1, 1]), ["a", "b"], threshold=threshold, prediction="logits"
            )
            assert gap == 2.0 * (1.0 - recall), (threshold, row)  # (row positive: recall 1, gap 0; else 0.5 and 1)


def test_group_labels_ending_in_nul_are_refused(tmp_path):
    """NumPy's strings drop a trailing NUL, so a job counted groups 'a' and 'a\\x00' as one ('.groups' 1, a difference
    of 0 where fairlearn reads 1 over two groups): refused, naming the column, in one batch or across files."""
    (tmp_path / "data").mkdir()
    for i, label in enumerate(("a", "a\x00")):
        table = pa.table({"score": [0.9 - 0.8 * i] * 4, "label": pa.array([0] * 4, pa.int8()), "group": [label] * 4})
        pq.write_table(table, tmp_path / "data" / f"part-{i}.parquet")
    job = _job(tmp_path, "local", {"predictions": "score", "targets": "label", "sensitive": "group"})
    job["metrics"] = ["demographic_parity_difference"]
    with pytest.raises(DataError) as caught:
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False)
    message = str(caught.value)
    assert "column 'group' (data.columns.sensitive): the group label 'a\\x00' ends in a NUL character" in message
    assert "\n" not in message
    assert not list(tmp_path.glob("out/*/*/_COMMITTED"))


def test_sensitive_features_of_another_shape_are_refused():
    predicted, y = np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0])
    for groups in (np.array([["a", "x"], ["a", "y"], ["b", "x"], ["b", "y"]]), "abcd"):
        with pytest.raises(ValueError, match=r"sensitive_features must hold one group label per row.*got shape"):
            F.demographic_parity_difference(predicted, y, groups, prediction="labels")


def test_functions_refuse_rows_that_leave_every_metric_undefined():
    """No rows, or every weight 0: a job exits 2 and fairlearn (scikit-learn's metrics) raises; so do the functions
    (they returned NaN)."""
    with pytest.raises(ValueError, match="weights: all 2 rows have weight 0"):
        F.demographic_parity_difference([0.2, 0.8], [0, 1], ["a", "b"], weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="no rows"):
        F.equalized_odds_difference(np.array([]), np.array([], int), np.array([], object))
