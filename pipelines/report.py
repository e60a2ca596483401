"""A run as one self-contained HTML page: summary, metrics table, comparison with a baseline, figures.

The page needs nothing but itself: CSS is inline and figures are PNGs embedded as base64
``data:`` URIs, so it can be mailed, attached to a CI job or served from a bucket as is.

    >>> write_report(  # doctest: +SKIP
    ...     "s3://evals/results/nightly-ctr/20261123T141233123Z-5f2a9c",
    ...     "s3://evals/reports/nightly-ctr.html",
    ...     baseline_uri="s3://evals/results/nightly-ctr/20261122T141201456Z-0b13aa",
    ... )
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from pipelines import plots
from pipelines.records import Metric, MetricDirection, MetricPriority, Run, utc
from pipelines.results import Comparison, RunStatistics, compare_all, load_run, load_statistics
from pipelines.run_text import not_compared

MAX_INPUTS_LISTED = 20
ROWS_METRIC = "rows"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328;
       background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5rem; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
h2 { font-size: 1.15rem; margin: 2rem 0 0.6rem; border-bottom: 1px solid #d0d7de; padding-bottom: 0.3rem; }
dl.summary { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; margin: 0; }
dl.summary dt { font-weight: 600; color: #57606a; }
dl.summary dd { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.55rem; text-align: right; vertical-align: top;
         white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; }
table.metrics { font-size: 0.8rem; }
table.metrics th { white-space: normal; overflow-wrap: anywhere; hyphens: auto; }
table.metrics th, table.metrics td { padding: 0.25rem 0.4rem; }
td.name, th.name { text-align: left; }
tr.overall td { font-weight: 600; }
.ci { display: block; color: #6e7781; font-size: 0.8em; }
tr.regressed td { background: #ffebe9; color: #82071e; font-weight: 600; }
tr.improved td { background: #dafbe1; }
p.note { color: #57606a; font-size: 0.9rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 420px), 1fr)); gap: 1.5rem; }
figure { margin: 0; }
figure img { width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { font-size: 0.85rem; color: #57606a; margin-top: 0.25rem; }
"""


# --- loading ---------------------------------------------------------------------------------


def _statistics_or_none(run: Run, run_uri: str, storage_options: Mapping[str, Any] | None) -> RunStatistics | None:
    """The run's stored statistics, or None for a run written without them (or without the spec that reads them).

    Raises:
        UserError: a statistics file that does not read (damaged after the commit), naming it.
    """
    if not isinstance(run.metadata.get("spec"), Mapping):
        return None
    try:
        return load_statistics(run_uri, storage_options)
    except (FileNotFoundError, KeyError):
        return None


def render_report(
    run_uri: str,
    baseline_uri: str | None = None,
    *,
    tolerance: float | Mapping[str, float] = 0.0,
    storage_options: Mapping[str, Any] | None = None,
    force: bool = False,
) -> str:
    """The HTML page of the committed run at ``run_uri``, compared with ``baseline_uri`` if given (a run of the
    same job, unless ``force``).

    Sections: a summary (job, run id, UTC timestamp, commit, rows, inputs), a table of every point
    (rows) by every ranked metric (columns; value with its ``[lower, upper]`` interval), the
    comparison with the baseline (:func:`pipelines.results.compare_all` with ``tolerance``;
    regressions first and highlighted), and the figures that apply to the run's metrics:
    reliability, ROC, precision-recall, confusion matrix (from the stored statistics of the
    ``overall`` point) and the slices of the headline metric.
    """
    run = load_run(run_uri, storage_options)
    baseline = load_run(baseline_uri, storage_options) if baseline_uri is not None else None
    return render_loaded(run, run_uri, baseline, tolerance=tolerance, storage_options=storage_options, force=force)


def render_loaded(
    run: Run,
    run_uri: str,
    baseline: Run | None = None,
    *,
    tolerance: float | Mapping[str, float] = 0.0,
    storage_options: Mapping[str, Any] | None = None,
    force: bool = False,
) -> str:
    """:func:`render_report` of runs already read; ``run_uri`` locates the run's stored statistics."""
    comparisons = compare_all(baseline, run, tolerance, force=force) if baseline is not None else None
    stats = _statistics_or_none(run, run_uri, storage_options)
    return page(run, report_figures(run, stats), baseline, comparisons, tolerance, statistics=stats is not None)


def write_report(
    run_uri: str,
    output: str,
    baseline_uri: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    *,
    tolerance: float | Mapping[str, float] = 0.0,
    output_storage_options: Mapping[str, Any] | None = None,
    force: bool = False,
) -> None:
    """Render the report (see :func:`render_report`) and write it as UTF-8 to ``output``.

    ``output`` is a local path or any fsspec URL (``s3://...``); ``storage_options`` open the runs
    and, unless ``output_storage_options`` is given, the output too.
    """
    text = render_report(run_uri, baseline_uri, tolerance=tolerance, storage_options=storage_options, force=force)
    options = storage_options if output_storage_options is None else output_storage_options
    plots.write_bytes(output, text.encode("utf-8"), options)


