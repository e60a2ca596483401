"""Bootstrap intervals stay within the values a metric can take: the basic (reflected) interval ``[2 t - q_hi,
2 t - q_lo]`` of a value near its end (accuracy 0.995 on 200 rows) can reach past 1, which no replicate
and no data can; it is clipped to the metric's range (:attr:`evaluators.statistic.DerivedMetric.value_range`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluators import catalog
from evaluators.statistic import CORRELATION, NON_NEGATIVE, RATIO
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.execute import run_job
from tests.conftest import write_job

LEVEL = 0.9


def _reflected(m, level: float = LEVEL) -> tuple[float, float]:
    """The basic (reflected) interval of metric ``m`` from its replicate samples: ``(t - q_hi, t - q_lo)`` (the
    replicates' centre is the value: the same statistic)."""
    finite = np.asarray(m.samples)[np.isfinite(m.samples)]
    q_lo, q_hi = np.quantile(finite - m.value, [(1 - level) / 2, (1 + level) / 2])
    return m.value - q_hi, m.value - q_lo


def _run(tmp_path, seed: int):
    rng = np.random.default_rng(seed)
    n = 200
    y = rng.integers(0, 2, n)
    p = np.where(y == 1, rng.uniform(0.55, 1.0, n), rng.uniform(0.0, 0.45, n))
    wrong = rng.choice(n, 1)  # one row on the wrong side: accuracy 0.995
    p[wrong] = 1.0 - p[wrong]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"score": p, "label": y, "row_id": np.arange(n)}), tmp_path / "data" / "part.parquet")
    spec = {
        "name": "near-one",
        "data": {
            "path": str(tmp_path / "data"),
            "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"},
        },
        "task": "binary",
        "metrics": ["accuracy", "f1_score", "matthews_corrcoef", "roc_auc", "log_loss"],
        "confidence": {"replicates": 200, "level": LEVEL, "seed": 3, "buckets": 64, "samples": True},
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    return run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).run


@pytest.mark.parametrize("seed", [0, 1])
def test_basic_intervals_are_clipped_to_the_metrics_range(tmp_path, seed):
    metrics = _run(tmp_path, seed).point("overall").metrics
    clipped = 0
    for name, (low, high) in (("accuracy", RATIO), ("f1_score", RATIO), ("matthews_corrcoef", CORRELATION)):
        m = metrics[name]
        reflected = _reflected(m)
        clipped += reflected[1] > high
        assert (m.lower, m.upper) == pytest.approx((max(reflected[0], low), min(reflected[1], high)), abs=1e-15), name
        assert low <= m.lower <= m.value <= m.upper <= high, name
    assert clipped >= 2  # (the data puts the reflected upper end past 1: the clipping is what is tested)
    auc = metrics["roc_auc"]
    assert 0.0 <= auc.lower <= auc.value <= auc.upper <= 1.0
    loss = metrics["log_loss"]  # (no upper limit, and its reflected interval stays above 0 here)
    assert (loss.lower, loss.upper) == pytest.approx(_reflected(loss), abs=1e-15)


def test_ranges_of_metrics():
    task = Task("binary")
    assert catalog.build("recall", task).value_range == RATIO
    assert catalog.build("average_precision", task).value_range == RATIO
    assert catalog.build("cohen_kappa", task).value_range == CORRELATION
    assert catalog.build("balanced_accuracy", task, {"adjusted": True}).value_range == CORRELATION
    assert catalog.build("sensitivity", task).value_range == RATIO
    assert catalog.build("log_loss", task).value_range == NON_NEGATIVE
    for name in ("maximum_calibration_error", "adaptive_calibration_error"):
        assert catalog.build(name, task).value_range == RATIO, name
    assert catalog.build("classwise_ece", Task("multiclass", num_classes=3)).value_range == RATIO


