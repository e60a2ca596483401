"""ROC-AUC and average precision against scikit-learn, exact and binned.

``mode="exact"`` must equal scikit-learn within 1e-9. The default
``mode="binned"`` counts rows whose scores share a histogram bin as tied; its
value must lie within the ``.error_bound`` it reports (``[i].error_bound``
per class) of scikit-learn's exact value. Values are computed shard by shard
(random sizes with empty, one-row and single-class shards) and merged in a
random order, as the pipeline does.

Conventions (differences from scikit-learn, documented here):

* a class (multiclass one-vs-rest) or label (multilabel) whose kept rows are
  all positive or all negative has an undefined ROC-AUC, and one without
  positives an undefined average precision: ``evaluators`` reports NaN for it
  and leaves it out of ``macro`` / ``weighted`` averages, where scikit-learn
  raises (ROC-AUC) or returns 0 with a warning (average precision). Where every
  class is defined the averages are compared with scikit-learn's own
  ``multi_class="ovr"`` averaging as well;
* ``weighted`` weighs each class by its (sample-weighted) number of positives,
  as scikit-learn.
"""

import functools
from dataclasses import replace

import numpy as np
import pytest
from scipy.special import expit
from sklearn import metrics as skm

from evaluators import catalog
from evaluators.accumulate import evaluate
from evaluators.ranking import bin_count, score_bins
from evaluators.task import Task, TaskKind
from tests._data import (
    Case,
    binary_data,
    binary_probs_case,
    binary_rare_weighted_case,
    case_values,
    make_case,
    multiclass_data,
    multilabel_data,
    per_class,
    spec_id,
    spec_key,
    weights_for,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")

SK = {"roc_auc": skm.roc_auc_score, "average_precision": skm.average_precision_score}


def _binary_probs(rng):
    return binary_probs_case(rng)


def _binary_rare_weighted(rng):
    return binary_rare_weighted_case(rng, 6000)


def _binary_logits_ignore(rng):
    d = binary_data(rng, 2000, positive_rate=0.2)
    targets = d["targets"].copy()
    targets[rng.random(2000) < 0.1] = 7
    task = Task("binary", prediction="logits", ignore_index=7)
    return make_case(rng, task, d["logits"], targets, weights_for(rng, 2000))


def _multiclass_probs_absent_weighted(rng):
    d = multiclass_data(rng, 3000, 5, absent=(3,))
    return make_case(rng, Task("multiclass", 5), d["probabilities"], d["targets"], weights_for(rng, 3000))


def _multiclass_logits(rng):
    # No duplicated logit rows here: XLA's softmax rounds the same row differently (by an ulp) in
    # batches of different shapes, so exact ties between logit rows in different shards do not
    # survive as ties between probabilities, and "exact" would differ from scikit-learn on
    # softmax(logits) by ~1e-6. Ties of probabilities are covered by the probability scenarios.
    d = multiclass_data(rng, 2000, 4, duplicates=0.0)
    return make_case(rng, Task("multiclass", 4, prediction="logits"), d["logits"], d["targets"])


def _multilabel_probs_weighted(rng):
    # label 2 rare, label 3 never positive, label 4 always positive (both undefined for ROC-AUC)
    d = multilabel_data(rng, 3000, [0.5, 0.2, 0.01, 0.0, 1.0])
    return make_case(rng, Task("multilabel", 5), d["probabilities"], d["targets"], weights_for(rng, 3000))


def _multilabel_logits_ignore(rng):
    d = multilabel_data(rng, 2000, [0.3, 0.6, 0.1])
    targets = d["targets"].copy()
    targets[rng.random(targets.shape) < 0.1] = -1
    task = Task("multilabel", 3, prediction="logits", ignore_index=-1)
    return make_case(rng, task, d["logits"], targets)


SCENARIOS = {
    "binary-probs": (_binary_probs, TaskKind.BINARY),
    "binary-1pct-weighted": (_binary_rare_weighted, TaskKind.BINARY),
    "binary-logits-ignore-weighted": (_binary_logits_ignore, TaskKind.BINARY),
    "multiclass-probs-absent-weighted": (_multiclass_probs_absent_weighted, TaskKind.MULTICLASS),
    "multiclass-logits": (_multiclass_logits, TaskKind.MULTICLASS),
    "multilabel-probs-weighted": (_multilabel_probs_weighted, TaskKind.MULTILABEL),
    "multilabel-logits-ignore": (_multilabel_logits_ignore, TaskKind.MULTILABEL),
}


def specs_for(kind: TaskKind) -> list[tuple[str, dict]]:
    if kind is TaskKind.BINARY:
        averages = [None]
    elif kind is TaskKind.MULTICLASS:
        averages = [None, "weighted", "none"]
    else:
        averages = [None, "micro", "weighted", "none"]
    specs = []
    for name in ("roc_auc", "average_precision"):
        for average in averages:
            base = {} if average is None else {"average": average}
            specs += [(name, base), (name, {**base, "mode": "exact"})]
        # a coarse and (binary only: the state grows 4x per 2 bits) a fine histogram: the bound must
        # hold whatever the resolution
        if kind is TaskKind.BINARY:
            specs += [(name, {"precision_bits": 4}), (name, {"precision_bits": 12})]
        else:
            specs.append((name, {"precision_bits": 4, "average": "none"}))
    return specs


@functools.cache
def scenario(name: str) -> Case:
    return SCENARIOS[name][0](np.random.default_rng(sum(map(ord, name)) + 1))


@functools.cache
def scenario_values(name: str) -> dict:
    c = scenario(name)
    specs = specs_for(SCENARIOS[name][1])
    rng = np.random.default_rng(len(name) + 1)
    values = case_values(c, [s for s in specs if s[1].get("mode") != "exact"], rng)
    # The exact statistic updates on the host, where JAX compiles its eager ops once per batch
    # shape: feed it fewer, coarser shards (still with the empty, one-row and single-class ones).
    coarse = replace(c, shards=coarse_shards(c))
    values.update(case_values(coarse, [s for s in specs if s[1].get("mode") == "exact"], rng))
    return values


def coarse_shards(c: Case) -> list[np.ndarray]:
    """The empty, one-row and single-class shards of ``c`` as they are; all other rows in one shard."""
    first = c.targets if c.targets.ndim == 1 else c.targets[:, 0]
    special = [s for s in c.shards if len(s) <= 1 or len(np.unique(first[s])) == 1]
    rest = [s for s in c.shards if not (len(s) <= 1 or len(np.unique(first[s])) == 1)]
    return [*special, np.concatenate(rest)] if rest else special


CASES = [
    pytest.param(s, m, p, id=f"{s}-{spec_id(m, p)}") for s, (_, kind) in SCENARIOS.items() for m, p in specs_for(kind)
]


def _sk_binary(name: str, y01: np.ndarray, scores: np.ndarray, w: np.ndarray) -> float:
    """scikit-learn's binary value, or NaN where evaluators leaves it undefined."""
    pos = w[y01 == 1].sum()
    neg = w[y01 == 0].sum()
    if pos == 0 or (name == "roc_auc" and neg == 0):
        return float("nan")
    return SK[name](y01, scores, sample_weight=w)


def per_class_reference(name: str, c: Case) -> tuple[np.ndarray, np.ndarray]:
    """(scikit-learn value, weighted number of positives) per class / label."""
    kind = c.task.kind
    if kind is TaskKind.BINARY:
        w = np.ones(len(c.y)) if c.w is None else c.w
        return np.array([_sk_binary(name, c.y, c.scores, w)]), np.array([w[c.y == 1].sum()])
    values, positives = [], []
    for j in range(c.task.classes):
        if kind is TaskKind.MULTICLASS:
            w = np.ones(len(c.y)) if c.w is None else c.w
            y01, s = (c.y == j).astype(int), c.scores[:, j]
        else:
            keep = c.keep[:, j]
            w = (np.ones(len(c.y)) if c.w is None else c.w)[keep]
            y01, s = c.y[keep, j], c.scores[keep, j]
        values.append(_sk_binary(name, y01, s, w))
        positives.append(w[y01 == 1].sum())
    return np.array(values), np.array(positives)


def reference(name: str, params: dict, c: Case):
    average = params.get("average")
    if c.task.kind is TaskKind.MULTILABEL and average == "micro":
        w = np.ones(c.y.shape) if c.w is None else np.broadcast_to(c.w[:, None], c.y.shape)
        return _sk_binary(name, c.y[c.keep], c.scores[c.keep], w[c.keep])
    values, positives = per_class_reference(name, c)
    if c.task.kind is TaskKind.BINARY:
        return values[0]
    if average == "none":
        return values
    defined = np.isfinite(values)
    weight = positives * defined if average == "weighted" else defined.astype(float)
    return np.sum(np.where(defined, values, 0.0) * weight) / weight.sum()


@pytest.mark.parametrize(("scenario_name", "name", "params"), CASES)
def test_ranking_matches_sklearn(scenario_name, name, params):
    c = scenario(scenario_name)
    values = scenario_values(scenario_name)[spec_key(name, params)]
    expected = reference(name, params, c)
    per = params.get("average") == "none"
    got = per_class(values, c.task.classes) if per else values[""]
    if params.get("mode") == "exact":
        assert not any(k.endswith("error_bound") for k in values)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, equal_nan=True)
        return
    bound = per_class(values, c.task.classes, ".error_bound") if per else values[".error_bound"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isnan(bound), np.isnan(expected))
    ok = np.isfinite(expected)
    assert np.all(bound[ok] >= 0) if per else bound >= 0
    # the exact value lies within the reported bound (1e-12: rounding of the two computations)
    assert np.all(np.abs(np.asarray(got) - expected)[ok] <= np.asarray(bound)[ok] + 1e-12)


