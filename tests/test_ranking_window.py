"""The window form in which workers ship binned ranking states, and the running sum the reducer adds them in
(:mod:`evaluators.ranking_window`).

* A window gives back the stored state it was made from, bit for bit;
* the running sum of windows, in any order and mixed with states pooled in the stored form, gives the bits of
  merging the stored states (:func:`~evaluators.ranking_bins.merge_many_kept`) and of folding all rows at once
  (hypothesis; rows with ties, weights of 0 and several values, every ``bin_scores``);
* a sum whose counts pass int64 is refused as the stored merge refuses it;
* jobs: units of binned states go through the window form (the worker ships it), and the run's values and stored
  state are the bits of the same rows evaluated at once, whatever the sharding and runner; a checkpoint keeps the
  stored form.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluators import catalog, ranking_window
from evaluators.accumulate import Accumulator
from evaluators.kernels import WeightRangeError
from evaluators.ranking_bins import merge_many_kept
from evaluators.ranking_window import CellWindow, WindowSum, from_window, to_window
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.checkpoints import CheckpointStore
from pipelines.execute import check_dataset, instance_key, run_job
from pipelines.results import load_statistics
from pipelines.unit_result import OVERALL, OrderedMerger, Partial
from pipelines.worker import UnitEvaluator
from tests.conftest import write_job


def _bits(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert x.tobytes() == y.tobytes(), key


def _rows(rng: np.random.Generator, n: int, weighted: bool) -> dict[str, np.ndarray]:
    levels = rng.random(30)  # repeated scores: ties inside and across states
    s = np.where(rng.random(n) < 0.4, rng.choice(levels, n), rng.random(n)).astype(np.float32)
    y = (rng.random(n) < 0.3).astype(np.int64)
    w = rng.choice([0.0, 0.5, 1.0, 3.0], n) if weighted else np.ones(n)
    return {"predictions": s, "targets": y, "weights": w}


def _statistic(bin_scores: int, bits: int = 6):
    params = {"exact_cells": 0, "bin_scores": bin_scores, "precision_bits": bits, "score_decimals": 0}
    return catalog.build("roc_auc", Task("binary"), params).statistic


def _folded(bin_scores: int, rows: dict[str, np.ndarray], parts: list[np.ndarray], bits: int = 6):
    """The statistic, the state of all ``rows`` at once and the states of each part's rows."""
    stat = _statistic(bin_scores, bits)
    acc = Accumulator([stat], host_rows=1 << 40)
    (whole,) = acc.update(acc.zero(), rows)
    return stat, whole, [acc.update(acc.zero(), {k: v[p] for k, v in rows.items()})[0] for p in parts]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 900),
    st.integers(1, 8),
    st.sampled_from([1, 2, 3, 8]),
    st.booleans(),
    st.sampled_from([1, 7, ranking_window.PENDING_CELLS]),
)
def test_windows_add_to_the_bits_of_the_stored_merge(seed, n, pieces, bin_scores, weighted, pending):
    default, ranking_window.PENDING_CELLS = ranking_window.PENDING_CELLS, pending  # (counted every few cells too)
    try:
        _windows_add_to_the_bits_of_the_stored_merge(seed, n, pieces, bin_scores, weighted)
    finally:
        ranking_window.PENDING_CELLS = default


def _windows_add_to_the_bits_of_the_stored_merge(seed, n, pieces, bin_scores, weighted):
    rng = np.random.default_rng(seed)
    rows = _rows(rng, n, weighted)
    stat, whole, states = _folded(bin_scores, rows, np.array_split(rng.permutation(n), pieces))
    windows = [to_window(s, min_cells=1) for s in states]
    for state, window in zip(states, windows, strict=True):
        if window is not None:
            _bits(from_window(window), state)
    merged = merge_many_kept(states, stat.exact_cells, stat.bin_scores)
    _bits(merged, whole)
    for order in (range(pieces), rng.permutation(pieces)):
        stream = WindowSum(stat.bin_scores)
        pooled = [states[i] for i in order if windows[i] is None or not stream.add(windows[i])]
        streamed = stream.result()
        _bits(stat.merge_all([*pooled, *([streamed] if streamed is not None else [])]), whole)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 12), st.sampled_from([1, 4, 8]))
def test_the_ordered_merger_takes_windows_and_stored_states_alike(seed, units, bin_scores):
    rng = np.random.default_rng(seed)
    pieces = [_rows(rng, int(rng.integers(50, 800)), weighted=bool(rng.integers(2))) for _ in range(units)]
    rows = {k: np.concatenate([r[k] for r in pieces]) for k in pieces[0]}
    sizes = np.cumsum([len(r["targets"]) for r in pieces])
    stat, whole, states = _folded(bin_scores, rows, np.split(np.arange(sizes[-1]), sizes[:-1]), bits=8)
    acc = Accumulator([stat], host_rows=1 << 40)
    shipped = [to_window(s, min_cells=1) if rng.random() < 0.7 else None for s in states]
    merger = OrderedMerger(acc)
    for i in rng.permutation(units):  # (results arrive in any order)
        state = states[i] if shipped[i] is None else shipped[i]
        merger.add(int(i), Partial({OVERALL: (state,)}, {}, {OVERALL: len(pieces[i]["targets"])}))
    _bits(merger.result().states[OVERALL][0], whole)


