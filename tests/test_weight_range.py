"""Weights beyond what ROC-AUC and average precision count exactly are refused, never summed into a wrapped int64.

The ranking cells count weights in fixed point (units of ``2**-32`` in int64), so a cell holds at most ``2**31`` of
weight. Beyond, an int64 sum wraps: before this check a row of weight ``2**31 + 1`` gave NaN, and weights in the
thousands on a million rows gave ROC-AUC 0.30 against scikit-learn's 0.61, with a tiny error bound.

* a batch whose rows weigh ``2**31`` or more in all is refused before it is counted (functional API, local runner:
  exit 2 naming the file, column and YAML key, nothing committed);
* cells that overflow where batches of one unit, or the states of several units, add up are refused where it
  happens: in a unit's working grid (host and compiled paths), in pairwise and many-state merges, and in sums of
  many cells of one score, including sums that wrap twice (and so come back positive);
* weights below the limit still equal scikit-learn, and the same weights divided by a constant give the same values.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from evaluators import catalog
from evaluators.accumulate import Accumulator, evaluate
from evaluators.ranking_cells import (
    WeightRangeError,
    merge_cells,
    merge_many_cells,
    summed_runs,
)
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from pipelines.results import list_runs
from tests.conftest import write_job


def _ranking(name: str = "roc_auc", task: Task | None = None):
    return catalog.build(name, task or Task("binary"))


@pytest.mark.parametrize("name", ["roc_auc", "average_precision"])
def test_one_heavy_row_is_refused_in_the_functional_api(name):
    scores, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    with pytest.raises(WeightRangeError, match=r"one batch weigh 2\.14748e\+09.*divide them by their mean"):
        evaluate([_ranking(name)], scores, labels, np.array([1.0, 1.0, 1.0, 2.0**31 + 1]))


@pytest.mark.parametrize("name", ["roc_auc", "average_precision"])
def test_rows_whose_every_weight_rounds_to_0_are_refused(name, tmp_path):
    """Weights of 1e-12 round to 0 units of 2^-32: the rows counted nowhere and the value was NaN (scikit-learn's is
    defined): refused in the functional API and by a job (exit 2 naming the metric, slice and weights); one batch of
    such rows among others counts as rounded rows (their weight is within the bound); the same rows scaled up equal
    scikit-learn."""
    rng = np.random.default_rng(4)
    scores, labels = rng.random(500), rng.integers(0, 2, 500)
    weights = rng.random(500) + 0.5
    with pytest.raises(WeightRangeError, match=r"every weight of these rows is below 2\^-33.*divide them by their"):
        evaluate([_ranking(name)], scores, labels, weights * 1e-12)
    from evaluators.stateful import MetricCollection

    collection = MetricCollection([name], task="binary")
    collection.update(predictions=scores, targets=labels, weights=weights * 1e-12)
    with pytest.raises(WeightRangeError, match=r"every weight of these rows is below 2\^-33"):
        collection.compute()
    (tmp_path / "data").mkdir()
    tiny = pa.table({"score": scores, "label": labels, "w": weights * 1e-12})
    pq.write_table(tiny, tmp_path / "data" / "part.parquet")
    spec = {
        "name": "tiny",
        "data": {
            "path": str(tmp_path / "data"),
            "columns": {"predictions": "score", "targets": "label", "weights": "w"},
        },
        "task": "binary",
        "metrics": [name],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(
        DataError, match=rf"metric '{name}' \(overall\), column 'w' \(data.columns.weights\): every weight"
    ):
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False)
    assert not list_runs(str(tmp_path / "out"))
    reference = {"roc_auc": skm.roc_auc_score, "average_precision": skm.average_precision_score}[name]
    value = evaluate([_ranking(name)], scores, labels, weights)[0]
    expected = reference(labels, scores, sample_weight=weights)
    assert abs(value[""] - expected) <= max(value[".error_bound"], 1e-12), (value, expected)


def test_weights_below_the_limit_equal_scikit_learn_and_do_not_depend_on_their_scale():
    rng = np.random.default_rng(3)
    scores = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], 20_000)
    labels = (rng.random(20_000) < 0.5).astype(int)
    weights = rng.random(20_000) * 1e4  # about 1e8 in all
    for name, reference in (("roc_auc", skm.roc_auc_score), ("average_precision", skm.average_precision_score)):
        value = evaluate([_ranking(name)], scores, labels, weights)[0][""]
        assert value == pytest.approx(reference(labels, scores, sample_weight=weights), abs=1e-12)
        with pytest.raises(WeightRangeError):
            evaluate([_ranking(name)], scores, labels, weights * 100)  # 1e10 in all
        scaled = evaluate([_ranking(name)], scores, labels, weights / 1e4)[0][""]
        assert scaled == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("host_rows", [None, 0], ids=["host", "compiled"])
@pytest.mark.parametrize("task", [Task("binary"), Task("multiclass", 3)], ids=["binary", "multiclass"])
def test_a_cell_that_overflows_across_batches_of_one_unit_is_refused(host_rows, task):
    """Three batches, each under the limit, put 1.5e9 of weight each into one score cell: the second overflows."""
    acc = Accumulator([_ranking(task=task).statistic], host_rows=host_rows)
    n = 20_000
    if task.classes > 2:
        predictions = np.tile(np.array([[0.2, 0.3, 0.5]]), (n, 1))
        targets = np.arange(n) % 3
    else:
        predictions, targets = np.full(n, 0.25), np.arange(n) % 2
    batch = {"predictions": predictions, "targets": targets, "weights": np.full(n, 1.5e9 / n)}
    state = acc.update(acc.zero(), batch, to_host=False)
    with pytest.raises(WeightRangeError, match="one score cell add up beyond 2\\^31"):
        for _ in range(2):
            state = acc.update(state, batch, to_host=False)


@pytest.mark.parametrize("host_rows", [None, 0], ids=["host", "compiled"])
@pytest.mark.parametrize(("classes", "decimals"), [(3, 3), (100, None)], ids=["exact-cells", "binned-on-device"])
def test_fractional_weights_far_below_the_limit_pass_the_check_of_a_working_grid(host_rows, classes, decimals):
    """A working grid's counts (units of 2**-32: a cell of more than half a unit of weight holds more than 2**31)
    are checked as int64 wherever they are: rounded scores (exact cells) and 600,000 continuous (class, score) pairs
    (a binned grid kept on the device; its check once truncated the counts to int32 and refused every such job) with
    weights U(0.1, 3), folded in three batches, give scikit-learn's one-vs-rest ROC-AUC instead of a refusal."""
    rng = np.random.default_rng(5)
    n = 6_000
    targets = rng.integers(0, classes, n)
    raw = rng.random((n, classes)) + np.eye(classes)[targets]
    predictions = raw / raw.sum(axis=1, keepdims=True)
    if decimals is not None:
        predictions = predictions.round(decimals)  # ties: cells of many rows
    weights = rng.uniform(0.1, 3.0, n)
    metric = _ranking(task=Task("multiclass", classes))
    acc = Accumulator([metric.statistic], host_rows=host_rows)
    state = acc.zero()
    for part in np.array_split(np.arange(n), 3):
        batch = {"predictions": predictions[part], "targets": targets[part], "weights": weights[part]}
        state = acc.update(state, batch, to_host=False)
    value = metric.compute(acc.to_host(state)[0])
    per_class = [skm.roc_auc_score(targets == c, predictions[:, c], sample_weight=weights) for c in range(classes)]
    assert value[""] == pytest.approx(np.mean(per_class), abs=1e-12 if decimals else value[".error_bound"])


