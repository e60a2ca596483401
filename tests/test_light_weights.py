"""Weights too light for the fixed point: a row's weight x value is summed exactly in units of ``2**-52``, so
rows weighing 1e-17 each rounded to nothing (Brier score and log loss 0, ECE 0.5, with exit 0). Batches whose
weighted rows weigh less than ``2**-20`` on average are refused with the advice to rescale; a few light rows
among ordinary ones, and every common scale down to that limit, give scikit-learn's values."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from evaluators.functional import brier_score, expected_calibration_error, log_loss
from evaluators.kernels import LIGHTEST_MEAN_WEIGHT, WeightRangeError
from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from tests.conftest import write_job

ADVICE = "unchanged when all weights are divided by the same number"


def _rows(seed: int, n: int = 5_000):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0.0, 1.0)
    return p, y, rng.uniform(0.5, 2.0, n)


def _ece(p, y, w, bins=10):
    """Weighted binary ECE over equal-width bins of the positive-class probability (torchmetrics' binning)."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = index == b
        if m.any():
            total += abs(np.average(y[m], weights=w[m]) - np.average(p[m], weights=w[m])) * w[m].sum()
    return total / w.sum()


@pytest.mark.parametrize("scale", [1e-17, 1e-10, 9e-7])
def test_weights_lighter_than_the_fixed_point_are_refused(scale):
    p, y, w = _rows(0)
    for function in (brier_score, log_loss, expected_calibration_error):
        with pytest.raises(WeightRangeError, match=r"below 2\^-20 \(9\.5e-7\) on average") as caught:
            function(p, y, weights=w / w.mean() * scale)
        assert ADVICE in str(caught.value)


@pytest.mark.parametrize("scale", [1e-5, 1.0, 1e4])
def test_weights_of_any_scale_above_the_limit_give_sklearns_values(scale):
    p, y, w = _rows(1)
    weights = w * scale
    assert brier_score(p, y, weights=weights) == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w), rel=1e-10)
    want = skm.log_loss(y, p, sample_weight=w)
    assert log_loss(p, y, weights=weights) == pytest.approx(want, rel=1e-10)
    assert expected_calibration_error(p, y, weights=weights) == pytest.approx(_ece(p, y, w), rel=1e-9)


def test_a_few_light_rows_among_ordinary_ones_count_as_they_weigh():
    p, y, w = _rows(2)
    w[:40] = 1e-12  # (each rounds, to at most 2^-53 of a unit: nothing beside 5,000 rows of weight 1)
    assert np.average(w[w > 0]) > LIGHTEST_MEAN_WEIGHT
    assert brier_score(p, y, weights=w) == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w), rel=1e-12)


def _weighted_job(tmp_path, name: str, p, y, w, metrics: list[str]):
    """A binary job over one file of scores ``p``, labels ``y`` and weights ``w`` (column ``w``)."""
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"score": p, "label": y, "w": w}), tmp_path / "data" / "part.parquet")
    columns = {"predictions": "score", "targets": "label", "weights": "w"}
    spec = {
        "name": name,
        "data": {"path": str(tmp_path / "data"), "columns": columns},
        "task": "binary",
        "metrics": metrics,
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    return write_job(tmp_path / "job.yaml", spec)


def test_a_job_of_light_weights_exits_2_naming_the_weights_column(tmp_path):
    p, y, w = _rows(3)
    job = _weighted_job(tmp_path, "light", p, y, w * 1e-17, ["accuracy", "brier_score", "log_loss"])
    with pytest.raises(DataError) as caught:
        run_job(spec_module.load(str(job)), show_progress=False)
    message = str(caught.value)
    assert "column 'w' (data.columns.weights)" in message and "below 2^-20" in message and ADVICE in message
    assert not (tmp_path / "out" / "light").exists() or not any(
        (d / "_COMMITTED").exists() for d in (tmp_path / "out" / "light").iterdir()
    )


def test_weights_summing_past_float64_exit_2_in_one_line_without_warnings(tmp_path):
    """Weights of 1e306 on a few hundred rows: their sum leaves float64; the refusal said "weigh inf" after a NumPy
    overflow warning on stderr."""
    import subprocess
    import sys

    p, y, _ = _rows(5, 400)
    job = _weighted_job(tmp_path, "heavy", p, y, np.full(400, 1e306), ["roc_auc", "brier_score"])
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "run", str(job), "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("evalpipe: error: ") and "column 'w' (data.columns.weights)" in line, line
    assert "Warning" not in done.stderr and "weigh inf" not in line


def test_a_work_unit_of_light_rows_in_a_job_of_ordinary_ones_is_counted(tmp_path):
    """The limit is on a slice's merged rows, not on a batch or a work unit: a file of three rows of weight 1e-12
    read as a unit of its own counts as those rows weigh (nothing beside 2,000 rows of weight about 1)."""
    p, y, w = _rows(6, 2_003)
    w[-3:] = 1e-12
    job = _weighted_job(
        tmp_path, "mixed", p[:-3], y[:-3], w[:-3], ["brier_score", "log_loss", "expected_calibration_error"]
    )
    pq.write_table(pa.table({"score": p[-3:], "label": y[-3:], "w": w[-3:]}), tmp_path / "data" / "light.parquet")
    spec = spec_module.load(str(job), {"set": ["execution.unit_rows=1000"]})
    result = run_job(spec, show_progress=False)
    assert result.run.metadata["rows"] == 2_003
    values = result.run.point("overall").metrics
    assert values["brier_score"].value == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w), rel=1e-12)
    assert values["log_loss"].value == pytest.approx(skm.log_loss(y, p, sample_weight=w), rel=1e-12)


