"""Which files a job reads: a directory's Parquet files (any case of ``.parquet``, ``.parq`` or ``.pq``, or a file
that begins with Parquet's magic bytes), never the hidden or ``_``-prefixed files and directories other tools write
beside them; a glob's matched directories read as directories; each local file once however its path is spelled;
a real path holding glob characters read as itself. Each case's job counts the 600 rows it was given (or exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score

from pipelines.cli import main
from pipelines.errors import DataError
from pipelines.planning import plan
from pipelines.results import load_run
from tests.conftest import accuracy_job, write_job

ROWS = 300


def _table(seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    score = rng.random(ROWS)
    return pa.table({"score": score, "label": (rng.random(ROWS) < score).astype(np.int64)})


def _write(path: Path, seed: int) -> pa.Table:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _table(seed)
    pq.write_table(table, path)
    return table


def _rows(paths: list[str]) -> int:
    return plan(paths, {}, unit_rows=10_000).rows


@pytest.mark.parametrize(
    "stray",
    [".stale.parquet", "_tmp.parquet", "_temporary/0/task_0/part-0.parquet", ".ipynb_checkpoints/a-checkpoint.parquet"],
)
def test_hidden_and_underscored_files_beside_the_data_are_left_out(tmp_path, stray):
    """They were read as data: 900 rows of 600, committed."""
    data = tmp_path / "data"
    _write(data / "a.parquet", 0), _write(data / "b.parquet", 1), _write(data / stray, 2)
    (data / "_SUCCESS").write_bytes(b"")
    assert _rows([str(data)]) == 2 * ROWS
    assert _rows([str(data / "*.parquet")]) == 2 * ROWS  # (fsspec's * matches a leading dot, a shell's does not)
    if stray == "_tmp.parquet":  # a pattern that names such files reads them
        assert _rows([str(data / "_tmp*.parquet")]) == ROWS


@pytest.mark.parametrize("name", ["b.pq", "b.PARQUET", "part-00001"])
def test_parquet_files_of_other_suffixes_in_a_directory_are_read(tmp_path, name):
    """They were skipped without a word: 300 rows of 600."""
    data = tmp_path / "data"
    _write(data / "a.parquet", 0), _write(data / name, 1)
    (data / "README.txt").write_text("not data")
    assert _rows([str(data)]) == 2 * ROWS


def test_a_glob_reads_the_directories_it_matches(tmp_path):
    """``data/*`` over a file and a directory read the file only; ``data/d*`` matching directories only was exit 2."""
    data = tmp_path / "data"
    _write(data / "a.parquet", 0), _write(data / "sub" / "b.parquet", 1), _write(data / "d1" / "c.parquet", 2)
    assert _rows([str(data / "*")]) == 3 * ROWS
    assert _rows([str(data / "d*")]) == ROWS


def test_each_local_file_is_read_once_however_its_path_is_spelled(tmp_path):
    data = tmp_path / "data"
    _write(data / "a.parquet", 0), _write(data / "b.parquet", 1)
    for other in (data / "a.parquet", f"{data}/../data/a.parquet", f"{data}/./a.parquet"):
        assert _rows([str(data), str(other)]) == 2 * ROWS  # (900 before: a.parquet twice)


def test_a_real_path_with_glob_characters_is_read_as_itself(tmp_path):
    data = tmp_path / "x[1]"
    _write(data / "a[1].parquet", 0)
    assert _rows([str(data)]) == ROWS and _rows([str(data / "a[1].parquet")]) == ROWS
    with pytest.raises(DataError, match="no Parquet files match"):
        _rows([str(tmp_path / "y[1]")])


def test_a_job_over_a_spark_style_directory_equals_scikit_learn(tmp_path, capsys):
    data = tmp_path / "data"
    tables = [_write(data / "part-00000-x.snappy.parquet", 0), _write(data / "part-00001", 1)]
    _write(data / "_temporary" / "0" / "part-00002.parquet", 2)
    (data / "_SUCCESS").write_bytes(b"")
    (data / ".part-00000-x.snappy.parquet.crc").write_bytes(os.urandom(8))
    job = write_job(tmp_path / "job.yaml", accuracy_job("spark", str(data), {"uri": str(tmp_path / "out")}))
    assert main(["run", str(job), "--quiet"]) == 0, capsys.readouterr().err
    point = load_run(str(tmp_path / "out" / "spark" / "latest")).point("overall")
    both = pa.concat_tables(tables)
    score, label = both["score"].to_numpy(), both["label"].to_numpy()
    assert point.metrics["rows"].value == 2 * ROWS
    assert point.metrics["accuracy"].value == pytest.approx(accuracy_score(label, score > 0.5), abs=1e-15)
