"""``scripts/check_identity.py``: the digests of a job's records are the same whatever the sharding of its
work, and a changed value shows in them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from check_identity import JOBS, differences, digest_arrays, digest_metrics, digest_run, run_example

NIGHTLY = next(j for j in JOBS if j.name == "nightly")  # slices and bootstrap intervals: the most records


@pytest.mark.slow
def test_records_are_bit_identical_for_two_shardings_and_a_changed_value_shows(tmp_path):
    runs = {rows: run_example(NIGHTLY, tmp_path / str(rows), unit_rows=rows) for rows in (900, 4_000)}
    digests = {rows: digest_run(run) for rows, run in runs.items()}
    assert len(digests[900]) > 100  # metrics, statistics index and every state array of every slice
    assert differences({"nightly": digests[900]}, {"nightly": digests[4_000]}) == []

    # one count more in one state array, one value changed in the metrics: both show, nothing else does
    with np.load(runs[900] / "statistics.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = sorted(arrays)[1]
    arrays[key] = arrays[key] + 1
    table = pq.read_table(runs[900] / "metrics.parquet")
    values = table.column("value").to_numpy().copy()
    values[3] = np.nextafter(values[3], np.inf)
    changed = {
        **digests[900],
        **digest_arrays(arrays),
        "metrics.parquet": digest_metrics(table.set_column(table.schema.get_field_index("value"), "value", [values])),
    }
    assert differences({"nightly": digests[900]}, {"nightly": changed}) == [
        "nightly: metrics.parquet differs",
        f"nightly: statistics.npz:{key} differs",
    ]
