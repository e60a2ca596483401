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
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, softmax

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.statistic import DerivedMetric
from evaluators.task import PredictionKind, Task, TaskKind


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
    duplicates: float = 0.15,
) -> dict[str, np.ndarray]:
    """Multiclass targets (skewed frequencies, ``absent`` classes never occur) with scores.

    Returns ``targets`` (int64 ``[n]``), ``logits`` (``[n, C]``, continuous with
    duplicated rows and some rows of equal logits), ``probabilities``
    (``softmax(logits)`` except some exact uniform and one-hot rows), and
    ``labels`` (noisy hard predictions that may name absent classes).
    ``duplicates`` is the fraction of logit rows that repeat another row.
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
    logits = duplicate_rows(rng, logits, duplicates)
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
    rng: np.random.Generator,
    n: int,
    labels: np.ndarray | None = None,
    *,
    pieces: int = 4,
    max_rows: int = 1000,
) -> list[np.ndarray]:
    """Row indices of shards covering ``range(n)`` once, in random order.

    Always includes two empty shards and a one-row shard; with ``labels``
    (``[n]``) also a shard whose rows all have one label. The other rows are
    shuffled and cut into ``pieces`` random-size parts (some may be empty),
    parts longer than ``max_rows`` cut again at random points. (Shards of at
    most 1,024 rows share one padded shape, so the compiled update is built
    once per test scenario.)
    """
    perm = rng.permutation(n)
    shards: list[np.ndarray] = [np.zeros(0, np.int64), np.zeros(0, np.int64)]
    if labels is not None and n:
        first = labels[perm[0]]
        same = perm[labels[perm] == first]
        single = same[: max(1, min(max_rows, len(same) // 3))]
        shards.append(single)
        perm = np.setdiff1d(perm, single, assume_unique=True)
        perm = rng.permutation(perm)
    if len(perm):
        shards.append(perm[:1])
        perm = perm[1:]
    cuts = np.sort(rng.integers(0, len(perm) + 1, pieces - 1))
    parts = np.split(perm, cuts)
    while any(len(p) > max_rows for p in parts):
        long = next(i for i, p in enumerate(parts) if len(p) > max_rows)
        part = parts.pop(long)
        cut = int(rng.integers(max(1, len(part) - max_rows), max_rows + 1)) if len(part) <= 2 * max_rows else max_rows
        parts[long:long] = [part[:cut], part[cut:]]
    shards.extend(parts)
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
    states = [acc.update(acc.zero(), {k: None if v is None else v[idx] for k, v in columns.items()}) for idx in shards]
    merged = merge_randomly(acc, states, rng)
    return [m.compute(merged[acc.index(m.statistic)]) for m in metrics]


# --- a scenario: data, its shards and the views a reference implementation needs -----------------


@dataclass
class Case:
    """One data set for a task, its shards, and the filtered views handed to scikit-learn.

    ``keep`` marks the rows (single-label tasks, ``[n]``) or elements
    (multilabel, ``[n, L]``) that ``ignore_index`` leaves in. For single-label
    tasks ``y``, ``y_pred``, ``scores`` and ``w`` hold the kept rows only; for
    multilabel tasks they are full ``[n, L]`` arrays (filter with ``keep``).
    ``scores`` are probabilities (``expit`` / ``softmax`` of logits), or None
    for hard-label predictions.
    """

    task: Task
    predictions: np.ndarray
    targets: np.ndarray
    weights: np.ndarray | None
    shards: list[np.ndarray]
    keep: np.ndarray
    y: np.ndarray
    y_pred: np.ndarray
    scores: np.ndarray | None
    w: np.ndarray | None


def make_case(
    rng: np.random.Generator,
    task: Task,
    predictions: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    pieces: int = 4,
) -> Case:
    """A :class:`Case` with random shards (see :func:`make_shards`) and reference views."""
    n = len(targets)
    shards = make_shards(rng, n, targets if targets.ndim == 1 else targets[:, 0], pieces=pieces)
    keep = np.ones(targets.shape, bool) if task.ignore_index is None else targets != task.ignore_index
    if task.prediction is PredictionKind.LABELS:
        scores, y_pred = None, np.asarray(predictions)
    elif task.kind is TaskKind.MULTICLASS:
        scores = softmax(predictions, axis=1) if task.prediction is PredictionKind.LOGITS else predictions
        # argmax of the logits themselves: softmax keeps their order and their exact ties
        y_pred = np.argmax(predictions, axis=1)
    else:
        scores = expit(predictions) if task.prediction is PredictionKind.LOGITS else predictions
        y_pred = (scores > task.threshold).astype(np.int64)
    if task.kind is TaskKind.MULTILABEL:
        return Case(task, predictions, targets, weights, shards, keep, targets, y_pred, scores, weights)
    return Case(
        task,
        predictions,
        targets,
        weights,
        shards,
        keep,
        targets[keep],
        y_pred[keep],
        None if scores is None else scores[keep],
        None if weights is None else weights[keep],
    )


def case_values(
    case: Case, specs: Sequence[tuple[str, Mapping[str, object]]], rng: np.random.Generator
) -> dict[tuple, dict[str, object]]:
    """Values of every ``(metric name, params)`` spec on ``case``, computed shard by shard."""
    metrics = [catalog.build(name, case.task, dict(params)) for name, params in specs]
    columns = {"predictions": case.predictions, "targets": case.targets, "weights": case.weights}
    values = sharded_values(metrics, columns, case.shards, rng)
    return {spec_key(name, params): v for (name, params), v in zip(specs, values, strict=True)}


def spec_key(name: str, params: Mapping[str, object]) -> tuple:
    return (name, tuple(sorted(params.items())))


def spec_id(name: str, params: Mapping[str, object]) -> str:
    return name + "".join(f"-{k}={v}" for k, v in sorted(params.items()))


def per_class(values: Mapping[str, object], count: int, suffix: str = "") -> np.ndarray:
    """The ``[i]`` (or ``[i]<suffix>``) values of an ``average="none"`` result as an array."""
    return np.array([values[f"[{i}]{suffix}"] for i in range(count)], np.float64)


def torch_edges(n_bins: int, dtype: object = np.float64) -> np.ndarray:
    """torchmetrics' calibration bin edges, ``torch.linspace(0, 1, n_bins + 1)`` in ``dtype`` (float32, else
    float64), as float64 values: PyTorch itself computes them here, the reference for evalpipe's own edges."""
    import torch

    kind = torch.float32 if np.dtype(dtype) == np.float32 else torch.float64
    return torch.linspace(0, 1, n_bins + 1, dtype=kind).numpy().astype(np.float64)


