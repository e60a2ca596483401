"""The cells that split a binned ranking state's bins at rounded scores (:mod:`evaluators.score_grid`).

* the tables of rounded scores hold the float64 and the float32 nearest to ``m / 10**d`` (derived here with exact
  rational arithmetic);
* cells follow the order of the scores over every kind of value near a rounded score (either dtype's rounded
  value, the floats between and next to them, continuous scores, 0, 1, logits beyond) and give a rounded score a
  cell that no other value shares; the compiled cells are the host's;
* beyond ``exact_cells``, rounded scores (1, 2 and 3 decimals, float32 and float64) mixed with continuous ones give
  ROC-AUC and average precision within 1e-6 of scikit-learn, in process and through a sharded job (with bins alone,
  1M such rows gave average precision 1.0e-2, 1.4e-3 and 1.5e-4 away at 1, 2 and 3 decimals);
* ``score_decimals: 0`` is the bins alone, the cells of runs stored before the field: such a run reads for display,
  and is refused for a merge by a statistic with rounded-score cells.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import expit
from sklearn import metrics as skm

from evaluators import catalog
from evaluators.accumulate import Accumulator, evaluate
from evaluators.score_grid import cell_count, decimal_offsets, rounded_values, score_bins, score_cells
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.execute import run_job
from tests.conftest import write_job


@pytest.mark.parametrize("decimals", [1, 2, 3])
def test_rounded_values_are_the_nearest_float64_and_float32(decimals):
    low, high = rounded_values(decimals)
    for m in range(10**decimals + 1):
        exact = Fraction(m, 10**decimals)
        as_float64 = float(exact)  # (a Fraction converts correctly rounded)
        guess = np.float32(as_float64)
        neighbours = [np.nextafter(guess, np.float32(-1)), guess, np.nextafter(guess, np.float32(2))]
        as_float32 = float(min(neighbours, key=lambda v: abs(Fraction(float(v)) - exact)))
        assert (low[m], high[m]) == (min(as_float64, as_float32), max(as_float64, as_float32))


def _values_near_rounded_scores(decimals: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct float64 values in [0, 1]: every rounded score in both dtypes, the floats just below, between and
    just above them, continuous float64 and float32 values, 0, 1, 1/2 and values within 1e-12 of the ends."""
    low, high = rounded_values(decimals)
    parts = [
        low,
        high,
        np.nextafter(low, -1.0),
        np.nextafter(low, 2.0),
        np.nextafter(high, -1.0),
        np.nextafter(high, 2.0),
        rng.random(20_000),
        rng.random(20_000).astype(np.float32).astype(np.float64),
        np.array([0.0, 1.0, 0.5, 1e-12, 1 - 1e-12]),
    ]
    values = np.unique(np.concatenate(parts))
    return values[(values >= 0) & (values <= 1)]


def _assert_cells_follow(values: np.ndarray, cells: np.ndarray, rounded: set[float]) -> None:
    assert np.all(np.diff(cells) >= 0)  # values ascending: cells never step back
    shared = np.flatnonzero(np.diff(cells) == 0)  # neighbours in one cell
    assert not rounded & set(values[shared].tolist()) and not rounded & set(values[shared + 1].tolist())


@pytest.mark.parametrize("decimals", [1, 2, 3])
@pytest.mark.parametrize("bits", [4, 10])
def test_cells_follow_the_scores_and_a_rounded_score_has_its_own(decimals, bits):
    import jax

    values = _values_near_rounded_scores(decimals, np.random.default_rng(decimals))
    rounded = set(np.concatenate(rounded_values(decimals)).tolist())
    cells = score_cells(values, values, bits, decimals)
    assert cells.min() >= 0 and cells.max() < cell_count(bits, decimals)
    normal = (values == 0) | (values >= np.finfo(np.float64).tiny)  # (subnormals count as 0: 0's cell is theirs)
    assert cells[1] == cells[0] and values[1] == np.nextafter(0.0, 1.0)
    _assert_cells_follow(values[normal], cells[normal], rounded)
    assert len(np.unique(cells)) > len(np.unique(score_bins(values, bits)))  # the bins, split
    np.testing.assert_array_equal(score_cells(values, values, bits, 0), score_bins(values, bits))
    with jax.enable_x64(True):
        compiled = jax.jit(lambda x: score_cells(x, x, bits, decimals))(values)
    np.testing.assert_array_equal(np.asarray(compiled), cells)