def test_an_empty_sum_gives_nothing_and_one_window_its_own_state():
    stat = _statistic(8)
    acc = Accumulator([stat], host_rows=1 << 40)
    (state,) = acc.update(acc.zero(), _rows(np.random.default_rng(3), 2000, weighted=True))
    stream = WindowSum(8)
    assert stream.result() is None
    assert stream.add(state) is False  # a stored state is pooled by the caller
    window = to_window(state, min_cells=1)
    assert isinstance(window, CellWindow) and stream.add(window)
    _bits(stat.merge_all([stream.result()]), state)
    assert to_window(state) is None  # fewer cells than a window is worth: shipped as stored


def test_a_window_of_another_class_is_left_to_the_pool():
    stat = _statistic(8)
    acc = Accumulator([stat], host_rows=1 << 40)
    (state,) = acc.update(acc.zero(), _rows(np.random.default_rng(4), 2000, weighted=False))
    other = {**state, "keys": np.asarray(state["keys"]) + (3 << 32)}  # the same cells, of class 3
    stream = WindowSum(8)
    assert stream.add(to_window(state, min_cells=1))
    assert not stream.add(to_window(other, min_cells=1))  # (a running window spans one class's bins)
    _bits(stream.result(), state)


def _joined_bins(first: int, bins: int, count: int = 1 << 32) -> dict[str, np.ndarray]:
    """A stored binned state of one cell of several scores in each of ``bins`` bins from key ``first``."""
    return {
        "keys": first + np.arange(bins, dtype=np.int64),
        "counts": np.tile(np.array([[count, 0]], np.int64), (bins, 1)),
        "sums": np.zeros((bins, 2), np.int64),
        "ties": np.full(bins, np.nan),
        "rounded": np.zeros(2, np.int64),
    }


def test_a_window_past_the_stream_budget_is_left_to_the_pool():
    near, far = _joined_bins(0, 10), _joined_bins(1_000_000, 10)  # a running window of 1M bins: past 64 MiB
    stream = WindowSum(8)
    assert stream.add(to_window(near, min_cells=1))
    assert not stream.add(to_window(far, min_cells=1))
    stat = _statistic(8)
    _bits(stat.merge_all([far, stream.result()]), merge_many_kept([near, far], exact_cells=0, bin_scores=8))


def test_the_running_window_grows_within_its_class_and_budget():
    base = 1 << 32  # class 1
    states = [_joined_bins(base + 1000, 10), _joined_bins(base, 10), _joined_bins(base + 500, 10)]
    stream = WindowSum(8)
    assert [stream.add(to_window(s, min_cells=1)) for s in states] == [True, True, True]
    assert stream.first == base  # (its margin stops at the class's first key)
    _bits(_statistic(8).merge_all([stream.result()]), merge_many_kept(states, exact_cells=0, bin_scores=8))
    default, ranking_window.STREAM_BYTES = ranking_window.STREAM_BYTES, 100 * stream._bin_bytes(2)
    try:
        stream = WindowSum(8)
        assert stream.add(to_window(_joined_bins(0, 10), min_cells=1))
        assert stream.add(to_window(_joined_bins(85, 10), min_cells=1))  # 95 bins: within, with no margin past it
        assert len(stream.joined) * stream._bin_bytes(2) <= ranking_window.STREAM_BYTES
    finally:
        ranking_window.STREAM_BYTES = default


def test_windows_with_and_without_squares_share_the_stream():
    rng = np.random.default_rng(6)
    stat = _statistic(8, bits=5)
    acc = Accumulator([stat], host_rows=1 << 40)
    states = [acc.update(acc.zero(), _rows(rng, 1500, weighted=w))[0] for w in (False, True, False, True)]
    assert ["squares" in s for s in states] == [False, True, False, True]
    for order in ([0, 1, 2, 3], [1, 0, 3, 2]):
        stream = WindowSum(8)
        assert all(stream.add(to_window(states[i], min_cells=1)) for i in order)  # (the counts imply the squares)
        _bits(stat.merge_all([stream.result()]), merge_many_kept(states, exact_cells=0, bin_scores=8))


def test_a_kept_bin_whose_cells_pass_int64_together_is_shipped_as_stored():
    state = _joined_bins(0, 3, count=1 << 62)
    state["keys"][1] = 0  # bin 0 keeps two scores of 2^62 each (their sum would pass int64), bin 2 is joined
    state["ties"][:2] = [0.25, 0.5]
    assert to_window(state, min_cells=1) is None
    merged = merge_many_kept([state], exact_cells=0, bin_scores=8)  # (alone, no sum of the two: as stored)
    _bits(merged, state)


