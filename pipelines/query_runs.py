"""The query ids of a ranking job's work unit as they are read: a query's rows must be one contiguous run in one
file. The statistic checks the rows it is given; this checks the rows as the files hold them, before bad rows are
dropped (``on_bad_rows: drop``) or rows are split into slices, either of which could otherwise join two runs of one
query into one ranked list (``1, 1, 2, 2, 1`` with a slice holding the 1s, or ``1, 1, bad, 1``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from evaluators.retrieval import QUERY, runs
from pipelines.errors import DataError


class UnitQueries:
    """The query ids of one work unit's batches, read in order."""

    def __init__(self, column: str, where: str = "") -> None:
        """``column``: the query ids' column in the files; ``where``: the unit, as a message begins. The unit's runs
        are also checked as a whole (slices or rows dropped as bad hide some rows from the statistic, and a run found
        by the statistic is named here by its file)."""
        self.column = column
        self.where = f"{where}: " if where else ""
        self._last: tuple[str, object] | None = None  # (file, the query id of its last row read)
        self._keys: list[np.ndarray] = []  # (each batch's run keys, in order)
        self._firsts: list[np.ndarray] = []  # (each run's first id, for the message)
        self._paths: list[str] = []

    def check(self, path: str, ids: Any) -> None:
        """Note a batch of query ids read from ``path`` (its batches in order); :class:`DataError` where its first
        id goes on with the previous file's last one (a query's rows joined across two files)."""
        values = ids.to_numpy(zero_copy_only=False) if isinstance(ids, pa.Array | pa.ChunkedArray) else np.asarray(ids)
        first, last = (_scalar(values, i) for i in (0, len(values) - 1))
        if self._last is not None and self._last[0] != path and self._last[1] == first:
            raise DataError(
                f"{self.where}column {self.column!r} (data.columns.{QUERY}): query {first!r} has rows at the end of "
                f"{self._last[0]} and at the start of {path}; a query's rows must be contiguous in one file."
            )
        self._last = (path, last)
        starts, keys = runs(values)
        self._keys.append(keys)
        self._firsts.append(values[starts])
        self._paths.append(path)

    def finish(self) -> None:
        """:class:`DataError` where a query's rows form two runs in the unit (a run that goes on from one batch into
        the next is one run)."""
        if not self._keys:
            return
        keys = np.concatenate(self._keys)
        batch_of_run = np.repeat(np.arange(len(self._keys)), [len(k) for k in self._keys])
        goes_on = np.zeros(len(keys), bool)
        goes_on[1:] = (keys[1:] == keys[:-1]) & (batch_of_run[1:] != batch_of_run[:-1])  # (runs differ within a batch)
        keys, firsts, batch_of_run = keys[~goes_on], np.concatenate(self._firsts)[~goes_on], batch_of_run[~goes_on]
        order = np.argsort(keys, kind="stable")
        repeated = np.flatnonzero(keys[order][1:] == keys[order][:-1])
        if not len(repeated):
            return
        at = int(order[repeated[0] + 1])  # (the second run of the first repeated query, in reading order)
        raise DataError(
            f"{self.where}column {self.column!r} (data.columns.{QUERY}): query {_scalar(firsts, at)!r} has rows in "
            f"two separate runs of rows (the second in {self._paths[batch_of_run[at]]}; "
            f"{'1 query is' if len(repeated) == 1 else f'{len(repeated)} queries are'} split so); a query's rows must "
            "be contiguous in one file (rows of other queries, of other slices or dropped as bad, must not lie between "
            "them)."
        )


def _scalar(values: Any, i: int) -> object:
    value = values[i]
    return value.as_py() if isinstance(value, pa.Scalar) else np.asarray(value).item()
