"""A run as plain text for the terminal: metric rows filtered by point and metric, the table ``evalpipe run``
and ``evalpipe show`` print (vectors collapsed), the comparison ``evalpipe compare`` prints, and the column layout
of the other listings."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from evaluators.task import counted
from pipelines.metric_names import check_names
from pipelines.records import MetricDirection, Run, declared_keys, selects

if TYPE_CHECKING:
    from pipelines.results import Comparison


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


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_LINE_BREAKING = ("Cc", "Zl", "Zp")
"""Unicode categories written as escapes: control characters (newline, tab, NUL, ESC) and line separators."""


def terminal_text(text: str) -> str:
    """``text`` with control characters and line separators written as escapes (``\\n``, ``\\x00``,
    ``\\u2028``), so that a slice value holding a newline or a NUL keeps a table's rows and an error's line whole;
    other text (spaces of any kind, joiners, emoji) as it is."""
    if text.isprintable():
        return text
    return "".join(_escaped(c) if unicodedata.category(c) in _LINE_BREAKING else c for c in text)


def _escaped(c: str) -> str:
    return _ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def _vector_group(key: str, declared: frozenset[str] = frozenset()) -> tuple[str, str] | None:
    """``("confusion_matrix", "")``-style group of a vector entry ``name[i]rest``; None for a scalar. A key the spec
    declares (``as: auc[main]``) is a scalar, and its own ``[i]`` values group under it."""
    own = max((d for d in declared if key == d or key.startswith((d + "[", d + "."))), key=len, default="")
    rest = key[len(own) :]  # (what follows a declared key: its [i] values, its .parts)
    if "[" not in rest:
        return None
    head, tail = rest.split("[", 1)
    return own + head, tail.split("]", 1)[1] if "]" in tail else ""


def metric_rows(
    run: Run, metrics: Sequence[str] | None = None, points: Sequence[str] | None = None
) -> list[tuple[str, str, float, float | None, float | None]]:
    """``(point, metric, value, lower, upper)`` of ``run``, filtered by point names and metric keys or base
    names (``f1_score`` selects ``f1_score[2]``; ``roc_auc`` selects ``roc_auc.error_bound``)."""
    if metrics or points:
        check_names(run, metrics, points)
    wanted = set(metrics) if metrics else None
    rows = []
    for point in run.points:
        if points and point.name not in points:
            continue
        for name, metric in point.metrics.items():
            if wanted is None or any(selects(w, name) for w in wanted):
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
    declared = declared_keys(run)
    for point, name, value, lower, upper in metric_rows(run, metrics, points):
        group = None if expand else _vector_group(name, declared)
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
    table = [tuple(terminal_text(cell) for cell in row) for row in table]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if hidden:
        lines.append(f"... {hidden} more values in metrics.parquet (evalpipe show RUN --metric NAME selects some)")
    if vectors:
        lines.append(f"({counted(len(vectors), 'vector')} collapsed: evalpipe show RUN --all lists every entry)")
    return "\n".join(lines)


def with_article(word: str) -> str:
    """``a binary``, ``an image``."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def write_table(rows: list[tuple[str, ...]], out: TextIO, *, rule: bool = True) -> None:
    """``rows`` (the first: the header) as left-aligned columns, a dashed line under the header (``rule``)."""
    rows = [tuple(terminal_text(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if i == 0 and rule:
            out.write("  ".join("-" * w for w in widths) + "\n")


def not_compared(
    baseline: Run, current: Run, metrics: Sequence[str] | None = None, points: Sequence[str] | None = None
) -> list[str]:
    """Lines naming what one run has and the other lacks, among the ``metrics`` and ``points`` selected as
    :func:`~pipelines.results.compare_all` selects them: points, and ranked metrics at points both runs have (a
    metric that disappeared from the current run, or is new in it)."""
    lines = []
    for run, other, side in ((baseline, current, "the baseline"), (current, baseline, "the current run")):
        others = {p.name: p for p in other.points}
        chosen = [p for p in run.points if not points or p.name in points]
        alone = [p.name for p in chosen if p.name not in others]
        if alone:
            lines.append(f"not compared: point{'s' * (len(alone) > 1)} {_few(alone)}, only in {side}")
        gone: dict[str, list[str]] = {}
        for point in (p for p in chosen if p.name in others):
            for key in point.metrics:
                definition = run.metric_defs.get(key)
                name = key.split("[", 1)[0]
                if (
                    key in others[point.name].metrics
                    or definition is None
                    or definition.direction is MetricDirection.INFO
                    or (metrics and key not in metrics and name not in metrics)
                ):
                    continue
                gone.setdefault(name, [])
                if point.name not in gone[name]:
                    gone[name].append(point.name)
        for name, at in gone.items():
            lines.append(f"not compared: metric {name}, only in {side} (at {_few(at)})")
    return lines


def _few(names: Sequence[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def write_comparisons(comparisons: Sequence[Comparison], notes: Sequence[str], every: bool, out: TextIO) -> None:
    """The regressed comparisons (``every``: all of them) as a table, then ``notes`` and the counts. A value
    defined in one run only shows ``worse by`` as ``now NaN`` (it regressed) or ``was NaN``."""
    rows = [("point", "metric", "baseline", "current", "worse by", "p", "")]
    for c in comparisons:
        if not (every or c.regressed):
            continue
        p = "" if c.significance is None else f"{c.significance.p_value:.3g}"
        worse = f"{c.worse_by + 0.0:.3g}" if not math.isnan(c.worse_by) else ("now NaN" if c.regressed else "was NaN")
        row = (c.point, c.metric, format_value(c.baseline), format_value(c.current), worse, p)
        rows.append((*row, "REGRESSED" if c.regressed else ""))
    if len(rows) > 1:
        write_table(rows, out, rule=False)
    for note in notes:
        out.write(terminal_text(note) + "\n")
    out.write(f"{len(comparisons)} metrics compared, {sum(c.regressed for c in comparisons)} regressed\n")
