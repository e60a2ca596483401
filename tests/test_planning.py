"""Shard planning: listing, footers, packing row groups into units; reading list columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import DataError
from pipelines.planning import pack_units, plan
from pipelines.reading import read_part


def _write(path, rows, row_group_rows):
    table = pa.table({"score": np.linspace(0, 1, rows, dtype=np.float32), "label": np.arange(rows) % 2})
    pq.write_table(table, path, row_group_size=row_group_rows)


def test_large_file_splits_at_row_groups(tmp_path):
    _write(tmp_path / "big.parquet", 10_000, 1_000)
    p = plan([str(tmp_path)], {}, unit_rows=2_500)
    # 1000-row groups: a unit takes groups until the next would pass 2500 rows -> 2 groups each.
    assert [u.rows for u in p.units] == [2_000] * 5
    assert [(u.parts[0].start, u.parts[0].stop) for u in p.units] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert sum(u.rows for u in p.units) == p.rows == 10_000


def test_small_files_batch_into_one_unit(tmp_path):
    for i in range(5):
        _write(tmp_path / f"s{i}.parquet", 100, 100)
    p = plan([str(tmp_path / "*.parquet")], {}, unit_rows=250)
    assert [len(u.parts) for u in p.units] == [2, 2, 1]
    assert [p_.path.rsplit("/", 1)[-1] for u in p.units for p_ in u.parts] == [f"s{i}.parquet" for i in range(5)]
    assert [u.index for u in p.units] == [0, 1, 2]


def test_units_cover_every_row_exactly_once(tmp_path):
    rng = np.random.default_rng(3)
    sizes = rng.integers(0, 3_000, 9)
    for i, n in enumerate(sizes):
        _write(tmp_path / f"f{i}.parquet", int(n), int(rng.integers(50, 700)))
    files = plan([str(tmp_path)], {}, unit_rows=10**9).files
    for unit_rows in (1, 333, 1_000, 5_000):
        units = pack_units(files, unit_rows)
        covered = {}
        for u in units:
            for part in u.parts:
                for g in range(part.start, part.stop):
                    covered[(part.path, g)] = covered.get((part.path, g), 0) + 1
        expected = {(f.path, g) for f in files for g in range(len(f.row_groups))}
        assert set(covered) == expected and set(covered.values()) <= {1}
        assert sum(u.rows for u in units) == int(sizes.sum())


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no Parquet files match"):
        plan([str(tmp_path / "nothing-*.parquet")], {}, 1000)


def test_zero_byte_and_truncated_files_are_named(tmp_path):
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.parquet: the file is empty"):
        plan([str(tmp_path / "empty.parquet")], {}, 1000)
    _write(tmp_path / "whole.parquet", 1000, 100)
    data = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.parquet: not a readable Parquet file") as refused:
        plan([str(tmp_path / "cut.parquet")], {}, 1000)
    (tmp_path / "text.parquet").write_bytes(b"not parquet\n")  # (Arrow's own sentence ends in a full stop)
    with pytest.raises(DataError, match=r"text\.parquet: not a readable Parquet file") as text:
        plan([str(tmp_path / "text.parquet")], {}, 1000)
    assert not str(refused.value).endswith("..") and not str(text.value).endswith(".."), (refused.value, text.value)


def test_list_columns_read_as_matrices(tmp_path):
    probs = np.random.default_rng(0).random((300, 4)).astype(np.float32)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), 4)
    variable = pa.array(list(probs.astype(np.float64)))
    pq.write_table(
        pa.table({"fixed": fixed, "var": variable, "y": np.arange(300) % 4}), tmp_path / "p.parquet", row_group_size=128
    )
    p = plan([str(tmp_path / "p.parquet")], {}, 10**6)
    read = list(read_part(p.units[0].parts[0], {"predictions": "fixed", "targets": "var"}, {}))
    assert [(group, first) for group, first, _ in read] == [(0, 0), (1, 128), (2, 256)]
    got = [columns for _, _, columns in read]
    assert [g["predictions"].shape for g in got] == [(128, 4), (128, 4), (44, 4)]
    np.testing.assert_array_equal(np.concatenate([g["predictions"] for g in got]), probs)
    np.testing.assert_array_equal(np.concatenate([g["targets"] for g in got]), probs.astype(np.float64))
