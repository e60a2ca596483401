"""A run as plain text for the terminal: metric rows filtered by point and metric, the table ``evalpipe run``
and ``evalpipe show`` print (vectors collapsed), and the column layout of the other listings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TextIO

from pipelines.records import Run


def format_value(value: float | None) -> str:
    """A metric value for a terminal: integers whole, at most six decimals, ``6g`` for very large or small."""
    if value is None:
        return ""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.6g}"
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _vector_group(key: str) -> tuple[str, str] | None:
    """``("confusion_matrix[…]", "")``-style group of a vector entry ``name[i]rest``; None for a scalar."""
    if "[" not in key or "]" not in key:
        return None
    head, tail = key.split("[", 1)
    return head, tail.split("]", 1)[1]


def metric_rows(
    run: Run, metrics: Sequence[str] | None = None, points: Sequence[str] | None = None
) -> list[tuple[str, str, float, float | None, float | None]]:
    """``(point, metric, value, lower, upper)`` of ``run``, filtered by point names and metric keys or base
    names (``f1_score`` selects ``f1_score[2]``; ``roc_auc`` selects ``roc_auc.error_bound``)."""
    if metrics or points:
        from pipelines.results import check_names  # polars: only when there are names to check

        check_names(run, metrics, points)
    wanted = set(metrics) if metrics else None
    rows = []
    for point in run.points:
        if points and point.name not in points:
            continue
        for name, metric in point.metrics.items():
            bases = {name, name.split("[", 1)[0], name.split("[", 1)[0].split(".", 1)[0]}
            if wanted is None or bases & wanted:
                rows.append((point.name, name, metric.value, metric.lower, metric.upper))
    return rows


def format_run(
    run: Run,
    max_metrics: int = 200,
    *,
    expand: bool = False,
    metrics: Sequence[str] | None = None,
    points: Sequence[str] | None = None,
) -> str:
    """A plain text table: point, metric, value, interval. Vector entries (``name[i]``) collapse into one
    row per vector (its length and first values) unless ``expand``."""
    entries: list[tuple[str, str, str, str]] = []
    vectors: dict[tuple[str, str], list[float]] = {}
    shown = hidden = 0
    for point, name, value, lower, upper in metric_rows(run, metrics, points):
        group = None if expand else _vector_group(name)
        if group is not None:
            label = f"{group[0]}[…]{group[1]}"
            if (point, label) not in vectors:
                vectors[(point, label)] = []
                entries.append((point, label, "", ""))
            vectors[(point, label)].append(value)
            continue
        if shown >= max_metrics:
            hidden += 1
            continue
        interval = f"[{format_value(lower)}, {format_value(upper)}]" if lower is not None and upper is not None else ""
        entries.append((point, name, format_value(value), interval))
        shown += 1
    table = [("point", "metric", "value", "interval")]
    for point, name, value, interval in entries:
        values = vectors.get((point, name))
        if values is not None:
            first = ", ".join(format_value(v) for v in values[:4])
            value = f"{len(values)} values: {first}{', …' if len(values) > 4 else ''}"
        table.append((point, name, value, interval))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if hidden:
        lines.append(f"... {hidden} more values in metrics.parquet (evalpipe show RUN --metric NAME selects some)")
    if vectors:
        lines.append(f"({len(vectors)} vectors collapsed: evalpipe show RUN --all lists every entry)")
    return "\n".join(lines)


def write_table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    """``rows`` (the first: the header) as left-aligned columns, a dashed line under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
