"""A run with intervals records a digest of its counted rows' keys (``metadata.rows_digest``): the same for the
same rows however they are split into files, units or runs, so that ``compare_runs`` refuses two runs over other
rows of the same count (it paired them: their replicates weigh unrelated rows alike)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import spec as spec_module
from pipelines.bootstrap import DIGEST_MODULUS, key_digest, row_keys
from pipelines.execute import run_job
from pipelines.merge import merge_runs
from pipelines.significance import compare_runs
from tests.conftest import write_job


def _write(directory, ids, seed, parts=1, bad=()):
    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    y = (ids % 3 == 0).astype(np.int64)
    p = np.clip(0.4 * y + 0.6 * rng.random(len(ids)), 0.0, 1.0)
    p[list(bad)] = np.nan  # (rows left out with on_bad_rows: drop)
    for i, rows in enumerate(np.array_split(np.arange(len(ids)), parts)):
        table = pa.table({"row_id": ids[rows], "label": y[rows], "score": p[rows]})
        pq.write_table(table, directory / f"part-{i}.parquet", row_group_size=97)


def _run(tmp_path, name, directory, **extra):
    spec = {
        "name": name,
        "data": {
            "path": str(directory),
            "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"},
            **extra.pop("data", {}),
        },
        "task": "binary",
        "metrics": ["accuracy", "roc_auc"],
        "confidence": {"replicates": 50, "seed": 1, "samples": True},
        "execution": {"runner": "local", "unit_rows": 250, **extra.pop("execution", {})},
        "output": {"uri": str(tmp_path / "out")},
    }
    job = write_job(tmp_path / f"{name}.yaml", spec)
    return run_job(spec_module.load(str(job)), show_progress=False)


def test_the_digest_is_the_row_keys_sum_of_hashes_whatever_the_files_and_units(tmp_path):
    ids = np.arange(1_000, 2_000)
    _write(tmp_path / "one", ids, 0)
    _write(tmp_path / "three", ids[::-1].copy(), 0, parts=3)  # (other order, files and units)
    one = _run(tmp_path, "one", tmp_path / "one").run
    three = _run(tmp_path, "three", tmp_path / "three", execution={"unit_rows": 120}).run
    expected = key_digest(row_keys(ids, "", 0, len(ids)))
    assert one.metadata["rows_digest"] == three.metadata["rows_digest"] == f"{expected:016x}"


def test_compare_runs_refuses_runs_over_other_rows_of_the_same_count(tmp_path):
    ids = np.arange(800)
    _write(tmp_path / "a", ids, 0)
    _write(tmp_path / "b", ids + 800, 1)  # (800 other rows)
    _write(tmp_path / "model2", ids, 2)  # (the same rows, other predictions: what a comparison is for)
    a = _run(tmp_path, "a", tmp_path / "a").run
    b = _run(tmp_path, "b", tmp_path / "b").run
    other_model = _run(tmp_path, "model2", tmp_path / "model2").run
    assert a.point("overall").metrics["rows"].value == b.point("overall").metrics["rows"].value
    with pytest.raises(ValueError, match="over different rows"):
        compare_runs(a, b, "accuracy")
    result = compare_runs(a, other_model, "accuracy")
    assert result.effect_size == pytest.approx(
        a.point("overall").metrics["accuracy"].value - other_model.point("overall").metrics["accuracy"].value
    )


def test_a_merge_digests_the_union_and_dropped_rows_are_not_counted(tmp_path):
    ids = np.arange(600)
    _write(tmp_path / "first", ids[:300].copy(), 0)
    _write(tmp_path / "second", ids[300:].copy(), 0, bad=(5, 17))
    first = _run(tmp_path, "first", tmp_path / "first")
    second = _run(tmp_path, "second", tmp_path / "second", data={"on_bad_rows": "drop"})
    kept = np.delete(ids[300:], [5, 17])
    assert second.run.metadata["rows_digest"] == f"{key_digest(row_keys(kept, '', 0, len(kept))):016x}"
    merged = merge_runs([first.uri, second.uri], "both").run
    union = (key_digest(row_keys(ids[:300], "", 0, 300)) + int(second.run.metadata["rows_digest"], 16)) % DIGEST_MODULUS
    assert merged.metadata["rows_digest"] == f"{union:016x}"
