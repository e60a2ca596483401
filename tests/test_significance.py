"""Paired bootstrap significance between runs and between slices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.bootstrap import buckets
from pipelines.execute import run_job
from pipelines.reduce import build_points
from pipelines.significance import bootstrap_difference_test, compare_runs, compare_slices
from pipelines.spec import ConfidenceSpec, MetricSpec
from pipelines.unit_result import Partial
from tests.conftest import write_job

ACCURACY = catalog.build("accuracy", Task("binary"))
ACCUMULATOR = Accumulator([ACCURACY.statistic])


def _accuracy_metric(p: np.ndarray, y: np.ndarray, keys: np.ndarray, confidence: ConfidenceSpec):
    acc = ACCUMULATOR
    cols = {"predictions": p, "targets": y}
    state = acc.update(acc.zero(), cols)
    grouped = acc.update_grouped(acc.zero_grouped(confidence.buckets), cols, buckets(keys, confidence.buckets, 0))
    partial = Partial({(): state}, {(): grouped}, {(): len(y)})
    points, _ = build_points("sim", acc, [(MetricSpec("accuracy", "accuracy"), ACCURACY)], partial, (), confidence, acc)
    return points[0].metrics["accuracy"]


def test_replicate_spread_of_an_accuracy_difference_matches_the_paired_formula():
    """Two classifiers on the same 20,000 rows: the bootstrap SD of the accuracy difference equals the
    paired (McNemar) standard error sqrt((b + c) / n^2 - (b - c)^2 / n^3), b and c the discordant counts."""
    rng = np.random.default_rng(5)
    n = 20_000
    y = (rng.random(n) < 0.4).astype(np.int64)
    latent = rng.normal(0, 1, n) + 1.2 * y
    p1 = 1 / (1 + np.exp(-(latent + rng.normal(0, 0.8, n) - 0.5)))
    p2 = 1 / (1 + np.exp(-(latent + rng.normal(0, 0.8, n) - 0.6)))
    confidence = ConfidenceSpec(replicates=400, level=0.95, seed=0, buckets=256, samples=True)
    keys = np.arange(n, dtype=np.uint64)
    m1, m2 = (_accuracy_metric(p, y, keys, confidence) for p in (p1, p2))
    right1, right2 = (p1 > 0.5) == y, (p2 > 0.5) == y
    b, c = np.sum(right1 & ~right2), np.sum(~right1 & right2)
    se = np.sqrt((b + c) / n**2 - (b - c) ** 2 / n**3)
    result = bootstrap_difference_test(m1, m2)
    assert result.effect_size == pytest.approx(right1.mean() - right2.mean(), abs=1e-15)
    spread = np.std(np.asarray(m1.samples) - np.asarray(m2.samples), ddof=1)
    assert spread == pytest.approx(se, rel=0.15)
    assert result.statistic == pytest.approx(result.effect_size / spread, rel=1e-12)


def test_false_positive_rate_and_power_on_simulated_pairs():
    """200 datasets where two models have the same accuracy (rejections at alpha 0.05 should be about 5%),
    and 100 where one is better by about 3 standard errors (nearly always rejected)."""
    rng = np.random.default_rng(9)
    n = 2_000
    confidence = ConfidenceSpec(replicates=200, level=0.95, seed=0, buckets=64, samples=True)
    rejected_null = rejected_alt = 0
    for d in range(300):
        y = (rng.random(n) < 0.4).astype(np.int64)
        latent = rng.normal(0, 1, n) + 1.0 * y
        shift = 0.0 if d < 200 else 0.9
        p1 = 1 / (1 + np.exp(-(latent + rng.normal(0, 1.0, n) - 0.4)))
        p2 = 1 / (1 + np.exp(-(latent + rng.normal(0, 1.0, n) * (1 - shift) - 0.4)))
        keys = np.arange(d * n, (d + 1) * n, dtype=np.uint64)
        result = bootstrap_difference_test(*(_accuracy_metric(p, y, keys, confidence) for p in (p1, p2)))
        if d < 200:
            rejected_null += result.significant
        else:
            rejected_alt += result.significant
    assert 0.02 <= rejected_null / 200 <= 0.09, rejected_null
    assert rejected_alt / 100 >= 0.9, rejected_alt


def _two_model_files(tmp_path, rows=6_000):
    rng = np.random.default_rng(3)
    y = (rng.random(rows) < 0.3).astype(np.int8)
    latent = rng.normal(0, 1, rows) + 1.5 * y
    table = pa.table(
        {
            "row_id": np.arange(rows, dtype=np.int64),
            "label": y,
            "old": (1 / (1 + np.exp(-(latent + rng.normal(0, 1.5, rows) - 1)))).astype(np.float32),
            "new": (1 / (1 + np.exp(-(latent + rng.normal(0, 0.5, rows) - 1)))).astype(np.float32),
            "country": rng.choice(["US", "DE"], rows),
        }
    )
    directory = tmp_path / "data"
    directory.mkdir()
    for i in range(3):
        pq.write_table(table.slice(i * rows // 3, rows // 3), directory / f"part-{i}.parquet", row_group_size=500)
    return directory


def _run(tmp_path, directory, column, seed=0):
    spec = {
        "name": f"model-{column}",
        "data": {"path": str(directory), "columns": {"predictions": column, "targets": "label", "row_id": "row_id"}},
        "task": "binary",
        "metrics": ["accuracy", {"name": "roc_auc", "as": "auc"}],
        "slices": [{"column": "country"}],
        "confidence": {"replicates": 200, "seed": seed, "buckets": 64, "samples": True},
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_job(tmp_path / f"{column}-{seed}.yaml", spec)
    return run_job(spec_module.load(str(path)), show_progress=False).run


def test_compare_runs_pairs_replicates_by_row_key(tmp_path):
    directory = _two_model_files(tmp_path)
    old, new = _run(tmp_path, directory, "old"), _run(tmp_path, directory, "new")
    assert old.metadata["bootstrap"]["row_key"] == "column:row_id"
    for metric in ("accuracy", "auc"):
        result = compare_runs(new, old, metric)
        a, b = new.point("overall").metrics[metric], old.point("overall").metrics[metric]
        assert result.effect_size == a.value - b.value
        assert result.method == "paired_bootstrap"
        assert result == bootstrap_difference_test(a, b)
        assert result.significant and result.p_value < 0.01 and result.effect_size > 0  # the new model is better
    # the same model against itself: no difference at all
    same = compare_runs(old, _run(tmp_path / "again", directory, "old"), "auc")
    assert same.effect_size == 0 and same.p_value == 1.0 and not same.significant
    # differently seeded replicates are not paired
    with pytest.raises(ValueError, match="bootstrapped differently"):
        compare_runs(new, _run(tmp_path / "other", directory, "old", seed=1), "accuracy")


def test_compare_slices_within_a_run(tmp_path):
    directory = _two_model_files(tmp_path)
    run = _run(tmp_path, directory, "new")
    result = compare_slices(run, "accuracy", "country=US", "country=DE")
    us, de = run.point("country=US").metrics["accuracy"], run.point("country=DE").metrics["accuracy"]
    assert result.effect_size == us.value - de.value
    differences = np.asarray(us.samples) - np.asarray(de.samples)
    expected_p = (1 + np.sum(np.abs(differences - differences.mean()) >= abs(us.value - de.value))) / 201
    assert result.p_value == pytest.approx(expected_p, abs=1e-15)


def test_an_alpha_the_replicates_cannot_reach_is_refused_not_a_gate_that_never_fires(tmp_path, capsys):
    """With 200 replicates the smallest p-value is 1/201: at ``--alpha 0.001`` no difference could be significant, and
    ``compare`` printed "0 regressed" (exit 0) for a model worse by 14 standard deviations. Refused (exit 2) naming
    the replicates it would take. Runs over other rows are not paired (no p-value): any alpha is taken there."""
    from pipelines.cli import main
    from pipelines.errors import UserError
    from pipelines.results import compare_all

    directory = _two_model_files(tmp_path)
    old, new = _run(tmp_path, directory, "old"), _run(tmp_path, directory, "new")
    assert any(c.regressed for c in compare_all(new, old, alpha=0.05, force=True))  # (the old model is the worse one)
    assert any(c.regressed for c in compare_all(new, old, alpha=1 / 200, force=True))  # (above 1/201: reachable)
    with pytest.raises(UserError, match=r"alpha 0.001 cannot be reached with 200 bootstrap replicates.*1/201.* 1000"):
        compare_all(new, old, alpha=0.001, force=True)
    runs = sorted(str(p.parent) for p in (tmp_path / "out").glob("*/*/_COMMITTED"))
    assert main(["compare", *runs, "--alpha", "0.004", "--force"]) == 2
    err = capsys.readouterr().err
    assert "alpha 0.004 cannot be reached with 200 bootstrap replicates" in err and "at least 250" in err, err
    # runs over other rows are not paired: no p-value, so any alpha is taken (the tolerance decides)
    other = tmp_path / "other-rows"
    other.mkdir()
    table = pq.read_table(next(directory.glob("*.parquet")))
    pq.write_table(table.slice(0, table.num_rows // 2), other / "part.parquet")
    fewer = _run(tmp_path / "fewer", other, "old")
    assert compare_all(new, fewer, alpha=0.001, force=True)


def test_a_slice_whose_rows_moved_between_runs_is_not_paired(tmp_path):
    """The same row ids (the runs are paired) but 30 rows moved from one country to the other: ``compare`` tested
    the slices with their replicates as if paired (p = 0.02), where ``compare_runs`` refuses that pair. Such a point
    is judged by the tolerance alone (no significance), the overall point stays paired."""
    from pipelines.results import compare_all

    directory = _two_model_files(tmp_path)
    old = _run(tmp_path, directory, "new")
    moved = tmp_path / "moved"
    moved.mkdir()
    for path in sorted(directory.glob("*.parquet")):
        table = pq.read_table(path)
        country = table.column("country").to_pylist()
        country[:10] = ["DE" if c == "US" else "US" for c in country[:10]]
        table = table.set_column(table.schema.get_field_index("country"), "country", pa.array(country))
        pq.write_table(table, moved / path.name)
    new = _run(tmp_path / "second", moved, "new")
    assert new.metadata["rows_digest"] == old.metadata["rows_digest"]
    comparisons = compare_all(old, new, force=True)
    assert all(c.significance is not None for c in comparisons if c.point == "overall" and c.metric == "accuracy")
    slices = [c for c in comparisons if c.point.startswith("country=")]
    assert slices and all(c.significance is None for c in slices)
    with pytest.raises(ValueError, match="a paired comparison needs the same rows"):
        compare_runs(new, old, "accuracy", point="country=US")