# --- choosing what to show -------------------------------------------------------------------


def ranked_metrics(run: Run) -> list[str]:
    """Keys of the metrics with a direction (higher or lower is better), in the order the points
    list them; metrics without a definition count as ranked."""
    keys: dict[str, None] = {}
    for point in run.points:
        for key in point.metrics:
            definition = run.metric_defs.get(key)
            if key != ROWS_METRIC and (definition is None or definition.direction is not MetricDirection.INFO):
                keys[key] = None
    return list(keys)


def headline_metric(run: Run) -> str | None:
    """The first primary ranked metric, else the first ranked metric, else None."""
    ranked = ranked_metrics(run)
    primary = [k for k in ranked if k in run.metric_defs and run.metric_defs[k].priority is MetricPriority.PRIMARY]
    return (primary or ranked or [None])[0]


def report_figures(run: Run, stats: RunStatistics | None) -> list[tuple[str, Figure]]:
    """``(caption, figure)`` of every figure that applies to the run, in page order."""
    builders: list[tuple[str, Callable[[], Figure]]] = []
    if stats is not None:
        if plots.has_statistic(stats, "calibration"):
            builders.append(("Reliability diagram (overall)", lambda: plots.reliability_figure(stats)))
        if plots.has_statistic(stats, "ranking"):
            builders.append(("ROC curve (overall)", lambda: plots.roc_figure(stats)))
            builders.append(("Precision-recall curve (overall)", lambda: plots.precision_recall_figure(stats)))
        if plots.has_statistic(stats, "confusion"):
            builders.append(
                ("Confusion matrix (overall, by true class)", lambda: plots.confusion_figure(stats, normalize="true"))
            )
    headline = headline_metric(run)
    if headline is not None and len(plots.slice_values(run, headline)) > 1:
        builders.append((f"{headline} by slice", lambda: plots.slices_figure(run, headline)))
    return [(caption, build()) for caption, build in builders]


# --- HTML pieces -----------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def format_number(value: float | None) -> str:
    """A value for display: thousands separators for whole numbers, 4 decimals otherwise."""
    if value is None:
        return "–"
    value = float(value) + 0.0  # -0.0 shows as 0
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value.is_integer() and abs(value) >= 1:
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4f}"


def _metric_cell(metric: Metric | None) -> str:
    if metric is None:
        return "<td>–</td>"
    interval = ""
    if metric.lower is not None and metric.upper is not None:
        interval = f'<span class="ci">[{_e(format_number(metric.lower))}, {_e(format_number(metric.upper))}]</span>'
    return f"<td>{_e(format_number(metric.value))}{interval}</td>"


def _summary(run: Run, baseline: Run | None) -> str:
    meta = run.metadata
    items: list[tuple[str, object]] = [("job", meta.get("job", "")), ("run id", run.id)]
    if meta.get("description"):
        items.append(("description", meta["description"]))
    items.append(("timestamp", f"{utc(run.timestamp):%Y-%m-%d %H:%M:%S} UTC"))
    items.append(("commit", run.commit or "–"))
    if run.branch:
        items.append(("branch", run.branch))
    items.append(("rows", format_number(meta.get("rows"))))
    items.append(("inputs", f"{len(meta.get('inputs', []))} files"))
    bootstrap = meta.get("bootstrap")
    if bootstrap:
        items.append(
            ("intervals", f"{bootstrap.get('level', '')} bootstrap, {bootstrap.get('replicates', '')} replicates")
        )
    if run.environment.get("runner"):
        items.append(("runner", run.environment["runner"]))
    if baseline is not None:
        items.append(("baseline", f"{baseline.id} ({utc(baseline.timestamp):%Y-%m-%d %H:%M:%S} UTC)"))
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    return f'<section id="summary"><dl class="summary">{rows}</dl>{_inputs(meta.get("inputs", []))}</section>'


def _inputs(inputs: Sequence[Mapping[str, Any]]) -> str:
    if not inputs:
        return ""
    rows = "".join(
        f'<tr><td class="name">{_e(item.get("path", ""))}</td><td>{_e(format_number(item.get("rows")))}</td>'
        f"<td>{_e(format_number(item.get('size')))}</td></tr>"
        for item in inputs[:MAX_INPUTS_LISTED]
    )
    more = len(inputs) - MAX_INPUTS_LISTED
    note = f'<p class="note">… and {more} more files.</p>' if more > 0 else ""
    return (
        '<h2>Inputs</h2><div class="scroll"><table class="inputs"><thead><tr><th class="name">path</th>'
        f"<th>rows</th><th>bytes</th></tr></thead><tbody>{rows}</tbody></table></div>{note}"
    )


