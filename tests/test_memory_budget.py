"""A row group larger than ``execution.memory_budget_mb`` is read in slices: Arrow's peak allocation stays near
the budget (measured in a fresh process), the result is bit-identical, and a row larger than the budget is
refused from the footer's sizes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from pipelines.reading import decoded_bytes
from tests.conftest import write_job

ROWS = 2_000_000
MEASURE = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa
    from pipelines.execute import run_job
    from pipelines.spec import load
    run = run_job(load(sys.argv[1]), show_progress=False).run
    values = {k: m.value for k, m in run.point("overall").metrics.items()}
    print(json.dumps({"arrow_peak": pa.default_memory_pool().max_memory(), "values": values}))
    """
)


@pytest.fixture(scope="module")
def one_big_row_group(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "score": rng.random(ROWS),
            "label": (rng.random(ROWS) < 0.3).astype(np.int8),
            "unused": rng.random(ROWS),
        }
    )
    pq.write_table(table, root / "big.parquet", row_group_size=ROWS)
    return root


def _job(tmp_path, data, name, budget_mb):
    spec = {
        "name": name,
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy", {"name": "roc_auc", "mode": "exact", "as": "roc_auc"}, "log_loss"],
        "execution": {"runner": "local", "memory_budget_mb": budget_mb, "checkpoints": False},
        "output": {"uri": str(tmp_path / "out")},
    }
    return write_job(tmp_path / f"{name}.yaml", spec)


def _measure(job):
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(job)],
        capture_output=True,
        text=True,
        check=False,
        env={**__import__("os").environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_row_group_over_the_budget_is_streamed_with_bounded_memory_and_the_same_result(tmp_path, one_big_row_group):
    meta = pq.ParquetFile(one_big_row_group / "big.parquet").metadata
    needed = decoded_bytes(meta, 0, {"score", "label"})
    assert needed > 15 * 2**20  # one row group of about 16 MB of the needed columns
    whole = _measure(_job(tmp_path, one_big_row_group, "whole", 1024))
    budget_mb = 2
    streamed = _measure(_job(tmp_path, one_big_row_group, "streamed", budget_mb))
    assert streamed["values"] == whole["values"]
    assert whole["arrow_peak"] >= needed  # the whole row group was decoded at once
    # generous bound: slices of a quarter of the budget, two 1 MiB read-ahead buffers, page buffers
    assert streamed["arrow_peak"] <= 2 * budget_mb * 2**20 + 4 * 2**20, streamed["arrow_peak"]
    assert streamed["arrow_peak"] * 3 < whole["arrow_peak"]


def test_a_row_larger_than_the_budget_is_refused_from_the_footer(tmp_path, one_big_row_group):
    job = spec_module.load(str(_job(tmp_path, one_big_row_group, "tiny", 0.000001)))
    with pytest.raises(DataError, match=r"big.parquet row group 0: one row .* more than execution.memory_budget_mb"):
        run_job(job, show_progress=False)