def test_exact_and_many_class_states_are_not_windowed():
    acc = Accumulator([catalog.build("roc_auc", Task("binary")).statistic], host_rows=1 << 40)
    (exact,) = acc.update(acc.zero(), _rows(np.random.default_rng(0), 500, weighted=False))
    assert to_window(exact, min_cells=1) is None  # no cell of several scores: every score kept
    task = Task("multiclass", num_classes=3)
    stat = catalog.build("roc_auc", task, {"exact_cells": 0, "precision_bits": 6}).statistic
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(3), 400).astype(np.float32)
    many_acc = Accumulator([stat], host_rows=1 << 40)
    (many,) = many_acc.update(many_acc.zero(), {"predictions": p, "targets": p.argmax(1)})
    assert to_window(many, min_cells=1) is None


def test_counts_past_int64_are_refused_as_the_stored_merge_refuses_them():
    big = 1 << 62
    state = {
        "keys": np.arange(3, dtype=np.int64),
        "counts": np.array([[big, 0], [0, big], [big, big]], np.int64),
        "sums": np.zeros((3, 2), np.int64),
        "ties": np.array([np.nan, 0.5, np.nan]),
        "rounded": np.zeros(2, np.int64),
    }
    with pytest.raises(WeightRangeError):
        merge_many_kept([state, state], exact_cells=0, bin_scores=8)
    stream = WindowSum(8)
    stream.add(to_window(state, min_cells=1))
    stream.add(to_window(state, min_cells=1))
    with pytest.raises(WeightRangeError):
        stream.result()


def _write_shards(directory, rng: np.random.Generator, shards: int, rows: int) -> dict[str, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    y = (rng.random(shards * rows) < 0.2).astype(np.int8)
    p = (1 / (1 + np.exp(-(rng.normal(size=shards * rows) + 1.3 * y)))).astype(np.float32)
    for i in range(shards):
        part = slice(i * rows, (i + 1) * rows)
        pq.write_table(pa.table({"p": p[part], "y": y[part]}), directory / f"part-{i:02d}.parquet")
    return {"predictions": p, "targets": y}


PARAMS = {"exact_cells": 2000, "precision_bits": 12}
"""Units of 30,000 continuous scores, beyond 2,000 distinct ones: binned, in a window each (some 7,000 cells)."""
UNIT_ROWS = 30_000


def _spec(tmp_path, data, name: str, runner: str, unit_rows: int, **execution):
    metrics = [{"name": m, "as": m, **PARAMS} for m in ("roc_auc", "average_precision")]
    spec = {
        "name": name,
        "data": {"path": str(data), "columns": {"predictions": "p", "targets": "y"}},
        "task": "binary",
        "metrics": metrics,
        "execution": {"runner": runner, "unit_rows": unit_rows, **execution},
        "output": {"uri": str(tmp_path / "out")},
    }
    return spec_module.load(str(write_job(tmp_path / f"{name}.yaml", spec)))


def test_jobs_of_windowed_units_give_the_bits_of_all_rows_at_once(tmp_path, ray_cluster):
    rows = _write_shards(tmp_path / "data", np.random.default_rng(11), shards=6, rows=UNIT_ROWS)
    stat = catalog.build("roc_auc", Task("binary"), PARAMS).statistic
    acc = Accumulator([stat])
    (unit,) = acc.update(acc.zero(), {k: v[:UNIT_ROWS] for k, v in rows.items()})
    assert isinstance(acc.transported((unit,))[0], CellWindow)  # what an actor ships for a unit of one file
    (whole,) = acc.update(acc.zero(), rows)
    expected = {
        m: catalog.build(m, Task("binary"), PARAMS).compute(whole)[""] for m in ("roc_auc", "average_precision")
    }
    for runner, unit_rows in (("local", UNIT_ROWS), ("ray", UNIT_ROWS), ("ray", 3 * UNIT_ROWS)):
        result = run_job(
            _spec(tmp_path, tmp_path / "data", f"w-{runner}-{unit_rows}", runner, unit_rows), show_progress=False
        )
        values = {k: m.value for k, m in result.run.point("overall").metrics.items()}
        assert {k: values[k] for k in expected} == expected, (runner, unit_rows)
        _bits(load_statistics(result.uri).state("roc_auc", "overall"), whole)


def test_a_checkpoint_keeps_the_stored_form(tmp_path):
    _write_shards(tmp_path / "data", np.random.default_rng(12), shards=2, rows=UNIT_ROWS)
    spec = _spec(tmp_path, tmp_path / "data", "checkpointed", "local", UNIT_ROWS)
    units = check_dataset(spec).units
    result = UnitEvaluator(spec, ships=True).process(units[0])
    (shipped,) = result.partial.states[OVERALL]
    assert isinstance(shipped, CellWindow)
    acc = Accumulator.for_metrics(m for _, m in spec.derived_metrics())
    store = CheckpointStore(spec, instance_key(spec), acc, None)
    store.save(result)
    store.wait()
    (restored,) = store.load(units)[0].partial.states[OVERALL]
    _bits(restored, from_window(shipped))
    store.clear()