def test_multiclass_averages_equal_sklearn_ovr_when_every_class_is_defined():
    c = scenario("multiclass-logits")
    assert len(np.unique(c.y)) == c.task.classes
    values = scenario_values("multiclass-logits")
    labels = list(range(c.task.classes))
    for average in ("macro", "weighted"):
        params = {"mode": "exact"} if average == "macro" else {"average": average, "mode": "exact"}
        auc = values[spec_key("roc_auc", params)][""]
        assert auc == pytest.approx(
            skm.roc_auc_score(c.y, c.scores, multi_class="ovr", average=average, labels=labels), abs=1e-12
        )
        ap = values[spec_key("average_precision", params)][""]
        assert ap == pytest.approx(skm.average_precision_score(c.y, c.scores, average=average), abs=1e-12)


def test_multilabel_averages_equal_sklearn_when_every_label_is_defined():
    rng = np.random.default_rng(3)
    c = make_case(rng, Task("multilabel", 4), *_ml_probs(rng), weights_for(rng, 1200))
    specs = [(n, {"average": a, "mode": "exact"}) for n in SK for a in ("micro", "macro", "weighted")]
    got = case_values(c, specs, rng)
    for name, params in specs:
        expected = SK[name](c.y, c.scores, average=params["average"], sample_weight=c.w)
        assert got[spec_key(name, params)][""] == pytest.approx(expected, abs=1e-12), (name, params)