def test_r2_intervals_end_at_1(tmp_path):
    """Two rows, r2 0.96: replicates drawing one of them twice score 0 (a constant target, scikit-learn's rule), and
    the reflected interval reached 1.92; r2 is at most 1."""
    (tmp_path / "data").mkdir()
    table = pa.table({"row_id": [1, 2], "y": [0.0, 1.0], "p": [0.1, 0.9]})
    pq.write_table(table, tmp_path / "data" / "part.parquet")
    spec = {
        "name": "r2",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "p", "targets": "y", "row_id": "row_id"}},
        "task": "regression",
        "metrics": ["r2", "explained_variance", "mse"],
        "confidence": {"replicates": 200, "level": LEVEL, "seed": 0, "samples": True},
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    metrics = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).run
    metrics = metrics.point("overall").metrics
    r2 = metrics["r2"]
    assert r2.value == pytest.approx(1 - 0.02 / 0.5, abs=1e-12)  # (1 - SSres / SStot by hand)
    low, high = _reflected(r2)
    assert high > 1.0  # (the reflected upper end)
    assert (r2.lower, r2.upper) == pytest.approx((low, 1.0), abs=1e-15)
    assert metrics["explained_variance"].upper <= 1.0
    assert catalog.build("pearson_corrcoef", Task("regression")).value_range == CORRELATION


def test_text_metric_ranges():
    task = Task("text")
    assert catalog.build("bleu", task).value_range == catalog.build("chrf", task).value_range == (0.0, 100.0)
    assert catalog.build("wer", task).value_range == catalog.build("cer", task).value_range == (0.0, np.inf)
    assert catalog.build("rouge_l", task).value_range == catalog.build("distinct_n", task).value_range == RATIO


def test_error_rate_intervals_end_at_0(tmp_path):
    """39 exact transcripts and one with a wrong word: WER 1/160, and replicates that draw the wrong row twice put
    the reflected lower end below 0, which no word error rate reaches."""
    (tmp_path / "data").mkdir()
    refs = [f"the quick brown fox jumps number {i}" for i in range(40)]
    preds = [*refs[:-1], refs[-1].replace("fox", "cat")]
    pq.write_table(pa.table({"row_id": np.arange(40), "p": preds, "y": refs}), tmp_path / "data" / "part.parquet")
    spec = {
        "name": "wer",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "p", "targets": "y", "row_id": "row_id"}},
        "task": "text",
        "metrics": ["wer", "cer"],
        "confidence": {"replicates": 200, "level": LEVEL, "seed": 0, "buckets": 64, "samples": True},
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).run
    metrics = run.point("overall").metrics
    wer = metrics["wer"]
    assert wer.value == pytest.approx(1 / sum(len(r.split()) for r in refs), abs=1e-15)  # (one substitution)
    for m in (wer, metrics["cer"]):
        low, high = _reflected(m)
        assert low < 0.0  # (the reflected lower end: the clipping is what is tested)
        assert (m.lower, m.upper) == pytest.approx((0.0, high), abs=1e-15)


def test_counts_and_ratios_beside_a_headline_are_clipped_too(tmp_path):
    """Three queries: a replicate draws 0 to 6 of them, so the reflected interval of the count ``ndcg.queries``
    reached below 0 (``[-2, 5]``), and the nDCG of 0.98 past 1; a count is never below 0, nDCG never above 1."""
    (tmp_path / "data").mkdir()
    qid = np.repeat([1, 2, 3], 4)
    score = np.tile([0.9, 0.8, 0.7, 0.1], 3)
    rel = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0])  # (query 3 ranks its relevant item second)
    pq.write_table(pa.table({"qid": qid, "score": score, "rel": rel}), tmp_path / "data" / "part.parquet")
    spec = {
        "name": "queries",
        "data": {
            "path": str(tmp_path / "data"),
            "columns": {"predictions": "score", "targets": "rel", "query_id": "qid"},
        },
        "task": "ranking",
        "metrics": ["ndcg", "mean_reciprocal_rank", {"name": "mean_reciprocal_rank", "as": "mrr[v2]"}],
        "confidence": {"replicates": 200, "level": LEVEL, "seed": 0, "samples": True},
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).run
    metrics = run.point("overall").metrics
    ndcg, queries, mrr = metrics["ndcg"], metrics["ndcg.queries"], metrics["mean_reciprocal_rank"]
    assert ndcg.value == pytest.approx((2 + 1 / np.log2(3)) / 3, abs=1e-12)  # (1, 1 and 1 / log2(3) by hand)
    assert mrr.value == pytest.approx((1 + 1 + 0.5) / 3, abs=1e-12)
    assert queries.value == 3.0
    reflected = _reflected(queries)
    assert reflected[0] < 0.0  # (the data puts the count's reflected lower end below 0)
    assert (queries.lower, queries.upper) == pytest.approx((0.0, reflected[1]), abs=1e-12)
    assert (metrics["mrr[v2].queries"].lower, metrics["mrr[v2]"].upper) == (0.0, 1.0)  # (a key holding "[")
    for m in (ndcg, mrr, metrics["mrr[v2]"]):
        low, high = _reflected(m)
        assert high > 1.0  # (past 1: the clipping is what is tested)
        assert (m.lower, m.upper) == pytest.approx((max(low, 0.0), 1.0), abs=1e-12)


