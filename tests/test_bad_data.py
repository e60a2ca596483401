"""Bad data: each problem is named with its file, row group, column and count of offending rows; nothing is
committed. ``data.on_bad_rows: drop`` leaves such rows out, counts them in the Run, and the metrics equal
scikit-learn on the remaining rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn import metrics as skm

from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from pipelines.results import list_runs
from pipelines.synthetic import concatenated, write_shards
from tests.conftest import write_job

ROWS, SHARDS, GROUP = 4_000, 4, 500


def _job(
    tmp_path,
    data,
    task="binary",
    metrics=("accuracy", {"name": "roc_auc", "mode": "exact", "as": "roc_auc"}, "log_loss"),
    **data_extra,
):
    spec = {
        "name": "bad-data",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}, **data_extra},
        "task": task,
        "metrics": list(metrics),
        "execution": {"runner": "local", "unit_rows": 1_000},
        "output": {"uri": str(tmp_path / "out")},
    }
    return write_job(tmp_path / "job.yaml", spec)


def _spoil(path, column, rows, values):
    """Set ``column`` to ``values`` at ``rows`` of the Parquet file ``path`` (row groups of GROUP rows)."""
    table = pq.read_table(path)
    array = table.column(column).to_numpy().copy()
    if not np.can_cast(np.asarray(values).dtype, array.dtype, "same_kind"):
        array = array.astype(np.float64)  # non-integer labels
    array[rows] = values
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, pa.array(array)), path, row_group_size=GROUP)


@pytest.fixture
def binary(tmp_path):
    data = tmp_path / "data"
    return data, write_shards(str(data), "binary", ROWS, SHARDS, seed=11, row_group_rows=GROUP)


def _fails(tmp_path, job, *needles):
    with pytest.raises(DataError) as caught:
        run_job(spec_module.load(str(job)), show_progress=False)
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    assert not list_runs(str(tmp_path / "out"))
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ([np.nan, np.inf, -np.inf], "3 rows with NaN or inf"),
        ([1.5, -0.25, 2.0], "3 rows with probabilities outside [0, 1] (declare `prediction: logits`"),
    ],
    ids=["nan-inf", "outside-0-1"],
)
def test_bad_scores_are_named_with_file_row_group_column_and_count(tmp_path, binary, values, needle):
    data, paths = binary
    _spoil(paths[2], "score", [510, 620, 999], values)  # all in row group 1
    _fails(
        tmp_path, _job(tmp_path, data), f"{paths[2]} row group 1", "column 'score' (data.columns.predictions)", needle
    )


def test_scores_outside_0_1_are_fine_when_declared_logits(tmp_path, binary):
    data, paths = binary
    _spoil(paths[0], "score", [1, 2], [3.5, -2.0])
    job = _job(tmp_path, data)
    text = job.read_text().replace("task: binary", "task: {kind: binary, prediction: logits}")
    job.write_text(text)
    run = run_job(spec_module.load(str(job)), show_progress=False).run
    assert run.metadata["rows"] == ROWS


@pytest.mark.parametrize(
    ("values", "needle"),
    [([2, 5, -1], "3 rows with labels outside [0, 1]"), ([0.5, 0.5, 1.0], "2 rows whose labels are not integers")],
    ids=["out-of-range", "not-integer"],
)
def test_bad_labels_are_named(tmp_path, binary, values, needle):
    data, paths = binary
    _spoil(paths[1], "label", [3, 4, 5], values)
    _fails(tmp_path, _job(tmp_path, data), f"{paths[1]} row group 0", "column 'label' (data.columns.targets)", needle)


@pytest.mark.parametrize(
    ("column", "key"),
    [("score", "data.columns.predictions"), ("label", "data.columns.targets"), ("segment", "slices")],
)
def test_null_values_are_named_with_file_row_group_column_and_yaml_key(tmp_path, binary, column, key):
    """A null in a scored column, or in a slice column, is one paragraph naming the file, the row group, the column
    and the YAML key that asked for it; nothing is committed."""
    data, paths = binary
    table = pq.read_table(paths[3])
    table = table.append_column("segment", pa.array(["a", "b"] * (table.num_rows // 2)))
    values = table.column(column).to_pylist()
    values[777] = None  # (row group 1)
    table = table.set_column(
        table.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type)
    )
    pq.write_table(table, paths[3], row_group_size=GROUP)
    for path in paths[:3]:
        other = pq.read_table(path)
        other = other.append_column("segment", pa.array(["a", "b"] * (other.num_rows // 2)))
        pq.write_table(other, path, row_group_size=GROUP)
    job = _job(tmp_path, data)
    job.write_text(job.read_text() + "slices: [{column: segment}]\n")
    _fails(tmp_path, job, f"{paths[3]} row group 1", f"column {column!r} ({key})", "1 row is null")


def _multiclass_job(tmp_path, data):
    """The job file of a 4-class accuracy job over the shards in ``data``."""
    spec = {
        "name": "bad-data",
        "data": {"path": str(data), "columns": {"predictions": "probs", "targets": "label"}},
        "task": {"kind": "multiclass", "num_classes": 4},
        "metrics": ["accuracy"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    return write_job(tmp_path / "job.yaml", spec)


def test_multiclass_probabilities_that_do_not_sum_to_one(tmp_path):
    data = tmp_path / "data"
    paths = write_shards(str(data), "multiclass", 2_000, 2, seed=3, num_classes=4, row_group_rows=GROUP)
    table = pq.read_table(paths[1])
    probs = np.stack(table.column("probs").to_numpy(zero_copy_only=False)).astype(np.float64)
    probs[[7, 8]] *= 0.5
    column = pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), 4)
    pq.write_table(
        table.set_column(table.schema.get_field_index("probs"), "probs", column), paths[1], row_group_size=GROUP
    )
    job = _multiclass_job(tmp_path, data)
    _fails(tmp_path, job, f"{paths[1]} row group 0", "2 rows whose class probabilities do not sum to 1")


def test_multiclass_labels_past_num_classes_are_named_with_the_key_that_bounds_them(tmp_path):
    data = tmp_path / "data"
    paths = write_shards(str(data), "multiclass", 2_000, 2, seed=4, num_classes=4, row_group_rows=GROUP)
    _spoil(paths[1], "label", [3, 4], [4, 9])
    job = _multiclass_job(tmp_path, data)
    _fails(tmp_path, job, f"{paths[1]} row group 0", "2 rows with labels outside [0, 3] (task.num_classes: 4)")


def test_a_column_missing_or_mistyped_in_one_shard_is_found_from_footers_before_computing(tmp_path, binary):
    data, paths = binary
    table = pq.read_table(paths[3])
    pq.write_table(table.drop_columns(["label"]), paths[3])
    job = _job(tmp_path, data)
    # `validate` reads only the footers: the same error, before any row is read
    validated = subprocess.run(
        [sys.executable, "-m", "pipelines", "validate", str(job)], capture_output=True, text=True, check=False
    )
    assert validated.returncode == 2 and "Traceback" not in validated.stderr
    assert f"{paths[3]}: column 'label' (data.columns.targets) is missing" in validated.stderr
    pq.write_table(
        table.set_column(table.schema.get_field_index("score"), "score", pa.array(["x"] * len(table))), paths[3]
    )
    _fails(tmp_path, job, f"{paths[3]}: column 'score' (data.columns.predictions) has type string")


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_or_truncated_files_exit_2_naming_the_file(tmp_path, binary, damage):
    data, paths = binary
    raw = Path(paths[1]).read_bytes()
    Path(paths[1]).write_bytes(b"" if damage == "empty" else raw[: len(raw) // 2])
    result = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", str(_job(tmp_path, data))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert paths[1] in result.stderr
    assert ("0 bytes" if damage == "empty" else "truncated or corrupt") in result.stderr
    assert not (tmp_path / "out").exists()


def test_zero_row_shards_are_neutral_and_all_empty_is_an_error(tmp_path, binary):
    data, paths = binary
    empty = pq.read_table(paths[0]).slice(0, 0)
    pq.write_table(empty, data / "part-empty.parquet")
    run = run_job(spec_module.load(str(_job(tmp_path, data))), show_progress=False).run
    cols = concatenated(paths, ["score", "label"])
    assert run.point("overall").metrics["roc_auc"].value == pytest.approx(
        skm.roc_auc_score(cols["label"], cols["score"])
    )
    assert run.metadata["rows"] == ROWS

    only_empty = tmp_path / "only-empty"
    only_empty.mkdir()
    pq.write_table(empty, only_empty / "a.parquet")
    pq.write_table(empty, only_empty / "b.parquet")
    _fails(tmp_path / "x", _job(tmp_path, only_empty), "all 2 files have 0 rows; nothing to evaluate")


def test_a_zero_row_shard_whose_empty_columns_are_typed_null_is_neutral(tmp_path, binary):
    """pandas writes an empty column of strings (dtype object) as Arrow ``null``: such a 0-row file was refused
    (exit 2: column 'group' has type null) although it holds no row. Its columns' types are not checked (they are
    still required to be there); slices and quantile buckets read the other files, and the values are
    scikit-learn's on the rows there are."""
    data, paths = binary
    rng = np.random.default_rng(8)
    for path in paths:  # a string slice column and a numeric one in the files with rows
        table = pq.read_table(path)
        group = rng.choice(["a", "b", "c"], table.num_rows)
        pq.write_table(
            table.append_column("group", pa.array(group)).append_column(
                "amount", pa.array(rng.normal(size=table.num_rows))
            ),
            path,
            row_group_size=GROUP,
        )
    empty = pq.read_table(paths[0]).slice(0, 0)
    nulls = {"group": pa.nulls(0), "amount": pa.nulls(0), "label": pa.nulls(0)}
    empty = pa.table({name: nulls.get(name, empty.column(name)) for name in empty.column_names})
    pq.write_table(empty, data / "part-empty.parquet")
    assert pq.read_schema(data / "part-empty.parquet").field("group").type == pa.null()
    spec = yaml.safe_load(_job(tmp_path, data).read_text())
    spec["slices"] = [{"column": "group"}, {"column": "amount", "quantiles": 2}]
    run = run_job(spec_module.load(str(write_job(tmp_path / "sliced.yaml", spec))), show_progress=False).run
    cols = concatenated(paths, ["score", "label", "group", "amount"])
    y, p = cols["label"], cols["score"]
    assert run.metadata["rows"] == ROWS
    for value in ("a", "b", "c"):
        rows = cols["group"] == value
        expected = skm.roc_auc_score(y[rows], p[rows])
        assert run.point(f"group={value}").metrics["roc_auc"].value == pytest.approx(expected, rel=1e-12)
    median = np.quantile(cols["amount"], 0.5)
    [upper] = [point for point in run.points if point.name.startswith("amount=[") and point.name.endswith("inf)")]
    rows = cols["amount"] >= median
    assert upper.metrics["roc_auc"].value == pytest.approx(skm.roc_auc_score(y[rows], p[rows]), rel=1e-12)

    without = tmp_path / "y" / "data"  # a 0-row file still needs the columns
    without.mkdir(parents=True)
    pq.write_table(pq.read_table(paths[1]), without / "a.parquet")
    pq.write_table(empty.drop_columns(["score"]), without / "b.parquet")
    _fails(
        tmp_path / "y", _job(tmp_path / "y", without), "b.parquet: column 'score' (data.columns.predictions) is missing"
    )


