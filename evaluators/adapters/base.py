"""What every task adapter shares: column types as the reader describes them, the kinds of column a role
takes, per-row lists as read, the error an adapter raises, and :class:`TaskAdapter` itself.

An adapter turns the columns a reader hands over (numpy arrays, object arrays of per-row values, or
:class:`Ragged` per-row lists) into the batch its task's statistics read. It knows nothing of files: the
caller passes ``where`` (``"<file> row group <g>"``), and every message an adapter raises starts with it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from evaluators.task import BadRows, PredictionKind, Task, check_weights

Columns = dict[str, Any]
"""Role -> ``[n, ...]`` array (or object array of per-row values, or :class:`Ragged`): one batch of rows."""

INTEGER, FLOATING, BOOLEAN, STRING, BINARY, FIXED_BINARY, LIST, STRUCT, TEMPORAL, OTHER = (
    "integer",
    "floating",
    "boolean",
    "string",
    "binary",
    "fixed_binary",
    "list",
    "struct",
    "temporal",
    "other",
)


@dataclass(frozen=True)
class ColumnType:
    """A column's storage type, described without the storage library.

    ``kind``: one of ``integer``, ``floating``, ``boolean``, ``string`` (plain or large), ``binary`` (variable
    length, plain or large), ``fixed_binary``, ``list`` (variable or fixed length), ``struct``, ``temporal`` (dates,
    times, timestamps, durations, intervals), ``other`` (nulls, decimals, dictionaries of numbers, ...).
    ``value``: the element type of a list; ``fields``: the field names of a struct; ``width``: the length of a
    fixed-length list."""

    kind: str
    value: ColumnType | None = None
    fields: tuple[str, ...] = ()
    width: int | None = None
    """The length of every row of a fixed-length list (``fixed_size_list``); None for other columns."""

    @property
    def is_list(self) -> bool:
        return self.kind == LIST

    @property
    def is_numeric(self) -> bool:
        """Integers, floats or booleans."""
        return self.kind in (INTEGER, FLOATING, BOOLEAN)

    @property
    def is_string(self) -> bool:
        return self.kind == STRING

    def list_of(self, *kinds: str) -> bool:
        """A list whose elements are of one of ``kinds``."""
        return self.is_list and self.value is not None and self.value.kind in kinds


@dataclass(frozen=True)
class ColumnKind:
    """What a role's column must be: ``description`` as an error message says it (after "expected"), and
    ``accepts``, the test of a :class:`ColumnType`."""

    description: str
    accepts: Callable[[ColumnType], bool]


NUMERIC = ColumnKind("a numeric column", lambda t: t.is_numeric)
LABELS = ColumnKind("an integer label column", lambda t: t.is_numeric)
ANY = ColumnKind("any column", lambda t: True)
FEATURES = ColumnKind(
    "a list column of D numbers per row (list<float> or fixed_size_list)", lambda t: t.list_of(FLOATING, INTEGER)
)
GROUPS = ColumnKind("an integer or string column", lambda t: t.kind in (INTEGER, STRING))
ROW_IDS = ColumnKind(
    "one id per row (an integer, float, string or binary column)",
    lambda t: t.kind not in (LIST, STRUCT, TEMPORAL, OTHER),
)
COMMON_KINDS: Mapping[str, ColumnKind] = {"weights": NUMERIC, "row_id": ROW_IDS, "sensitive": GROUPS}
"""Roles any task may have: per-row weights, a row id (bootstrap keys, per-row scores), a group label
(fairness metrics)."""


def numbers_per_row(width: int) -> ColumnKind:
    """``width`` numbers in every row (class scores, multilabel targets)."""
    return ColumnKind(
        f"a list column of {width} numbers per row (list<float> or fixed_size_list[{width}])",
        lambda t: t.list_of(*_NUMBERS) and t.width in (None, width),  # (a fixed length: the file's footer tells)
    )


_NUMBERS = (INTEGER, FLOATING, BOOLEAN)


@dataclass(frozen=True)
class Ragged:
    """A list column of per-row lists of varying length as read (detection boxes and instance masks): one
    Python value per row (a list, of numbers, of lists or of mask records) and the column's type."""

    rows: list[Any]
    type: ColumnType

    def __len__(self) -> int:
        return len(self.rows)


class InputError(ValueError):
    """Columns an adapter cannot turn into a batch: the message is one paragraph that names the file (from
    ``where``), the column and its ``data.columns`` role, and says what was expected."""


