"""The host (NumPy) update of a small job's rows and the compiled update give the same states, bit for bit.

An accumulator folds its first ``HOST_ROWS`` rows on the host when every statistic runs there; these tests
fold the same batches once with ``host_rows`` large enough for all of them and once with ``host_rows=0`` (the
compiled update only), and compare every leaf of every stored state exactly, on edge rows drawn on purpose:
scores of exactly 0, 1, 0.5 and the threshold, scores a float32 ulp either side of a bin edge, ignored targets,
zero weights, integer and half weights, float32 and float64 scores, boolean and int8 labels. They also check
that a mixed sequence (host first, then compiled) equals either, and that the metrics read off the host states
equal scikit-learn's.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from evaluators import catalog
from evaluators.accumulate import ALL_ROWS, HOST_ENTRIES, HOST_ROWS, Accumulator, evaluate
from evaluators.lazyjax import accelerator_possible
from evaluators.ranking import is_exact
from evaluators.statistic import tree_leaves
from evaluators.task import PredictionKind, Task, TaskKind

BINARY_METRICS = (
    "roc_auc",
    "average_precision",
    "accuracy",
    "f1_score",
    "matthews_corrcoef",
    "log_loss",
    "brier_score",
    "expected_calibration_error",
    "confusion_matrix",
)
MULTICLASS_METRICS = ("roc_auc", "accuracy", "f1_score", "log_loss", "expected_calibration_error")
MULTILABEL_METRICS = ("accuracy", "f1_score", "roc_auc")
LABEL_METRICS = ("accuracy", "f1_score", "cohen_kappa", "confusion_matrix")


def _statistics(task: Task, names: tuple[str, ...]) -> list:
    statistics = [catalog.build(name, task).statistic for name in names]
    if "roc_auc" in names:  # also the ranking state binned from the first row, and one that turns binned midway
        statistics += [catalog.build("roc_auc", task, {"exact_cells": cells}).statistic for cells in (0, 50)]
    return list(dict.fromkeys(statistics))


@functools.cache
def _compiled_only(statistics: tuple) -> Accumulator:
    """One compiled-only accumulator per set of statistics for the whole module (its compiles are kept)."""
    return Accumulator(statistics, host_rows=0)


def _fold(statistics: list, batches: list[dict[str, np.ndarray]], host_rows: int) -> tuple:
    acc = _compiled_only(tuple(statistics)) if host_rows == 0 else Accumulator(statistics, host_rows=host_rows)
    states = acc.zero()
    for batch in batches:
        states = acc.update(states, batch, to_host=False)
    return acc.to_host(states)


def _assert_same_bits(a: tuple, b: tuple, statistics: list) -> None:
    for x, y, stat in zip(a, b, statistics, strict=True):
        leaves_x, leaves_y = tree_leaves(x), tree_leaves(y)
        assert len(leaves_x) == len(leaves_y), type(stat).__name__
        for u, v in zip(leaves_x, leaves_y, strict=True):
            assert u.dtype == v.dtype and u.shape == v.shape, type(stat).__name__
            bits = [np.atleast_1d(leaf).view(np.uint8) for leaf in (u, v)]
            np.testing.assert_array_equal(*bits, err_msg=type(stat).__name__)


def _check_paths(statistics: list, batches: list[dict[str, np.ndarray]]) -> tuple:
    """Host only and compiled only fold the batches to the same bits; returns the host states."""
    assert all(s.runs_on_host() for s in statistics if s.jittable)
    host = _fold(statistics, batches, sum(len(b["targets"]) for b in batches))
    _assert_same_bits(host, _fold(statistics, batches, 0), statistics)
    return host


EDGE_SCORES = np.array(
    [0.0, -0.0, 1.0, 0.5, 0.25, 0.75, 1e-30, 1 - 2**-24, 2**-24, np.nextafter(np.float32(0.5), 1), 1 / 15, 14 / 15],
    np.float64,
)


@st.composite
def binary_batches(draw: st.DrawFn) -> list[dict[str, np.ndarray]]:
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    sizes = draw(st.lists(st.integers(1, 300), min_size=1, max_size=3))
    weighted = draw(st.sampled_from(["none", "integers", "halves"]))
    label_dtype = draw(st.sampled_from([np.int8, np.int64, np.bool_]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    batches = []
    for n in sizes:
        scores = np.where(rng.random(n) < 0.4, rng.choice(EDGE_SCORES, n), rng.random(n)).astype(dtype)
        batch = {"predictions": scores, "targets": rng.integers(0, 2, n).astype(label_dtype)}
        if weighted != "none":
            w = rng.integers(0, 4, n).astype(np.float64)
            batch["weights"] = w / 2 if weighted == "halves" else w
        batches.append(batch)
    return batches


@settings(max_examples=30, deadline=None)
@given(binary_batches())
def test_binary_scores_fold_to_the_same_bits_on_the_host_and_compiled(batches):
    _check_paths(_statistics(Task("binary"), BINARY_METRICS), batches)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400), st.sampled_from([3, 5]))
def test_multiclass_probabilities_fold_to_the_same_bits(seed, n, classes):
    rng = np.random.default_rng(seed)
    raw = rng.random((n, classes))
    raw[rng.random(n) < 0.2] = 1.0  # ties for the top class: the first one counts
    probs = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
    batch = {"predictions": probs, "targets": rng.integers(0, classes, n)}
    task = Task("multiclass", num_classes=classes)
    _check_paths(_statistics(task, MULTICLASS_METRICS), [batch])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400))
def test_multilabel_and_ignored_targets_fold_to_the_same_bits(seed, n):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, (n, 4))
    targets[rng.random((n, 4)) < 0.1] = -1
    batch = {"predictions": rng.choice(EDGE_SCORES, (n, 4)), "targets": targets}
    task = Task("multilabel", num_classes=4, ignore_index=-1)
    _check_paths(_statistics(task, MULTILABEL_METRICS), [batch])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 400))
def test_predicted_labels_fold_to_the_same_bits(seed, n):
    rng = np.random.default_rng(seed)
    batch = {"predictions": rng.integers(0, 4, n), "targets": rng.integers(0, 4, n)}
    task = Task("multiclass", num_classes=4, prediction=PredictionKind.LABELS)
    _check_paths(_statistics(task, LABEL_METRICS), [batch])


@pytest.mark.parametrize("task", [Task("binary"), Task("multiclass", num_classes=3), Task("multilabel", num_classes=2)])
@pytest.mark.parametrize("weighted", ["none", "halves", "fractions"])
def test_batches_that_fill_the_bin_grid_are_counted_over_it_with_the_compiled_bits(task, weighted):
    # at least GRID_ROWS_PER_CELL (row, class) entries per cell of each class's grid (24,000 rows for the 83,878
    # cells of several classes at 10 bits, 48,000 for a binary task's), so a binned ranking state of one cell per bin
    # (the compiled update's form; a binary task keeps up to 8 scores a bin by default, which no compiled update takes)
    # counts them over the grid (add.at / minimum.at), not by a sort; edge scores (0, -0, 1, 1/2, a float32 ulp past
    # 1/2, within 2**-40 of 0 and 1) and a third of the rows continuous
    rng = np.random.default_rng(11)
    n = 48_000 if task.kind is TaskKind.BINARY else 24_000
    shape = (n,) if task.kind is TaskKind.BINARY else (n, task.classes)
    scores = np.where(rng.random(shape) < 0.6, rng.choice(EDGE_SCORES, shape), rng.random(shape))
    if task.kind is TaskKind.MULTICLASS:  # (rows of zeros and ones, normalised: tied probabilities)
        scores = np.where(rng.random(shape) < 0.5, np.round(scores * 4), scores)
        scores[scores.sum(axis=1) == 0, 0] = 1.0
        scores = scores / scores.sum(axis=1, keepdims=True)
        targets = rng.integers(0, task.classes, n)
    else:
        targets = rng.integers(0, 2, shape)
    batch = {"predictions": scores.astype(np.float32), "targets": targets}
    if weighted != "none":
        w = rng.integers(0, 4, n) / 2
        batch["weights"] = w if weighted == "halves" else w * rng.random(n)  # fractions: rounded to the fixed point
    ranking = [catalog.build("roc_auc", task, {"exact_cells": cells, "bin_scores": 1}).statistic for cells in (0, 50)]
    assert all(s._fills_grid(batch) for s in ranking)
    host = _check_paths(ranking, [batch])  # (integer counts: the same bits whatever the weights)
    assert all(is_exact(s) is False and len(s["keys"]) > 1000 for s in host)
    if weighted == "fractions":
        assert all(s["rounded"].sum() > 0 for s in host)
    else:  # and the other statistics, whose float sums add exactly with these weights
        _check_paths(
            _statistics(
                task,
                MULTICLASS_METRICS
                if task.kind is TaskKind.MULTICLASS
                else BINARY_METRICS[:-1]
                if task.kind is TaskKind.BINARY
                else MULTILABEL_METRICS,
            ),
            [batch],
        )


@pytest.mark.parametrize(
    "low, high", [(0.3, 0.31), (0.999, 1.0), (0.0, 1e-6), (0.5, 0.5), (0.25, 0.75)], ids=lambda v: repr(v)
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_binary_batch_is_counted_over_the_window_of_its_scores_with_the_compiled_bits(low, high, dtype):
    """The host grid of a binary batch spans only the cells from its lowest score's to its highest's: narrow ranges
    near 0.3, at 1 and at 0, a single score, and rounded scores of 3 decimals on the window's ends give the compiled
    update's cells, which cover the whole grid, with the cells at the same keys; scikit-learn's ROC-AUC within the
    bound."""
    rng = np.random.default_rng(5)
    n = 48_000
    scores = (low + (high - low) * rng.random(n)).astype(dtype)
    scores[:2] = dtype(low), dtype(high)  # (the window's ends as written)
    scores[2:500] = np.round(scores[2:500], 3)  # (rounded scores: cells of their own at the ends too)
    batch = {"predictions": scores, "targets": rng.integers(0, 2, n)}
    statistic = catalog.build("roc_auc", Task("binary"), {"exact_cells": 0}).statistic
    assert statistic._fills_grid(batch)
    first, width = statistic._grid_window(batch)
    assert width < statistic.cell_count()
    (host,) = _check_paths([statistic], [batch])
    assert (host["keys"] >= first).all() and (host["keys"] < first + width).all()
    metric = catalog.build("roc_auc", Task("binary"), {"exact_cells": 0})
    values = metric.compute(host)
    reference = skm.roc_auc_score(batch["targets"], scores.astype(np.float64))
    assert abs(values[""] - reference) <= values[".error_bound"] + 1e-12


@pytest.mark.parametrize("exact_cells", [None, 0, 60], ids=["exact", "binned", "crossing"])
@pytest.mark.parametrize("weighted", ["none", "halves"])
def test_groups_folded_at_once_equal_each_group_folded_alone(exact_cells, weighted):
    """``Accumulator.update_groups`` (a sliced batch in one pass per statistic) gives each group the bits of
    :meth:`update` of its rows alone: overlapping groups, the whole batch (None), an empty group, states that exist
    already and states that do not; ranking cells exact, binned from the first row, or crossing ``exact_cells``."""
    task = Task("binary")
    params = {} if exact_cells is None else {"exact_cells": exact_cells}
    statistics = [catalog.build(name, task).statistic for name in BINARY_METRICS if name != "roc_auc"]
    statistics.append(catalog.build("roc_auc", task, params).statistic)
    acc = Accumulator(statistics, host_rows=ALL_ROWS)
    assert acc.folds_groups_on_host
    rng = np.random.default_rng(13)

    def batch(n: int) -> dict[str, np.ndarray]:
        scores = np.where(rng.random(n) < 0.5, rng.choice(EDGE_SCORES, n), np.round(rng.random(n), 3))
        out = {"predictions": scores.astype(np.float32), "targets": rng.integers(0, 2, n).astype(np.int8)}
        if weighted == "halves":
            out["weights"] = rng.integers(0, 4, n) / 2
        return out

    first, second = batch(400), batch(500)
    rows = [None, np.flatnonzero(second["predictions"] > 0.5), np.arange(0, 500, 3), np.zeros(0, np.int64)]
    before = [acc.update(acc.zero(), first), None, acc.update(acc.zero(), first), None]
    grouped = acc.update_groups(before, second, rows)
    assert grouped is not None
    for state, previous, taken in zip(grouped, before, rows, strict=True):
        subset = second if taken is None else {k: v[taken] for k, v in second.items()}
        alone = acc.update(acc.zero() if previous is None else previous, subset)
        _assert_same_bits(state, alone, list(acc.statistics))
    computed = [m.compute(grouped[1][acc.index(m.statistic)]) for m in [catalog.build("accuracy", task)]]
    subset = second["predictions"][rows[1]] > 0.5
    w = second.get("weights", np.ones(500))[rows[1]]
    assert computed[0][""] == pytest.approx(skm.accuracy_score(second["targets"][rows[1]], subset, sample_weight=w))


def test_a_job_past_the_host_rows_switches_to_the_compiled_update_with_the_same_bits():
    rng = np.random.default_rng(3)
    batches = [
        {"predictions": rng.choice(EDGE_SCORES, n).astype(np.float32), "targets": rng.integers(0, 2, n)}
        for n in (700, 1_000, 300)
    ]
    statistics = _statistics(Task("binary"), BINARY_METRICS)
    everything_on_host = _fold(statistics, batches, 2_000)
    _assert_same_bits(everything_on_host, _fold(statistics, batches, 700), statistics)  # host, compiled, compiled
    _assert_same_bits(everything_on_host, _fold(statistics, batches, 0), statistics)


def test_host_states_give_scikit_learns_values():
    rng = np.random.default_rng(7)
    n = 5_000
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1)
    scores[:50] = 0.5  # the threshold itself: predicted negative (scores above it are positive)
    task = Task("binary")
    metrics = [catalog.build(name, task) for name in ("accuracy", "f1_score", "log_loss", "brier_score", "roc_auc")]
    acc = Accumulator.for_metrics(metrics)
    states = acc.update(acc.zero(), {"predictions": scores, "targets": labels})
    computed = {m.name: m.compute(states[acc.index(m.statistic)]) for m in metrics}
    value = {name: values[""] for name, values in computed.items()}
    predicted = scores > 0.5
    assert value["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted), abs=1e-12)
    assert value["f1_score"] == pytest.approx(skm.f1_score(labels, predicted), abs=1e-12)
    assert value["log_loss"] == pytest.approx(skm.log_loss(labels, scores), rel=1e-12)
    assert value["brier_score"] == pytest.approx(skm.brier_score_loss(labels, scores), rel=1e-12)
    # at most EXACT_CELLS distinct scores: the state keeps each one, so scikit-learn's value and a bound of 0
    assert computed["roc_auc"][".error_bound"] < 1e-9  # float64 evaluation only
    assert value["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)


def test_logits_and_interval_buckets_take_the_compiled_update():
    logits = Task("binary", prediction=PredictionKind.LOGITS)
    assert not any(s.runs_on_host() for s in _statistics(logits, ("accuracy", "log_loss", "roc_auc")))
    assert not catalog.build("brier_score", Task("multiclass", num_classes=3)).statistic.runs_on_host()
    probabilities = _statistics(Task(TaskKind.BINARY), BINARY_METRICS)
    replicates = Accumulator(probabilities).replicates()
    assert replicates is not None and replicates._host_rows_left == 0
    # every binary statistic folds as fast with NumPy: on a machine without an accelerator, every row on the host
    assert Accumulator(probabilities)._host_rows_left == (HOST_ROWS if accelerator_possible() else ALL_ROWS)
    multiclass = _statistics(Task("multiclass", num_classes=3), ("accuracy", "roc_auc"))
    assert all(s.runs_on_host() for s in multiclass)
    assert Accumulator(multiclass)._host_rows_left == HOST_ROWS  # the first rows only: compiled is faster beyond
    # a ranking state sorts an entry per class: 100 classes, the rows of HOST_ENTRIES entries (NumPy's sort of a
    # 250,000-row unit of 100 classes took 3.3 s, the compiled update 0.9 s)
    wide = _statistics(Task("multiclass", num_classes=100), ("accuracy", "roc_auc"))
    assert sorted({s.host_row_entries() for s in wide}) == [1, 100]
    assert Accumulator(wide)._host_rows_left == HOST_ENTRIES // 100 < HOST_ROWS


@pytest.mark.parametrize(
    ("exact_cells", "exact"),
    [(1_000, False), (1 << 20, False), (1 << 22, True)],
    ids=["compiled-from-the-first-batch", "binned-midway", "exact"],
)
def test_an_exact_ranking_state_turns_binned_whichever_path_with_the_same_bits(exact_cells, exact):
    # 10 classes, batches of 60k and 100k rows (600k and 1M distinct scores). 1,000 cells: each batch alone holds
    # more, so the compiled update takes it. 2^20: the first batch is folded exact on the host, and so is the
    # second (it alone holds fewer) until its first 65,536-row chunk makes the union exceed 2^20; the rest of
    # that batch takes the compiled update of the ranking statistic alone (the others took it whole).
    rng = np.random.default_rng(21)
    classes = 10
    batches = []
    for n in (60_000, 100_000):
        logits = rng.normal(size=(n, classes))
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        batches.append({"predictions": probabilities, "targets": rng.integers(0, classes, n)})
    task = Task("multiclass", num_classes=classes)
    statistics = [
        catalog.build(name, task, {"exact_cells": exact_cells} if name == "roc_auc" else {}).statistic
        for name in ("roc_auc", "accuracy")
    ]
    host = _fold(statistics, batches, 160_000)
    _assert_same_bits(host, _fold(statistics, batches, 0), statistics)
    assert is_exact(host[0]) == exact


@pytest.mark.parametrize("prediction", ["probabilities", "logits"])
@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_log_loss_of_a_long_batch_is_sklearns_and_the_state_of_its_pieces(kind, prediction):
    """Log loss is always folded with NumPy, a long batch in cache-sized steps (``HOST_CHUNK_ROWS``): the state
    equals folding uneven pieces one by one, bit for bit, and the value is scikit-learn's."""
    from scipy.special import expit, softmax

    from evaluators.kernels import HOST_CHUNK_ROWS

    rng = np.random.default_rng(21)
    n = 3 * HOST_CHUNK_ROWS + 777
    if kind == "binary":
        raw = rng.normal(size=n) * 3
        targets = (rng.random(n) < expit(raw)).astype(np.int8)
        probs = expit(raw)
        task = Task("binary", prediction=PredictionKind(prediction))
        predictions = raw if prediction == "logits" else probs.astype(np.float32)
        probs = probs if prediction == "logits" else predictions.astype(np.float64)
    else:
        raw = rng.normal(size=(n, 5)) * 2
        targets = rng.integers(0, 5, n)
        probs = softmax(raw, axis=1)
        task = Task("multiclass", 5, prediction=PredictionKind(prediction))
        predictions = raw if prediction == "logits" else probs
    weights = rng.choice([0.0, 0.5, 1.0, 2.0, 3.0], n)  # sums exact in any order
    stat = catalog.build("log_loss", task).statistic
    assert not stat.jittable
    whole = stat.update(stat.zero(), {"predictions": predictions, "targets": targets, "weights": weights})
    pieces = stat.zero()
    for rows in np.split(np.arange(n), [5, HOST_CHUNK_ROWS + 3, 2 * HOST_CHUNK_ROWS + 1000]):
        pieces = stat.update(
            pieces, {"predictions": predictions[rows], "targets": targets[rows], "weights": weights[rows]}
        )
    for a, b in zip(whole, pieces, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    (value,) = evaluate([catalog.build("log_loss", task)], predictions, targets, weights)
    labels = None if kind == "binary" else np.arange(5)
    assert value[""] == pytest.approx(skm.log_loss(targets, probs, sample_weight=weights, labels=labels), rel=1e-12)