def _ml_probs(rng):
    d = multilabel_data(rng, 1200, [0.5, 0.1, 0.3, 0.02])
    return d["probabilities"], d["targets"]


# --- accuracy of the binned default on large data --------------------------------------------------


def _binned_and_exact(task: Task, scores: np.ndarray, y: np.ndarray):
    metrics = [catalog.build("roc_auc", task), catalog.build("average_precision", task)]
    auc, ap = evaluate(metrics, scores, y)
    return auc, ap, skm.roc_auc_score(y, scores), skm.average_precision_score(y, scores)


@pytest.mark.slow
def test_binned_default_within_1e_6_on_two_million_continuous_scores():
    rng = np.random.default_rng(2024)
    n = 2_000_000
    y = (rng.random(n) < 0.05).astype(np.int8)
    scores = expit(rng.normal(size=n) + 1.5 * y - 1.0)
    auc, ap, sk_auc, sk_ap = _binned_and_exact(Task("binary"), scores, y)
    assert abs(auc[""] - sk_auc) <= 1e-6
    assert abs(auc[""] - sk_auc) <= auc[".error_bound"]
    # Average precision is held to its reported bound only: treating a bin's rows as tied biases AP by
    # about the bin width (1e-4 at 10 bits on these data), which the estimator may or may not correct.
    assert abs(ap[""] - sk_ap) <= ap[".error_bound"]


@pytest.mark.slow
def test_binned_default_on_peaked_scores_with_rare_positives():
    # 0.2 % positives; nearly all scores within 1e-4 of 0 or 1 (logits around -12 and +12), where the
    # bins must stay as relatively narrow near 1 as near 0
    rng = np.random.default_rng(99)
    n = 500_000
    y = (rng.random(n) < 0.002).astype(np.int64)
    logits = np.where(rng.random(n) < 0.5, -12.0, 12.0) + rng.normal(size=n) + 2.0 * y
    scores = expit(logits)
    assert (np.minimum(scores, 1 - scores) < 1e-4).mean() > 0.95
    auc, ap, sk_auc, sk_ap = _binned_and_exact(Task("binary"), scores, y)
    assert abs(auc[""] - sk_auc) <= 1e-6
    assert abs(auc[""] - sk_auc) <= auc[".error_bound"] <= 1e-4
    assert abs(ap[""] - sk_ap) <= ap[".error_bound"] <= 1e-3


