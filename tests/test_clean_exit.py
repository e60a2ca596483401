"""A data error ends the process cleanly every time: the message, exit code 2, and no abort while the
interpreter shuts down (no Parquet reader, read-ahead thread or generator is left for it to destroy)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.synthetic import write_shards
from tests.conftest import write_job

RUNS = 50
AT_ONCE = 4


def _bad_row_job(tmp_path: Path) -> tuple[Path, str]:
    """A local-runner job over 4 files whose third has a NaN score in row group 1 of 3: the error is raised
    while that file's reader still has a row group to go."""
    data = tmp_path / "data"
    paths = write_shards(str(data), "binary", 1_200, 4, seed=2, row_group_rows=100)
    table = pq.read_table(paths[2])
    scores = table.column("score").to_numpy().copy()
    scores[150] = np.nan
    index = table.schema.get_field_index("score")
    pq.write_table(table.set_column(index, "score", pa.array(scores)), paths[2], row_group_size=100)
    spec = {
        "name": "bad-row",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy", "roc_auc"],
        "execution": {"runner": "local", "unit_rows": 150, "checkpoints": False},
        "output": {"uri": str(tmp_path / "out")},
    }
    return write_job(tmp_path / "job.yaml", spec), paths[2]


@pytest.mark.slow
def test_a_row_level_data_error_exits_2_in_every_one_of_50_fresh_processes(tmp_path):
    job, bad = _bad_row_job(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent), JAX_PLATFORMS="cpu")

    def once(_: int) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "pipelines", "run", str(job), "--quiet"]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)

    with ThreadPoolExecutor(AT_ONCE) as pool:
        runs = list(pool.map(once, range(RUNS)))
    codes = [r.returncode for r in runs]
    assert codes == [2] * RUNS, [(r.returncode, r.stderr[-400:]) for r in runs if r.returncode != 2]
    for r in runs:
        assert r.stderr.startswith(f"evalpipe: error: {bad} row group 1: column 'score' (data.columns.predictions)")
        assert r.stderr.count("\n") == 1 and "terminate" not in r.stderr, r.stderr
    assert not (tmp_path / "out" / "bad-row").exists() or not any((tmp_path / "out" / "bad-row").iterdir())