def calibration_by_hand(
    confidence: np.ndarray,
    correct: np.ndarray,
    weights: np.ndarray | None,
    n_bins: int,
    *,
    ones_apart: bool = False,
    closed: str = "left",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (weight, confidence sum, correct sum), by a plain loop over rows.

    Bin ``i`` holds ``edges[i] <= c < edges[i + 1]`` with torchmetrics' edges, ``torch.linspace(0, 1, n_bins + 1)``
    in the confidences' dtype (float32 or float64: :func:`torch_edges`), the last bin also holds ``c == 1``; with
    ``ones_apart`` ``c == 1`` is in one more bin (``n_bins + 1`` in all) of its own instead, as torchmetrics'
    calibration error bins it (``torch.bucketize(c, edges, right=True) - 1``). ``closed="right"``: scikit-learn's
    ``calibration_curve`` instead, bin ``i`` holding ``edges[i] < c <= edges[i + 1]`` (the first also ``c == 0``)
    with ``np.linspace(0, 1, n_bins + 1)``, as the reliability diagram bins.
    """
    if closed == "right":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        index = [next(i for i in range(n_bins) if c <= edges[i + 1] or i == n_bins - 1) for c in confidence.tolist()]
        count, conf_sum, correct_sum = (np.zeros(n_bins) for _ in range(3))
        w = np.ones(len(confidence)) if weights is None else weights
        for i, c, a, wi in zip(index, confidence.tolist(), correct.tolist(), w.tolist(), strict=True):
            count[i] += wi
            conf_sum[i] += wi * c
            correct_sum[i] += wi * a
        return count, conf_sum, correct_sum
    edges = torch_edges(n_bins, np.asarray(confidence).dtype)
    count = np.zeros(n_bins + ones_apart)
    conf_sum = np.zeros(n_bins + ones_apart)
    correct_sum = np.zeros(n_bins + ones_apart)
    w = np.ones(len(confidence)) if weights is None else weights
    for c, a, wi in zip(confidence.tolist(), correct.tolist(), w.tolist(), strict=True):
        for i in range(n_bins + ones_apart):
            if edges[i] <= c < edges[i + 1] if i < n_bins else c == 1.0:
                break
            if i == n_bins - 1 and c == edges[n_bins] and not ones_apart:
                break
        else:
            raise AssertionError(f"confidence {c} outside [0, 1]")
        count[i] += wi
        conf_sum[i] += wi * c
        correct_sum[i] += wi * a
    return count, conf_sum, correct_sum


def ece_mce_by_hand(count: np.ndarray, conf_sum: np.ndarray, correct_sum: np.ndarray) -> tuple[float, float]:
    """Expected (bin-weighted mean) and maximum |accuracy - confidence| over non-empty bins."""
    gaps = [abs(correct_sum[i] / count[i] - conf_sum[i] / count[i]) for i in range(len(count)) if count[i] > 0]
    weights = [count[i] for i in range(len(count)) if count[i] > 0]
    return float(np.dot(gaps, weights) / np.sum(weights)), float(max(gaps))


# --- scenarios shared by the reference tests ---------------------------------------------------------


def binary_probs_case(rng):
    """2,500 rows, 30% positives, probabilities."""
    from evaluators.task import Task

    d = binary_data(rng, 2500, positive_rate=0.3)
    return make_case(rng, Task("binary"), d["probabilities"], d["targets"])


def binary_rare_weighted_case(rng, rows: int = 5000):
    """``rows`` rows, 1% positives, random sample weights."""
    from evaluators.task import Task

    d = binary_data(rng, rows, positive_rate=0.01, signal=1.5)
    return make_case(rng, Task("binary"), d["probabilities"], d["targets"], weights_for(rng, rows))