def test_error_bound_is_attained_by_ties_within_one_bin():
    # all rows in one bin of one cell: binned AUC is 0.5 and the exact value can be anything in [0, 1]
    y = np.array([0, 1, 0, 1, 1, 0])
    scores = 0.5 + np.array([1, 2, 3, 4, 5, 6]) * 1e-9  # six distinct scores, all in the bin of 0.5
    task = Task("binary")
    one_cell = {"exact_cells": 0, "bin_scores": 1}  # binned from the first row, one cell per bin
    [auc] = evaluate([catalog.build("roc_auc", task, one_cell)], scores, y)
    assert auc[""] == 0.5
    assert auc[".error_bound"] == pytest.approx(0.5, abs=1e-12)  # (and float64 evaluation)
    assert abs(auc[""] - skm.roc_auc_score(y, scores)) <= auc[".error_bound"]
    [exact] = evaluate([catalog.build("roc_auc", task, {"mode": "exact"})], scores, y)
    assert exact[""] == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-15)
    # the binary default keeps a bin's scores while it holds at most 8: the bin's six cells, scikit-learn's value
    [kept] = evaluate([catalog.build("roc_auc", task, {"exact_cells": 0})], scores, y)
    assert kept[""] == exact[""] and kept[".error_bound"] <= 1e-12  # (float64 evaluation alone)


def test_float64_scores_alike_in_float32_share_a_bin_at_the_defaults_within_the_bound():
    """300,000 distinct float64 scores 1e-14 apart, one float32 value: past ``exact_cells`` and ``bin_scores`` they
    are one cell, and perfectly separated rows read 0.5, within the reported bound (the README's example); the
    exact mode gives scikit-learn's 1."""
    rank = np.random.default_rng(5).permutation(300_000)
    scores, y = 0.3 + rank * 1e-14, (rank > 270_000).astype(np.int64)
    assert len(np.unique(scores)) == 300_000 and len(np.unique(scores.astype(np.float32))) == 1
    reference = skm.roc_auc_score(y, scores)
    [binned] = evaluate([catalog.build("roc_auc", Task("binary"))], scores, y)
    assert reference == 1.0 and binned[""] == pytest.approx(0.5, abs=1e-5)
    assert abs(binned[""] - reference) <= binned[".error_bound"]
    [exact] = evaluate([catalog.build("roc_auc", Task("binary"), {"mode": "exact"})], scores, y)
    assert exact[""] == reference


def test_score_bins_are_monotone_and_relatively_narrow_near_0_half_and_1():
    """Bins follow the score order, and two scores share a bin only if they differ by less than
    2**-10 relative to their distance from the nearer end (0 or 1), down to 2**-40."""
    import jax

    tail = np.geomspace(1e-11, 0.5, 4000)
    grid = np.unique(np.concatenate([np.linspace(0, 1, 20001), tail, 1 - tail]))
    with jax.enable_x64(True):
        bins = np.asarray(score_bins(grid, 10))
    assert bins.min() == 0 and bins.max() == bin_count(10) - 1
    assert np.all(np.diff(bins) >= 0)
    u = np.minimum(grid, 1 - grid)  # distance to the nearer end, exact in float64
    same = (bins[:-1] == bins[1:]) & (np.minimum(u[:-1], u[1:]) >= 2.0**-40)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(u[1:] - u[:-1]) / np.minimum(u[1:], u[:-1])
    assert same.sum() > 1000
    assert np.all(rel[same] <= 2.0**-10 * (1 + 1e-6))