@dataclass(frozen=True)
class TaskAdapter:
    """The input side of one task: the column roles it reads and needs, the column kind of each role, and
    the conversions of read columns into the batch its statistics take. The defaults serve a task whose
    columns are plain ``[n]`` / ``[n, C]`` arrays; a task overrides what differs."""

    task: Task
    needed_roles: ClassVar[tuple[str, ...]] = ()
    """Roles a job of this task must map to a column (beside ``predictions`` and ``targets``)."""
    own_roles: ClassVar[tuple[str, ...]] = ()
    """Roles only this task takes: a job of another task that maps one is refused with :meth:`roles_hint`."""
    whole_files: ClassVar[bool] = False
    """Rows are counted in groups (a ranking query) that must not be split: a file is never shared between
    work units."""
    one_sided: ClassVar[bool] = False
    """A job may read one side only (a reference job, or one against a stored reference)."""
    bucket_key_role: ClassVar[str] = "row_id"
    """The ``data.columns`` role whose values key the bootstrap buckets (rows of one key share a bucket)."""

    def counted_rows(self, batch: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """bool ``[n]``: the rows of a decoded batch that count toward its metrics, where the task leaves some out
        whatever their weight (a classification task's ``ignore_index``); None where every row counts."""
        return None

    def roles_hint(self, missing: Collection[str]) -> str:
        """The spec error (after ``data.columns``'s location) for a job that lacks ``missing`` of the needed
        roles, or that maps one of :attr:`own_roles` to another task."""
        return f"a {self.task.kind} task needs columns for {', '.join(missing)}."

    def column_kind(self, role: str) -> ColumnKind:
        """The kind of column ``role`` takes (:data:`COMMON_KINDS`, feature vectors, then the task's own)."""
        if role in COMMON_KINDS:
            return COMMON_KINDS[role]
        if role.endswith("_features"):  # precomputed feature vectors of an image or text job
            return FEATURES
        return self.own_kind(role)

    def task_words(self, role: str) -> str:
        """The task as an error about ``role``'s column type names it (after "for"): ``a text task``. Its
        prediction kind is named only where it decides what the column holds (classification predictions:
        :class:`~evaluators.adapters.classification.ClassificationAdapter`)."""
        return f"a {self.task.kind} task"

    def own_kind(self, role: str) -> ColumnKind:
        """The kind of a role of the task's own: scores are numbers, labels and anything else integers."""
        if role == "predictions" and self.task.prediction is not PredictionKind.LABELS:
            return NUMERIC
        return LABELS

    def bad_rows(self, columns: Columns) -> list[BadRows]:
        """Every problem of a batch of checked-in rows (``predictions`` and ``targets`` ``[n, ...]``, optional
        ``weights`` ``[n]``), with the offending rows of each; empty for a clean batch. Rows of both sides
        must match in number and weights must be finite and >= 0; then :meth:`value_problems`."""
        preds = columns["predictions"]
        targets = columns["targets"]
        n = len(targets)
        if len(preds) != n:
            return [BadRows("predictions", f"have {len(preds)} rows but targets have {n}")]
        problems = check_weights(columns["weights"], n) if columns.get("weights") is not None else []
        return problems + self.value_problems(preds, targets, columns, n)

    def value_problems(self, predictions: Any, targets: Any, columns: Columns, n: int) -> list[BadRows]:
        """Problems of the task's own values in ``n`` rows (NaN scores, labels out of range...). Default: none."""
        return []

    def ragged_roles(self, roles: Collection[str]) -> frozenset[str]:
        """Those of ``roles`` whose columns are read as :class:`Ragged` per-row lists (default none)."""
        return frozenset()

    def varying_roles(self, roles: Collection[str]) -> frozenset[str]:
        """Those of ``roles`` whose lists of numbers may differ in length from row to row (images of several sizes):
        read as ``[n, width]`` arrays where every row has one length, else as object arrays of per-row arrays
        (default none)."""
        return frozenset()

    def decode(self, columns: Columns, roles: Mapping[str, str], where: str, first_row: int) -> Columns:
        """Read columns -> one value per row and role, before the rows are checked (``first_row``: the
        batch's first row in its file, to name a bad row). Default: the columns as they are."""
        return columns

    def batch(self, columns: Columns, roles: Mapping[str, str], where: str) -> Columns:
        """Checked rows of the task's roles -> the columns its statistics read. Default: as they are."""
        return columns

    def expand(self, columns: Columns, bucket: np.ndarray | None) -> tuple[Columns, np.ndarray | None]:
        """One slice's batch -> the statistics' rows, with each row's bootstrap bucket (``bucket``: int
        ``[n]`` per input row, or None). Default: as they are."""
        return columns, bucket

    def refused_role(self, error: Exception) -> str | None:
        """The role whose rows the task's statistics refused with ``error`` (rows they cannot count
        together), or None for any other error. Default: the role a :class:`~evaluators.statistic.RowsError` names
        (a ranking query or a detection image on rows that do not go together), ``weights`` for weights whose exact
        sums would overflow (:class:`~evaluators.kernels.WeightRangeError`), else None."""
        from evaluators.kernels import WeightRangeError
        from evaluators.statistic import RowsError

        if isinstance(error, RowsError):
            return error.role
        return "weights" if isinstance(error, WeightRangeError) else None
