"""The ``slices:`` section: slice entries (a column, a cross of columns, buckets, quantile buckets or a filter)
-> :class:`~pipelines.slicing.SliceSpec`."""

from __future__ import annotations

import datetime as dt
import math

from pipelines.errors import SpecError
from pipelines.slicing import FILTER_OPS, Condition, SliceSpec, cross_label
from pipelines.spec_yaml import Section, check_range, describe, suggest


def read_slices(root: Section) -> tuple[SliceSpec, ...]:
    """The ``slices:`` list of ``root``, in order; names unique, one entry per column (or cross)."""
    root.allowed.append("slices")
    raw = root.value.get("slices")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError(f"{root.where('slices')}: expected a list of slice entries, got {describe(raw)}.")
    out: list[SliceSpec] = []
    names: set[str] = set()
    bucketed: dict[tuple[str, ...], int] = {}
    for i, entry in enumerate(raw):
        sec = Section(root.source, ("slices", i), entry, "a mapping with `column`, `columns` or `filter`")
        column = sec.get("column", str)
        columns = sec.get("columns", list)
        filters = sec.get("filter", dict)
        boundaries = sec.get("boundaries", list)
        quantiles = sec.get("quantiles", int)
        name = sec.get("name", str)
        min_count = sec.get("min_count", int, 0)
        max_slices = sec.get("max_slices", int, 100)
        sec.finish()
        given = [k for k, v in (("column", column), ("columns", columns), ("filter", filters)) if v is not None]
        if len(given) != 1:
            raise SpecError(
                f"{sec.where()}: give exactly one of `column`, `columns` or `filter`; got {given or 'none'}."
            )
        if columns is not None and (not columns or not all(isinstance(c, str) for c in columns)):
            raise SpecError(
                f"{sec.where('columns')}: expected a non-empty list of column names, got {describe(columns)}."
            )
        cols = (column,) if column else tuple(columns or ())
        twice = sorted({c for c in cols if cols.count(c) > 1})
        if twice:
            raise SpecError(
                f"{sec.where('columns')}: {', '.join(map(repr, twice))} appears twice; a cross names each column once "
                f"(points `{twice[0]}=<value>,...`)."
            )
        if boundaries is not None:
            if len(cols) != 1:
                raise SpecError(f"{sec.where('boundaries')}: buckets need exactly one `column`.")
            if (
                not boundaries
                or not all(
                    isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in boundaries
                )
                or sorted(boundaries) != boundaries
                or len(set(boundaries)) != len(boundaries)
            ):
                raise SpecError(
                    f"{sec.where('boundaries')}: expected increasing finite numbers, got {describe(boundaries)}."
                )
        if quantiles is not None:
            if len(cols) != 1 or boundaries is not None:
                raise SpecError(
                    f"{sec.where('quantiles')}: quantile buckets need exactly one `column` and no `boundaries`."
                )
            check_range(sec, "quantiles", quantiles, 1000, integer=True)
            if quantiles < 2:
                raise SpecError(f"{sec.where('quantiles')}: expected at least 2 buckets, got {quantiles}.")
        if filters is not None and not filters:
            raise SpecError(
                f"{sec.where('filter')}: expected at least one condition (`column: {{op: value}}`), got an empty mapping."
            )
        conditions: list[Condition] = []
        for col, cond in (filters or {}).items():
            path = ("slices", i, "filter", col)
            if not isinstance(cond, dict):
                cond = {"eq": cond}
            for op, value in cond.items():
                if op not in FILTER_OPS:
                    raise SpecError(
                        f"{root.source.where((*path, op))}: unknown filter operator {op!r}"
                        f"{suggest(str(op), FILTER_OPS)}; expected one of {', '.join(FILTER_OPS)}."
                    )
                if op in ("in", "not_in") and not isinstance(value, list):
                    raise SpecError(f"{root.source.where((*path, op))}: `{op}` needs a list, got {describe(value)}.")
                if not (all(map(_scalar, value)) if op in ("in", "not_in") else _scalar(value)):
                    raise SpecError(
                        f"{root.source.where((*path, op))}: expected a number, string, boolean or date"
                        f"{' in every element' if op in ('in', 'not_in') else ''}, got {describe(value)}."
                    )
                conditions.append(Condition(str(col), op, tuple(value) if isinstance(value, list) else value))
        check_range(sec, "max_slices", max_slices, 100_000, integer=True)
        check_range(sec, "min_count", min_count, 10**12, integer=True, allow_zero=True)
        label = name or (f"filter{i}" if filters else cross_label(cols))
        if label in names:
            raise SpecError(f"{sec.where()}: slice name {label!r} is used twice; give this entry `name:`.")
        names.add(label)
        if not filters:
            if cols in bucketed:
                raise SpecError(
                    f"{sec.where()}: column(s) {', '.join(cols)} are already sliced by entry {bucketed[cols]}; "
                    "one entry per column (or cross) of columns, since its slices are tagged by column name."
                )
            bucketed[cols] = i
        out.append(
            SliceSpec(
                label,
                () if filters else cols,
                tuple(float(b) for b in boundaries) if boundaries else None,
                quantiles,
                tuple(conditions),
                min_count,
                max_slices,
                i,
            )
        )
    _check_filter_column(root, out)
    return tuple(out)


def _check_filter_column(root: Section, entries: list[SliceSpec]) -> None:
    """Refuse a slice entry of one column named ``filter`` beside filter entries: both would name their points
    ``filter=<value>``."""
    filters = [e.name for e in entries if e.is_filter]
    sliced = next((e for e in entries if e.columns == ("filter",)), None)  # (a cross has a name of its own)
    if filters and sliced is not None:
        raise SpecError(
            f"{root.source.where(('slices', sliced.index))}: a column named `filter` cannot be sliced in a job with filter "
            f"entries ({', '.join(map(repr, filters))}): filter entries name their points `filter=<name>` (tags "
            "{filter: <name>}), and this column's slices would be named the same way; rename the column in the "
            "data, or evaluate the filter entries in a job of their own."
        )


def _scalar(value: object) -> bool:
    """A filter value a column's values can be compared with: a string, a number, a boolean or a YAML date."""
    return isinstance(value, str | int | float | bool | dt.date)
