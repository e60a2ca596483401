"""Brier decomposition, classwise ECE and adaptive (equal-mass) calibration error against their definitions.

The references are written here from the definitions, row by row:

* Brier decomposition (Murphy, 1973), binned: with bins ``b`` of equal width, ``n_b`` rows (weight), mean
  forecast ``f_b``, observed frequency ``o_b`` and base rate ``o``: reliability ``sum n_b (f_b - o_b)^2 / N``,
  resolution ``sum n_b (o_b - o)^2 / N``, uncertainty ``o (1 - o)``; multiclass sums each term over the
  classes (one-vs-rest), matching the summed multiclass Brier score. When the forecasts are constant within
  bins, ``reliability - resolution + uncertainty`` equals scikit-learn's ``brier_score_loss`` exactly.
* classwise ECE (Kull et al., 2019): ``(1/K) sum_k sum_b n_kb |o_kb - f_kb| / N``, each class's probability
  binned on its own; per class, that is torchmetrics' binary calibration error of ``(p_k, [y == k])``.
* adaptive ECE: the rows ordered by confidence form ``num_bins`` bins of equal weight, a row going to bin
  ``floor(num_bins * W_below / W)`` where ``W_below`` is the weight of rows with a lower confidence (rows with
  equal confidence stay together); the error is ``sum_b |sum acc - sum conf| / W``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn import metrics as skm
from torchmetrics.functional.classification import binary_calibration_error

import evaluators.functional as F
from evaluators.catalog import build
from evaluators.task import Task
from tests._data import make_shards, sharded_values, torch_edges, weights_for

RTOL = 1e-9


def bins_of(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each value, ``[edges[i], edges[i+1])`` with the last bin closed (torchmetrics' edges)."""
    edges = torch_edges(n_bins)
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n_bins - 1)


def murphy_by_hand(probs: np.ndarray, hits: np.ndarray, w: np.ndarray, n_bins: int) -> dict[str, float]:
    """Binned Murphy decomposition of one class: ``probs``, ``hits`` and ``w`` are ``[n]``."""
    total = w.sum()
    base = (w * hits).sum() / total
    reliability = resolution = 0.0
    index = bins_of(probs, n_bins)
    for b in range(n_bins):
        rows = index == b
        n_b = w[rows].sum()
        if n_b == 0:
            continue
        f_b = (w[rows] * probs[rows]).sum() / n_b
        o_b = (w[rows] * hits[rows]).sum() / n_b
        reliability += n_b * (f_b - o_b) ** 2 / total
        resolution += n_b * (o_b - base) ** 2 / total
    return {"reliability": reliability, "resolution": resolution, "uncertainty": base * (1 - base)}


def class_ece_by_hand(probs: np.ndarray, hits: np.ndarray, w: np.ndarray, n_bins: int) -> float:
    index = bins_of(probs, n_bins)
    gaps = [abs((w * (hits - probs))[index == b].sum()) for b in range(n_bins)]
    return float(np.sum(gaps) / w.sum())


def adaptive_by_hand(confidence: np.ndarray, correct: np.ndarray, w: np.ndarray, num_bins: int) -> float:
    total = w.sum()
    below = np.array([w[confidence < c].sum() for c in confidence])
    group = np.minimum(num_bins - 1, np.floor(num_bins * below / total + 1e-12)).astype(int)
    gaps = [abs((w * (correct - confidence))[group == g].sum()) for g in range(num_bins)]
    return float(np.sum(gaps) / total)


def _binary(rng, n=3000, clipped=True):
    """Scores of a weak model; ``clipped`` puts some exactly at 0 and 1 (torchmetrics gives 1.0 a bin of its
    own, one past the last; evalpipe's last bin is closed, as scikit-learn's ``calibration_curve``)."""
    y = (rng.random(n) < 0.3).astype(np.int64)
    if not clipped:
        return rng.beta(2 + 3 * y, 4 - 2 * y), y
    p = np.clip(0.3 + 0.35 * (y - 0.3) + rng.normal(0, 0.2, n), 0, 1)
    return p, y