def _cells(count: int, tie: float, key: int = 7) -> dict:
    """A stored state of one cell (negatives only) of ``count`` fixed-point units."""
    return {
        "keys": np.array([key], np.int64),
        "counts": np.array([[count, 0]], np.int64),
        "sums": np.array([[0, 0]], np.int64),
        "ties": np.array([tie]),
        "rounded": np.zeros(2, np.int64),
    }


def test_merges_refuse_cells_whose_sum_leaves_int64():
    big = 3 << 61  # 1.5 * 2**62: two of them pass 2**63
    with pytest.raises(WeightRangeError):
        merge_cells(_cells(big, 0.25), _cells(big, 0.25))  # exact states, one score
    with pytest.raises(WeightRangeError):
        merge_cells(_cells(big, 0.25), _cells(big, np.nan))  # binned
    with pytest.raises(WeightRangeError):
        merge_many_cells([_cells(big, np.nan), _cells(1 << 32, np.nan), _cells(big, np.nan)])
    fine = merge_many_cells([_cells(1 << 60, np.nan)] * 5)
    assert int(fine["counts"][0, 0]) == 5 << 60


def test_a_sum_of_many_cells_that_wraps_twice_is_refused():
    """Three cells of 0x7 << 60 add up to 0x15 << 60: modulo 2**64 that is 0x5 << 60, positive again, so the sign
    alone would not show it."""
    values = np.array([[7 << 60, 0]] * 3, np.int64)
    assert np.add.reduceat(values, [0], axis=0)[0, 0] > 0  # what an unchecked sum gives
    with pytest.raises(WeightRangeError):
        summed_runs(values, np.array([0]))
    with pytest.raises(WeightRangeError):
        merge_many_cells([_cells(7 << 60, 0.5)] * 3)  # exact states of one score, joined all at once


