"""Inputs that turn unreadable only when a worker reads them (a page damaged behind a valid footer, a file removed
after the job listed it): exit 2 naming the file and its row groups, as for any bad input, not an internal error."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.errors import DataError
from pipelines.planning import UnitPart
from pipelines.reading import _unreadable, read_part
from tests.conftest import write_job


def _damaged(path) -> None:
    """A file whose footer reads but whose first data page header does not."""
    rng = np.random.default_rng(0)
    n = 20_000
    pq.write_table(pa.table({"score": rng.random(n), "label": rng.integers(0, 2, n)}), path, compression="none")
    payload = bytearray(path.read_bytes())
    offset = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    for i in range(offset + 2, offset + 40):
        payload[i] ^= 0xFF
    path.write_bytes(bytes(payload))


def test_a_page_damaged_behind_a_valid_footer_is_exit_2_naming_the_file(tmp_path, capsys) -> None:
    _damaged(tmp_path / "part.parquet")
    spec = {
        "name": "damaged",
        "data": {"path": str(tmp_path / "part.parquet"), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    job = write_job(tmp_path / "job.yaml", spec)
    assert main(["validate", str(job)]) == 0  # (the footer reads)
    capsys.readouterr()
    assert main(["run", str(job), "--quiet"]) == 2  # was exit 1, "internal error" and a traceback
    err = capsys.readouterr().err
    assert f"{tmp_path / 'part.parquet'} (row groups 0-0): cannot read it (OSError: " in err
    assert "looks damaged past its footer" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "damaged").exists() or not any((tmp_path / "out" / "damaged").iterdir())


def test_a_file_removed_after_the_job_listed_it_is_named(tmp_path) -> None:
    part = UnitPart(str(tmp_path / "gone.parquet"), 0, 2, 100, 1000, "v1")
    groups = read_part(part, {"predictions": "score"}, {})
    with pytest.raises(DataError, match=r"gone\.parquet \(row groups 0-1\): the file is gone: it was listed when"):
        next(groups)


def _chained(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


def test_storage_that_fails_to_answer_is_never_blamed_on_the_file() -> None:
    # fsspec's HTTP files raise FileNotFoundError from a refused connection; s3fs raises OSError(EBUSY) from a
    # throttled request once its own retries are spent: both read "the file is gone" / "damaged" before
    refused = _chained(FileNotFoundError("http://127.0.0.1:9/x.parquet"), ConnectionRefusedError(111, "refused"))
    throttled = _chained(OSError(16, "SlowDown"), RuntimeError("An error occurred (SlowDown)"))
    for exc in (refused, throttled, OSError(121, "Remote I/O error"), TimeoutError("read timed out")):
        assert _unreadable(exc) is None, exc
    assert _unreadable(FileNotFoundError("x")).startswith("the file is gone")
    assert _unreadable(PermissionError("denied")).startswith("reading it was refused")
    assert "damaged" in _unreadable(OSError("Couldn't deserialize thrift: TProtocolException"))


def test_a_refused_connection_is_not_a_data_error(tmp_path) -> None:
    part = UnitPart("http://127.0.0.1:9/x.parquet", 0, 1, 10, 100, "v1")
    groups = read_part(part, {"predictions": "score"}, {})
    with pytest.raises(Exception) as caught:
        next(groups)
    assert not isinstance(caught.value, DataError), caught.value
