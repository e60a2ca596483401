"""Bins that keep their scores (``bin_scores``, :mod:`evaluators.ranking_bins`): beyond ``exact_cells`` a bin of at
most ``bin_scores`` distinct scores keeps a cell per score, a bin of more is one cell.

* The state is a function of the rows: every sharding, merge order and way of merging (pairwise, many at once)
  gives the same bits as folding all rows at once, and the empty state is the identity (hypothesis, exact equality
  of the integer counts);
* what it keeps is what the rule says: each bin's cells against the distinct scores of its rows;
* a bin that keeps its scores is exact: scikit-learn's value where every bin holds few scores, whatever
  ``exact_cells``;
* a batch counted over the grid keeps the same cells as one sorted row by row;
* 0.2% positives crowded near 0, with and without weights, every row beyond ``exact_cells``: within 1e-6 of
  scikit-learn at ``precision_bits: 10, bin_scores: 16`` (one cell per bin at the default 12 bits: up to 1.9e-6, and
  1.1e-5 weighted), through the functional API and through sharded jobs, bit for bit whatever the work units.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

from evaluators import catalog
from evaluators.accumulate import Accumulator, evaluate
from evaluators.functional import average_precision
from evaluators.ranking_bins import collapse_bins, merge_kept, merge_many_kept
from evaluators.ranking_cells import exact_row_cells
from evaluators.ranking_statistics import row_cells
from evaluators.score_grid import score_cells
from evaluators.task import Task
from pipelines.cli import main as cli_main
from pipelines.results import load_run, load_statistics
from tests.conftest import write_job

KEPT = {"precision_bits": 10, "bin_scores": 16}
"""The setting measured for crowded scores (README, "ROC-AUC and average precision")."""


def _crowded(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.002).astype(np.int8)
    return expit(rng.normal(-7.5, 1.0, rows) + 2.0 * y).astype(np.float32), y


def _rows(rng: np.random.Generator, n: int, weighted: bool) -> dict[str, np.ndarray]:
    levels = rng.random(40)  # repeated scores: ties inside and across shards
    s = np.where(rng.random(n) < 0.5, rng.choice(levels, n), rng.random(n))
    y = (rng.random(n) < 0.3).astype(np.int64)
    w = rng.choice([0.0, 0.5, 1.0, 3.0], n) if weighted else np.ones(n)
    return {"predictions": s, "targets": y, "weights": w}


def _same(a, b):
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 600),
    st.integers(1, 7),
    st.sampled_from([0, 50, 400]),
    st.sampled_from([2, 3, 5]),
    st.booleans(),
)
def test_the_state_is_a_function_of_the_rows(seed, n, pieces, exact_cells, bin_scores, weighted):
    params = {"exact_cells": exact_cells, "bin_scores": bin_scores, "precision_bits": 5, "score_decimals": 0}
    stat = catalog.build("roc_auc", Task("binary"), params).statistic
    acc = Accumulator([stat], host_rows=1 << 40)
    rng = np.random.default_rng(seed)
    rows = _rows(rng, n, weighted)
    (whole,) = acc.update(acc.zero(), rows)
    parts = np.array_split(rng.permutation(n), pieces)
    states = [acc.update(acc.zero(), {k: v[p] for k, v in rows.items()})[0] for p in parts]
    left = functools.reduce(stat.merge, states)
    right = functools.reduce(lambda a, b: stat.merge(b, a), reversed(states))
    _same(left, whole)
    _same(right, whole)
    _same(stat.merge_all([states[i] for i in rng.permutation(len(states))]), whole)
    _same(stat.merge(whole, stat.zero()), stat.merge(stat.zero(), whole))  # the empty state: the identity
    _same(stat.merge(whole, stat.zero()), whole)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([2, 4]))
def test_each_bin_keeps_its_scores_up_to_the_cap(seed, bin_scores):
    rng = np.random.default_rng(seed)
    rows = _rows(rng, 500, weighted=False)
    params = {"exact_cells": 0, "bin_scores": bin_scores, "precision_bits": 4, "score_decimals": 0}
    stat = catalog.build("roc_auc", Task("binary"), params).statistic
    acc = Accumulator([stat], host_rows=1 << 40)
    (state,) = acc.update(acc.zero(), rows)
    s = rows["predictions"]
    live = rows["weights"] > 0
    import jax

    with jax.enable_x64(True):
        bins = np.asarray(score_cells(s, s, 4, 0))[live]
    keys, ties = np.asarray(state["keys"]), np.asarray(state["ties"])
    for b in np.unique(bins):
        distinct = np.unique(s[live][bins == b])
        cells = ties[keys == b]
        if len(distinct) <= bin_scores:
            np.testing.assert_array_equal(cells, distinct)  # one cell per score, ascending
        else:
            assert len(cells) == 1 and np.isnan(cells[0])  # one cell of several scores


def test_merges_of_kept_bins_directly():
    # two states of one bin: 2 + 2 distinct scores stay (cap 4), one more joins the bin
    def cells(scores):
        m = len(scores)
        return {
            "keys": np.zeros(m, np.int64),
            "counts": np.tile([[0, 1 << 32]], (m, 1)),
            "sums": np.zeros((m, 2), np.int64),
            "ties": np.asarray(scores, np.float64),
            "rounded": np.zeros(2, np.int64),
        }

    a, b, c = cells([0.1, 0.2]), cells([0.2, 0.3]), cells([0.4, 0.5])
    ab = merge_kept(a, b, exact_cells=0, bin_scores=4)
    np.testing.assert_array_equal(ab["ties"], [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(ab["counts"][:, 1], [1 << 32, 2 << 32, 1 << 32])
    abc = merge_kept(ab, c, exact_cells=0, bin_scores=4)
    assert len(abc["ties"]) == 1 and np.isnan(abc["ties"][0]) and abc["counts"][0, 1] == 6 << 32
    _same(merge_many_kept([c, b, a], exact_cells=0, bin_scores=4), abc)
    _same(merge_many_kept([b, a], exact_cells=0, bin_scores=4), ab)
    _same(
        collapse_bins({k: v for k, v in abc.items() if k != "rounded"}, 4),
        {k: v for k, v in abc.items() if k != "rounded"},
    )


def test_bins_of_few_scores_are_exact_beyond_exact_cells():
    # 3,000 rows of 150 distinct scores spread over the grid, every cell binned: each bin holds at most a few scores
    rng = np.random.default_rng(4)
    levels = np.sort(rng.random(150))
    s = rng.choice(levels, 3_000)
    y = (rng.random(3_000) < s).astype(np.int64)
    w = rng.exponential(1.0, 3_000)
    for name, reference in (("roc_auc", roc_auc_score), ("average_precision", average_precision_score)):
        params = {"exact_cells": 0, "bin_scores": 16}
        [value] = evaluate([catalog.build(name, Task("binary"), params)], s, y, weights=w)
        assert abs(value[""] - reference(y, s, sample_weight=w)) <= 1e-12
        assert value[".error_bound"] <= 1e-8  # (only the fixed point's rounding of the weights, and float64)


@pytest.mark.parametrize("seed", [0, 1, 105])
def test_a_million_crowded_rows(seed):
    """Measured 4.3e-8, 4.8e-8 and 1.1e-7 (seed 105: 1.9e-6 at the default of one cell per bin)."""
    scores, labels = _crowded(seed, 1_000_000)
    value = average_precision(scores, labels, **KEPT)
    reference = average_precision_score(labels, scores.astype(np.float64))
    assert abs(value - reference) <= 1e-6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_crowded_rows_every_cell_binned(seed):
    """300,000 crowded rows of Exp(1) weights, ``exact_cells: 0``: measured 1.5e-7, 9.7e-9 and 3.6e-8 for average
    precision, 1.4e-7, 2.4e-7 and 2.6e-8 for ROC-AUC."""
    scores, labels = _crowded(seed, 300_000)
    w = np.random.default_rng(seed + 50).exponential(1.0, len(labels))
    for name, reference in (("average_precision", average_precision_score), ("roc_auc", roc_auc_score)):
        metric = catalog.build(name, Task("binary"), {"exact_cells": 0, **KEPT})
        [value] = evaluate([metric], scores, labels, weights=w)
        expected = reference(labels, scores.astype(np.float64), sample_weight=w)
        assert abs(value[""] - expected) <= 1e-6
        assert abs(value[""] - expected) <= value[".error_bound"]


@pytest.mark.parametrize("weighted", [False, True])
def test_a_batch_counted_over_the_grid_keeps_the_cells_of_one_sorted_row_by_row(weighted):
    rng = np.random.default_rng(9)
    n = 60_000
    edges = np.array([0.0, -0.0, 1.0, 0.5, 0.25, 1e-13, 1 - 1e-13, 0.37])
    s = np.where(rng.random(n) < 0.2, rng.choice(edges, n), expit(rng.normal(-3, 0.7, n)))  # crowded bins too
    s = np.where(rng.random(n) < 0.2, np.round(s, 4), s)  # ties beside continuous scores
    y = (rng.random(n) < 0.1).astype(np.int64)
    w = rng.choice([0.0, 0.5, 1.0, 2.5, 1e-12], n) if weighted else np.ones(n)
    batch = {"predictions": s, "targets": y, "weights": w}
    stat = catalog.build("roc_auc", Task("binary"), {"exact_cells": 0, **KEPT}).statistic
    assert stat._fills_grid(batch)
    grid = stat._grid_update(batch)
    keys, label, weight, moment, score, live, _, square = row_cells(stat, batch)
    square = None if square is None else square[live]
    rows = exact_row_cells(keys[live], label[live], weight[live], moment[live], score[live], square)
    sorted_ = collapse_bins(rows, stat.bin_scores)
    assert np.isnan(grid["ties"]).any() and (np.diff(grid["keys"]) == 0).any()  # bins of both forms
    for key in ("keys", "counts", "sums", "ties", *(("squares",) if weighted else ())):
        np.testing.assert_array_equal(np.asarray(grid[key]), np.asarray(sorted_[key]), err_msg=key)


def test_runs_of_one_cell_per_bin_read_for_display_and_never_merge():
    kept = catalog.build("roc_auc", Task("binary"), KEPT).statistic
    plain = catalog.build("roc_auc", Task("binary"), {"precision_bits": 10, "bin_scores": 1}).statistic
    assert "bin_scores" not in repr(plain)  # (the repr of runs stored before the setting)
    assert repr(plain) in kept.stored_reprs(approximately=True) and repr(plain) not in kept.stored_reprs()
    # the binary default keeps scores: runs of the earlier defaults (10, then 12 bits, one cell per bin) read, never
    # merge
    default = catalog.build("roc_auc", Task("binary")).statistic
    assert (default.precision_bits, default.bin_scores) == (11, 8)
    for bits in (10, 12):
        earlier = catalog.build("roc_auc", Task("binary"), {"precision_bits": bits, "bin_scores": 1}).statistic
        assert repr(earlier) in default.stored_reprs(approximately=True)
        assert repr(earlier) not in default.stored_reprs()
    assert catalog.build("roc_auc", Task("multiclass", num_classes=3)).statistic.bin_scores == 1


def test_a_sharded_job_equals_scikit_learn_bit_for_bit_whatever_the_units(tmp_path, capsys):
    rng = np.random.default_rng(12)
    data = tmp_path / "data"
    data.mkdir()
    scores, labels = _crowded(3, 400_000)
    w = rng.exponential(1.0, len(labels))
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 4)):
        table = pa.table({"score": scores[part], "label": labels[part], "w": w[part]})
        pq.write_table(table, data / f"part-{i}.parquet")
    values = []
    for unit_rows in (30_000, 1_000_000):
        metrics = [{"name": name, "as": name, "exact_cells": 0, **KEPT} for name in ("roc_auc", "average_precision")]
        spec = {
            "name": f"kept-{unit_rows}",
            "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label", "weights": "w"}},
            "task": "binary",
            "metrics": metrics,
            "execution": {"runner": "local", "unit_rows": unit_rows},
            "output": {"uri": str(tmp_path / "out")},
        }
        assert cli_main(["run", str(write_job(tmp_path / f"job-{unit_rows}.yaml", spec)), "--quiet"]) == 0
        uri = capsys.readouterr().out.strip().splitlines()[-1].split('"run_uri": "')[1].split('"')[0]
        metrics_of = load_run(uri).point("overall").metrics
        values.append({name: metrics_of[name].value for name in ("roc_auc", "average_precision")})
        state = load_statistics(uri).state("roc_auc", "overall")
        assert (np.diff(np.asarray(state["keys"])) == 0).any()  # bins that kept their scores, stored so
    assert values[0] == values[1]
    for name, reference in (("roc_auc", roc_auc_score), ("average_precision", average_precision_score)):
        assert abs(values[0][name] - reference(labels, scores.astype(np.float64), sample_weight=w)) <= 1e-6