def test_on_bad_rows_drop_leaves_them_out_counts_them_and_equals_sklearn_on_the_rest(tmp_path, binary):
    data, paths = binary
    _spoil(paths[0], "score", [3, 700], [np.nan, 1.5])
    _spoil(paths[2], "label", [10, 11, 12], [2, 3, 2])
    _spoil(paths[2], "score", [12, 13], [np.inf, -0.5])  # row 12: bad label and bad score, counted once in all
    run = run_job(spec_module.load(str(_job(tmp_path, data, on_bad_rows="drop"))), show_progress=False).run
    dropped = run.metadata["dropped_rows"]
    assert dropped == {
        "rows": 6,
        "by_reason": {
            "predictions: with NaN or inf": 2,
            "predictions: with probabilities outside [0, 1] (declare `prediction: logits` if these are logits)": 2,
            "targets: with labels outside [0, 1]": 3,
        },
    }
    cols = concatenated(paths, ["score", "label"])
    p, y = cols["score"].astype(np.float64), cols["label"].astype(np.int64)
    keep = np.isfinite(p) & (p >= 0) & (p <= 1) & (y >= 0) & (y <= 1)
    assert int((~keep).sum()) == 6 and run.metadata["rows"] == ROWS - 6
    values = {k: m.value for k, m in run.point("overall").metrics.items()}
    assert values["accuracy"] == pytest.approx(skm.accuracy_score(y[keep], p[keep] > 0.5), abs=1e-12)
    assert values["roc_auc"] == pytest.approx(skm.roc_auc_score(y[keep], p[keep]), rel=1e-9)
    assert values["log_loss"] == pytest.approx(skm.log_loss(y[keep], p[keep]), rel=1e-9)


