"""Merging many states at once (``Statistic.merge_all``) and the merger's pools of order-free states give the bits of
pairwise merges: the ranking state's k-way merge over a dense (class, bin) window, its sorted-union fallback, and
:class:`~pipelines.unit_result.OrderedMerger` against the plain ordered tree of pairwise merges."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.ranking import is_exact
from evaluators.ranking_cells import MERGE_WINDOW_FACTOR
from evaluators.task import Task
from pipelines.unit_result import OVERALL, POOL_STATES, OrderedMerger, Partial, fold_right, merge_partials


def _assert_same_cells(got, expected):
    # the same leaves (squares only where the weights are not all 1), bit for bit
    assert set(got) == set(expected) and {"keys", "counts", "sums", "ties", "rounded"} <= set(got)
    for key in got:
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(expected[key]), err_msg=key)


def _binary_rows(rng, n, rounded=False):
    y = (rng.random(n) < 0.1).astype(np.int64)
    s = expit(rng.normal(size=n) + 1.5 * y - 2.0)
    if rounded:
        s = np.round(s, 2)
    w = rng.choice([0.0, 0.5, 1.0, 3.0, 1e-12], n)  # 1e-12: a live row whose fixed-point weight rounds to 0
    return {"predictions": s, "targets": y, "weights": w}


def _multiclass_rows(rng, n, classes):
    p = rng.dirichlet(np.ones(classes), n)
    p[: n // 3] = np.round(p[: n // 3], 1)  # ties within bins, and whole bins of one score
    return {"predictions": p, "targets": rng.integers(0, classes, n)}


@pytest.mark.parametrize(
    ("task", "params", "rows"),
    [
        (Task("binary"), {}, lambda rng, n: _binary_rows(rng, n)),
        (Task("binary"), {"exact_cells": 0}, lambda rng, n: _binary_rows(rng, n)),
        (Task("binary"), {"exact_cells": 500}, lambda rng, n: _binary_rows(rng, n, rounded=n % 2 == 0)),
        (Task("binary"), {"exact_cells": 0, "precision_bits": 6}, lambda rng, n: _binary_rows(rng, n)),
        (Task("binary"), {"exact_cells": 0, "bin_scores": 1}, lambda rng, n: _binary_rows(rng, n)),
        (Task("binary"), {"exact_cells": 0, "bin_scores": 3, "precision_bits": 6}, lambda rng, n: _binary_rows(rng, n)),
        (Task("binary"), {"exact_cells": 700, "bin_scores": 2}, lambda rng, n: _binary_rows(rng, n)),
        (Task("multiclass", 5), {"exact_cells": 0}, lambda rng, n: _multiclass_rows(rng, n, 5)),
        (Task("multiclass", 5), {"exact_cells": 900}, lambda rng, n: _multiclass_rows(rng, n, 5)),
    ],
    ids=[
        "exact",
        "binned",
        "exact-then-binned",
        "coarse-bins",
        "one-cell-per-bin",
        "bins-of-3",
        "crossing-bins-of-2",
        "multiclass-binned",
        "multiclass-crossing",
    ],
)
def test_merge_all_equals_pairwise_merges_in_any_order(task, params, rows):
    stat = catalog.build("roc_auc", task, params).statistic
    acc = Accumulator([stat])
    rng = np.random.default_rng(3)
    sizes = [0, 1, 7, 300, 2_000, 40, 5_000, 13, 900]
    states = [acc.update(acc.zero(), rows(rng, n))[0] for n in sizes]
    pairwise = functools.reduce(stat.merge, states)
    for _ in range(3):
        shuffled = [states[i] for i in rng.permutation(len(states))]
        _assert_same_cells(stat.merge_all(shuffled), pairwise)
    if params.get("exact_cells") == 0 and stat.bin_scores < 8:  # binned from the first row, some bins joined (the
        assert not is_exact(pairwise)  # binary default keeps 8 scores a bin: these rows fill none of its bins past 8)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 60), st.sampled_from([10, 60, 200, 5_000]), st.sampled_from([1, 3]))
def test_many_exact_states_join_in_one_union_with_the_pairwise_bits(seed, count, exact_cells, classes):
    # many small exact states sharing scores (two decimals), joined all at once while their union may stay exact,
    # or crossing exact_cells anywhere in the sequence
    task = Task("binary") if classes == 1 else Task("multiclass", classes)
    stat = catalog.build("roc_auc", task, {"exact_cells": exact_cells}).statistic
    acc = Accumulator([stat])
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(count):
        n = int(rng.integers(0, 30))
        if classes == 1:
            rows = {"predictions": np.round(rng.random(n), 2), "targets": rng.integers(0, 2, n)}
        else:
            rows = {"predictions": _multiclass_rows(rng, n, classes)["predictions"], "targets": rng.integers(0, 3, n)}
        states.append(acc.update(acc.zero(), rows)[0])
    _assert_same_cells(stat.merge_all(states), functools.reduce(stat.merge, states))


def test_sparse_windows_merge_by_sorted_unions_with_the_same_bits():
    """States whose cells lie far apart (a window many times their cells) take the sorted-union path."""
    stat = catalog.build("roc_auc", Task("binary"), {"exact_cells": 0}).statistic
    acc = Accumulator([stat])
    rng = np.random.default_rng(4)
    states = []
    for centre in (1e-6, 0.3, 0.999999, 0.5, 1e-6):
        s = np.clip(centre + rng.normal(0, 1e-9, 20), 0, 1)
        states.append(acc.update(acc.zero(), {"predictions": s, "targets": rng.integers(0, 2, 20)})[0])
    span = max(int(s["keys"][-1]) for s in states) - min(int(s["keys"][0]) for s in states)
    assert span > MERGE_WINDOW_FACTOR * sum(len(s["keys"]) for s in states)
    _assert_same_cells(stat.merge_all(states[::-1]), functools.reduce(stat.merge, states))


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 60), min_size=1, max_size=12),
    exact_cells=st.sampled_from([0, 10, 40, 10_000]),
    seed=st.integers(0, 2**16),
)
def test_merge_all_law_on_random_batches(sizes, exact_cells, seed):
    stat = catalog.build("average_precision", Task("binary"), {"exact_cells": exact_cells, "precision_bits": 5})
    acc = Accumulator([stat.statistic])
    rng = np.random.default_rng(seed)
    states = [acc.update(acc.zero(), _binary_rows(rng, n, rounded=bool(n % 3)))[0] for n in sizes]
    expected = functools.reduce(stat.statistic.merge, states)
    _assert_same_cells(stat.statistic.merge_all([states[i] for i in rng.permutation(len(states))]), expected)


def _ordered_tree(acc, racc, partials):
    """The ordered binary tree of pairwise merges, as the merger built it before pooling."""
    stack: list[tuple[int, Partial]] = []
    for partial in partials:
        level = 0
        while stack and stack[-1][0] == level:
            partial = merge_partials(acc, racc, stack.pop()[1], partial)
            level += 1
        stack.append((level, partial))
    return fold_right(acc, racc, [p for _, p in stack])


def test_ordered_merger_pools_give_the_bits_of_the_ordered_tree():
    """Units of a job with a floating statistic (log loss), the ranking state and bootstrap buckets, over slices
    that some units lack: the pooled merger and the plain tree of pairwise merges agree leaf for leaf."""
    task = Task("binary")
    metrics = [catalog.build(name, task) for name in ("roc_auc", "log_loss", "average_precision")]
    acc = Accumulator([m.statistic for m in metrics])
    racc = acc.replicates()
    assert acc.order_free and racc is not None
    rng = np.random.default_rng(5)
    partials = []
    for unit in range(2 * POOL_STATES + 9):
        states, buckets, rows = {}, {}, {}
        for key in (OVERALL, (("country", "a"),), (("country", "b"),)):
            if key and rng.random() < 0.3:
                continue  # a slice this unit lacks
            n = int(rng.integers(1, 400))
            batch = _binary_rows(rng, n, rounded=unit % 2 == 0)
            states[key] = acc.update(acc.zero(), batch)
            group = rng.integers(0, 4, n)
            buckets[key] = racc.to_host(racc.update_grouped(racc.zero_grouped(4), batch, group))
            rows[key] = n
        partials.append(Partial(states, buckets, rows))
    merger = OrderedMerger(acc, racc)
    for index in rng.permutation(len(partials)):  # units finish in any order
        merger.add(int(index), partials[index])
    got, expected = merger.result(), _ordered_tree(acc, racc, partials)
    assert got.rows == expected.rows
    for name in ("states", "bucket_states"):
        a, b = getattr(got, name), getattr(expected, name)
        assert a.keys() == b.keys()
        for key in a:
            x, y = jax.tree_util.tree_flatten_with_path(a[key]), jax.tree_util.tree_flatten_with_path(b[key])
            assert x[1] == y[1]
            for (path, leaf), (_, other) in zip(x[0], y[0], strict=True):
                np.testing.assert_array_equal(np.asarray(leaf), np.asarray(other), err_msg=f"{name} {key} {path}")


def test_weighted_states_of_one_cell_per_key_merge_to_the_same_squares_in_any_order():
    """Exact states whose union passes ``exact_cells`` but keeps one cell per key: the squares' limbs are carried
    the same way whether the states merge pairwise or all at once (0.37**2 leaves a low limb that carries)."""
    stat = catalog.build("roc_auc", Task("binary"), {"exact_cells": 0}).statistic
    acc = Accumulator([stat])
    rows = {"predictions": np.array([0.5]), "targets": np.array([1]), "weights": np.array([0.37])}
    states = [acc.update(acc.zero(), rows)[0] for _ in range(3)]
    pairwise = functools.reduce(stat.merge, states)
    _assert_same_cells(stat.merge_all(states), pairwise)
    _assert_same_cells(stat.merge(states[0], stat.merge(states[1], states[2])), pairwise)