def test_ranges_of_losses_errors_distances_and_parts():
    binary, multiclass = Task("binary"), Task("multiclass", num_classes=3)
    assert catalog.build("log_loss", binary).value_range == NON_NEGATIVE
    assert catalog.build("brier_score", binary).value_range == RATIO
    assert catalog.build("brier_score", multiclass).value_range == (0.0, 2.0)  # (1 - p)^2 + p^2 at most, p = 0
    for name in ("mse", "rmse", "mae"):
        assert catalog.build(name, Task("regression")).value_range == NON_NEGATIVE, name
    assert catalog.build("fid", Task("image")).value_range == NON_NEGATIVE
    assert catalog.build("inception_score", Task("image")).value_range == (1.0, np.inf)
    assert catalog.build("kid", Task("image")).value_range is None  # (an unbiased MMD^2 can read below 0)
    ranges = catalog.build("demographic_parity_difference", binary).ranges("dpd")
    assert ranges == {"dpd": RATIO, "dpd.groups": NON_NEGATIVE, "dpd.selection_rate": RATIO}
    ranges = catalog.build("reliability_diagram", binary).ranges("rel")
    assert ranges == {"rel.confidence": RATIO, "rel.accuracy": RATIO, "rel.count": NON_NEGATIVE}
    assert catalog.build("bleu", Task("text"), {"max_order": 2}).ranges("b") == {
        "b": (0.0, 100.0),
        "b.brevity_penalty": RATIO,
        "b.sys_len": NON_NEGATIVE,
        "b.ref_len": NON_NEGATIVE,
        "b.precision_1": (0.0, 100.0),
        "b.precision_2": (0.0, 100.0),
    }


def test_a_clipped_interval_holds_its_value():
    """A value a hair outside its range by rounding (the Fréchet distance of equal moments: -7e-15) stays inside
    its clipped interval; keys holding "[" of their own (``as: mrr[v2]``) and per-group values find their range."""
    from pipelines.reduce import _within

    ranges = {"fid": NON_NEGATIVE, "mrr[v2]": RATIO, "dpd.selection_rate": RATIO}
    assert _within(ranges, "fid", -7e-15, -0.5, 2.0) == (-7e-15, 2.0)
    assert _within(ranges, "fid", 1.5, -0.5, 2.0) == (0.0, 2.0)
    assert _within(ranges, "mrr[v2]", 0.9, 0.7, 1.2) == (0.7, 1.0)
    assert _within(ranges, "mrr[v2][3]", 0.9, -0.1, 1.2) == (0.0, 1.0)  # (its per-class value)
    assert _within(ranges, "dpd.selection_rate[a[b]]", 0.5, -0.1, 1.2) == (0.0, 1.0)  # (a group label with "[")
    assert _within(ranges, "other", 0.5, -0.1, 1.2) == (-0.1, 1.2)