@pytest.mark.parametrize("mode", ["binned", "exact"])
def test_undefined_classes_are_nan_and_left_out_of_the_averages(mode):
    """A binary task whose rows are all of one class: ROC-AUC NaN (scikit-learn's value too), average precision NaN
    without a positive (scikit-learn returns 0 with a warning), never a number scikit-learn does not give. A
    multiclass class absent from the targets: NaN per class, left out of the averages."""
    from evaluators import functional as F

    p = np.array([0.1, 0.4, 0.4, 0.9])
    for y in (np.ones(4, int), np.zeros(4, int)):
        assert np.isnan(skm.roc_auc_score(y, p))
        assert np.isnan(F.roc_auc(p, y, mode=mode))
    assert skm.average_precision_score(np.zeros(4, int), p) == 0.0
    assert np.isnan(F.average_precision(p, np.zeros(4, int), mode=mode))
    assert F.average_precision(p, np.ones(4, int), mode=mode) == skm.average_precision_score(np.ones(4, int), p) == 1
    y = np.array([0, 1, 0, 1, 0, 1])
    scores = np.array(
        [[0.5, 0.3, 0.2], [0.2, 0.6, 0.2], [0.6, 0.2, 0.2], [0.3, 0.4, 0.3], [0.7, 0.2, 0.1], [0.1, 0.5, 0.4]]
    )
    for name in ("roc_auc", "average_precision"):
        per_class = [SK[name](y == k, scores[:, k]) for k in (0, 1)]
        got = getattr(F, name)(scores, y, mode=mode, average="none")
        np.testing.assert_allclose(got[:2], per_class, atol=1e-12)
        assert np.isnan(got[2])
        assert getattr(F, name)(scores, y, mode=mode) == pytest.approx(np.mean(per_class), abs=1e-12)
        assert getattr(F, name)(scores, y, mode=mode, average="weighted") == pytest.approx(
            np.mean(per_class), abs=1e-12
        )
    assert np.isnan(skm.roc_auc_score(y, scores, multi_class="ovr", labels=[0, 1, 2]))


@pytest.mark.parametrize("mode", ["exact", "binned"])
def test_values_of_fractionally_weighted_rows_never_exceed_1(mode):
    """Every row positive, exponential weights: exact average precision summed its precisions of 1 to
    1.0000000000000007 (seed 0; scikit-learn 1.0), a value outside [0, 1] that range checks refuse. Within float64
    rounding of scikit-learn, and at most 1, in both modes and for ROC-AUC too."""
    from evaluators.functional import average_precision, roc_auc

    for seed in range(8):
        rng = np.random.default_rng(seed)
        s, w = rng.random(800), rng.exponential(1.0, 800)
        y = np.ones(800, np.int64)
        value = average_precision(s, y, weights=w, mode=mode)
        assert value <= 1.0 and value == pytest.approx(1.0, abs=1e-14)
        y[rng.random(800) < 0.5] = 0  # (mixed labels: scikit-learn's values, to rounding)
        assert average_precision(s, y, weights=w, mode=mode) == pytest.approx(
            skm.average_precision_score(y, s, sample_weight=w), abs=1e-12 if mode == "exact" else 1e-6
        )
        separated = np.where(y == 1, 0.5 + s / 2, s / 2)  # (every positive above every negative: ROC-AUC 1)
        auc = roc_auc(separated, y, weights=w, mode=mode)
        assert auc <= 1.0 and auc == pytest.approx(skm.roc_auc_score(y, separated, sample_weight=w), abs=1e-14)


@pytest.mark.parametrize("mode", ["exact", "binned"])
def test_multiclass_micro_averages_are_sklearns_over_the_binarized_targets(mode):
    """``average: micro`` on a multiclass task was refused ("defined for binary and multilabel tasks only"), where
    scikit-learn pools every (row, class) pair of the one-vs-rest problem (``multi_class="ovr"``, or the targets
    binarized). The classes' cells pooled give its value; a class no target holds counts its rows as negatives, and
    logits are ranked through their softmax, as the probabilities scikit-learn takes."""
    from scipy.special import softmax
    from sklearn.preprocessing import label_binarize

    from evaluators.functional import average_precision, roc_auc

    rng = np.random.default_rng(12)
    n, k = 6000, 5
    logits = rng.normal(size=(n, k)) + 0.8 * np.eye(k)[rng.integers(0, k, n)]
    y = rng.integers(0, k - 1, n)  # (class 4 never a target)
    w = rng.exponential(1.0, n)
    p = softmax(logits, axis=1)
    binarized = label_binarize(y, classes=range(k))
    expected = skm.roc_auc_score(y, p, multi_class="ovr", average="micro", sample_weight=w, labels=range(k))
    assert expected == pytest.approx(skm.roc_auc_score(binarized, p, average="micro", sample_weight=w), abs=1e-15)
    tolerance = 1e-12 if mode == "exact" else 1e-6
    for scores, kind in ((p, "probabilities"), (logits, "logits")):
        auc = roc_auc(scores, y, average="micro", weights=w, mode=mode, num_classes=k, prediction=kind)
        assert auc == pytest.approx(expected, abs=tolerance)
        ap = average_precision(scores, y, average="micro", weights=w, mode=mode, num_classes=k, prediction=kind)
        assert ap == pytest.approx(
            skm.average_precision_score(binarized, p, average="micro", sample_weight=w), abs=tolerance
        )
