"""HTML pages of the results site, rendered from its index alone (see :mod:`pipelines.site_index`).

Pages are self-contained: inline CSS, inline SVG drawn here (sparklines, trends with their interval band), no
script and no URL outside the site. Colours follow the Okabe-Ito palette (line blue ``#0072B2``, band sky
blue, regressions vermillion ``#D55E00`` *and* a downward triangle, so no reading depends on colour); the
heatmap uses matplotlib's ``cividis`` colour map, made for colour-blind readers, with each value printed in its
cell. Every value shown as a point of a trend carries it unrounded in ``data-value`` / ``data-lower`` /
``data-upper`` attributes, with ``data-run-id``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from matplotlib import colormaps

from pipelines.report import _CSS, format_number
from pipelines.site_index import OVERALL, Change, JobIndex, RunSummary, SiteIndex

HEATMAP_RUNS = 30
"""Nights (newest) shown in the slice heatmap; the trend shows every run."""
SPARKLINE_RUNS = 30
BLUE, SKY, VERMILLION, GREY = "#0072B2", "#56B4E9", "#D55E00", "#6e7781"

_SITE_CSS = """
main { max-width: 1240px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.name a { color: #0550ae; }
.regressed { color: #a63c00; font-weight: 600; }
.trends { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 380px), 1fr)); gap: 1rem; }
.trends figure { border: 1px solid #d0d7de; padding: 0.4rem; }
svg.trend { width: 100%; height: auto; display: block; }
svg.spark { width: 120px; height: 28px; vertical-align: middle; }
table.heatmap td { min-width: 4.2rem; }
table.heatmap td.name, table.heatmap th.name { position: sticky; left: 0; background: #fff; z-index: 1; }
nav { font-size: 0.9rem; margin-bottom: 0.5rem; }
@media (max-width: 640px) {
  main { padding: 0.75rem; }
  th, td { padding: 0.25rem 0.35rem; }
  .wide { display: none; }
  table.jobs, table.jobs tbody, table.jobs tr, table.jobs td { display: block; width: auto; }
  table.jobs thead { display: none; }
  table.jobs tr { border: 1px solid #d0d7de; margin-bottom: 0.5rem; }
  table.jobs td { border: none; text-align: left; white-space: normal; }
  table.jobs td[data-label]::before { content: attr(data-label) ": "; font-weight: 600; color: #57606a; }
  table.jobs .ci { display: inline; margin-left: 0.4rem; }
  table.runs td.name { word-break: break-all; white-space: normal; }
}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _attr(value: float | None) -> str:
    """A float as an attribute value that parses back to the same double (``repr``); empty for None."""
    return "" if value is None else repr(float(value))


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}{_SITE_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def series(job: JobIndex, metric: str, point: str = OVERALL) -> list[tuple[RunSummary, tuple]]:
    """``(run, (value, lower, upper))`` of every run of ``job`` with ``metric`` at ``point``, oldest first."""
    found = [(run, run.values.get(point, {}).get(metric)) for run in job.runs]
    return [(run, triple) for run, triple in found if triple is not None]


# --- SVG ----------------------------------------------------------------------------------------


def _triangle(x: float, y: float, size: float) -> str:
    return f"{x - size:.1f},{y - size:.1f} {x + size:.1f},{y - size:.1f} {x:.1f},{y + size:.1f}"


def sparkline(values: Sequence[float | None], regressed: Sequence[bool], label: str) -> str:
    """A 120 x 28 px inline SVG polyline of ``values`` (oldest first); a triangle marks a regressed last value."""
    width, height, pad = 120.0, 28.0, 4.0
    finite = [v for v in values if _finite(v)]
    if len(finite) < 1:
        return ""
    low, high = min(finite), max(finite)
    span = high - low or 1.0
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    coords = [
        (pad + i * step, height - pad - (v - low) / span * (height - 2 * pad))
        for i, v in enumerate(values)
        if _finite(v)
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    x, y = coords[-1]
    end = (
        f'<polygon class="regression" points="{_triangle(x, y, 3.5)}" fill="{VERMILLION}"/>'
        if regressed and regressed[-1]
        else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{BLUE}"/>'
    )
    return (
        f'<svg class="spark" viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_e(label)}">'
        f'<polyline points="{line}" fill="none" stroke="{BLUE}" stroke-width="1.5"/>{end}</svg>'
    )


def trend_svg(job: JobIndex, metric: str, point: str = OVERALL) -> str:
    """The trend of ``metric`` at ``point`` over every run: value line, interval band, regression triangles.

    x is the run's position (one step per run, oldest left), y the metric's units; the first and last run's
    dates label the x axis, the lowest, middle and highest value the y axis.
    """
    width, height, left, right, top, bottom = 480.0, 210.0, 64.0, 10.0, 10.0, 28.0
    points = series(job, metric, point)
    numbers = [v for _, t in points for v in t if _finite(v)]
    if not numbers:
        return '<p class="note">No finite value.</p>'
    low, high = min(numbers), max(numbers)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
    low, high = low - pad, high + pad
    step = (width - left - right) / max(len(points) - 1, 1)

    def x(i: int) -> float:
        return left + i * step if len(points) > 1 else (left + width - right) / 2

    def y(v: float) -> float:
        return top + (high - v) / (high - low) * (height - top - bottom)

    band_top = [(x(i), y(t[2])) for i, (_, t) in enumerate(points) if _finite(t[1]) and _finite(t[2])]
    band_bottom = [(x(i), y(t[1])) for i, (_, t) in enumerate(points) if _finite(t[1]) and _finite(t[2])]
    band = " ".join(f"{a:.1f},{b:.1f}" for a, b in [*band_top, *reversed(band_bottom)])
    line = " ".join(f"{x(i):.1f},{y(t[0]):.1f}" for i, (_, t) in enumerate(points) if _finite(t[0]))
    parts = [f'<polygon class="band" points="{band}" fill="{SKY}" fill-opacity="0.35"/>' if band else ""]
    parts.append(f'<polyline points="{line}" fill="none" stroke="{BLUE}" stroke-width="2"/>')
    for i, (run, (value, lower, upper)) in enumerate(points):
        change = run.changes.get(point, {}).get(metric)
        regressed = change is not None and change.regressed
        tip = f"{run.run_id}: {format_number(value)}"
        if _finite(lower) and _finite(upper):
            tip += f" [{format_number(lower)}, {format_number(upper)}]"
        tip += " (regressed)" if regressed else ""
        data = (
            f'data-run-id="{_e(run.run_id)}" data-value="{_attr(value)}" data-lower="{_attr(lower)}" '
            f'data-upper="{_attr(upper)}" data-regressed="{str(regressed).lower()}"'
        )
        cy = y(value) if _finite(value) else height - bottom
        if regressed:
            shape = f'<polygon points="{_triangle(x(i), cy, 7.0)}" fill="{VERMILLION}" stroke="#fff"/>'
        else:
            shape = f'<circle cx="{x(i):.1f}" cy="{cy:.1f}" r="4" fill="{BLUE}" stroke="#fff"/>'
        parts.append(
            f'<g class="{"point regression" if regressed else "point"}" {data}><title>{_e(tip)}</title>{shape}</g>'
        )
    axis = [f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="{GREY}"/>']
    for v in (low + pad, (low + high) / 2, high - pad):
        axis.append(
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="14" fill="#1f2328">'
            f"{_e(format_number(v))}</text>"
            f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" stroke="#d0d7de" '
            'stroke-dasharray="3 3"/>'
        )
    first, last = points[0][0].timestamp[:10], points[-1][0].timestamp[:10]
    axis.append(f'<text x="{left}" y="{height - 8}" font-size="14" fill="#1f2328">{_e(first)}</text>')
    axis.append(
        f'<text x="{width - right}" y="{height - 8}" text-anchor="end" font-size="14" fill="#1f2328">{_e(last)}</text>'
    )
    regressions = sum(p.regressed(point, metric) for p, _ in points)
    label = f"{metric} ({point}) over {len(points)} runs, {regressions} regressed"
    return (
        f'<svg class="trend" data-metric="{_e(metric)}" data-point="{_e(point)}" viewBox="0 0 {width:.0f} '
        f'{height:.0f}" role="img" aria-label="{_e(label)}"><title>{_e(label)}</title>{"".join(axis)}'
        f"{''.join(parts)}</svg>"
    )


# --- tables -------------------------------------------------------------------------------------


def _change_cells(change: Change | None) -> str:
    if change is None:
        return '<td class="num" data-label="change">–</td><td class="num" data-label="significance">–</td><td>–</td>'
    sign = "−" if change.worse_by > 0 else "+"  # worse_by > 0: worse, shown as a loss in the metric's sense
    delta = f"{sign}{format_number(abs(change.worse_by))}" if change.worse_by else "0"
    if math.isnan(change.worse_by):  # defined in one of the two runs only: no difference, no test
        delta, significance = ("now NaN" if change.regressed else "was NaN"), "–"
    elif change.p_value is not None:
        significance = f"p = {change.p_value:.3g}"
    elif change.significant is not None:
        significance = "outside interval" if change.significant else "within interval"
    else:
        significance = "–"
    verdict = (
        '<span class="regressed">▼ regressed</span>'
        if change.regressed
        else ("better" if change.worse_by < 0 else "ok")
    )
    return (
        f'<td class="num" data-label="change">{_e(delta)}</td><td class="num" data-label="significance">{_e(significance)}</td>'
        f'<td class="name" data-regressed="{str(change.regressed).lower()}">{verdict}</td>'
    )


def _value_cell(triple: tuple | None) -> str:
    if triple is None:
        return '<td class="num" data-label="latest">–</td>'
    value, lower, upper = triple
    interval = (
        f'<span class="ci">[{_e(format_number(lower))}, {_e(format_number(upper))}]</span>'
        if _finite(lower) and _finite(upper)
        else ""
    )
    return f'<td class="num" data-label="latest" data-value="{_attr(value)}">{_e(format_number(value))}{interval}</td>'


def index_page(index: SiteIndex) -> str:
    """Every job: the latest value of each primary metric (overall), its change against the previous run with
    the change's significance, and a sparkline of the last runs."""
    rows = []
    for name, job in sorted(index.jobs.items()):
        if not job.runs:
            continue
        latest = job.runs[-1]
        for k, metric in enumerate(job.primary_metrics()):
            recent = series(job, metric)[-SPARKLINE_RUNS:]
            spark = sparkline(
                [t[0] for _, t in recent], [r.regressed(OVERALL, metric) for r, _ in recent], f"{metric} trend"
            )
            first = (
                f'<td class="name" rowspan="{len(job.primary_metrics())}"><a href="jobs/{_e(name)}.html">{_e(name)}</a>'
                f'<span class="ci">{len(job.runs)} runs, latest {_e(latest.timestamp[:16].replace("T", " "))} UTC</span></td>'
                if k == 0
                else ""
            )
            rows.append(
                f'<tr data-job="{_e(name)}" data-metric="{_e(metric)}">{first}<td class="name" data-label="metric">{_e(metric)}</td>'
                f"{_value_cell(latest.values.get(OVERALL, {}).get(metric))}"
                f'{_change_cells(latest.changes.get(OVERALL, {}).get(metric))}<td class="spark">{spark}</td></tr>'
            )
    table = (
        '<div class="scroll"><table class="jobs"><thead><tr><th class="name">job</th><th class="name">metric</th>'
        '<th class="num">latest (overall)</th><th class="num">change</th><th class="num">significance</th>'
        f'<th class="name">status</th><th class="name">last {SPARKLINE_RUNS} runs</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    note = (
        "<p class=\"note\">Change: against the job's previous run, in the metric's units, + better, − worse. "
        "Significance: the paired bootstrap p-value where both runs kept replicates, else whether the previous "
        "value lies outside the latest run's interval. ▼ regressed: worse beyond the job's gate tolerance and "
        "not found insignificant.</p>"
    )
    return _document("evalpipe results", f"<h1>evalpipe results</h1>{table}{note}")


def _heatmap(job: JobIndex, metric: str) -> str:
    runs = [r for r in job.runs if any(metric in v for v in r.values.values())][-HEATMAP_RUNS:]
    points = [p for p in job.points if any(metric in r.values.get(p, {}) for r in runs)]
    numbers = [r.values[p][metric][0] for r in runs for p in points if metric in r.values.get(p, {})]
    numbers = [v for v in numbers if _finite(v)]
    if not runs or not numbers:
        return ""
    low, high = min(numbers), max(numbers)
    cmap = colormaps["cividis"]
    header = "".join(
        f'<th class="num" title="{_e(r.run_id)}">{_e(r.timestamp[5:10])}<span class="ci">{_e(r.run_id[9:15])}</span></th>'
        for r in runs
    )
    body = []
    for p in points:
        cells = []
        for r in runs:
            triple = r.values.get(p, {}).get(metric)
            if triple is None or not _finite(
                triple[0]
            ):  # (a value that became NaN regressed: marked as compare marks it)
                regressed = triple is not None and r.regressed(p, metric)
                mark = ' class="num regressed">▼ NaN' if regressed else ' class="num">–'
                cells.append(f"<td{mark}</td>")
                continue
            red, green, blue, _ = cmap((triple[0] - low) / (high - low) if high > low else 0.5)
            ink = "#000" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "#fff"
            colour = f"#{int(red * 255):02x}{int(green * 255):02x}{int(blue * 255):02x}"
            mark = "▼ " if r.regressed(p, metric) else ""
            css = "num regressed" if mark else "num"
            cells.append(
                f'<td class="{css}" style="background:{colour};color:{ink}" data-run-id="{_e(r.run_id)}" '
                f'data-value="{_attr(triple[0])}">{mark}{_e(format_number(triple[0]))}</td>'
            )
        body.append(f'<tr data-point="{_e(p)}"><td class="name">{_e(p)}</td>{"".join(cells)}</tr>')
    return (
        f'<section id="heatmap"><h2>{_e(metric)} by slice and night</h2><p class="note">The last {len(runs)} runs '
        f"(month-day of the night each stands for, then its start time); colour from low ({_e(format_number(low))}, dark blue) to high "
        f"({_e(format_number(high))}, yellow); ▼ regressed against the run before.</p>"
        f'<div class="scroll"><table class="heatmap"><thead><tr><th class="name">point</th>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></section>"
    )


def _id_time(run_id: str) -> str:
    """``2026-11-23 14:12:33`` from a run id ``20261123T141233123Z-...`` (ids begin with their UTC time)."""
    stamp = run_id[:15]
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"


def _runs_table(job: JobIndex) -> str:
    rows: list[tuple[str, str]] = []
    for r in job.runs:
        link = f'<a href="../{_e(r.report)}">{_e(r.run_id)}</a>' if r.report else _e(r.run_id)
        status = f'<span class="regressed">▼ {_e(r.status)}</span>' if r.status == "regressed" else _e(r.status)
        rows.append(  # (a log of the runs as they ran, newest first, failed ones among them: a backfill at its start)
            (
                r.run_id,
                f'<tr data-run-id="{_e(r.run_id)}"><td class="name">{link}</td>'
                f'<td class="num wide">{_e(_id_time(r.run_id))}</td>'
                f'<td class="name"><code>{_e((r.commit or "–")[:10])}</code></td>'
                f'<td class="num">{_e(format_number(r.rows))}</td><td class="name">{status}</td>'
                f'<td class="num">{r.regressions}</td></tr>',
            )
        )
    for f in job.failures:
        rows.append(
            (
                f.run_id,
                f'<tr data-run-id="{_e(f.run_id)}" class="failed"><td class="name">{_e(f.run_id)}</td>'
                f'<td class="num wide">{_e(_id_time(f.run_id))}</td><td class="name">–</td><td class="num">–</td>'
                f'<td class="name regressed" title="{_e(f.error or "")}">✕ {_e(f.status)} (exit {f.exit_code})</td>'
                '<td class="num">–</td></tr>',
            )
        )
    rows.sort(reverse=True)
    return (
        '<section id="runs"><h2>Runs</h2><div class="scroll"><table class="runs"><thead><tr>'
        '<th class="name">run id (report)</th><th class="num wide">time (UTC)</th><th class="name">commit</th>'
        '<th class="num">rows</th><th class="name">outcome</th><th class="num">regressed</th></tr></thead>'
        f"<tbody>{''.join(row for _, row in rows)}</tbody></table></div></section>"
    )


def job_page(name: str, job: JobIndex) -> str:
    """One job: the trend of every ranked metric (overall point), the slice x night heatmap of its first primary
    metric, and the runs table linking to each run's report."""
    trends = "".join(
        f"<figure>{trend_svg(job, metric)}<figcaption>{_e(metric)} (overall)</figcaption></figure>"
        for metric in job.metrics
        if series(job, metric)
    )
    primary = job.primary_metrics()
    body = (
        f'<nav><a href="../index.html">← all jobs</a></nav><h1>{_e(name)}</h1>'
        f'<section id="trends"><h2>Trends</h2><p class="note">Each metric of the whole dataset over the '
        f"{len(job.runs)} runs, oldest left: line the value, band the run's interval, ▼ a regression against "
        f'the run before.</p><div class="trends">{trends}</div></section>'
        f"{_heatmap(job, primary[0]) if primary else ''}{_runs_table(job)}"
    )
    return _document(f"evalpipe results: {name}", body)
