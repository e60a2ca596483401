"""The stored ranking state: occupied bins only, integer counts, sorted-key union merge.

* the stored state of :class:`~evaluators.ranking.ScoreHistogram` holds one cell per occupied
  (class, bin), in key order, with int64 counts equal to a hand-made bincount of the fixed-point
  weights, and is much smaller than the bin grid;
* small batches (sorted into the stored form on the host) and large ones (scattered into the
  dense working histogram of a unit) give identical states, for binary, multiclass and
  multilabel tasks with ignored entries and zero weights;
* the value lies within the reported ``.error_bound`` of scikit-learn's on each kind of data
  the ranking metrics are held to (rounded and continuous shards mixed, rare positives with
  crowded scores, continuous float32 / float64 scores, sample weights), over several seeds;
* a run stored before the sparse form (a dense ``counts`` / ``lo`` / ``hi`` histogram in
  ``statistics.npz``) still loads: the same values, curves and comparison.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import expit
from sklearn import metrics as skm

from evaluators import catalog
from evaluators.accumulate import Accumulator, evaluate
from evaluators.ranking import CLASS_SHIFT, WEIGHT_BITS, ScoreHistogram, bin_count, is_exact, is_sparse
from evaluators.score_grid import cell_count, score_cells
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.plots import precision_recall_figure, roc_figure
from pipelines.results import compare_all, load_statistics
from pipelines.stacked_arrays import unstack_arrays
from pipelines.storage import COMMIT_MARKER, STATISTICS_FILE, STATISTICS_INDEX
from pipelines.synthetic import binary_table
from tests.conftest import write_job


def test_stored_state_holds_the_occupied_bins_with_integer_counts():
    import jax

    rng = np.random.default_rng(5)
    n = 50_000
    y = (rng.random(n) < 0.1).astype(np.int8)
    scores = expit(rng.normal(size=n) + 2.0 * y - 2.0)
    w = rng.choice([0.0, 0.5, 1.0, 3.0], n)
    one_cell = {"exact_cells": 0, "bin_scores": 1}  # binned from the first row, one cell per occupied bin
    stat = catalog.build("roc_auc", Task("binary"), one_cell).statistic
    assert isinstance(stat, ScoreHistogram)
    acc = Accumulator([stat])
    (state,) = acc.update(acc.zero(), {"predictions": scores, "targets": y, "weights": w})
    assert is_sparse(state) and state["counts"].dtype == np.int64
    with jax.enable_x64(True):
        bins = np.asarray(score_cells(scores, scores, stat.precision_bits, stat.score_decimals))
    live = w > 0
    occupied = np.unique(bins[live])
    np.testing.assert_array_equal(state["keys"], occupied)  # class 0: key == cell, ascending
    fixed = np.round(w * 2.0**WEIGHT_BITS).astype(np.int64)
    for label in (0, 1):
        expected = np.bincount(bins, np.where(y == label, fixed, 0).astype(np.float64), stat.cell_count())
        np.testing.assert_array_equal(state["counts"][:, label], expected[occupied].astype(np.int64))
    # a bin is tied exactly when its live rows share one score
    for cell, tie in zip(state["keys"][:200], state["ties"][:200], strict=True):
        distinct = np.unique(scores[live & (bins == cell)])
        assert (len(distinct) == 1 and tie == distinct[0]) or (len(distinct) > 1 and np.isnan(tie))
    stored = sum(a.nbytes for a in state.values())
    dense = stat.cell_count() * (2 + 2 + 2) * 8  # the working histogram: counts and sums [2, B], lo and hi [B]
    assert stored < dense / 4


@pytest.mark.parametrize(
    "task",
    [Task("binary"), Task("multiclass", 5), Task("multilabel", 3, ignore_index=-1)],
    ids=["binary", "multiclass", "multilabel-ignore"],
)
def test_small_and_large_batches_give_identical_states(task):
    rng = np.random.default_rng(11)
    n = 40_000
    if task.kind.value == "binary":
        preds, targets = np.round(rng.random(n), 3), (rng.random(n) < 0.3).astype(np.int64)
    elif task.kind.value == "multiclass":
        preds, targets = rng.dirichlet(np.ones(5), n), rng.integers(0, 5, n)
    else:
        preds, targets = rng.random((n, 3)), (rng.random((n, 3)) < 0.3).astype(np.int64)
        targets[rng.random((n, 3)) < 0.1] = -1
    w = rng.choice([0.0, 0.5, 1.0, 2.0], n)
    stat = catalog.build("average_precision", task).statistic
    acc = Accumulator([stat])
    (whole,) = acc.update(acc.zero(), {"predictions": preds, "targets": targets, "weights": w})
    state = acc.zero()
    cuts = np.sort(rng.choice(n, 12, replace=False))
    big = n // 2  # one piece past the small-batch limit: the dense working path between small ones
    for rows in [*np.split(np.arange(big), cuts[cuts < big]), np.arange(big, n)]:
        batch = {"predictions": preds[rows], "targets": targets[rows], "weights": w[rows]}
        state = acc.update(state, batch, to_host=False)
    (folded,) = acc.to_host(state)
    assert len(whole["keys"]) > 1000
    assert set(folded) == set(whole)  # (squares where some weight is not 1)
    for key in ("keys", "counts", "sums", "ties", "squares"):
        if key in whole:
            np.testing.assert_array_equal(folded[key], whole[key])
    classes = np.asarray(whole["keys"]) >> CLASS_SHIFT
    assert set(np.unique(classes)) == set(range(1 if task.kind.value == "binary" else task.classes))


# --- the kinds of data the ranking metrics are held to -------------------------------------------


def _mixture(rng):
    """Shards of scores rounded to 2 decimals and shards of continuous scores; 6% positives."""
    n = 60_000
    y = (rng.random(n) < 0.06).astype(np.int64)
    s = expit(rng.normal(size=n) + 1.5 * y - 2.0)
    rounded = (np.arange(n) // 10_000) % 2 == 0
    s[rounded] = np.round(s[rounded], 2)
    return s, y, None


def _crowded(rng):
    """0.2% positives; scores a sigmoid of N(-7.5, 1), positives shifted by +2."""
    n = 200_000
    y = (rng.random(n) < 0.002).astype(np.int64)
    return expit(rng.normal(-7.5, 1.0, n) + 2.0 * y), y, None


def _continuous64(rng):
    n = 100_000
    y = (rng.random(n) < 0.05).astype(np.int64)
    return expit(rng.normal(size=n) + 1.5 * y - 1.0), y, None


def _continuous32(rng):
    s, y, _ = _continuous64(rng)
    return s.astype(np.float32), y, None


def _weighted(rng):
    s, y, _ = _continuous64(rng)
    return s, y, rng.uniform(0.1, 3.0, len(y))


KINDS = {
    "mixture": _mixture,
    "crowded": _crowded,
    "continuous64": _continuous64,
    "continuous32": _continuous32,
    "weighted": _weighted,
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", list(KINDS))
def test_default_values_equal_sklearns_within_1e_6(kind, seed):
    # the default state keeps every distinct score (at most EXACT_CELLS of them): exact but for the weights'
    # fixed point, whose effect the bound covers
    scores, y, w = KINDS[kind](np.random.default_rng(seed))
    task = Task("binary")
    metrics = [catalog.build("roc_auc", task), catalog.build("average_precision", task)]
    auc, ap = evaluate(metrics, scores, y, w)
    reference = (
        skm.roc_auc_score(y, scores, sample_weight=w),
        skm.average_precision_score(y, scores, sample_weight=w),
    )
    for got, expected in zip((auc, ap), reference, strict=True):
        assert abs(got[""] - expected) <= 1e-6
        assert abs(got[""] - expected) <= got[".error_bound"] + 1e-15
        assert got[".error_bound"] < 1e-6  # float64 evaluation over the cells, and the weights' fixed point


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", list(KINDS))
def test_binned_value_lies_within_its_bound_of_sklearn(kind, seed):
    scores, y, w = KINDS[kind](np.random.default_rng(seed))
    task = Task("binary")
    binned = {"exact_cells": 0}  # one cell per bin from the first row: the state of more than EXACT_CELLS scores
    metrics = [catalog.build("roc_auc", task, binned), catalog.build("average_precision", task, binned)]
    auc, ap = evaluate(metrics, scores, y, w)
    reference = (
        skm.roc_auc_score(y, scores, sample_weight=w),
        skm.average_precision_score(y, scores, sample_weight=w),
    )
    for got, expected in zip((auc, ap), reference, strict=True):
        assert 0 <= got[".error_bound"] < 0.01
        assert abs(got[""] - expected) <= got[".error_bound"] + 1e-12
    # the positions within bins order positives and negatives, and rounded scores have cells of their own
    assert abs(auc[""] - reference[0]) <= 1e-6


def test_a_job_of_mixed_rounded_and_continuous_shards_equals_sklearn_whatever_the_sharding(tmp_path: Path):
    """Through the pipeline: the mixture of rounded and continuous score shards, weighted, read as 1 and as 6
    Parquet files, gives scikit-learn's values within 1e-6 and the same bits either way."""
    scores, y, _ = _mixture(np.random.default_rng(11))
    w = np.random.default_rng(12).uniform(0.1, 3.0, len(y))
    table = pa.table({"score": scores, "label": y, "w": w})
    values = []
    for files in (1, 6):
        data = tmp_path / f"data{files}"
        data.mkdir()
        for i, rows in enumerate(np.array_split(np.arange(len(y)), files)):
            pq.write_table(table.take(rows), data / f"part-{i}.parquet")
        spec = {
            "name": f"mixture-{files}",
            "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label", "weights": "w"}},
            "task": "binary",
            "metrics": ["roc_auc", "average_precision"],
            "execution": {"runner": "local"},
            "output": {"uri": str(tmp_path / "out")},
        }
        run = run_job(spec_module.load(str(write_job(tmp_path / f"job{files}.yaml", spec))), show_progress=False)
        values.append({k: m.value for k, m in run.run.point("overall").metrics.items()})
    assert values[0] == values[1]
    assert abs(values[0]["roc_auc"] - skm.roc_auc_score(y, scores, sample_weight=w)) <= 1e-6
    assert abs(values[0]["average_precision"] - skm.average_precision_score(y, scores, sample_weight=w)) <= 1e-6


