"""Figures of evaluation runs: reliability diagram, ROC and precision-recall curves, confusion
matrix, metric trends and per-slice values.

Curves are drawn from the merged sufficient statistics a run stored (see
:func:`pipelines.results.load_statistics`): no second pass over the data. Every function returns
a :class:`matplotlib.figure.Figure` built without pyplot, so importing this module selects no
backend and keeps no figure registry; in a notebook a returned figure displays inline, and
:func:`save_png` writes one to any fsspec location.

    >>> from pipelines.results import load_statistics  # doctest: +SKIP
    >>> stats = load_statistics("s3://evals/results/nightly-ctr/20261123T141233123Z-5f2a9c")  # doctest: +SKIP
    >>> save_png(roc_figure(stats), "s3://evals/reports/roc.png")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import math
import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from fsspec.core import url_to_fs
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from evaluators.calibration import CalibrationBins
from evaluators.classification import ConfusionCounts, normalized_confusion
from evaluators.curves import binned_calibration_error, precision_recall_points, reliability_bins, roc_points
from evaluators.ranking import (
    ExactScoreCounts,
    ScoreHistogram,
    average_precision_from_counts,
    class_distributions,
    class_positions,
    ranked_classes,
    roc_auc_from_counts,
)
from evaluators.statistic import DerivedMetric, Statistic
from evaluators.task import Task, TaskKind
from pipelines.errors import UserError, opening_problem
from pipelines.records import Metric, Run, TrendSeries, unknown_message
from pipelines.results import RunStatistics
from pipelines.spec import MetricSpec

OVERALL = "overall"
DEFAULT_DPI = 100
_RANKING = (ScoreHistogram, ExactScoreCounts)
_MAX_ANNOTATED_CLASSES = 25
_MAX_LEGEND_ENTRIES = 20


# --- choosing the statistic ----------------------------------------------------------------


def _find_metric(
    stats: RunStatistics,
    kinds: tuple[type[Statistic], ...],
    what: str,
    metric_key: str | None,
    prefer: Sequence[str] = (),
) -> tuple[MetricSpec, DerivedMetric]:
    """The metric ``metric_key`` (checked to read a ``kinds`` statistic), else the first that does,
    metrics named in ``prefer`` first."""
    if metric_key is not None:
        for spec, metric in stats.metrics:
            if spec.key == metric_key:
                if not isinstance(metric.statistic, kinds):
                    raise ValueError(f"metric {metric_key!r} ({metric.name}) does not store a {what}")
                return spec, metric
        keys = ", ".join(spec.key for spec, _ in stats.metrics)
        raise ValueError(f"the run has no metric {metric_key!r}; its metrics: {keys}")
    found = [(spec, metric) for spec, metric in stats.metrics if isinstance(metric.statistic, kinds)]
    if not found:
        raise ValueError(f"no metric of the run stores a {what}")
    preferred = [(spec, metric) for spec, metric in found if metric.name in prefer]
    return (preferred or found)[0]


def has_statistic(stats: RunStatistics, kind: str) -> bool:
    """Whether a metric of the run stores the statistic a figure needs.

    ``kind``: ``"calibration"`` (reliability), ``"ranking"`` (ROC, precision-recall) or
    ``"confusion"`` (confusion matrix of a binary or multiclass task).
    """
    kinds = {"calibration": (CalibrationBins,), "ranking": _RANKING, "confusion": (ConfusionCounts,)}[kind]
    for _, metric in stats.metrics:
        if isinstance(metric.statistic, kinds):
            return kind != "confusion" or metric.statistic.task.kind is not TaskKind.MULTILABEL
    return False


def _task(metric: DerivedMetric) -> Task:
    return metric.statistic.task  # type: ignore[attr-defined]


def _class_label(task: Task, k: int) -> str:
    if task.kind is TaskKind.BINARY:
        return "positive class"
    return f"label {k}" if task.kind is TaskKind.MULTILABEL else f"class {k}"


# --- figures from statistics ----------------------------------------------------------------


def reliability_figure(stats: RunStatistics, point: str = OVERALL, metric_key: str | None = None) -> Figure:
    """Reliability diagram of one point: per-bin accuracy against mean confidence.

    Read from the ``CalibrationBins`` state of the metric ``metric_key`` (or the ``reliability_diagram``'s, with
    scikit-learn's bins, else the first metric storing one: expected / maximum calibration error). Top: one marker per
    non-empty bin at (mean confidence, accuracy) - for a binary task the mean predicted
    probability and the fraction of positives - with the diagonal of perfect calibration and the
    ECE of these bins in the title. Bottom: the row weight of each bin (bars over the bin edges).
    """
    spec, metric = _find_metric(
        stats, (CalibrationBins,), "calibration statistic", metric_key, prefer=("reliability_diagram",)
    )
    state, n_bins = stats.state(spec.key, point), metric.statistic.n_bins
    edges, confidence, accuracy, weight = reliability_bins(state, n_bins)
    binary = _task(metric).kind is TaskKind.BINARY
    filled = weight > 0
    ece = binned_calibration_error(*reliability_bins(state, n_bins, ones_apart=True)[1:])

    fig = Figure(figsize=(6.0, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="perfectly calibrated")
    (line,) = top.plot(confidence[filled], accuracy[filled], marker="o", color="C0", label=spec.key)
    line.set_gid("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("fraction of positives" if binary else "accuracy")
    top.set_title(f"Reliability - {point} (ECE {ece:.4f}, {len(weight)} bins)")
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    for bar in bottom.bar(edges[:-1], weight, width=np.diff(edges), align="edge", color="C0", alpha=0.6):
        bar.set_gid("weight")
    bottom.set_xlabel("mean predicted probability" if binary else "confidence (top-class probability)")
    bottom.set_ylabel("rows")
    bottom.grid(alpha=0.3)
    return fig


def _ranking_curves(stats: RunStatistics, point: str, metric_key: str | None, prefer: str) -> tuple[str, Task, Any]:
    spec, metric = _find_metric(stats, _RANKING, "ranking statistic", metric_key, prefer=(prefer,))
    return spec.key, _task(metric), stats.state(spec.key, point)


def _legend(ax: Axes, entries: int, **kwargs: Any) -> None:
    if entries <= _MAX_LEGEND_ENTRIES:
        ax.legend(fontsize="small", ncol=1 if entries <= 10 else 2, **kwargs)


def roc_figure(stats: RunStatistics, point: str = OVERALL, metric_key: str | None = None) -> Figure:
    """ROC curves (true positive rate against false positive rate) of one point.

    Computed with :func:`~evaluators.curves.roc_points` from the stored ranking statistic (``ScoreHistogram`` or
    ``ExactScoreCounts``) of ``metric_key``, or of the first ``roc_auc`` metric (else any ranking
    metric). One curve per class (one-vs-rest) for multiclass tasks, per label for multilabel
    tasks, labelled with its area under the curve; the dashed diagonal is a random ranking.
    """
    key, task, state = _ranking_curves(stats, point, metric_key, "roc_auc")
    distributions = class_distributions(state, ranked_classes(task))
    positions = class_positions(state, ranked_classes(task))
    fig = Figure(figsize=(6.0, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1)
    for k, (neg, pos, tied) in enumerate(distributions):
        fpr, tpr = roc_points(neg, pos)
        auc = roc_auc_from_counts(neg, pos, tied, positions[k]).value
        (line,) = ax.plot(fpr, tpr, linewidth=1.5, label=f"{_class_label(task, k)} (AUC {auc:.4f})")
        line.set_gid(f"roc[{k}]")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC - {point} ({key})")
    ax.grid(alpha=0.3)
    _legend(ax, len(distributions), loc="lower right")
    return fig


def precision_recall_figure(stats: RunStatistics, point: str = OVERALL, metric_key: str | None = None) -> Figure:
    """Precision-recall curves of one point, as steps (precision held up to each threshold's recall).

    Computed with :func:`~evaluators.curves.precision_recall_points` from the stored ranking statistic of
    ``metric_key``, or of the first ``average_precision`` metric (else any ranking metric). One
    curve per class (one-vs-rest) or label, labelled with its average precision; for a binary
    task the dotted line is the prevalence (precision of a random ranking).
    """
    _, task, state = _ranking_curves(stats, point, metric_key, "average_precision")
    distributions = class_distributions(state, ranked_classes(task))
    positions = class_positions(state, ranked_classes(task))
    fig = Figure(figsize=(6.0, 5.5), layout="constrained")
    ax = fig.subplots()
    for k, (neg, pos, tied) in enumerate(distributions):
        recall, precision = precision_recall_points(neg, pos, drop_intermediate=True)
        ap = average_precision_from_counts(neg, pos, tied, positions[k]).value
        (line,) = ax.plot(
            recall, precision, drawstyle="steps-pre", linewidth=1.5, label=f"{_class_label(task, k)} (AP {ap:.4f})"
        )
        line.set_gid(f"pr[{k}]")
    if len(distributions) == 1:
        neg, pos, _ = distributions[0]
        total = float(np.sum(neg) + np.sum(pos))
        if total > 0:
            ax.axhline(float(np.sum(pos)) / total, linestyle=":", color="0.5", linewidth=1, label="prevalence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision-recall - {point}")  # the statistic may be a roc_auc metric's: no key here
    ax.grid(alpha=0.3)
    _legend(ax, len(distributions) + 1, loc="lower left")
    return fig


def _count_text(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def confusion_figure(
    stats: RunStatistics, point: str = OVERALL, normalize: str | None = None, metric_key: str | None = None
) -> Figure:
    """Heatmap of the confusion matrix of one point: rows the true class, columns the predicted one.

    Read from the ``ConfusionCounts`` state (``[C, C]`` row weights) of ``metric_key`` or of the
    first metric storing one (accuracy, F1, confusion_matrix, ...). With ``normalize=None`` the
    colour is the count; with ``normalize="true"`` it is the fraction of each true class (rows sum
    to 1). Each cell is annotated with its count (and the row fraction when normalized) up to 25
    classes.
    """
    if normalize not in (None, "true"):
        raise ValueError(f"normalize must be None or 'true', got {normalize!r}")
    spec, _ = _find_metric(stats, (ConfusionCounts,), "confusion matrix", metric_key)
    counts = np.asarray(stats.state(spec.key, point), np.float64)
    if counts.ndim != 2:
        raise ValueError(f"metric {spec.key!r} holds per-label 2x2 matrices (multilabel task), not one matrix")
    classes = counts.shape[0]
    shown = normalized_confusion("true", counts)[""] if normalize else counts
    size = min(12.0, 3.5 + 0.45 * classes)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    image.set_gid("confusion")
    fig.colorbar(image, ax=ax, label="fraction of the true class" if normalize else "rows")
    if classes <= _MAX_ANNOTATED_CLASSES:
        threshold = 0.5 * (float(shown.max()) if shown.size else 0.0)
        for (i, j), value in np.ndenumerate(counts):
            text = _count_text(value) + (f"\n{shown[i, j]:.1%}" if normalize else "")
            color = "white" if shown[i, j] > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize="small", gid=f"cell[{i},{j}]")
    ticks = np.arange(classes)
    ax.set_xticks(ticks, labels=[str(k) for k in ticks] if classes <= 50 else None)
    ax.set_yticks(ticks, labels=[str(k) for k in ticks] if classes <= 50 else None)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix - {point} ({_count_text(counts.sum())} rows)")
    return fig


# --- figures from run records ---------------------------------------------------------------


def _interval_errors(metrics: Sequence[Metric]) -> np.ndarray | None:
    """``[2, n]`` distances from each value down to ``lower`` and up to ``upper`` (0 where absent),
    or None when no metric has an interval."""
    if all(m.lower is None or m.upper is None for m in metrics):
        return None
    below = [0.0 if m.lower is None or not math.isfinite(m.lower) else max(m.value - m.lower, 0.0) for m in metrics]
    above = [0.0 if m.upper is None or not math.isfinite(m.upper) else max(m.upper - m.value, 0.0) for m in metrics]
    return np.array([below, above])


def trend_figure(series: TrendSeries | Sequence[TrendSeries]) -> Figure:
    """A metric over run timestamps (UTC): one line per series, error bars for the intervals.

    Each series is one metric of one point across runs (:func:`pipelines.results.trend`); where a
    run recorded ``lower`` / ``upper`` the point has an error bar spanning that interval.
    """
    all_series = [series] if isinstance(series, TrendSeries) else list(series)
    fig = Figure(figsize=(8.0, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, one in enumerate(all_series):
        metrics = [Metric(p.value, p.lower, p.upper) for p in one.points]
        times = [p.timestamp for p in one.points]
        container = ax.errorbar(
            times,
            np.array([m.value for m in metrics], np.float64),
            yerr=_interval_errors(metrics),
            marker="o",
            capsize=3,
            label=f"{one.metric} ({one.point_name})",
        )
        container.lines[0].set_gid(f"trend[{i}]")
    if not any(one.points for one in all_series):
        ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("run time (UTC)")
    ax.set_ylabel(", ".join(dict.fromkeys(one.metric for one in all_series)))
    ax.set_title("Trend")
    ax.grid(alpha=0.3)
    _legend(ax, len(all_series), loc="best")
    return fig


def slice_values(run: Run, metric: str) -> list[tuple[str, Metric]]:
    """``(point name, metric)`` of every point of ``run`` with a finite ``metric``, by ascending value."""
    found = [(p.name, p.metrics[metric]) for p in run.points if metric in p.metrics]
    return sorted(((name, m) for name, m in found if math.isfinite(m.value)), key=lambda item: item[1].value)


SLICE_LABEL_CHARACTERS = 48
"""A slice's axis label is cut to this many characters (its start and end kept), so that one long value leaves the
others' labels whole."""


def short_labels(names: Sequence[str]) -> list[str]:
    """``names`` cut to :data:`SLICE_LABEL_CHARACTERS` (start and end kept); two long names that would read alike
    keep a short digest of their whole text between their start and end, so that no two points share a label."""
    tail = SLICE_LABEL_CHARACTERS // 3

    def cut(name: str) -> str:
        return (
            name
            if len(name) <= SLICE_LABEL_CHARACTERS
            else f"{name[: SLICE_LABEL_CHARACTERS - tail - 1]}…{name[-tail:]}"
        )

    labels = [cut(name) for name in names]
    seen = Counter(labels)
    return [
        f"{name[: SLICE_LABEL_CHARACTERS - tail - 10]}…#{hashlib.sha1(name.encode()).hexdigest()[:6]}…{name[-tail:]}"
        if seen[label] > 1 and label != name
        else label
        for name, label in zip(names, labels, strict=True)
    ]


def slices_figure(run: Run, metric: str) -> Figure:
    """One marker per point (slice) of the run for ``metric``, sorted by value (largest at the top).

    Horizontal error bars span each point's interval where it has one; the ``overall`` point is
    drawn in red with a dashed vertical line at its value, so slices above and below it stand out.
    """
    values = slice_values(run, metric)
    if not values:
        if not any(metric in p.metrics for p in run.points):
            raise UserError(unknown_message("metric", metric, {k for p in run.points for k in p.metrics}))
        raise UserError(
            f"run {run.id}: metric {metric!r} is undefined (NaN) at every point: there is no value to plot."
        )
    fig = Figure(figsize=(7.5, max(2.5, 1.3 + 0.3 * len(values))), layout="constrained")
    ax = fig.subplots()
    positions = np.arange(len(values))
    for gid, color, wanted in (("slices", "C0", False), ("overall", "C3", True)):
        chosen = [i for i, (name, _) in enumerate(values) if (name == OVERALL) == wanted]
        if not chosen:
            continue
        metrics = [values[i][1] for i in chosen]
        container = ax.errorbar(
            np.array([m.value for m in metrics], np.float64),
            positions[chosen],
            xerr=_interval_errors(metrics),
            fmt="o",
            color=color,
            capsize=3,
            markersize=7 if wanted else 5,
        )
        container.lines[0].set_gid(gid)
        if wanted:
            ax.axvline(metrics[0].value, color=color, linestyle="--", linewidth=1)
    ax.set_yticks(positions, labels=short_labels([name for name, _ in values]), fontsize="small")
    for label in ax.get_yticklabels():
        if label.get_text() == OVERALL:
            label.set_fontweight("bold")
    ax.set_xlabel(metric)
    ax.set_title(f"{metric} by slice - run {run.id}")
    ax.grid(axis="x", alpha=0.3)
    return fig


# --- output -----------------------------------------------------------------------------------


def png_bytes(fig: Figure, *, dpi: int = DEFAULT_DPI) -> bytes:
    """The figure as PNG bytes (``width x height`` inches times ``dpi`` pixels)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def write_bytes(path: str, payload: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write ``payload`` to ``path`` (any fsspec URL), creating the parent directory where needed."""
    try:
        fs, target = url_to_fs(path, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise UserError(f"{path}: cannot open this location: {opening_problem(exc)}.") from None
    parent = posixpath.dirname(target)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(target, "wb") as handle:
        handle.write(payload)


def save_png(
    fig: Figure, path: str, *, dpi: int = DEFAULT_DPI, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Write the figure as a PNG to ``path``, a local path or any fsspec URL (``s3://...``)."""
    write_bytes(path, png_bytes(fig, dpi=dpi), storage_options)
