"""Figures and the HTML report: curves from stored statistics equal scikit-learn's, plotted values
equal hand-computed ones, PNGs decode, and the report renders (with every image) in headless
Chromium and highlights a planted regression against its baseline.

Two runs of one job share this module: ``good`` (the synthetic binary scores rounded to 2
decimals, so scores tie and every distinct score has its own histogram bin) and ``degraded``
(the same rows with noise added to the logits: a worse model, the planted regression).
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import fsspec
import matplotlib.image as mpimg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.curves import precision_recall_points, roc_points
from evaluators.ranking import class_distributions
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.plots import (
    confusion_figure,
    png_bytes,
    precision_recall_figure,
    reliability_figure,
    roc_figure,
    save_png,
    slices_figure,
    trend_figure,
)
from pipelines.report import format_number, render_report, write_report
from pipelines.results import RunStatistics, compare_all, load_run, load_statistics, trend
from pipelines.spec import MetricSpec
from pipelines.synthetic import binary_table, multiclass_table
from tests._data import torch_edges
from tests.conftest import write_job

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")

ROWS = 20_000
JOB = "plots-report"
N_BINS = 10
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRICS = [
    "accuracy",
    "f1_score",
    {"name": "roc_auc", "mode": "exact", "as": "auc", "priority": "primary"},
    {"name": "average_precision", "mode": "exact", "as": "ap"},
    {"name": "expected_calibration_error", "n_bins": N_BINS, "as": "ece"},
    {"name": "reliability_diagram", "n_bins": N_BINS, "as": "reliability"},
    "confusion_matrix",
]


@dataclass(frozen=True)
class Runs:
    output: str
    good: str  # run URIs
    degraded: str
    good_table: pa.Table
    degraded_table: pa.Table


def _with_scores(table: pa.Table, scores: np.ndarray) -> pa.Table:
    return table.set_column(table.schema.get_field_index("score"), "score", pa.array(scores.astype(np.float32)))


def _run(root: Path, name: str, table: pa.Table) -> str:
    data = root / name
    data.mkdir()
    half = len(table) // 2
    pq.write_table(table.slice(0, half), data / "part-0.parquet")
    pq.write_table(table.slice(half), data / "part-1.parquet")
    spec = {
        "name": JOB,
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"}},
        "task": "binary",
        "metrics": METRICS,
        "slices": [{"column": "country"}],
        "confidence": {"replicates": 30, "samples": True, "seed": 1},
        "execution": {"runner": "local"},
        "output": {"uri": str(root / "out")},
    }
    return run_job(spec_module.load(str(write_job(root / f"{name}.yaml", spec))), show_progress=False).uri


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    root = tmp_path_factory.mktemp("plots-report")
    rng = np.random.default_rng(7)
    table = binary_table(rng, ROWS)
    score = table.column("score").to_numpy().astype(np.float64)
    good = _with_scores(table, np.round(score, 2))
    logit = np.log(score / (1.0 - score)) + rng.normal(0.0, 1.5, ROWS)
    degraded = _with_scores(table, np.round(1.0 / (1.0 + np.exp(-logit)), 2))
    good_uri = _run(root, "good", good)
    degraded_uri = _run(root, "degraded", degraded)  # committed second: the newer run
    return Runs(str(root / "out"), good_uri, degraded_uri, good, degraded)


@pytest.fixture(scope="module")
def stats(runs) -> RunStatistics:
    return load_statistics(runs.good)


def _columns(table: pa.Table, point: str) -> tuple[np.ndarray, np.ndarray]:
    """(score float64, label int) of the rows of ``point`` ("overall" or "country=XX")."""
    score = table.column("score").to_numpy().astype(np.float64)
    label = table.column("label").to_numpy().astype(np.int64)
    if point == "overall":
        return score, label
    country = table.column("country").to_numpy(zero_copy_only=False).astype(str)
    mask = country == point.split("=", 1)[1]
    return score[mask], label[mask]


def _line(fig, gid: str):
    found = [line for ax in fig.axes for line in ax.lines if line.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


# --- curves ---------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["overall", "country=JP"])
def test_roc_points_equal_sklearn_on_exact_statistics(stats, runs, point):
    score, label = _columns(runs.good_table, point)
    ((distinct, neg, pos),) = stats.state("auc", point)
    assert len(distinct) == len(np.unique(score)) < 101  # tied scores: at most 101 distinct values
    for drop in (True, False):
        fpr, tpr = roc_points(neg, pos, drop_intermediate=drop)
        ref_fpr, ref_tpr, _ = skm.roc_curve(label, score, drop_intermediate=drop)
        np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=1e-15)
        np.testing.assert_allclose(tpr, ref_tpr, rtol=0, atol=1e-15)
    # the area under the plotted curve is the run's value and scikit-learn's
    area = float(np.trapezoid(tpr, fpr))
    assert area == pytest.approx(skm.roc_auc_score(label, score), abs=1e-12)
    assert area == pytest.approx(load_run(runs.good).point(point).metrics["auc"].value, abs=1e-12)
    line = _line(roc_figure(stats, point), "roc[0]")  # roc_figure picks the roc_auc metric
    expected_fpr, expected_tpr = roc_points(neg, pos)
    np.testing.assert_array_equal(line.get_xdata(), expected_fpr)
    np.testing.assert_array_equal(line.get_ydata(), expected_tpr)


@pytest.mark.parametrize("point", ["overall", "country=BR"])
def test_precision_recall_points_equal_sklearn_on_exact_statistics(stats, runs, point):
    score, label = _columns(runs.good_table, point)
    ((_, neg, pos),) = stats.state("ap", point)
    for drop in (True, False):
        recall, precision = precision_recall_points(neg, pos, drop_intermediate=drop)
        ref_precision, ref_recall, _ = skm.precision_recall_curve(label, score, drop_intermediate=drop)
        np.testing.assert_allclose(recall, ref_recall[::-1], rtol=0, atol=1e-15)
        np.testing.assert_allclose(precision, ref_precision[::-1], rtol=0, atol=1e-15)
    recall, precision = precision_recall_points(neg, pos)
    ap = float(np.sum(np.diff(recall) * precision[1:]))
    assert ap == pytest.approx(skm.average_precision_score(label, score), abs=1e-12)
    assert ap == pytest.approx(load_run(runs.good).point(point).metrics["ap"].value, abs=1e-12)
    line = _line(precision_recall_figure(stats, point), "pr[0]")  # picks the average_precision metric
    expected_recall, expected_precision = precision_recall_points(neg, pos, drop_intermediate=True)
    np.testing.assert_array_equal(line.get_xdata(), expected_recall)
    np.testing.assert_array_equal(line.get_ydata(), expected_precision)


def _statistics(task: Task, predictions: np.ndarray, label: np.ndarray, entries) -> RunStatistics:
    """Statistics of one batch for ``entries`` (metric name, key, parameters), as a run stores them."""
    metrics = [(MetricSpec(name, key, params), catalog.build(name, task, params)) for name, key, params in entries]
    acc = Accumulator.for_metrics([m for _, m in metrics])
    states = acc.update(acc.zero(), {"predictions": predictions, "targets": label, "weights": np.ones(len(label))})
    return RunStatistics(metrics, {(): {spec.key: states[acc.index(m.statistic)] for spec, m in metrics}})


def test_curves_from_the_score_histogram_equal_sklearn_when_scores_have_their_own_bins(runs):
    score, label = _columns(runs.good_table, "overall")
    stats = _statistics(Task("binary"), score.astype(np.float32), label, [("average_precision", "ap", {})])
    state = stats.state("ap")
    assert isinstance(state, dict)  # the binned ScoreHistogram
    ((neg, pos, tied),) = class_distributions(state)
    filled = (neg + pos) > 0
    assert filled.sum() == len(np.unique(score)) and tied[filled].all()  # one distinct 2-decimal score per bin
    fpr, tpr = roc_points(neg, pos)
    ref_fpr, ref_tpr, _ = skm.roc_curve(label, score)
    np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, ref_tpr, rtol=0, atol=1e-15)
    recall, precision = precision_recall_points(neg, pos)
    ref_precision, ref_recall, _ = skm.precision_recall_curve(label, score)
    np.testing.assert_allclose(recall, ref_recall[::-1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(precision, ref_precision[::-1], rtol=0, atol=1e-15)
    line = _line(roc_figure(stats), "roc[0]")  # any ranking statistic draws the ROC curve
    np.testing.assert_allclose(line.get_ydata(), ref_tpr, rtol=0, atol=1e-15)


def test_curve_points_of_a_tiny_hand_example():
    # scores 0.1 (neg), 0.35 (pos), 0.4 (neg), 0.8 (pos): scikit-learn's docstring example
    neg, pos = np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0, 1.0])
    fpr, tpr = roc_points(neg, pos)
    np.testing.assert_array_equal(fpr, [0.0, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])
    recall, precision = precision_recall_points(neg, pos)
    np.testing.assert_allclose(recall, [0.0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(precision, [1.0, 1.0, 0.5, 2 / 3, 0.5])
    # empty cells (histogram bins without rows) change nothing
    padded = [np.insert(a, [0, 2, 4], 0.0) for a in (neg, pos)]
    np.testing.assert_array_equal(roc_points(*padded)[0], fpr)
    np.testing.assert_array_equal(precision_recall_points(*padded)[1], precision)


def test_multiclass_curves_are_one_vs_rest_per_class():
    classes = 4
    table = multiclass_table(np.random.default_rng(3), 4_000, classes)
    probs = np.round(table.column("probs").combine_chunks().flatten().to_numpy().reshape(-1, classes), 2)
    probs = probs.astype(np.float32)
    label = table.column("label").to_numpy().astype(np.int64)
    entries = [
        ("roc_auc", "auc", {"mode": "exact", "average": "none"}),
        ("average_precision", "ap", {"average": "none"}),  # binned
    ]
    stats = _statistics(Task("multiclass", classes), probs, label, entries)
    roc, pr = roc_figure(stats), precision_recall_figure(stats)
    for k in range(classes):
        y, s = (label == k).astype(int), probs[:, k].astype(np.float64)
        ref_fpr, ref_tpr, _ = skm.roc_curve(y, s)
        line = _line(roc, f"roc[{k}]")
        np.testing.assert_allclose(line.get_xdata(), ref_fpr, rtol=0, atol=1e-15)
        np.testing.assert_allclose(line.get_ydata(), ref_tpr, rtol=0, atol=1e-15)
        assert line.get_label() == f"class {k} (AUC {skm.roc_auc_score(y, s):.4f})"
        ref_precision, ref_recall, _ = skm.precision_recall_curve(y, s, drop_intermediate=True)
        line = _line(pr, f"pr[{k}]")
        np.testing.assert_allclose(line.get_xdata(), ref_recall[::-1], rtol=0, atol=1e-15)
        np.testing.assert_allclose(line.get_ydata(), ref_precision[::-1], rtol=0, atol=1e-15)
        assert line.get_label() == f"class {k} (AP {skm.average_precision_score(y, s):.4f})"
    assert not any(line.get_gid() == f"roc[{classes}]" for line in roc.axes[0].lines)


# --- reliability, confusion, trend, slices --------------------------------------------------------


@pytest.mark.parametrize("point", ["overall", "country=DE"])
def test_reliability_figure_plots_hand_computed_bin_means(stats, runs, point):
    """The figure of the calibration error's state (torchmetrics' left-closed bins) and of the reliability diagram's
    (scikit-learn's right-closed bins): the bins' means and weights by hand, and the ECE of those bins."""
    score, label = _columns(runs.good_table, point)
    torch_bins = torch_edges(N_BINS, runs.good_table.schema.field("score").type.to_pandas_dtype())  # (its dtype)
    left = np.clip(np.searchsorted(torch_bins, score, side="right") - 1, 0, N_BINS - 1)
    right = np.searchsorted(np.linspace(0.0, 1.0, N_BINS + 1)[1:-1], score, side="left")
    for key, index in (("ece", left), ("reliability", right)):
        filled = [b for b in range(N_BINS) if (index == b).any()]
        confidence = [score[index == b].mean() for b in filled]
        positives = [label[index == b].mean() for b in filled]
        counts = np.bincount(index, minlength=N_BINS)
        ece = sum(abs(positives[i] - confidence[i]) * counts[b] for i, b in enumerate(filled)) / len(score)
        fig = reliability_figure(stats, point, metric_key=key)
        line = _line(fig, "accuracy")
        np.testing.assert_allclose(line.get_xdata(), confidence, rtol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), positives, rtol=1e-12)
        bars = [p for p in fig.axes[1].patches if p.get_gid() == "weight"]
        np.testing.assert_array_equal([b.get_height() for b in bars], counts)
        np.testing.assert_allclose([b.get_x() for b in bars], np.linspace(0.0, 1.0, N_BINS + 1)[:-1])
        assert f"ECE {ece:.4f}" in fig.axes[0].get_title()
        if key == "ece":
            assert load_run(runs.good).point(point).metrics["ece"].value == pytest.approx(ece, abs=1e-12)


def test_reliability_figure_draws_the_reliability_diagrams_bins_by_default(stats):
    """The job lists the calibration error before the reliability diagram: the figure drew the ECE's bins, not the
    diagram's own (scikit-learn's), which the reliability_diagram metric reports."""
    assert [spec.key for spec, _ in stats.metrics].index("ece") < [spec.key for spec, _ in stats.metrics].index(
        "reliability"
    )
    default, diagram = reliability_figure(stats), reliability_figure(stats, metric_key="reliability")
    np.testing.assert_array_equal(_line(default, "accuracy").get_xdata(), _line(diagram, "accuracy").get_xdata())
    assert default.axes[0].get_title() == diagram.axes[0].get_title()


def test_confusion_figure_annotates_counts_and_normalizes_rows(stats, runs):
    score, label = _columns(runs.good_table, "overall")
    expected = skm.confusion_matrix(label, (score > 0.5).astype(int))
    for normalize in (None, "true"):
        fig = confusion_figure(stats, normalize=normalize)
        (ax,) = [a for a in fig.axes if a.images]
        cells = {t.get_gid(): t.get_text().split("\n") for t in ax.texts}
        for (i, j), count in np.ndenumerate(expected):
            assert int(cells[f"cell[{i},{j}]"][0].replace(",", "")) == count
            if normalize:
                assert cells[f"cell[{i},{j}]"][1] == f"{count / expected[i].sum():.1%}"
        shown = np.asarray(ax.images[0].get_array())
        reference = expected / expected.sum(axis=1, keepdims=True) if normalize else expected
        np.testing.assert_allclose(shown, reference, rtol=1e-12)


def test_trend_figure_plots_each_run_with_its_interval(runs):
    series = trend(runs.output, JOB, "accuracy")
    good, degraded = load_run(runs.good), load_run(runs.degraded)
    expected = [good.point("overall").metrics["accuracy"], degraded.point("overall").metrics["accuracy"]]
    assert [p.run_id for p in series.points] == [good.id, degraded.id]
    fig = trend_figure(series)
    line = _line(fig, "trend[0]")
    np.testing.assert_allclose(line.get_ydata(), [m.value for m in expected], rtol=1e-15)
    (bars,) = fig.axes[0].collections  # the vertical error bars, one segment per run
    spans = [(segment[0][1], segment[1][1]) for segment in bars.get_segments()]
    np.testing.assert_allclose(spans, [(m.lower, m.upper) for m in expected], rtol=1e-12)
    # several series in one figure
    both = trend_figure([series, trend(runs.output, JOB, "auc")])
    auc = _line(both, "trend[1]")
    np.testing.assert_allclose(auc.get_ydata(), [r.point("overall").metrics["auc"].value for r in (good, degraded)])


def test_slices_figure_sorts_points_and_highlights_overall(runs):
    run = load_run(runs.good)
    fig = slices_figure(run, "accuracy")
    ax = fig.axes[0]
    fig.draw_without_rendering()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    by_value = sorted(run.points, key=lambda p: p.metrics["accuracy"].value)
    assert labels == [p.name for p in by_value]
    slices, overall = _line(fig, "slices"), _line(fig, "overall")
    np.testing.assert_array_equal(overall.get_xdata(), [run.point("overall").metrics["accuracy"].value])
    assert overall.get_ydata()[0] == labels.index("overall")
    others = [p.metrics["accuracy"].value for p in by_value if p.name != "overall"]
    np.testing.assert_array_equal(slices.get_xdata(), others)
    assert overall.get_color() != slices.get_color()
    score, label = _columns(runs.good_table, "country=FR")
    accuracy = float(np.mean((score > 0.5) == label))
    assert slices.get_xdata()[list(slices.get_ydata()).index(labels.index("country=FR"))] == pytest.approx(accuracy)


# --- PNG output -----------------------------------------------------------------------------


def test_every_plot_kind_is_written_as_a_decodable_png(stats, runs, tmp_path):
    run = load_run(runs.good)
    figures = {
        "reliability": reliability_figure(stats),
        "roc": roc_figure(stats),
        "pr": precision_recall_figure(stats),
        "confusion": confusion_figure(stats, normalize="true"),
        "trend": trend_figure(trend(runs.output, JOB, "auc")),
        "slices": slices_figure(run, "auc"),
    }
    for name, fig in figures.items():
        path = tmp_path / "png" / f"{name}.png"
        save_png(fig, str(path), dpi=80)
        payload = path.read_bytes()
        assert payload.startswith(PNG_SIGNATURE) and 5_000 < len(payload) < 2_000_000, name
        width, height = fig.get_size_inches() * 80
        assert mpimg.imread(path).shape == (round(height), round(width), 4), name
    # any fsspec URL
    url = "memory://evalpipe-plots/nested/roc.png"
    save_png(figures["roc"], url)
    with fsspec.open(url, "rb") as handle:
        payload = handle.read()
    assert payload == png_bytes(figures["roc"])
    assert mpimg.imread(io.BytesIO(payload), format="png").shape[:2] == (550, 600)
    fsspec.filesystem("memory").rm("/evalpipe-plots", recursive=True)


# --- report ---------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Tags, image sources and comparison rows of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.images: list[str] = []
        self.rows: list[dict[str, object]] = []
        self._cells: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.images.append(attributes["src"] or "")
        if tag == "tr" and "data-metric" in attributes:
            self._cells = []
            self.rows.append({**attributes, "cells": self._cells})
        if tag == "td" and self._cells is not None:
            self._cells.append("")

    def handle_endtag(self, tag):
        if tag == "tr":
            self._cells = None

    def handle_data(self, data):
        if self._cells:
            self._cells[-1] += data


def _parse(text: str) -> _Page:
    parsed = _Page()
    parsed.feed(text)
    return parsed


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no chromium or chromium-browser binary on PATH to render the report")
    return binary


def _headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.title = JSON.stringify({
    tables: document.querySelectorAll("table").length,
    images: images.length,
    decoded: images.filter((img) => img.complete && img.naturalWidth > 0).length,
  });
});
</script>"""


