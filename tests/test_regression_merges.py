"""The regression moments merge without losing what the units' means know: targets of 1e8 that vary by 1e-3 give the
exact R^2 (rational arithmetic) however the rows are split into units, and weights of 1e-170 or 1e155 give
scikit-learn's values in any number of units (the merge's weight product once left float64 there)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from evaluators.accumulate import Accumulator
from evaluators.catalog import build
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.results import load_run
from tests.conftest import write_job

METRICS = ("mse", "mae", "r2", "explained_variance", "pearson_corrcoef")


def _offset_rows(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, n)
    return 1e8 + (base + rng.normal(0, 0.5, n)) * 1e-3, 1e8 + base * 1e-3  # predictions, targets


def _exact(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """R^2, explained variance and r^2 (Pearson's, squared) of float64 rows, in rational arithmetic."""
    ys, ps = [Fraction(v) for v in y], [Fraction(v) for v in p]
    n = len(ys)
    my, mp = sum(ys) / n, sum(ps) / n
    vy = sum((a - my) ** 2 for a in ys)
    vp = sum((b - mp) ** 2 for b in ps)
    cov = sum((a - my) * (b - mp) for a, b in zip(ys, ps, strict=True))
    residual = sum((a - b) ** 2 for a, b in zip(ys, ps, strict=True))
    spread = sum(((a - b) - (my - mp)) ** 2 for a, b in zip(ys, ps, strict=True))
    return {
        "r2": float(1 - residual / vy),
        "explained_variance": float(1 - spread / vy),
        "r_squared": float(cov**2 / (vy * vp)),
    }


def _split_values(p: np.ndarray, y: np.ndarray, w: np.ndarray | None, cuts: list[int], order: list[int]) -> dict:
    """Each part of the rows (cut at ``cuts``) updated alone, then merged in ``order``: what a job's units do."""
    metrics = [build(m, Task("regression")) for m in METRICS]
    acc = Accumulator.for_metrics(metrics)
    (statistic,) = acc.statistics
    parts = []
    for rows in np.split(np.arange(len(y)), cuts):
        batch = {"predictions": p[rows], "targets": y[rows], "weights": None if w is None else w[rows]}
        parts.append(acc.update(acc.zero(), batch)[0])
    merged = parts[order[0]]
    for i in order[1:]:
        merged = statistic.merge(merged, parts[i])
    return {m.name: m.compute(merged)[""] for m in metrics}


@pytest.mark.parametrize("seed", [5150, 7, 31])
def test_large_offsets_with_small_spread_give_the_exact_values_in_any_split(seed):
    p, y = _offset_rows(seed, 1_200)
    exact = _exact(y, p)
    rng = np.random.default_rng(seed)
    splits = [([], [0]), ([400, 800], [0, 1, 2]), (list(range(50, 1200, 50)), list(rng.permutation(24)))]
    for cuts, order in splits:
        got = _split_values(p, y, None, cuts, order)
        assert got["r2"] == pytest.approx(exact["r2"], abs=1e-13), (cuts[:3], got)
        assert got["explained_variance"] == pytest.approx(exact["explained_variance"], abs=1e-13)
        assert got["pearson_corrcoef"] ** 2 == pytest.approx(exact["r_squared"], abs=1e-13)


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e155, 1e160])
def test_weights_far_from_1_give_scikit_learns_values_in_any_number_of_units(scale):
    rng = np.random.default_rng(999)
    y = rng.normal(size=1_000)
    p = y + rng.normal(size=1_000)
    w = rng.uniform(0.5, 2.0, 1_000)
    for cuts in ([], [250, 500, 750], list(range(100, 1_000, 100))):
        got = _split_values(p, y, w * scale, cuts, list(range(len(cuts) + 1)))
        for name in ("mse", "mae", "r2", "explained_variance"):
            reference = {
                "mse": skm.mean_squared_error,
                "mae": skm.mean_absolute_error,
                "r2": skm.r2_score,
                "explained_variance": skm.explained_variance_score,
            }[name](y, p, sample_weight=w)
            # (weights of 1e-300 times squared errors of 1e-8 are subnormal numbers, of fewer digits: 1e-9 relative)
            tolerance = 1e-6 if scale < 1e-290 else 1e-12
            assert got[name] == pytest.approx(reference, rel=tolerance, abs=tolerance), (name, len(cuts), got[name])


def test_a_job_over_offset_targets_gives_the_same_bits_for_any_unit_size(tmp_path):
    """The same rows in three files, run with units of 100 rows and with one unit: the same values, the exact R^2."""
    p, y = _offset_rows(5150, 2_000)
    data = tmp_path / "data"
    data.mkdir()
    for i, (a, b) in enumerate([(0, 700), (700, 1_400), (1_400, 2_000)]):
        pq.write_table(pa.table({"p": p[a:b], "y": y[a:b]}), data / f"{i}.parquet", row_group_size=50)
    values = []
    for unit_rows in (100, 1_000_000):
        spec = {
            "name": f"offset-{unit_rows}",
            "data": {"path": str(data), "columns": {"predictions": "p", "targets": "y"}},
            "task": "regression",
            "metrics": list(METRICS),
            "execution": {"runner": "local", "unit_rows": unit_rows},
            "output": {"uri": str(tmp_path / "out")},
        }
        run = run_job(spec_module.load(str(write_job(tmp_path / f"{unit_rows}.yaml", spec))), show_progress=False)
        values.append({k: m.value for k, m in load_run(run.uri).point("overall").metrics.items()})
    assert values[0] == values[1]
    assert values[0]["r2"] == pytest.approx(_exact(y, p)["r2"], abs=1e-13)
