"""Hostile values in a spec or a dataset that used to end in a traceback (exit 1) or a wrong message: each gives
exit code 2 and one paragraph naming the key, file or column, with nothing written."""

from __future__ import annotations

import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.synthetic import write_shards

GOOD = """\
name: hostile
data:
  path: {data}
  columns: {{predictions: score, targets: label}}
task: binary
metrics: [accuracy, roc_auc]
execution: {{runner: local}}
output: {{uri: {out}}}
"""
HUGE = "9" * 400

# (name, how to break GOOD, text the message must contain)
CASES = [
    (
        "400-digit unit_rows",
        lambda s: s.replace("{runner: local}", f"{{runner: local, unit_rows: {HUGE}}}"),
        "execution.unit_rows",
    ),
    (
        "400-digit threshold",
        lambda s: s.replace("task: binary", f"task: {{kind: binary, threshold: -{HUGE}}}"),
        "task.threshold",
    ),
    (
        "400-digit boundary",
        lambda s: s + f"slices: [{{column: score, boundaries: [0, {HUGE}]}}]\n",
        "slices[0].boundaries[1]",
    ),
    ("400-digit var", lambda s: s + f"vars: {{N: {HUGE}}}\n", "an integer of 400 digits is out of range"),
    ("negative seed", lambda s: s + "confidence: {seed: -1, replicates: 10}\n", "confidence.seed"),
    (
        "2 bootstrap buckets",  # (replicates weight whole buckets: 2 read accuracy's interval as +-1e-4, not +-0.02)
        lambda s: s + "confidence: {buckets: 2}\n",
        "confidence.buckets (line 9): expected at least 8 buckets, got 2",
    ),
    ("1 replicate", lambda s: s + "confidence: {replicates: 1}\n", "expected at least 2 replicates, got 1"),
    ("NaN slice boundary", lambda s: s + "slices: [{column: score, boundaries: [.nan, 1]}]\n", "finite numbers"),
    ("inf slice boundary", lambda s: s + "slices: [{column: score, boundaries: [0, .inf]}]\n", "finite numbers"),
    (
        "NaN filter value",
        lambda s: s + "slices: [{name: f, filter: {score: {ge: .nan}}}]\n",
        "slices[0].filter.score.ge (line 9): nan is not a finite number; a job spec takes finite numbers only",
    ),
    ("inf in a filter list", lambda s: s + "slices: [{name: f, filter: {score: {in: [0, -.inf]}}}]\n", "in[1]"),
    ("inf var", lambda s: s + "vars: {x: .inf}\n", "vars.x (line 9): inf is not a finite number"),
    ("inf tolerance", lambda s: s + "baseline: {run: latest, tolerance: .inf}\n", "baseline.tolerance (line 9): inf"),
    ("NaN tolerance of a metric", lambda s: s + "baseline: {tolerance: {accuracy: .nan}}\n", "tolerance.accuracy"),
    (
        "an empty output uri",
        lambda s: re.sub(r"output: \{uri: [^}]*\}", "output: {uri: ''}", s),
        "output.uri (line 8): expected the location runs are written to (a path or URL), got ''",
    ),
    (
        "a null column",
        lambda s: s.replace("predictions: score", "predictions: null"),
        "data.columns.predictions (line 4): missing the value of required key 'predictions' (got nothing, null)",
    ),
    (
        "a binary task of 3 classes",
        lambda s: s.replace("task: binary", "task: {kind: binary, num_classes: 3}"),
        "task.num_classes (line 5): a binary task has 2 classes, got 3",
    ),
    ("job name with a trailing newline", lambda s: s.replace("name: hostile", 'name: "abc\\n"'), "'abc\\n'"),
    ("task as a list", lambda s: s.replace("task: binary", "task: [binary]"), "task (line 5): expected a task name"),
    ("an unclosed placeholder", lambda s: s + "description: run of ${DATE\n", "description (line 9): a placeholder"),
    ("a list var", lambda s: s + "vars: {x: [1, 2]}\n", "vars.x (line 9): expected a string, number or boolean"),
    ("a var holding a placeholder", lambda s: s + "vars: {x: '${y}', y: 1}\n", "vars.x (line 9): its value '${y}'"),
    ("a NUL character", lambda s: s.replace("name: hostile", "name: hostile\x00"), "character U+0000 at position 13"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    write_shards(str(directory), "binary", 1_000, 2, seed=1)
    return directory


def _run(tmp_path, capsys, text: str) -> str:
    job = tmp_path / "job.yaml"
    job.write_text(text)
    code = main(["run", str(job), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("evalpipe: error: ") and "Traceback" not in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()  # nothing written
    return err


@pytest.mark.parametrize(("name", "mutate", "needle"), CASES, ids=[c[0] for c in CASES])
def test_hostile_spec_values_exit_2_with_one_paragraph(tmp_path, data, capsys, name, mutate, needle):
    err = _run(tmp_path, capsys, mutate(GOOD.format(data=data, out=tmp_path / "out")))
    assert needle in err and "job.yaml" in err, (needle, err)


def test_a_duplicated_column_name_in_a_file_is_named(tmp_path, data, capsys):
    table = pq.read_table(data)
    shard = tmp_path / "dup"
    shard.mkdir()
    duplicated = pa.Table.from_arrays(
        [table.column("score"), table.column("label"), table.column("score")], names=["score", "label", "score"]
    )
    pq.write_table(duplicated, shard / "a.parquet")
    err = _run(tmp_path, capsys, GOOD.format(data=shard, out=tmp_path / "out"))
    assert f"{shard / 'a.parquet'}: column 'score' (data.columns.predictions) appears 2 times" in err


def test_a_dangling_symlink_is_named_as_such(tmp_path, data, capsys):
    shards = tmp_path / "links"
    shards.mkdir()
    os.symlink(tmp_path / "gone.parquet", shards / "a.parquet")
    err = _run(tmp_path, capsys, GOOD.format(data=shards, out=tmp_path / "out"))
    assert f"a symbolic link to {tmp_path / 'gone.parquet'}, which does not exist" in err
    assert "empty" not in err


# Slice entries whose columns the data lacks or cannot serve: (name, slices, columns of the data, needle)
_N = 40
_BASE = {"score": [i / _N for i in range(_N)], "label": [i % 2 for i in range(_N)], "c": ["US", "DE"] * (_N // 2)}
_BASE["age"] = [float(10 + i) for i in range(_N)]
SLICE_DATA_CASES = [
    (
        "slice column missing",
        "[{column: ages}]",
        [_BASE],
        "column 'ages' (slices[0] ('ages')) is missing (did you mean",
    ),
    ("filter column missing", "[{name: f, filter: {nope: {eq: 1}}}]", [_BASE], "column 'nope' (slices[0] ('f'))"),
    (
        "crossed column missing",
        "[{columns: [c, region]}]",
        [_BASE],
        "column 'region' (slices[0] (columns c, region)) is missing",
    ),
    ("boundaries on strings", "[{column: c, boundaries: [1]}]", [_BASE], "`boundaries` buckets need a numeric"),
    ("string eq on numbers", "[{name: f, filter: {age: {eq: US}}}]", [_BASE], "expected number values"),
    ("number lt on strings", "[{name: f, filter: {c: {lt: 5}}}]", [_BASE], "expected string values"),
    ("list column", "[{column: c}]", [{**_BASE, "c": [[x] for x in _BASE["c"]]}], "not a list"),
    ("string vs int shards", "[{column: c}]", [_BASE, {**_BASE, "c": list(range(_N))}], "expected the same type"),
]


@pytest.mark.parametrize(("name", "slices", "shards", "needle"), SLICE_DATA_CASES, ids=[c[0] for c in SLICE_DATA_CASES])
def test_slices_the_data_cannot_serve_exit_2_naming_file_column_and_entry(
    tmp_path, capsys, name, slices, shards, needle
):
    directory = tmp_path / "data"
    directory.mkdir()
    for i, columns in enumerate(shards):
        pq.write_table(pa.table(columns), directory / f"s{i}.parquet")
    job = tmp_path / "job.yaml"
    job.write_text(GOOD.format(data=directory, out=tmp_path / "out") + f"slices: {slices}\n")
    code = main(["validate", str(job)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("evalpipe: error: ") and "Traceback" not in err and "\n" not in err, err
    assert needle in err and "slices[0]" in err and ".parquet" in err, (needle, err)
    err = _run(tmp_path, capsys, job.read_text())  # `run` refuses them as `validate` does, before reading a row
    assert needle in err and "slices[0]" in err and ".parquet" in err, (needle, err)


def test_a_row_id_column_of_lists_is_refused_at_the_footers(tmp_path, capsys):
    """``row_id`` keys the bootstrap buckets: one id per row. A list column ended in NumPy's "object too deep"."""
    directory = tmp_path / "data"
    directory.mkdir()
    table = pa.table({"score": [0.1, 0.9], "label": [0, 1], "ids": pa.array([[1], [2]])})
    pq.write_table(table, directory / "part.parquet")
    text = GOOD.format(data=directory, out=tmp_path / "out").replace("targets: label", "targets: label, row_id: ids")
    err = _run(tmp_path, capsys, text + "confidence: {replicates: 5}\n")
    assert "column 'ids' (data.columns.row_id) has type list<element: int64>; expected one id per row" in err, err


def test_the_bootstrap_minimums_apply_to_new_specs_not_to_runs_recorded_before_them() -> None:
    from pipelines.spec import settings_of_recorded

    recorded = {
        "name": "old",
        "data": {"path": "x", "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "confidence": {"buckets": 4, "replicates": 1},
    }
    assert settings_of_recorded(recorded)["confidence"].buckets == 4  # (such runs still merge)