@pytest.mark.parametrize("decimals", [1, 2, 3, 4, 5])
def test_float32_cells_follow_the_scores_on_the_host_and_compiled_alike(decimals):
    import jax

    rng = np.random.default_rng(decimals + 10)
    rounded = (np.arange(10**decimals + 1) / 10**decimals).astype(np.float32)
    parts = [
        rounded,
        np.nextafter(rounded, np.float32(-1)),
        np.nextafter(rounded, np.float32(2)),
        rng.random(20_000).astype(np.float32),
        np.array([0.0, 1.0, 0.5, 1e-40, 1e-30], np.float32),  # 1e-40: a float32 subnormal, counted as 0
    ]
    values = np.unique(np.concatenate(parts))
    values = values[(values >= 0) & (values <= 1)]
    cells = score_cells(values, values, 10, decimals)
    subnormal = (values > 0) & (values < np.finfo(np.float32).tiny)
    assert subnormal.any() and (cells[subnormal] == cells[values == 0]).all()
    _assert_cells_follow(values[~subnormal], cells[~subnormal], set(rounded.astype(np.float64).tolist()))
    with jax.enable_x64(True):
        compiled = jax.jit(lambda x: score_cells(x, x, 10, decimals))(values)
    np.testing.assert_array_equal(np.asarray(compiled), cells)
    wide = values[~subnormal].astype(np.float64)  # the same scores in float64: the same cells
    np.testing.assert_array_equal(score_cells(wide, wide, 10, decimals), cells[~subnormal])


@pytest.mark.parametrize("decimals", [3, 4, 5])
def test_float16_subnormals_count_as_0_on_the_host_and_compiled_alike(decimals):
    import jax

    values = np.array([0.0, 1e-7, 3e-6, 5.5e-5, 6.2e-5, 1e-4, 0.5], np.float16)  # float16 subnormals below 6.1e-5
    cells = score_cells(values, values, 10, decimals)
    with jax.enable_x64(True):
        compiled = jax.jit(lambda x: score_cells(x, x, 10, decimals))(values)
    np.testing.assert_array_equal(np.asarray(compiled), cells)
    offsets = decimal_offsets(values, decimals)
    assert (offsets[:4] == offsets[0]).all() and offsets[4] > offsets[0]  # (the bins see float32 values)


def test_logit_cells_follow_the_logits():
    # binary and multilabel logits order by the logit: rounded values between 0 and 1 get cells, the rest keep bins
    rng = np.random.default_rng(3)
    logits = np.unique(np.concatenate([np.round(rng.normal(0, 3, 5000), 2), rng.normal(0, 3, 5000), [-0.0, 1.0]]))
    cells = score_cells(expit(logits), logits, 10, 3)
    inside = {float(v) for v in logits if 0 <= v <= 1 and round(v, 3) == v}
    _assert_cells_follow(logits, cells, inside)