def test_metric_collection_refuses_light_weights_as_the_functions_do():
    from evaluators.stateful import MetricCollection

    p, y, w = _rows(7)
    collection = MetricCollection(["brier_score", "accuracy"], task="binary")
    collection.update(predictions=p, targets=y, weights=w * 1e-17)
    with pytest.raises(WeightRangeError, match=r"below 2\^-20"):
        collection.compute()


def test_retrieval_weighs_its_queries_not_their_item_rows():
    """A query's weight x value is one fixed-point term: 100 queries of weight 0.01 over 2M item rows are fine (they
    were refused as 2M rows of 5e-7), 100 queries of 1e-9 are not."""
    from evaluators.retrieval import QuerySums

    statistic = QuerySums(10)
    state = {**statistic.zero(), "counts": np.array([100 * 0.01, 100.0, 0.0])}
    statistic.refuse_light(state, 2_000_000)
    with pytest.raises(WeightRangeError, match=r"its 100 queries weigh 1e-09 on average; .* units of 2\^-52 per query"):
        statistic.refuse_light({**state, "counts": np.array([100 * 1e-9, 100.0, 0.0])}, 2_000_000)


def test_a_light_slice_below_its_min_count_does_not_stop_the_job(tmp_path):
    """Five rows of weight 1e-9 under a slice value whose entry reports slices of 100 rows or more: only their row
    count is reported, so nothing reads their sums; the job commits and its overall values equal scikit-learn's."""
    p, y, w = _rows(8, 1_005)
    w[-5:] = 1e-9
    job = _weighted_job(tmp_path, "slice", p, y, w, ["brier_score", "log_loss"])
    table = pq.read_table(tmp_path / "data" / "part.parquet")
    group = ["light" if i >= 1_000 else "ordinary" for i in range(1_005)]
    pq.write_table(table.append_column("group", pa.array(group)), tmp_path / "data" / "part.parquet")
    text = job.read_text() + "slices: [{column: group, min_count: 100}]\n"
    job.write_text(text)
    run = run_job(spec_module.load(str(job)), show_progress=False).run
    assert run.point("overall").metrics["brier_score"].value == pytest.approx(
        skm.brier_score_loss(y, p, sample_weight=w), rel=1e-12
    )
    assert "brier_score" not in run.point("group=light").metrics  # (below min_count: its rows only)


TEXTS = (["the cat sat on the mat", "a b c d", "hello there world"], ["the cat sat on a mat", "a b x d", "hello world"])


