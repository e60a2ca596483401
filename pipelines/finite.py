"""The last check before a run is committed: no NaN, inf or undefined total reaches a published value.

Bad inputs are refused where they enter (:func:`evaluators.task.find_bad_rows`, the user-function and
backbone-feature checks of the worker); this module checks the merged result once more, so that no path
(an overflow, a user statistic, a value that slipped through) commits a non-finite number:

* every floating leaf of every merged state is finite, except the ``lo`` / ``hi`` extremes of a statistic
  that saw no row (``+inf`` / ``-inf`` by construction), and never NaN (but for the leaves a statistic names in
  ``undefined_leaves``, where NaN is a marker);
* every metric value of every point is finite or NaN (NaN only where the metric's definition leaves the
  value undefined, e.g. the recall of a class absent from the targets), never ``+-inf``;
* a job that reads a ``weights`` column has a positive total weight (with all weights 0, every metric is
  undefined: scikit-learn refuses such weights too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from evaluators.kernels import ValueRangeError, WeightRangeError, refuse_unbounded_total
from evaluators.statistic import State, Statistic, nonfinite_leaf
from pipelines.errors import DataError
from pipelines.records import slice_name


def check_states(
    statistics: Sequence[Statistic],
    merged: Mapping[Any, Sequence[State]],
    metric_keys: Mapping[Statistic, str],
    weights_column: str | None = None,
    rows: Mapping[Any, int] | None = None,
) -> None:
    """Raise :class:`DataError` when a merged state holds NaN, or inf outside the ``lo`` / ``hi`` extremes.

    Args:
        statistics: the accumulator's statistics, in state order.
        merged: slice key -> one state per statistic.
        metric_keys: statistic -> the metric key(s) reading it, for the message.
        weights_column: the job's weights column (``data.columns.weights``), for the message.
        rows: slice key -> its rows, for the weights too light for a fixed-point sum
            (:meth:`~evaluators.statistic.Statistic.refuse_light`).
    """
    for key, states in merged.items():
        for statistic, state in zip(statistics, states, strict=True):
            try:
                statistic.refuse_merged(state)
                if rows is not None and key in rows:
                    statistic.refuse_light(state, int(rows[key]))
            except WeightRangeError as exc:
                name = metric_keys.get(statistic, type(statistic).__name__)
                where = slice_name(key)
                column = f"column {weights_column!r} (data.columns.weights)" if weights_column else "the weights"
                raise DataError(f"metric {name} ({where}), {column}: {exc}.") from None
            except ValueRangeError as exc:
                name = metric_keys.get(statistic, type(statistic).__name__)
                raise DataError(f"metric {name} ({slice_name(key)}): {exc}; nothing is committed.") from None
            found = nonfinite_leaf(statistic, state)
            if found is not None:
                path, kind = found
                name = metric_keys.get(statistic, type(statistic).__name__)
                where = slice_name(key)
                raise DataError(
                    f"metric {name} ({where}): its merged statistic holds {kind} in {path}; a value computed "
                    "from it would be wrong, so nothing is committed. Its inputs passed the row checks: look for "
                    "values beyond float64's range (squares above 1e308) in the columns it reads, or a user "
                    "statistic's update."
                )


def statistic_keys(metrics: Sequence[tuple[Any, Any]]) -> dict[Statistic, str]:
    """Statistic -> the keys of the metrics (``(MetricSpec, DerivedMetric)`` pairs) that read it, joined."""
    out: dict[Statistic, list[str]] = {}
    for spec, metric in metrics:
        out.setdefault(metric.statistic, []).append(repr(spec.key))
    return {statistic: " / ".join(keys) for statistic, keys in out.items()}


def check_values(points: Sequence[Any]) -> None:
    """Raise :class:`DataError` when a point's metric value is ``+-inf`` (NaN is an undefined value, allowed)."""
    for point in points:
        for key, metric in point.metrics.items():
            value = metric.value
            if isinstance(value, float) and math.isinf(value):
                raise DataError(
                    f"metric {key!r} of point {point.name!r} is {value}: not a value a run can publish, so nothing "
                    "is committed; the rows it reads hold values beyond float64's range."
                )


def check_weight_total(
    weights_column: str | None, total: float | None, rows: int, ignore_index: int | None = None
) -> None:
    """Raise :class:`DataError` when a job counted ``rows > 0`` rows of total weight 0 (``total`` None: unknown, e.g. a
    unit resumed from an older checkpoint): every weight 0, or every target ``ignore_index`` (``task.ignore_index``), so
    that every metric is undefined; or rows whose weights add up past float64's range (every weighted mean would read
    inf / inf)."""
    if (weights_column is None and ignore_index is None) or total is None or rows == 0:
        return
    try:
        refuse_unbounded_total(total)
    except WeightRangeError as exc:
        raise DataError(f"column {weights_column!r} (data.columns.weights): {exc}.") from None
    if total > 0:
        return
    if weights_column is None:
        raise DataError(
            f"task.ignore_index: all {rows} rows have only the target {ignore_index} (in every label or pixel), which "
            "the task ignores, so every metric is undefined; nothing is committed. Check the targets column, or the "
            "ignore_index."
        )
    ignoring = f" or the target {ignore_index} (task.ignore_index)" if ignore_index is not None else ""
    raise DataError(
        f"column {weights_column!r} (data.columns.weights): all {rows} rows have weight 0{ignoring}, so every metric "
        "is undefined (a weighted mean of nothing); give some rows a positive weight."
    )


def check_rows_left(rows: int, dropped: int, reasons: Mapping[str, int]) -> None:
    """Raise :class:`DataError` when ``data.on_bad_rows: drop`` left out every row read (``rows`` left, ``dropped``
    left out, ``reasons``: rows by reason): every metric would be undefined, as with no rows at all."""
    if rows > 0 or dropped == 0:
        return
    why = "; ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
    raise DataError(
        f"data.on_bad_rows: drop left out all {dropped} rows read ({why}), so every metric is undefined; nothing "
        "is committed. Fix the data, or read it with on_bad_rows: fail to see the first bad rows named."
    )