def _integer_scores(tmp_path, scores, labels, task, metrics):
    """A job over one file whose prediction column holds integers (``[n]`` or ``[n, C]`` lists)."""
    data = tmp_path / "data"
    data.mkdir()
    column = pa.array(scores, pa.list_(pa.int64()) if np.ndim(scores) == 2 else pa.int64())
    pq.write_table(pa.table({"score": column, "label": pa.array(labels, pa.int64())}), data / "part.parquet")
    return _job(tmp_path, data, task=task, metrics=metrics)


def test_integer_scores_outside_0_1_are_refused_as_float_ones_are(tmp_path):
    """An integer prediction column of a probability task is read as probabilities: 5 and -3 are none (they were
    taken as they were: Brier score 10.2 with exit 0)."""
    job = _integer_scores(tmp_path, [0, 1, 5, -3, 7, 0], [0, 1, 1, 0, 1, 0], "binary", ("accuracy", "brier_score"))
    message = _fails(tmp_path, job, "column 'score' (data.columns.predictions)", "3 rows with probabilities outside")
    assert message.startswith(str(tmp_path / "data" / "part.parquet"))


def test_integer_class_scores_that_do_not_sum_to_one_are_refused(tmp_path):
    rows = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 0], [1, 0, 0]]
    task = {"kind": "multiclass", "num_classes": 3}
    job = _integer_scores(tmp_path, rows, [0, 1, 2, 0, 1, 2], task, ("accuracy",))
    _fails(
        tmp_path, job, "column 'score' (data.columns.predictions)", "2 rows whose class probabilities do not sum to 1"
    )


def test_integer_zero_one_scores_are_probabilities_equal_to_sklearn(tmp_path):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 60)
    hard = np.where(rng.random(60) < 0.7, y, rng.integers(0, 3, 60))
    onehot = np.eye(3, dtype=np.int64)[hard]
    task = {"kind": "multiclass", "num_classes": 3}
    job = _integer_scores(tmp_path, onehot.tolist(), y, task, ("accuracy", "brier_score"))
    values = run_job(spec_module.load(str(job)), show_progress=False).run.point("overall").metrics
    assert values["accuracy"].value == pytest.approx(skm.accuracy_score(y, hard), abs=1e-15)
    want = np.mean(np.sum((onehot - np.eye(3)[y]) ** 2, axis=1))  # (multiclass Brier: the sum over classes)
    assert values["brier_score"].value == pytest.approx(want, abs=1e-12)
