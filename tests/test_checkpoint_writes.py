"""Unit checkpoints are compressed (dense bootstrap-bucket states are mostly zeros: one unit of a sliced multiclass
job with intervals was written as 510 MB), checkpoints written before still resume, and a stopped job does not wait
for the uploads still queued (Ctrl-C took 110 s at exit) while a failed one writes them for the run of the fixed job."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.checkpoints import COMPRESSED, BackgroundWriter, _npz_bytes
from pipelines.cli import main
from pipelines.results import load_run
from pipelines.synthetic import write_shards
from tests.conftest import write_job


def _spec(tmp_path, data, **execution) -> dict:
    return {
        "name": "ckpt",
        "data": {"path": f"{data}/*.parquet", "columns": {"predictions": "probs", "targets": "label"}},
        "task": {"kind": "multiclass", "num_classes": 5},
        "metrics": ["accuracy", {"name": "roc_auc", "average": "macro"}],
        "slices": [{"column": "country"}],
        "confidence": {"replicates": 20, "buckets": 64},
        "execution": {"runner": "local", "unit_rows": 3_000, **execution},
        "output": {"uri": str(tmp_path / "out")},
    }


def test_checkpoints_are_compressed_and_old_ones_still_resume(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    paths = write_shards(str(data), "multiclass", 12_000, 4, seed=3, num_classes=5)
    good = pq.read_table(paths[-1])
    probs = good.column("probs").combine_chunks()
    values = probs.values.to_numpy(zero_copy_only=False).copy()
    values[7] = np.nan  # a bad row in the last unit: the job fails after the first three are checkpointed
    bad = good.set_column(1, "probs", pa.FixedSizeListArray.from_arrays(pa.array(values), 5))
    pq.write_table(bad, paths[-1])
    job = write_job(tmp_path / "job.yaml", _spec(tmp_path, data))
    assert main(["run", str(job), "--quiet"]) == 2
    capsys.readouterr()
    stored = sorted((tmp_path / "out" / "ckpt" / "_checkpoints").rglob("*.npz"))
    assert len(stored) == 3  # (written before the failure was reported)
    for path in stored:
        payload = path.read_bytes()
        assert payload.startswith(COMPRESSED)
        assert len(payload) * 5 < len(_npz_bytes(payload))  # (measured: about 20x smaller)
    stored[0].write_bytes(_npz_bytes(stored[0].read_bytes()))  # a checkpoint in the form written before
    pq.write_table(good, paths[-1])
    assert main(["run", str(job), "--quiet"]) == 0
    resumed = load_run(str(tmp_path / "out" / "ckpt" / "latest"))
    assert resumed.metadata["resumed_units"] == [0, 1, 2]
    clean_job = write_job(tmp_path / "clean.yaml", _spec(tmp_path, data, checkpoints=False))
    assert main(["run", str(clean_job), "--quiet"]) == 0
    clean = load_run(str(tmp_path / "out" / "ckpt" / "latest"))
    for point in clean.points:
        for key, metric in point.metrics.items():
            other = resumed.point(point.name).metrics[key]
            assert (other.value, other.lower, other.upper) == (metric.value, metric.lower, metric.upper) or (
                np.isnan(metric.value) and np.isnan(other.value)
            ), (point.name, key)


def test_a_queued_write_does_not_keep_the_process_alive() -> None:
    # a ThreadPoolExecutor's queue is drained at interpreter exit: a stopped job waited for every queued upload
    script = (
        "import threading\n"
        "from pipelines.checkpoints import BackgroundWriter\n"
        "writer = BackgroundWriter('w')\n"
        "writer.submit(threading.Event().wait)  # an upload that never ends\n"
        "writer.submit(print, 'second')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "second" not in done.stdout


def test_abandoned_writes_are_dropped_and_finished_ones_kept_in_order() -> None:
    writer = BackgroundWriter("w")
    release, ran = threading.Event(), io.StringIO()
    first = writer.submit(release.wait)
    second = writer.submit(ran.write, "second")
    assert second.cancel()  # (what CheckpointStore.abandon does to the writes not started)
    third = writer.submit(ran.write, "third")
    release.set()
    writer.shutdown()
    assert first.result() is True and third.result() == len("third") and ran.getvalue() == "third"


class _Store:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def abandon(self) -> None:
        self.calls.append("abandon")

    def pending_writes(self) -> int:
        return 3

    def finish_writes(self) -> None:
        self.calls.append("finish_writes")


def test_a_stopped_run_drops_its_queued_writes_and_a_failed_one_finishes_them() -> None:
    from pipelines.execute import _checkpoint_writes
    from pipelines.stopping import Interrupted, Stopped

    for stop in (Stopped(), Interrupted(), KeyboardInterrupt()):  # (Ctrl-C without evalpipe's handlers too)
        store = _Store()
        with pytest.raises(KeyboardInterrupt), _checkpoint_writes(store):  # type: ignore[arg-type]
            raise stop
        assert store.calls == ["abandon"]
    store = _Store()
    with pytest.raises(ValueError), _checkpoint_writes(store):  # type: ignore[arg-type]
        raise ValueError("a bad row")
    assert store.calls == ["finish_writes"]
