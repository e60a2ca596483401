"""Hostile values in a spec or a dataset that used to end in a traceback (exit 1) or a wrong message: each gives
exit code 2 and one paragraph naming the key, file or column, with nothing written."""

from __future__ import annotations

import os

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
    ("NaN slice boundary", lambda s: s + "slices: [{column: score, boundaries: [.nan, 1]}]\n", "finite numbers"),
    ("inf slice boundary", lambda s: s + "slices: [{column: score, boundaries: [0, .inf]}]\n", "finite numbers"),
    ("job name with a trailing newline", lambda s: s.replace("name: hostile", 'name: "abc\\n"'), "'abc\\n'"),
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