# --- runs stored before the sparse form ------------------------------------------------------------


def _densify(npz: bytes, index: bytes, statistics: list[ScoreHistogram | None]) -> bytes:
    """``statistics.npz`` with every stored ranking state rewritten as the dense float64 histogram runs
    kept before the sparse form (``counts [K, 2, B]``, ``lo`` / ``hi [K, B]``)."""
    meta = json.loads(index)
    with np.load(io.BytesIO(npz)) as data:
        arrays = unstack_arrays({k: data[k] for k in data.files})  # (one array per slice, as runs stored them)
    for s in range(len(meta["slices"])):
        for t, stat in enumerate(statistics):
            if stat is None:
                continue
            prefix = f"s{s}/t{t}"
            sparse = {k: arrays.pop(f"{prefix}/{k}") for k in ("keys", "counts", "sums", "ties")}
            for since in ("rounded", "squares"):  # (counted since)
                arrays.pop(f"{prefix}/{since}", None)
            working = stat.working(sparse)
            arrays[f"{prefix}/counts"] = working["counts"] / 2.0**WEIGHT_BITS
            arrays[f"{prefix}/lo"], arrays[f"{prefix}/hi"] = working["lo"], working["hi"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


def test_a_run_stored_with_the_dense_histogram_still_loads(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    table = binary_table(np.random.default_rng(3), 6000)
    pq.write_table(table.slice(0, 3000), data / "part-0.parquet")
    pq.write_table(table.slice(3000), data / "part-1.parquet")
    spec = {
        "name": "legacy-ranking",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        # one cell per bin from the first row, as the dense histograms of older runs held
        "metrics": [
            {"name": "roc_auc", "as": "roc_auc", "exact_cells": 0, "bin_scores": 1},
            {"name": "average_precision", "as": "average_precision", "exact_cells": 0, "bin_scores": 1},
            "accuracy",
        ],
        "slices": [{"column": "country"}],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    uri = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).uri
    sparse = load_statistics(uri)
    statistics = [s["type"] for s in json.loads((Path(uri) / STATISTICS_INDEX).read_bytes())["statistics"]]
    assert "ScoreHistogram" in statistics
    ranking = sparse.metric("roc_auc").statistic
    path = Path(uri) / STATISTICS_FILE
    path.write_bytes(
        _densify(
            path.read_bytes(),
            (Path(uri) / STATISTICS_INDEX).read_bytes(),
            [ranking if t == "ScoreHistogram" else None for t in statistics],
        )
    )
    manifest = json.loads((Path(uri) / COMMIT_MARKER).read_text())  # the older run committed the file it wrote
    manifest["files"][STATISTICS_FILE] = path.stat().st_size
    (Path(uri) / COMMIT_MARKER).write_text(json.dumps(manifest))
    dense = load_statistics(uri)
    for point in ("overall", "country=US"):
        state = dense.state("roc_auc", point)
        assert not is_sparse(state) and state["counts"].dtype == np.float64
        for key in ("roc_auc", "average_precision"):
            # an older run has no positions within bins: its values are those of the same cells without them (the
            # dense grid they fill); ROC-AUC's equal those of positions all equal
            without_positions = ranking.working(sparse.state(key, point))
            before = sparse.metric(key).compute(without_positions)
            if key == "roc_auc":
                zero = {**sparse.state(key, point), "sums": np.zeros_like(sparse.state(key, point)["sums"])}
                assert sparse.metric(key).compute(zero) == pytest.approx(before, rel=1e-12, abs=1e-15)
            after = dense.metric(key).compute(dense.state(key, point))
            assert set(before) == set(after)
            for suffix, value in before.items():
                assert after[suffix] == pytest.approx(value, rel=1e-12, abs=1e-15)
    score = table.column("score").to_numpy().astype(np.float64)
    label = table.column("label").to_numpy()
    for figure, gid in ((roc_figure, "roc[0]"), (precision_recall_figure, "pr[0]")):  # the same curves
        lines = [
            next(line for ax in figure(s).axes for line in ax.lines if line.get_gid() == gid) for s in (sparse, dense)
        ]
        np.testing.assert_allclose(lines[0].get_ydata(), lines[1].get_ydata(), rtol=0, atol=1e-12)
    auc = dense.metric("roc_auc").compute(dense.state("roc_auc"))
    assert abs(auc[""] - skm.roc_auc_score(label, score)) <= auc[".error_bound"] + 1e-12
    comparisons = compare_all(uri, uri)
    assert comparisons and not any(c.regressed for c in comparisons)


@pytest.mark.parametrize("bin_scores", [1, 16], ids=["one-cell-per-bin", "kept-scores"])
@pytest.mark.parametrize("exact_cells", [0, 3_000, 1 << 20], ids=["binned", "exact-then-binned", "exact"])
def test_merged_state_is_identical_whatever_the_sharding(exact_cells, bin_scores):
    rng = np.random.default_rng(8)
    n = 20_000
    y = (rng.random(n) < 0.06).astype(np.int64)
    s = expit(rng.normal(size=n) + 1.5 * y - 2.0)
    s[: n // 2] = np.round(s[: n // 2], 2)
    w = rng.uniform(0.1, 3.0, n)  # arbitrary float weights: the integer counts still add exactly
    stat = catalog.build("roc_auc", Task("binary"), {"exact_cells": exact_cells, "bin_scores": bin_scores}).statistic
    acc = Accumulator([stat])
    results = []
    for pieces in (1, 3, 17):
        order = rng.permutation(n)
        states = [
            acc.update(acc.zero(), {"predictions": s[r], "targets": y[r], "weights": w[r]})[0]
            for r in np.array_split(order, pieces)
        ]
        rng.shuffle(states)
        merged = states[0]
        for other in states[1:]:
            merged = stat.merge(other, merged)
        results.append(merged)
    for other in results[1:]:
        assert set(other) == set(results[0]) and "squares" in other  # (weighted rows)
        for key in ("keys", "counts", "sums", "ties", "squares", "rounded"):
            np.testing.assert_array_equal(other[key], results[0][key])
    if bin_scores == 1:  # (kept scores: a binned state of bins of few scores reads as exact cells)
        assert is_exact(results[0]) == (exact_cells == 1 << 20)


def test_a_state_turned_binned_by_the_compiled_update_keeps_its_count_of_rounded_weights():
    # three rounded weights (0.1), two scores in one bin, then a batch that alone holds more than exact_cells
    # scores: folded into the state by the compiled update, or merged with it, the states are the same bits
    stat = catalog.build("roc_auc", Task("binary"), {"exact_cells": 1000}).statistic
    rng = np.random.default_rng(4)
    small = {
        "predictions": np.array([0.30001, 0.30002, 0.9]),
        "targets": np.array([0, 1, 1]),
        "weights": np.full(3, 0.1),
    }
    large = {"predictions": rng.random(20_000), "targets": rng.integers(0, 2, 20_000), "weights": np.full(20_000, 0.1)}
    acc = Accumulator([stat], host_rows=0)
    (first,) = acc.update(acc.zero(), small)
    assert is_exact(first) and first["rounded"].tolist() == [1, 2]
    (folded,) = acc.update((first,), large)
    (alone,) = acc.update(acc.zero(), large)
    merged = stat.merge(first, alone)
    assert set(folded) == set(merged) and "squares" in folded  # (weights of 0.1)
    for key in ("keys", "counts", "sums", "ties", "squares", "rounded"):
        np.testing.assert_array_equal(folded[key], merged[key])
    assert folded["rounded"].sum() == 20_003


@pytest.mark.slow
def test_bench_ranking_parts_run_on_small_sizes():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import bench_ranking

    reduce = bench_ranking.reduce_figures(units=40, unit_rows=5000)
    # the sparse merge and the dense one of the same units give the same binned value, from a far smaller state
    assert reduce["binned_roc_auc"] == reduce["dense"]["roc_auc"]
    assert reduce["stored"]["state_bytes_per_unit"] < reduce["dense"]["state_bytes_per_unit"] / 4
    assert reduce["shipped"]["roc_auc"] == reduce["stored"]["roc_auc"]  # as workers ship them: the same merge
    wide = bench_ranking.wide_figures(rows=300, classes=40)
    assert 0 < wide["cells"] <= 300 * 40 and wide["state_mb"] < wide["dense_grid_mb"]


@pytest.mark.slow
def test_bench_multiclass_part_times_whole_processes_beside_the_work(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import bench_ranking
    from bench_harness import Runner

    runner = Runner(cpus=None, cache_dir=tmp_path / "xla-cache")
    figures = bench_ranking.multiclass_figures(2_000, 5, 2, runner, tmp_path / "data")
    table = figures["table"]
    assert set(table) == {"raw read", "evalpipe", "evalpipe (compile)"}
    assert [table[name]["runs"] for name in ("raw read", "evalpipe", "evalpipe (compile)")] == [2, 2, 1]
    for row in table.values():  # a whole process holds its work, and the interpreter's start and imports besides
        assert row["process_wall_s"] > row["wall_s"] > 0
    assert figures["wall_ratio"] == table["evalpipe"]["wall_s"] / table["raw read"]["wall_s"]
    assert figures["process_wall_ratio"] == table["evalpipe"]["process_wall_s"] / table["raw read"]["process_wall_s"]
    assert list((tmp_path / "xla-cache").iterdir())  # the cached runs found the update a run before compiled
    # the compiling run finds no cache at all, evalpipe's per-user one included
    assert runner.env(cached=False)["EVALPIPE_COMPILE_CACHE"] == "off"
    assert "EVALPIPE_COMPILE_CACHE" not in runner.env(cached=True)


def test_a_dense_histogram_from_an_earlier_checkpoint_merges_with_stored_cells():
    rng = np.random.default_rng(4)
    n = 4000
    y = (rng.random(n) < 0.2).astype(np.int64)
    s = np.round(expit(rng.normal(size=n) + y), 3)
    stat = catalog.build("roc_auc", Task("binary")).statistic
    acc = Accumulator([stat])
    first, second = (
        acc.update(acc.zero(), {"predictions": s[r], "targets": y[r]})[0] for r in np.split(np.arange(n), 2)
    )
    working = stat.working(first)
    legacy = {"counts": working["counts"] / 2.0**WEIGHT_BITS, "lo": working["lo"], "hi": working["hi"]}
    merged = stat.merge(legacy, second)
    expected = stat.merge(first, second)
    for key in ("keys", "counts", "ties"):
        np.testing.assert_array_equal(merged[key], expected[key])
    # the earlier histogram has no positions within bins: only the newer side's add up
    no_positions = stat.merge({**first, "sums": np.zeros_like(first["sums"])}, second)
    np.testing.assert_array_equal(merged["sums"], no_positions["sums"])


def test_the_default_is_11_bits_keeping_8_scores_for_one_class_and_coarsens_only_for_grids_beyond_2_23_cells():
    from evaluators.ranking import GRID_CELLS, default_bin_scores, default_precision_bits

    # bin_count(10) = 79,874 bins and 4 * 1,001 cells of the rounded scores of 3 decimals: 83,878 cells a class;
    # 100 classes hold 8,387,800 cells (<= 2**23 = 8,388,608), 101 classes do not
    assert bin_count(10) == 79_874 and cell_count(10, 3) == 79_874 + 4 * 1_001
    assert 100 * 83_878 <= GRID_CELLS < 101 * 83_878
    assert [default_precision_bits(Task("multiclass", c)) for c in (3, 100, 101, 1000)] == [10, 10, 9, 5]
    # without the rounded scores' cells: 105 classes at 10 bits, 1,000 at 6 (1,000 * 4,994 cells)
    assert [default_precision_bits(Task("multiclass", c), 0) for c in (105, 106, 1000)] == [10, 9, 6]
    # one ranked class: 11 bits whatever its decimals, a bin keeping up to 8 distinct scores; several: one cell a bin
    assert default_precision_bits(Task("binary")) == default_precision_bits(Task("binary"), 0) == 11
    assert default_bin_scores(Task("binary")) == 8
    assert default_bin_scores(Task("multiclass", 3)) == default_bin_scores(Task("multilabel", 2)) == 1
    assert default_precision_bits(Task("multilabel", 2)) == 10
    binary = catalog.build("roc_auc", Task("binary")).statistic
    assert (binary.precision_bits, binary.bin_scores) == (11, 8)
    assert catalog.build("roc_auc", Task("binary"), {"bin_scores": 1}).statistic.bin_scores == 1
    assert catalog.build("roc_auc", Task("binary"), {"bin_scores": None}).statistic.bin_scores == 8
    metric = catalog.build("roc_auc", Task("multiclass", 1000))
    assert metric.statistic.precision_bits == 5 and metric.statistic.small_batch_rows() < 1 << 62  # compiled grid
    assert catalog.build("roc_auc", Task("multiclass", 1000), {"precision_bits": 9}).statistic.precision_bits == 9


def test_a_wide_binned_task_equals_sklearn_within_its_reported_bound():
    classes, n = 300, 4_000  # 1.2M (class, score) pairs: binned, at the 8 bits of a 300-class task
    rng = np.random.default_rng(11)
    probs = rng.dirichlet(np.full(classes, 0.3), n)
    targets = np.concatenate([np.arange(classes), rng.integers(0, classes, n - classes)])  # every class present
    probs[np.arange(n), targets] += rng.random(n)  # some signal
    probs /= probs.sum(axis=1, keepdims=True)
    (got,) = evaluate([catalog.build("roc_auc", Task("multiclass", classes))], probs, targets)
    expected = skm.roc_auc_score(targets, probs, multi_class="ovr", average="macro", labels=np.arange(classes))
    assert 0 < got[".error_bound"] < 1e-2
    assert abs(got[""] - expected) <= got[".error_bound"]
