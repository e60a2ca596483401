"""Faults: a Ray actor killed (SIGKILL) in the middle of a unit; the unit is retried on a fresh actor and the run
equals a fault-free run, with the retry recorded."""

from __future__ import annotations

import os
import signal
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.synthetic import write_shards
from tests.conftest import write_job


def _job(tmp_path, data, name):
    spec = {
        "name": name,
        "data": {"path": str(data), "columns": {"predictions": "candidate", "targets": "reference"}},
        "task": "text",
        "functions": [
            {
                "function": "tests.user_metrics.stall_once",
                "outputs": ["words"],
                "columns": {"outputs": "candidate", "marker": "marker"},
            }
        ],
        "allow_modules": ["tests.user_metrics"],
        "execution": {"runner": "ray", "actors": 2, "unit_rows": 100},
        "output": {"uri": str(tmp_path / "out")},
    }
    return spec_module.load(str(write_job(tmp_path / f"{name}.yaml", spec)))


@pytest.mark.ray
def test_actor_killed_mid_unit_is_retried_and_the_run_equals_a_fault_free_run(tmp_path, ray_cluster):
    marker = tmp_path / "marker"
    marker.mkdir()
    data = tmp_path / "data"
    write_shards(str(data), "text", 600, 3, seed=4, row_group_rows=100)
    for path in data.glob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.append_column("marker", pa.array([str(marker)] * len(table))), path)

    import threading

    outcome = {}
    worker = threading.Thread(
        target=lambda: outcome.update(run=run_job(_job(tmp_path, data, "faulty"), show_progress=False).run)
    )
    worker.start()
    started = marker / "started"
    deadline = time.monotonic() + 120
    while not started.exists() or not started.read_text():
        assert time.monotonic() < deadline, "no unit started"
        time.sleep(0.1)
    os.kill(int(started.read_text()), signal.SIGKILL)
    worker.join(timeout=240)
    assert not worker.is_alive(), "the job hung after its actor was killed"
    faulty = outcome["run"]
    clean = run_job(_job(tmp_path, data, "clean"), show_progress=False).run  # `started` exists: no stall now
    assert faulty.metadata["retried_units"], faulty.metadata
    assert faulty.metadata["attempts"] > faulty.metadata["units"]
    got = {k: m.value for k, m in faulty.point("overall").metrics.items()}
    want = {k: m.value for k, m in clean.point("overall").metrics.items()}
    assert got == want and got["stall_once.words.count"] == 600