def _weighted_job(tmp_path, shards: list[pa.Table], metrics: list[str], **execution) -> DataError:
    """The :class:`DataError` of a local job over ``shards`` (columns ``score``, ``label``, ``w``), which commits
    nothing."""
    data = tmp_path / "data"
    data.mkdir()
    for i, table in enumerate(shards):
        pq.write_table(table, data / f"part-{i}.parquet")
    job = write_job(
        tmp_path / "job.yaml",
        {
            "name": "heavy",
            "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label", "weights": "w"}},
            "task": "binary",
            "metrics": metrics,
            "execution": {"runner": "local", **execution},
            "output": {"uri": str(tmp_path / "out")},
        },
    )
    with pytest.raises(DataError) as caught:
        run_job(spec_module.load(str(job)), show_progress=False)
    assert not list_runs(str(tmp_path / "out"))
    return caught.value


def test_a_job_whose_batches_weigh_too_much_exits_2_naming_the_column(tmp_path):
    rng = np.random.default_rng(0)
    shards = [
        pa.table(
            {"score": rng.random(3000), "label": (rng.random(3000) < 0.5).astype(np.int8), "w": np.full(3000, 2e6)}
        )
        for _ in range(2)
    ]
    message = str(_weighted_job(tmp_path, shards, ["roc_auc", "average_precision", "accuracy"]))
    for needle in ("part-0.parquet", "column 'w' (data.columns.weights)", "one batch weigh 1.2e+10", "2^31"):
        assert needle in message, message


def test_a_job_whose_units_overflow_one_cell_together_exits_2(tmp_path):
    """Each unit's rows weigh 1e9 (under the limit); the units' negatives at score 0 weigh 4e9 together."""
    rng = np.random.default_rng(1)
    shards = []
    for _ in range(8):
        n = 100_000
        scores = np.where(rng.random(n) < 0.5, 0.0, rng.random(n)).astype(np.float32)
        shards.append(pa.table({"score": scores, "label": (rng.random(n) < 0.3).astype(np.int8), "w": np.full(n, 1e4)}))
    message = str(_weighted_job(tmp_path, shards, ["roc_auc"], unit_rows=100_000))
    assert message.startswith("data.columns.weights: the weights of one score cell add up beyond 2^31"), message