def _mixture(seed: int, rows: int, decimals: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Scores of 6% positives; the first half rounded to ``decimals`` (a shard of rounded scores), the rest
    continuous."""
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.06).astype(np.int8)
    s = expit(rng.normal(-1.0, 1.0, rows) + 1.5 * y)
    s[: rows // 2] = np.round(s[: rows // 2], decimals)
    return s.astype(dtype), y


def _ranking_values(scores, y, params, w=None):
    task = Task("binary")
    metrics = [catalog.build(name, task, params) for name in ("roc_auc", "average_precision")]
    return evaluate(metrics, scores, y, w)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decimals", [1, 2, 3])
def test_rounded_and_continuous_scores_beyond_exact_cells_equal_sklearn(decimals, dtype, seed):
    """200,000 rows, every cell binned: measured at most 3.5e-7 (average precision) and 6e-8 (ROC-AUC) on seeds
    0-3."""
    scores, y = _mixture(seed, 200_000, decimals, dtype)
    auc, ap = _ranking_values(scores, y, {"exact_cells": 0})
    reference = skm.roc_auc_score(y, scores.astype(np.float64)), skm.average_precision_score(y, scores.astype(float))
    for got, expected in zip((auc, ap), reference, strict=True):
        assert abs(got[""] - expected) <= 1e-6
        assert abs(got[""] - expected) <= got[".error_bound"] + 1e-12


def test_a_million_mixed_scores_at_the_defaults_equal_sklearn():
    # more distinct scores than exact_cells (250,000): the default state is binned
    scores, y = _mixture(5, 1_000_000, 2, np.float32)
    task = Task("binary")
    statistic = catalog.build("average_precision", task).statistic
    acc = Accumulator([statistic])
    (state,) = acc.to_host(acc.update(acc.zero(), {"predictions": scores, "targets": y}))
    assert np.isnan(state["ties"]).any()  # binned: cells of several continuous scores
    auc, ap = _ranking_values(scores, y, {})
    assert abs(auc[""] - skm.roc_auc_score(y, scores.astype(np.float64))) <= 1e-6
    assert abs(ap[""] - skm.average_precision_score(y, scores.astype(np.float64))) <= 1e-6


def test_a_job_of_rounded_and_continuous_shards_beyond_exact_cells_equals_sklearn(tmp_path: Path):
    """Six Parquet shards, rounded to 2 decimals and continuous in turn, binned past 1,000 distinct scores: the
    same bits read as one file, and scikit-learn's values within 1e-6."""
    rng = np.random.default_rng(21)
    n = 120_000
    y = (rng.random(n) < 0.06).astype(np.int8)
    scores = expit(rng.normal(-1.0, 1.0, n) + 1.5 * y)
    rounded = (np.arange(n) // 20_000) % 2 == 0
    scores[rounded] = np.round(scores[rounded], 2)
    table = pa.table({"score": scores, "label": y})
    values = []
    for files in (1, 6):
        data = tmp_path / f"data{files}"
        data.mkdir()
        for i, rows in enumerate(np.array_split(np.arange(n), files)):
            pq.write_table(table.take(rows), data / f"part-{i}.parquet")
        spec = {
            "name": f"rounded-{files}",
            "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
            "task": "binary",
            "metrics": [
                {"name": "roc_auc", "exact_cells": 1000, "as": "roc_auc"},
                {"name": "average_precision", "exact_cells": 1000, "as": "average_precision"},
            ],
            "execution": {"runner": "local"},
            "output": {"uri": str(tmp_path / "out")},
        }
        run = run_job(spec_module.load(str(write_job(tmp_path / f"job{files}.yaml", spec))), show_progress=False)
        values.append({k: m.value for k, m in run.run.point("overall").metrics.items()})
    assert values[0] == values[1]
    assert abs(values[0]["roc_auc"] - skm.roc_auc_score(y, scores)) <= 1e-6
    assert abs(values[0]["average_precision"] - skm.average_precision_score(y, scores)) <= 1e-6


def test_runs_stored_with_bins_alone_read_for_display_and_are_refused_for_a_merge():
    from pipelines.storage import StoredLayoutError, decode_statistics, decode_stored, encode_statistics
    from pipelines.unit_result import OVERALL

    task = Task("binary")
    now = catalog.build("average_precision", task, {"exact_cells": 0})
    # (runs stored before the field held one cell per bin: the default kept no scores then)
    before = catalog.build("average_precision", task, {"exact_cells": 0, "score_decimals": 0, "bin_scores": 1})
    scores, y = _mixture(2, 20_000, 2, np.float64)
    acc = Accumulator([before.statistic])
    (state,) = acc.to_host(acc.update(acc.zero(), {"predictions": scores, "targets": y}))
    npz, index = encode_statistics(acc.statistics, {OVERALL: (state,)}, slice_rows={OVERALL: len(y)})
    meta = json.loads(index)
    legacy = meta["statistics"][0]["repr"].replace(", score_decimals=0", "")  # the repr stored before the field
    assert legacy in before.statistic.stored_reprs() and legacy in now.statistic.stored_reprs(approximately=True)
    meta["statistics"][0]["repr"] = legacy
    old = json.dumps(meta).encode()
    (shown,) = decode_statistics([now.statistic], npz, old, approximately=True)[OVERALL]
    assert now.compute(shown) == before.compute(state)  # its values read as they were
    with pytest.raises(StoredLayoutError, match="score_decimals"):
        decode_stored([now.statistic], [], npz, old)
    (merged,) = decode_stored([before.statistic], [], npz, old).states[OVERALL]  # bins alone: the same cells
    np.testing.assert_array_equal(merged["keys"], state["keys"])