def test_report_renders_in_headless_chromium(runs, tmp_path):
    binary = _chromium()
    url = "memory://evalpipe-report/reports/nightly.html"
    write_report(runs.degraded, url, baseline_uri=runs.good)
    with fsspec.open(url, "r", encoding="utf-8") as handle:
        text = handle.read()
    fsspec.filesystem("memory").rm("/evalpipe-report", recursive=True)
    parsed = _parse(text)
    # self-contained: every image is an embedded PNG, nothing is fetched from elsewhere
    assert len(parsed.images) == 5  # reliability, ROC, precision-recall, confusion matrix, slices of auc
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|url\(|@import""", text)
    assert parsed.tags["table"] == 3  # inputs, metrics, comparison
    page = tmp_path / "report.html"
    page.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    profile = tmp_path / "profile"
    dom = _headless(binary, profile, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()).stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None, dom[:500]
    probe = json.loads(html.unescape(title.group(1)))
    assert probe == {"tables": 3, "images": 5, "decoded": 5}
    shot = tmp_path / "report.png"
    _headless(
        binary,
        profile,
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        "--force-device-scale-factor=1",
        page.as_uri(),
    )
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    assert mpimg.imread(shot).shape[:2] == (2000, 1280)


def test_report_highlights_the_planted_regression(runs):
    text = render_report(runs.degraded, runs.good)
    rows = _parse(text).rows
    comparisons = compare_all(runs.good, runs.degraded)
    assert len(rows) == len(comparisons) > 0
    shown = {(r["data-point"], r["data-metric"]): r for r in rows}
    compared = {(c.point, c.metric): c for c in comparisons}
    for c in comparisons:
        row = shown[(c.point, c.metric)]
        cells = row["cells"]
        assert (row.get("class") == "regressed") == c.regressed
        assert cells[3:6] == [format_number(c.baseline), format_number(c.current), format_number(c.worse_by)]
        assert cells[6] == ("–" if c.significance is None else f"{c.significance.p_value:.3g}")
    # the degraded scores rank worse: AUC and AP of the whole dataset regressed, significantly
    score, label = _columns(runs.good_table, "overall")
    worse_score, _ = _columns(runs.degraded_table, "overall")
    for metric, reference in (("auc", skm.roc_auc_score), ("ap", skm.average_precision_score)):
        row = shown[("overall", metric)]
        assert row["class"] == "regressed" and row["cells"][-1] == "regressed"
        assert row["cells"][3] == format_number(reference(label, score))
        assert row["cells"][4] == format_number(reference(label, worse_score))
        assert float(row["cells"][6]) < 0.05
    regressed = [(r["data-point"], r["data-metric"]) for r in rows if r.get("class") == "regressed"]
    assert rows[: len(regressed)] == [shown[key] for key in regressed]  # regressions listed first
    assert f"{len(regressed)} of {len(comparisons)} values regressed" in text
    # the other way round the ranking metrics improved
    reverse = {(r["data-point"], r["data-metric"]): r for r in _parse(render_report(runs.good, runs.degraded)).rows}
    for metric in ("auc", "ap"):
        assert reverse[("overall", metric)]["class"] == "improved"
        assert reverse[("overall", metric)]["cells"][5] == format_number(-compared[("overall", metric)].worse_by)


def test_a_figure_of_a_point_the_run_lacks_names_the_points_there_are(stats):
    """``roc_figure(stats, point="nosuch")`` raised a bare KeyError."""
    from pipelines.errors import UserError

    with pytest.raises(UserError, match=r"point 'nosuch' not found.*the ones there are: .*overall"):
        roc_figure(stats, point="nosuch")