@pytest.mark.parametrize("classes", [2, 100])
def test_a_weighted_job_beyond_exact_cells_equals_scikit_learn_on_the_local_runner(tmp_path, classes):
    """Fractional weights on continuous scores beyond ``exact_cells`` (binned cells; for 100 classes a working grid
    on the device, whose check once truncated its counts to int32 and refused such jobs): the local runner's job
    commits, and ROC-AUC and average precision (macro over classes) equal scikit-learn's within their bounds."""
    rng = np.random.default_rng(classes)
    n = 300_000 // classes * 2
    targets = rng.integers(0, classes, 2 * n)
    weights = rng.uniform(0.1, 3.0, 2 * n)
    if classes == 2:
        scores = ((rng.random(2 * n) + 0.3 * targets) / 1.3).astype(np.float32)
        column = pa.array(scores)
        per_class = [(targets == 1, scores)]
    else:
        raw = rng.random((2 * n, classes)) + np.eye(classes)[targets]
        scores = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
        column = pa.FixedSizeListArray.from_arrays(pa.array(scores.reshape(-1)), classes)
        per_class = [(targets == c, scores[:, c]) for c in range(classes)]
    table = pa.table({"score": column, "label": targets.astype(np.int16), "w": weights})
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        pq.write_table(table.slice(i * n, n), data / f"part-{i}.parquet")
    task = "binary" if classes == 2 else {"kind": "multiclass", "num_classes": classes}
    job = write_job(
        tmp_path / "job.yaml",
        {
            "name": "weighted",
            "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label", "weights": "w"}},
            "task": task,
            # (top-3 accuracy has no host update: the whole job takes the compiled one from its first row)
            "metrics": ["roc_auc", "average_precision", *([] if classes == 2 else [{"name": "accuracy", "top_k": 3}])],
            "execution": {"runner": "local"},
            "output": {"uri": str(tmp_path / "out")},
        },
    )
    metrics = run_job(spec_module.load(str(job)), show_progress=False).run.point("overall").metrics
    for name, reference in (("roc_auc", skm.roc_auc_score), ("average_precision", skm.average_precision_score)):
        expected = np.mean([reference(y, s, sample_weight=weights) for y, s in per_class])
        bound = metrics[f"{name}.error_bound"].value
        assert 0 < bound < 1e-3
        assert abs(metrics[name].value - expected) <= bound, (name, metrics[name].value, expected, bound)


# --- fixed-point sums of log loss, Brier score and calibration bins ------------------------------------------

FIXED_SUM_METRICS = ("log_loss", "brier_score", "expected_calibration_error", "classwise_ece")


