"""Random data and sharded evaluation shared by the reference tests of ``evaluators``.

Generators return float64 scores with deliberate exact ties (duplicated rows,
scores on a coarse grid, the special values 0, 0.5 and 1), skewed class
frequencies and, on request, classes that never occur. :func:`make_shards`
splits rows into shards of random sizes that always include empty shards, a
one-row shard and a single-class shard; :func:`sharded_values` runs metrics
the way the distributed pipeline does: one :class:`Accumulator` update per
shard, then the per-shard states merged in a random tree order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import expit, softmax

from evaluators.accumulate import Accumulator
from evaluators.statistic import DerivedMetric


def add_ties(rng: np.random.Generator, scores: np.ndarray, *, grid: float = 1 / 64) -> np.ndarray:
    """Copy of 1-D ``scores`` in [0, 1] with exact ties.

    A quarter of the rows is snapped to a dyadic grid (so every tie is exact
    in float64 and no value sits on an ambiguous bin edge), a tenth copies the
    score of another row, and a few rows become exactly 0, 0.5 or 1.
    """
    s = np.array(scores, np.float64)
    n = len(s)
    if n == 0:
        return s
    snap = rng.random(n) < 0.25
    s[snap] = np.round(s[snap] / grid) * grid
    dup = rng.random(n) < 0.10
    s[dup] = s[rng.integers(0, n, int(dup.sum()))]
    special = rng.random(n) < 0.03
    s[special] = rng.choice([0.0, 0.5, 1.0], int(special.sum()))
    return s


def duplicate_rows(rng: np.random.Generator, x: np.ndarray, fraction: float = 0.15) -> np.ndarray:
    """Copy of ``x`` (``[n, ...]``) where ``fraction`` of the rows repeat another row exactly."""
    x = np.array(x)
    n = len(x)
    if n:
        dup = rng.random(n) < fraction
        x[dup] = x[rng.integers(0, n, int(dup.sum()))]
    return x


def binary_data(
    rng: np.random.Generator, n: int, *, positive_rate: float = 0.3, signal: float = 1.0
) -> dict[str, np.ndarray]:
    """Binary targets, tied probabilities and logits (continuous, with duplicated values).

    Returns ``targets`` (int64), ``probabilities`` (tied, see :func:`add_ties`)
    and ``logits`` (a separate draw: continuous values with exact duplicates,
    so that sigmoid in any float64 implementation keeps the same ties).
    """
    y = (rng.random(n) < positive_rate).astype(np.int64)
    z = signal * (2 * y - 1) + rng.normal(size=n)
    logits = duplicate_rows(rng, z + 0.5 * rng.normal(size=n))
    return {"targets": y, "probabilities": add_ties(rng, expit(z)), "logits": logits}


def multiclass_data(
    rng: np.random.Generator,
    n: int,
    num_classes: int,
    *,
    absent: Sequence[int] = (),
    signal: float = 1.5,
) -> dict[str, np.ndarray]:
    """Multiclass targets (skewed frequencies, ``absent`` classes never occur) with scores.

    Returns ``targets`` (int64 ``[n]``), ``logits`` (``[n, C]``, continuous with
    duplicated rows and some rows of equal logits), ``probabilities``
    (``softmax(logits)`` except some exact uniform and one-hot rows), and
    ``labels`` (noisy hard predictions that may name absent classes).
    """
    c = num_classes
    freq = 0.6 ** np.arange(c)
    freq[list(absent)] = 0.0
    freq /= freq.sum()
    y = rng.choice(c, n, p=freq)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += signal
    # rows with tied logits: all equal, or the two largest equal
    flat = rng.random(n) < 0.04
    logits[flat] = 0.0
    pair = np.nonzero(rng.random(n) < 0.04)[0]
    if len(pair):
        order = np.argsort(-logits[pair], axis=1)
        logits[pair, order[:, 1]] = logits[pair, order[:, 0]]
    logits = duplicate_rows(rng, logits)
    probs = softmax(logits, axis=1)
    uniform = rng.random(n) < 0.03
    probs[uniform] = 1.0 / c
    onehot = np.nonzero(rng.random(n) < 0.03)[0]
    probs[onehot] = 0.0
    probs[onehot, rng.integers(0, c, len(onehot))] = 1.0
    labels = np.where(rng.random(n) < 0.7, y, rng.integers(0, c, n))
    return {"targets": y, "logits": logits, "probabilities": probs, "labels": labels}


def multilabel_data(
    rng: np.random.Generator, n: int, rates: Sequence[float], *, signal: float = 1.0
) -> dict[str, np.ndarray]:
    """Multilabel targets with per-label positive ``rates`` (0 or 1 gives a one-class label).

    Returns ``targets`` (int64 ``[n, L]``), ``probabilities`` (tied per
    column), ``logits`` (continuous with duplicated rows) and ``labels``
    (``probabilities > 0.5``).
    """
    rates = np.asarray(rates, np.float64)
    y = (rng.random((n, len(rates))) < rates[None, :]).astype(np.int64)
    z = signal * (2 * y - 1) + rng.normal(size=y.shape)
    probs = np.stack([add_ties(rng, expit(col)) for col in z.T], axis=1) if n else np.zeros(y.shape)
    logits = duplicate_rows(rng, z + 0.5 * rng.normal(size=y.shape))
    return {"targets": y, "probabilities": probs, "logits": logits, "labels": (probs > 0.5).astype(np.int64)}


def weights_for(rng: np.random.Generator, n: int) -> np.ndarray:
    """Strictly positive sample weights (a zero weight means "row absent" here, as for padding)."""
    return rng.uniform(0.1, 3.0, n)


def make_shards(
    rng: np.random.Generator, n: int, labels: np.ndarray | None = None, *, pieces: int = 4
) -> list[np.ndarray]:
    """Row indices of shards covering ``range(n)`` once, in random order.

    Always includes two empty shards and a one-row shard; with ``labels``
    (``[n]``) also a shard whose rows all have one label. The other rows are
    shuffled and cut into ``pieces`` random-size parts (some may be empty).
    """
    perm = rng.permutation(n)
    shards: list[np.ndarray] = [np.zeros(0, np.int64), np.zeros(0, np.int64)]
    if labels is not None and n:
        first = labels[perm[0]]
        same = perm[labels[perm] == first]
        single = same[: max(1, len(same) // 3)]
        shards.append(single)
        perm = np.setdiff1d(perm, single, assume_unique=True)
        perm = rng.permutation(perm)
    if len(perm):
        shards.append(perm[:1])
        perm = perm[1:]
    cuts = np.sort(rng.integers(0, len(perm) + 1, pieces - 1))
    shards.extend(np.split(perm, cuts))
    order = rng.permutation(len(shards))
    return [shards[i] for i in order]


def merge_randomly(acc: Accumulator, states: list, rng: np.random.Generator):
    """Merge a list of accumulator states pairwise in a random tree order."""
    states = list(states)
    while len(states) > 1:
        i, j = rng.choice(len(states), 2, replace=False)
        merged = acc.merge(states[i], states[j])
        states = [s for k, s in enumerate(states) if k not in (i, j)] + [merged]
    return states[0]


def sharded_values(
    metrics: Sequence[DerivedMetric],
    columns: Mapping[str, np.ndarray | None],
    shards: Sequence[np.ndarray],
    rng: np.random.Generator,
) -> list[dict[str, object]]:
    """Each metric's values from per-shard accumulator states merged in a random order."""
    acc = Accumulator.for_metrics(metrics)
    states = [
        acc.update(acc.zero(), {k: None if v is None else v[idx] for k, v in columns.items()}) for idx in shards
    ]
    merged = merge_randomly(acc, states, rng)
    return [m.compute(merged[acc.index(m.statistic)]) for m in metrics]