def _sharded(name: str, task: Task, params: dict, predictions, targets, weights, rng) -> dict:
    """Values of one metric over random shards merged in random order (the pipeline's path)."""
    metric = build(name, task, params)
    shards = make_shards(rng, len(targets), targets)
    columns = {"predictions": predictions, "targets": targets, "weights": weights}
    return sharded_values([metric], columns, shards, rng)[0]


@pytest.mark.parametrize("weighted", [False, True])
def test_binary_brier_decomposition_equals_murphys_definition(weighted):
    rng = np.random.default_rng(3)
    p, y = _binary(rng)
    w = weights_for(rng, len(y)) if weighted else None
    values = _sharded("brier_decomposition", Task("binary"), {"num_bins": 10}, p, y, w, rng)
    ref = murphy_by_hand(p, y.astype(float), np.ones(len(y)) if w is None else w, 10)
    for key, expected in ref.items():
        assert values[f".{key}"] == pytest.approx(expected, rel=RTOL, abs=1e-15), key


def test_brier_decomposition_adds_up_to_sklearns_brier_score_when_forecasts_are_constant_per_bin():
    rng = np.random.default_rng(5)
    n = 4000
    centres = (np.arange(10) + 0.5) / 10
    p = centres[rng.integers(0, 10, n)]
    y = (rng.random(n) < p * 0.8 + 0.1).astype(np.int64)
    d = F.brier_decomposition(p, y, num_bins=10)
    assert d["reliability"] - d["resolution"] + d["uncertainty"] == pytest.approx(skm.brier_score_loss(y, p), rel=1e-12)