def _calibration_rows(rng: np.random.Generator, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    targets = rng.integers(0, classes, n)
    if classes == 2:
        return np.clip(0.25 + 0.5 * targets + rng.normal(0, 0.2, n), 0.001, 0.999), targets
    raw = rng.random((n, classes)) + np.eye(classes)[targets]
    return raw / raw.sum(axis=1, keepdims=True), targets


@pytest.mark.parametrize("classes", [2, 4])
def test_heavy_weights_on_small_losses_are_counted_where_their_sums_fit(classes):
    """The rows weigh 2e8 in all, past 2^31 / 36 (the largest log loss a row can add): the batch's own weighted
    losses (about 1e8) decide, and log loss and the Brier score equal scikit-learn, whatever the weights' scale."""
    rng = np.random.default_rng(7)
    scores, targets = _calibration_rows(rng, 4_000, classes)
    weights = rng.uniform(0.5, 1.5, 4_000) * 5e4
    for name, reference in (("log_loss", skm.log_loss), ("brier_score", None)):
        metric = catalog.build(name, Task("binary") if classes == 2 else Task("multiclass", classes))
        value = evaluate([metric], scores, targets, weights)[0][""]
        if reference is not None:
            expected = reference(targets, scores, sample_weight=weights, labels=list(range(classes)))
        elif classes == 2:
            expected = skm.brier_score_loss(targets, scores, sample_weight=weights)
        else:
            expected = np.average(np.sum((scores - np.eye(classes)[targets]) ** 2, axis=1), weights=weights)
        assert value == pytest.approx(expected, rel=1e-9)
        assert evaluate([metric], scores, targets, weights / 5e4)[0][""] == pytest.approx(value, rel=1e-9)


def _one_cell_batch(name: str, share: float) -> dict[str, np.ndarray]:
    """40 binary rows, every score 0.95 (one bin of each calibration statistic), weighted so that the largest sum a
    state holds grows by ``share * 2**31`` with each batch."""
    targets = np.arange(40) % 2
    scores = np.full(40, 0.95)
    largest_cell = {  # what the rows add, per unit of weight, to the state's largest fixed-point sum
        "log_loss": -np.log(np.where(targets == 1, scores, 1 - scores)).sum(),
        "brier_score": ((scores - targets) ** 2).sum(),
        "expected_calibration_error": scores.sum(),  # (a binary task's confidence: the positive score)
        "classwise_ece": scores.sum(),  # (class 1's probabilities, in one bin)
    }[name]
    return {"predictions": scores, "targets": targets, "weights": np.full(40, share * 2.0**31 / largest_cell)}


@pytest.mark.parametrize("host_rows", [None, 0], ids=["host", "compiled"])
@pytest.mark.parametrize("name", FIXED_SUM_METRICS)
def test_fixed_point_sums_beyond_int64_are_refused_in_a_batch_and_across_batches(host_rows, name):
    """One batch whose weighted values pass 2^31 is refused before it is counted; batches under it each, whose sums
    pass it together, are refused where they do (a wrapped sum once gave a negative log loss)."""
    metric = catalog.build(name, Task("binary"))
    with pytest.raises(WeightRangeError, match="in one batch add up to"):
        evaluate([metric], **_one_cell_batch(name, 1.2))
    acc = Accumulator([metric.statistic], host_rows=host_rows)
    batch = _one_cell_batch(name, 0.8)
    state = acc.update(acc.zero(), batch, to_host=False)
    with pytest.raises(WeightRangeError, match="add up beyond 2\\^31"):
        for _ in range(3):
            state = acc.update(state, batch, to_host=False)


@pytest.mark.parametrize("name", FIXED_SUM_METRICS)
def test_merges_refuse_fixed_point_sums_that_leave_int64(name):
    """Two states of 0.4 * 2^31 merge (and compute as one batch of both would); two of 0.6 * 2^31 are refused."""
    metric = catalog.build(name, Task("binary"))
    stat, acc = metric.statistic, Accumulator([metric.statistic])
    (light,) = acc.update(acc.zero(), _one_cell_batch(name, 0.4))
    batch = _one_cell_batch(name, 0.4)
    both = {k: np.concatenate([v, v]) for k, v in batch.items()}
    assert metric.compute(stat.merge(light, light))[""] == pytest.approx(evaluate([metric], **both)[0][""], rel=1e-12)
    (heavy,) = acc.update(acc.zero(), _one_cell_batch(name, 0.6))
    with pytest.raises(WeightRangeError, match="add up beyond 2\\^31"):
        stat.merge(heavy, heavy)


def test_a_log_loss_job_whose_weighted_losses_overflow_exits_2_naming_the_column(tmp_path):
    rng = np.random.default_rng(10)
    shards = []
    for _ in range(2):
        scores, targets = _calibration_rows(rng, 3000, 2)
        shards.append(pa.table({"score": scores, "label": targets.astype(np.int8), "w": np.full(3000, 1e7)}))
    message = str(_weighted_job(tmp_path, shards, ["log_loss", "accuracy"]))
    for needle in ("part-0.parquet", "column 'w' (data.columns.weights)", "log loss", "2^31"):
        assert needle in message, message


@pytest.mark.parametrize("name", FIXED_SUM_METRICS)
def test_weights_past_the_limit_in_all_but_not_in_any_one_sum_are_counted(name):
    """Each bin (or class and bin) is a sum of its own: 3e9 of weight in all, spread so that no bin's sum reaches
    2^31, is counted, and equals the same rows with the weights divided by 3e9 (log loss and the Brier score hold one
    sum: small losses keep theirs under the limit)."""
    rng = np.random.default_rng(11)
    n = 10_000
    targets = rng.integers(0, 2, n)
    scores = np.where(targets == 1, rng.uniform(0.9, 0.999, n), rng.uniform(0.001, 0.1, n))
    scores[: n // 2] = rng.uniform(0.0, 1.0, n // 2)  # (half the rows over every bin)
    scores[: n // 2] = np.where(targets[: n // 2] == 1, scores[: n // 2], 1 - scores[: n // 2])  # (and confident)
    weights = rng.uniform(0.5, 1.5, n)
    weights *= (1.4e9 if name in ("log_loss", "brier_score") else 3e9) / weights.sum()
    metric = catalog.build(name, Task("binary"))
    value = evaluate([metric], scores, targets, weights)[0][""]
    assert value == pytest.approx(evaluate([metric], scores, targets, weights / 3e9)[0][""], rel=1e-9)


def test_overlapping_slices_each_under_the_limit_are_counted():
    """A sliced batch folds the overall group and each slice from one pass (the overall group holds every row): the
    rows joined weigh twice what they do, but each group's sums are under the limit, so nothing is refused."""
    rng = np.random.default_rng(12)
    scores, targets = _calibration_rows(rng, 1_000, 2)
    weights = np.full(1_000, 1.2e9 / 1_000)
    metrics = [catalog.build(name, Task("binary")) for name in ("log_loss", "roc_auc", "expected_calibration_error")]
    acc = Accumulator.for_metrics(metrics)
    batch = {"predictions": scores, "targets": targets, "weights": weights}
    grouped = acc.update_groups([None, None], batch, [None, np.arange(1_000)])
    assert grouped is not None
    alone = acc.update(acc.zero(), batch)
    for metric in metrics:
        i = acc.index(metric.statistic)
        assert metric.compute(grouped[0][i]) == metric.compute(grouped[1][i]) == metric.compute(alone[i])


@pytest.mark.parametrize("on_bad_rows", ["fail", "drop"])
def test_subnormal_weights_are_bad_rows(tmp_path, on_bad_rows, capsys):
    """Weights of 1e-310 passed every check, were read as 0 by the compiled update, and a multiclass job committed
    NaN for every metric (scikit-learn's accuracy 0.355 on them); under ``drop`` they are left out and the other
    rows' values equal scikit-learn's."""
    from pipelines.cli import main

    rng = np.random.default_rng(2)
    n = 1000
    p = rng.dirichlet(np.ones(4), n)
    y = rng.integers(0, 4, n)
    w = np.where(np.arange(n) < 600, 1e-310, rng.random(n) + 0.5)
    table = pa.table({"p": pa.array(list(p), pa.list_(pa.float64(), 4)), "y": y, "w": w})
    pq.write_table(table, tmp_path / "d.parquet")
    spec = {
        "name": "light",
        "data": {
            "path": str(tmp_path / "d.parquet"),
            "columns": {"predictions": "p", "targets": "y", "weights": "w"},
            "on_bad_rows": on_bad_rows,
        },
        "task": {"kind": "multiclass", "num_classes": 4},
        "metrics": ["accuracy", {"name": "accuracy", "top_k": 2, "as": "top2"}],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    code = main(["run", str(write_job(tmp_path / "job.yaml", spec)), "--quiet"])
    err = capsys.readouterr().err
    if on_bad_rows == "fail":
        assert code == 2 and "column 'w' (data.columns.weights): 600 rows with a weight between 0 and 2.2e-308" in err
        assert not list_runs(str(tmp_path / "out"))
        return
    assert code == 0, err
    [info] = list_runs(str(tmp_path / "out"))
    from pipelines.results import load_run

    values = {k: m.value for k, m in load_run(info.uri).point("overall").metrics.items()}
    kept = np.arange(n) >= 600
    expected = skm.accuracy_score(y[kept], p[kept].argmax(1), sample_weight=w[kept])
    assert values["accuracy"] == pytest.approx(expected, abs=1e-12) and values["rows"] == 400
    top2 = skm.top_k_accuracy_score(y[kept], p[kept], k=2, sample_weight=w[kept], labels=range(4))
    assert values["top2"] == pytest.approx(top2, abs=1e-12)
