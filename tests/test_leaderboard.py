"""calibrax's RankEntry / ScalingLaw records, Run defaults, and the ranking and scaling-law fits over runs.

References: ranks derived by hand in each test; the power law against ``scipy.stats.linregress`` on
``log(size), log(value)``; an end-to-end fit over three committed local runs whose sizes sit in ``vars:``.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.leaderboard import fit_scaling_law, rank_runs
from pipelines.records import Metric, MetricDef, Point, RankEntry, Run, ScalingLaw
from pipelines.results import load_run
from pipelines.synthetic import concatenated, write_shards
from tests.conftest import write_job


def _run(value: float, *, metric: str = "loss", direction: str = "lower", run_id: str = "", **metadata) -> Run:
    point = Point("overall", "all rows", {}, {metric: Metric(value)})
    defs = {metric: MetricDef(metric, direction=direction)}
    return Run((point,), id=run_id or f"r{value}", metric_defs=defs, metadata=metadata)


def test_run_gets_calibrax_defaults_for_id_and_timestamp():
    before = dt.datetime.now(dt.UTC)
    a, b = Run(points=()), Run(points=())
    assert len(a.id) == 12 and int(a.id, 16) >= 0 and a.id != b.id
    assert a.timestamp.tzinfo is not None and before <= a.timestamp <= dt.datetime.now(dt.UTC)
    assert Run.from_dict(a.to_dict()) == a


def test_rank_entry_and_scaling_law_round_trip_through_dicts():
    entry = RankEntry("job/abc", 0.25, 2, False, 0.05)
    assert RankEntry.from_dict(entry.to_dict()) == entry
    law = ScalingLaw(3.0, -0.5, 0.99, "params")
    assert ScalingLaw.from_dict(law.to_dict()) == law
    assert law.predict(100.0) == pytest.approx(0.3)


def test_rank_runs_follows_the_metric_direction_and_shares_ranks_on_ties():
    runs = [_run(v, run_id=f"r{i}") for i, v in enumerate([0.30, 0.10, 0.20, 0.10, float("nan")])]
    table = rank_runs(runs, "loss", label=lambda r: r.id)
    # lower is better: 0.10 (r1, r3) share rank 1, then 0.20 is 3rd, 0.30 4th, NaN last
    assert [(e.label, e.rank, e.is_best) for e in table] == [
        ("r1", 1, True),
        ("r3", 1, True),
        ("r2", 3, False),
        ("r0", 4, False),
        ("r4", 5, False),
    ]
    assert [e.delta_from_best for e in table[:4]] == pytest.approx([0.0, 0.0, 0.10, 0.20])
    assert math.isnan(table[4].delta_from_best)
    higher = rank_runs([_run(v, direction="higher", run_id=f"h{v}") for v in (0.5, 0.9, 0.7)], "loss")
    assert [e.value for e in higher] == [0.9, 0.7, 0.5]
    assert [e.delta_from_best for e in higher] == pytest.approx([0.0, -0.2, -0.4])


def test_rank_runs_names_a_missing_metric_or_point():
    runs = [_run(0.1)]
    with pytest.raises(ValueError, match="no metric 'acc' in point 'overall'; its metrics: loss"):
        rank_runs(runs, "acc")
    with pytest.raises(ValueError, match="no point 'country=fr'"):
        rank_runs(runs, "loss", point="country=fr")


def test_scaling_law_recovers_an_exact_power_law_and_matches_linregress_on_noisy_values():
    sizes = np.array([1e6, 1e7, 1e8, 1e9])
    exact = [_run(2.5 * s**-0.3, run_id=f"e{i}", params=s) for i, s in enumerate(sizes)]
    law = fit_scaling_law(exact, "loss", complexity="params")
    assert law.coefficient == pytest.approx(2.5, rel=1e-9)
    assert law.exponent == pytest.approx(-0.3, rel=1e-9)
    assert law.r_squared == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(0)
    values = 4.0 * sizes**-0.2 * np.exp(rng.normal(0, 0.05, len(sizes)))
    noisy = [_run(float(v), run_id=f"n{i}") for i, v in enumerate(values)]
    fit = fit_scaling_law(noisy, "loss", complexity="flops", sizes={f"n{i}": s for i, s in enumerate(sizes)})
    ref = scipy.stats.linregress(np.log(sizes), np.log(values))
    assert fit.exponent == pytest.approx(ref.slope, rel=1e-9)
    assert fit.coefficient == pytest.approx(math.exp(ref.intercept), rel=1e-9)
    assert fit.r_squared == pytest.approx(ref.rvalue**2, rel=1e-9)
    assert fit.complexity == "flops"


def test_scaling_law_refuses_what_a_power_law_cannot_fit():
    with pytest.raises(ValueError, match="records no 'params'"):
        fit_scaling_law([_run(0.1), _run(0.2)], "loss")
    with pytest.raises(ValueError, match="at least two different 'params' sizes"):
        fit_scaling_law([_run(0.1, run_id="a", params=5), _run(0.2, run_id="b", params=5)], "loss")
    with pytest.raises(ValueError, match="positive, finite sizes and values"):
        fit_scaling_law([_run(0.0, run_id="a", params=5), _run(0.2, run_id="b", params=6)], "loss")


def test_scaling_law_over_committed_runs_reads_sizes_from_their_vars(tmp_path):
    """Three local runs over different shards, each job recording its model size in ``vars:``."""
    runs = []
    accuracy = []
    for i, size in enumerate([1e6, 1e7, 1e8]):
        paths = write_shards(str(tmp_path / f"data{i}"), "binary", 3_000, 2, seed=10 + i)
        cols = concatenated(paths, ["score", "label"])
        accuracy.append(skm.accuracy_score(cols["label"], cols["score"] > 0.5))
        job = {
            "name": "sizes",
            "vars": {"params": size},
            "data": {"path": f"{tmp_path}/data{i}/*.parquet", "columns": {"predictions": "score", "targets": "label"}},
            "task": "binary",
            "metrics": ["accuracy"],
            "execution": {"runner": "local"},
            "output": {"uri": str(tmp_path / "out")},
        }
        outcome = run_job(spec_module.load(str(write_job(tmp_path / f"job{i}.yaml", job))), show_progress=False)
        runs.append(load_run(outcome.uri))
    table = rank_runs(runs, "accuracy")
    assert [e.value for e in table] == pytest.approx(sorted(accuracy, reverse=True), rel=1e-12)
    law = fit_scaling_law(runs, "accuracy", complexity="params")
    ref = scipy.stats.linregress(np.log([1e6, 1e7, 1e8]), np.log(accuracy))
    assert law.exponent == pytest.approx(ref.slope, rel=1e-9, abs=1e-12)
    assert law.r_squared == pytest.approx(ref.rvalue**2, rel=1e-9, abs=1e-12)