def test_multiclass_brier_decomposition_sums_classes_and_adds_up_to_the_summed_brier_score():
    rng = np.random.default_rng(11)
    n, c = 3000, 4
    # probabilities on a 1/8 grid, so each class's forecast is constant within each of 8 bins
    raw = rng.integers(1, 6, (n, c)).astype(float)
    probs = raw / raw.sum(axis=1, keepdims=True)
    probs = np.round(probs * 8 - 0.5).clip(0, 7)
    probs = (probs + 0.5) / 8
    y = np.array([rng.choice(c, p=row / row.sum()) for row in probs])
    w = weights_for(rng, n)
    values = _sharded("brier_decomposition", Task("multiclass", c), {"num_bins": 8}, probs, y, w, rng)
    hits = np.eye(c)[y]
    ref = [murphy_by_hand(probs[:, k], hits[:, k], w, 8) for k in range(c)]
    for key in ("reliability", "resolution", "uncertainty"):
        assert values[f".{key}"] == pytest.approx(sum(r[key] for r in ref), rel=RTOL), key
    summed_brier = np.average(((probs - hits) ** 2).sum(axis=1), weights=w)
    total = values[".reliability"] - values[".resolution"] + values[".uncertainty"]
    assert total == pytest.approx(summed_brier, rel=1e-9)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_classwise_ece_equals_kulls_definition_and_torchmetrics_per_class(kind):
    rng = np.random.default_rng(21)
    if kind == "binary":
        p, y = _binary(rng, clipped=False)
        probs, task, predictions = np.stack([1 - p, p], axis=1), Task("binary"), p
    else:
        n, c = 2000, 3
        logits = rng.normal(0, 1.5, (n, c))
        y = np.array([rng.choice(c, p=row) for row in softmax(logits * 0.7, axis=1)])
        probs, task, predictions = softmax(logits, axis=1), Task("multiclass", c, "logits"), logits
    w = weights_for(rng, len(y))
    values = _sharded("classwise_ece", task, {"num_bins": 12}, predictions, y, w, rng)
    k = probs.shape[1]
    hits = np.eye(k)[y]
    per_class = [class_ece_by_hand(probs[:, j], hits[:, j], w, 12) for j in range(k)]
    assert values[""] == pytest.approx(np.mean(per_class), rel=RTOL)
    unweighted = _sharded("classwise_ece", task, {"num_bins": 12}, predictions, y, None, rng)
    for j in range(k):
        assert values[f"[{j}]"] == pytest.approx(per_class[j], rel=RTOL)
        reference = binary_calibration_error(
            torch.tensor(probs[:, j]), torch.tensor(hits[:, j]).long(), n_bins=12, norm="l1"
        )
        assert unweighted[f"[{j}]"] == pytest.approx(float(reference), rel=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_adaptive_calibration_error_equals_equal_mass_bins_by_hand(weighted):
    rng = np.random.default_rng(31)
    n = 1500
    # confidences on a 1/1000 grid (distinct values never share a fine bin), with many ties
    p = rng.integers(0, 1001, n) / 1000
    y = (rng.random(n) < p).astype(np.int64)
    w = weights_for(rng, n) if weighted else np.ones(n)
    values = _sharded("adaptive_calibration_error", Task("binary"), {"num_bins": 10}, p, y, w, rng)
    assert values[""] == pytest.approx(adaptive_by_hand(p, y.astype(float), w, 10), rel=RTOL)


def test_adaptive_calibration_error_on_continuous_scores_is_within_one_fine_bin_of_the_exact_split():
    """On continuous scores the equal-mass edges are placed at 1/4096 steps; the value stays close to the
    split of the sorted rows into equal counts (within the mass of the rows that a fine bin can move)."""
    rng = np.random.default_rng(41)
    n = 20_000
    p = rng.beta(2, 5, n)
    y = (rng.random(n) < p).astype(np.int64)
    exact = adaptive_by_hand(p, y.astype(float), np.ones(n), 15)
    assert F.adaptive_calibration_error(p, y, num_bins=15) == pytest.approx(exact, abs=2e-3)


def test_multiclass_adaptive_calibration_error_uses_the_top_class():
    rng = np.random.default_rng(43)
    n, c = 1200, 5
    # probabilities on a 1/1000 grid that sum to 1: counts of 1000 draws per row
    probs = np.stack([rng.multinomial(1000, p) for p in rng.dirichlet(np.ones(c) * 0.5, n)]) / 1000
    y = rng.integers(0, c, n)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    value = F.adaptive_calibration_error(probs, y, num_bins=6)
    assert value == pytest.approx(adaptive_by_hand(conf, correct, np.ones(n), 6), rel=RTOL)


def test_num_bins_is_calibrax_name_and_n_bins_its_alias():
    rng = np.random.default_rng(2)
    p, y = _binary(rng, 500)
    task = Task("binary")
    by_num = build("expected_calibration_error", task, {"num_bins": 7})
    by_n = build("expected_calibration_error", task, {"n_bins": 7})
    assert by_num.statistic == by_n.statistic
    # the functional API follows calibrax's default of 10 bins
    assert F.expected_calibration_error(p, y) == F.expected_calibration_error(p, y, num_bins=10)
    assert F.expected_calibration_error(p, y, n_bins=7) == F.expected_calibration_error(p, y, num_bins=7)
    with pytest.raises(ValueError, match="num_bins=7 and n_bins=8 disagree"):
        build("expected_calibration_error", task, {"num_bins": 7, "n_bins": 8})
    with pytest.raises(ValueError, match="parameter 'num_bins' of metric 'classwise_ece' must be an integer >= 1"):
        build("classwise_ece", task, {"num_bins": 0})


def test_the_new_calibration_metrics_refuse_hard_labels():
    with pytest.raises(ValueError, match="needs probabilities"):
        build("brier_decomposition", Task("binary", prediction="labels"))
    with pytest.raises(ValueError, match="needs probabilities"):
        build("adaptive_calibration_error", Task("multiclass", 3, "labels"))