def _metrics_table(run: Run) -> str:
    keys = ranked_metrics(run)
    header = "".join(f"<th>{_e(k)}</th>" for k in (ROWS_METRIC, *keys))
    body = []
    for point in run.points:
        cells = "".join(_metric_cell(point.metrics.get(k)) for k in (ROWS_METRIC, *keys))
        css = ' class="overall"' if point.name == plots.OVERALL else ""
        body.append(f'<tr{css}><td class="name">{_e(point.name)}</td>{cells}</tr>')
    return (
        '<section id="metrics"><h2>Metrics</h2><p class="note">Value, with the confidence interval below it '
        'where the run computed one.</p><div class="scroll"><table class="metrics"><thead><tr>'
        f'<th class="name">point</th>{header}</tr></thead><tbody>{"".join(body)}</tbody></table></div></section>'
    )


def _comparison_row(c: Comparison) -> str:
    status = "regressed" if c.regressed else ("improved" if c.worse_by < 0 else "ok")
    css = f' class="{status}"' if status != "ok" else ""
    p_value = "–" if c.significance is None else f"{c.significance.p_value:.3g}"
    return (
        f'<tr{css} data-point="{_e(c.point)}" data-metric="{_e(c.metric)}"><td class="name">{_e(c.point)}</td>'
        f'<td class="name">{_e(c.metric)}</td><td>{_e(c.direction)}</td><td>{_e(format_number(c.baseline))}</td>'
        f"<td>{_e(format_number(c.current))}</td><td>{_e(format_number(c.worse_by))}</td><td>{_e(p_value)}</td>"
        f'<td class="name">{_e(status)}</td></tr>'
    )


def _tolerance_text(tolerance: float | Mapping[str, float]) -> str:
    if isinstance(tolerance, Mapping):
        return ", ".join(f"{k}: {v:g}" for k, v in tolerance.items()) or "0"
    return f"{float(tolerance):g}"


def _comparison(
    baseline: Run, run: Run, comparisons: Sequence[Comparison], tolerance: float | Mapping[str, float]
) -> str:
    ordered = sorted(comparisons, key=lambda c: not c.regressed)
    regressed = sum(c.regressed for c in comparisons)
    rows = "".join(_comparison_row(c) for c in ordered)
    lines = "".join(f"<li>{_e(line)}</li>" for line in not_compared(baseline, run))  # (what one run lacks)
    notes = f'<ul class="note">{lines}</ul>' if lines else ""
    return (
        f'<section id="comparison"><h2>Comparison with baseline {_e(baseline.id)}</h2>'
        f'<p class="note">{regressed} of {len(comparisons)} values regressed (worse than the baseline by more '
        f"than the tolerance, {_e(_tolerance_text(tolerance))}, and significant where both runs kept bootstrap "
        "replicates). <em>worse by</em> is in the metric's units; negative is better.</p>"
        '<div class="scroll"><table class="comparison"><thead><tr><th class="name">point</th>'
        '<th class="name">metric</th><th>direction</th><th>baseline</th><th>current</th><th>worse by</th>'
        f'<th>p-value</th><th class="name">status</th></tr></thead><tbody>{rows}</tbody></table></div>'
        f"{notes}</section>"
    )


def _figures(figures: Iterable[tuple[str, Figure]], statistics: bool) -> str:
    items = []
    for caption, fig in figures:
        data = base64.b64encode(plots.png_bytes(fig)).decode("ascii")
        items.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    note = "" if statistics else '<p class="note">The run stored no statistics: curves are not available.</p>'
    if not items and not note:
        return ""
    return f'<section id="figures"><h2>Figures</h2>{note}<div class="figures">{"".join(items)}</div></section>'


def page(
    run: Run,
    figures: Sequence[tuple[str, Figure]],
    baseline: Run | None = None,
    comparisons: Sequence[Comparison] | None = None,
    tolerance: float | Mapping[str, float] = 0.0,
    *,
    statistics: bool = True,
) -> str:
    """The whole HTML document for ``run`` with ``figures`` and, when given, the baseline comparison."""
    job = run.metadata.get("job", "")
    comparison = (
        _comparison(baseline, run, comparisons, tolerance) if baseline is not None and comparisons is not None else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>evalpipe report: {_e(job)} {_e(run.id)}</title><style>{_CSS}</style></head>"
        f"<body><main><h1>evalpipe report: {_e(job)}</h1>{_summary(run, baseline)}{_metrics_table(run)}"
        f"{comparison}{_figures(figures, statistics)}</main></body></html>\n"
    )