@pytest.mark.parametrize("scale", [1e-17, 1e-12])
def test_text_functions_refuse_light_weights_as_a_job_does(scale):
    """ROUGE through the functions read 0.0 at weights of 1e-17 and 0.81 at 1e-15 (rouge_score: 0.7349 at any
    scale), where a job exits 2: the functions make a job's checks of the merged state."""
    from evaluators.functional import corpus_text

    preds, refs = TEXTS
    for function in (corpus_text.rouge_n, corpus_text.rouge_l):  # (fixed-point sums of per-pair scores)
        with pytest.raises(WeightRangeError, match=r"below 2\^-20 \(9\.5e-7\) on average"):
            function(preds, refs, weights=[scale] * 3)
    assert corpus_text.rouge_l(preds, refs, weights=[1e-5] * 3) == pytest.approx(corpus_text.rouge_l(preds, refs))
    for function in (corpus_text.wer, corpus_text.chrf):  # (ratios of float sums: any scale reads the same)
        assert function(preds, refs, weights=[scale] * 3) == pytest.approx(function(preds, refs), rel=1e-12)


def test_functions_refuse_weights_whose_sums_pass_float64():
    """Weights of 1e308 each are finite, but their sum is not: BLEU read 0 and WER, CER, chrF NaN; accuracy, whose
    counts stay finite, NaN. The functions refuse them, as a job does (exit 2)."""
    from evaluators.functional import accuracy, corpus_text

    preds, refs = TEXTS
    for function in (corpus_text.bleu, corpus_text.chrf, corpus_text.wer, corpus_text.cer):
        with pytest.raises(ValueError, match="more than float64 holds"):
            function(preds, refs, weights=[1e308] * 3)
    with pytest.raises(ValueError, match=r"the weights add up to more than float64 holds \(1\.8e308\)"):
        accuracy(np.array([0.9, 0.2, 0.7]), np.array([1, 0, 0]), weights=np.full(3, 1e308))  # (read NaN)
    assert corpus_text.wer(preds, refs, weights=[1e300] * 3) == pytest.approx(corpus_text.wer(preds, refs))
    from evaluators.functional import segmentation

    masks = np.random.default_rng(0).integers(0, 3, (4, 5, 5))
    with pytest.raises(ValueError, match="more than float64 holds"):  # (read NaN)
        segmentation.mean_iou(masks, masks[::-1], num_classes=3, weights=np.full(4, 1.7e308))


def test_a_bare_string_is_not_a_corpus_of_characters():
    """``wer("hello world", "hello worms")`` read each character as a row (0.2; jiwer 0.5)."""
    from evaluators.functional import corpus_text

    with pytest.raises(ValueError, match="one string; expected a sequence of strings"):
        corpus_text.wer("hello world", "hello worms")
    assert corpus_text.wer(["hello world"], ["hello worms"]) == 0.5


def test_a_job_whose_weights_add_up_past_float64_exits_2(tmp_path):
    """Three rows of weight 1e308: each confusion count is finite, their total is not, and the job committed accuracy
    and F1 NaN with exit 0."""
    (tmp_path / "data").mkdir()
    table = pa.table({"p": [0.9, 0.2, 0.7], "y": [1, 0, 0], "w": [1e308] * 3})
    pq.write_table(table, tmp_path / "data" / "part.parquet")
    spec = {
        "name": "heavy",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "p", "targets": "y", "weights": "w"}},
        "task": "binary",
        "metrics": ["accuracy", "f1_score"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(DataError, match=r"column 'w' \(data.columns.weights\): the weights add up to more than"):
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("run.json"))


def test_bleu_counts_whole_copies_and_refuses_fractional_weights():
    """BLEU's exp smoothing reads n-gram totals as counts: weights of 0.01 gave 254.07 where weights of 1 give
    sacrebleu's 25.41, and a job clipped its interval to [100, 100] around 150. Whole weights are repeated rows."""
    import sacrebleu

    from evaluators.functional import corpus_text

    with pytest.raises(WeightRangeError, match="bleu counts a row of weight w as w copies"):
        corpus_text.bleu(["the cat sat on mat"], ["the cat on the mat"], weights=[0.01])
    preds, refs = TEXTS
    repeated = sacrebleu.corpus_bleu([preds[0]] * 3 + preds[1:], [[refs[0]] * 3 + refs[1:]]).score
    assert corpus_text.bleu(preds, refs, weights=[3, 1, 1]) == pytest.approx(repeated, rel=1e-12)
