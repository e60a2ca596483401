"""How a :class:`~pipelines.records.Run` shows itself in a notebook (``Run._repr_html_``)."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.records import Run

MAX_ROWS = 60
"""Rows of the metric table before it is cut (the rest: ``run.points`` or ``evalpipe show``)."""


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.6g}"


def run_html(run: Run) -> str:
    """An HTML summary: id, job, time, commit and rows, then one row per point and metric (vector entries
    ``name[i]`` collapsed into one row with their count), with intervals when the run has them."""
    meta = run.metadata
    head = (
        f"<b>Run</b> <code>{html.escape(run.id)}</code> · job <code>{html.escape(str(meta.get('job', '?')))}</code>"
        f" · {html.escape(run.timestamp.isoformat(timespec='seconds'))} · commit "
        f"<code>{html.escape((run.commit or '-')[:10])}</code> · {html.escape(str(meta.get('rows', '?')))} rows"
    )
    entries: list[tuple[str, str, str, str]] = []
    vectors: dict[tuple[str, str], int] = {}
    for point in run.points:
        for name, metric in point.metrics.items():
            if "[" in name:
                key = (point.name, f"{name.split('[', 1)[0]}[…]")
                if key not in vectors:
                    entries.append((*key, "", ""))
                vectors[key] = vectors.get(key, 0) + 1
                continue
            interval = (
                f"[{_number(metric.lower)}, {_number(metric.upper)}]"
                if metric.lower is not None and metric.upper is not None
                else ""
            )
            entries.append((point.name, name, _number(metric.value), interval))
    rows = [
        "<tr>"
        + "".join(
            f"<td>{html.escape(c)}</td>"
            for c in (point, name, f"{vectors[(point, name)]} values" if (point, name) in vectors else value, interval)
        )
        + "</tr>"
        for point, name, value, interval in entries
    ]
    cut = len(rows) - MAX_ROWS
    body = "".join(rows[:MAX_ROWS])
    more = f"<p>… {cut} more rows (<code>evalpipe show</code> lists them)</p>" if cut > 0 else ""
    return (
        f"<div><p>{head}</p><table><thead><tr><th>point</th><th>metric</th><th>value</th><th>interval</th></tr>"
        f"</thead><tbody>{body}</tbody></table>{more}</div>"
    )
