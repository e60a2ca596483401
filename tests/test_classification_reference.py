"""Thresholded classification metrics of the catalogue against scikit-learn.

Every metric is computed the way the distributed pipeline computes it: one
:class:`~evaluators.accumulate.Accumulator` update per shard (random sizes,
always with empty, one-row and single-class shards), states merged in a
random tree order. The reference is scikit-learn on the concatenated rows
(rows whose target is ``ignore_index`` removed first).

Conventions checked here (see the module docstrings of ``evaluators``):

* ``average="none"`` gives all C classes: compared with ``labels=range(C)``;
* multiclass ``macro`` averages over the classes present in the targets or the
  predictions (scikit-learn's default ``labels``); multilabel ``macro`` over
  all labels;
* ``accuracy`` with ``macro`` / ``weighted`` / ``none`` is per-class recall
  (torchmetrics' MulticlassAccuracy), for multilabel per-label accuracy
  (tp + tn) / n; the multilabel default is the exact-match ratio;
* Cohen's kappa uses the full C x C matrix (``labels=range(C)``), which matters
  for linear / quadratic weights when a class is absent;
* specificity, which scikit-learn has no function for, is read off
  ``multilabel_confusion_matrix``; the binary value is also checked against
  ``recall_score(pos_label=0)``;
* sample weights are strictly positive: a zero weight means "row absent" in
  ``evaluators`` (that is how padding rows are neutralised), so a class seen
  only in zero-weight rows does not count as present, unlike scikit-learn.
"""

import functools
import inspect

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.utils.multiclass import unique_labels

import evaluators.functional as F
from evaluators import catalog
from evaluators.accumulate import evaluate
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

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning"),
    pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true:UserWarning"),
]

RTOL = 1e-9
ATOL = 1e-12


# --- scenarios -----------------------------------------------------------------------------------


def _binary_probs(rng):
    return binary_probs_case(rng)


def _binary_rare_weighted(rng):
    return binary_rare_weighted_case(rng, 5000)


def _binary_logits_threshold(rng):
    d = binary_data(rng, 2000, positive_rate=0.2)
    task = Task("binary", prediction="logits", threshold=0.3)
    return make_case(rng, task, d["logits"], d["targets"], weights_for(rng, 2000))


def _binary_labels_ignore(rng):
    d = binary_data(rng, 2000, positive_rate=0.4)
    targets = d["targets"].copy()
    targets[rng.random(2000) < 0.1] = -1
    preds = (d["probabilities"] > 0.5).astype(np.int64)
    return make_case(rng, Task("binary", prediction="labels", ignore_index=-1), preds, targets)


def _multiclass_probs_absent(rng):
    d = multiclass_data(rng, 3000, 5, absent=(3,))
    task = Task("multiclass", 5)
    return make_case(rng, task, d["probabilities"], d["targets"], weights_for(rng, 3000))


def _multiclass_logits(rng):
    d = multiclass_data(rng, 2000, 4)
    return make_case(rng, Task("multiclass", 4, prediction="logits"), d["logits"], d["targets"])


def _multiclass_labels_ignore(rng):
    # ignore_index names a real class: its rows go, but predictions of it still count
    d = multiclass_data(rng, 2500, 6, absent=(2,))
    task = Task("multiclass", 6, prediction="labels", ignore_index=5)
    return make_case(rng, task, d["labels"], d["targets"], weights_for(rng, 2500))


def _multiclass_labels_never_predicted(rng):
    # class 1 is never predicted (precision 0/0), class 3 occurs nowhere (every ratio 0/0)
    d = multiclass_data(rng, 1500, 4, absent=(3,))
    labels = d["labels"].copy()
    labels[(labels == 1) | (labels == 3)] = 0
    return make_case(rng, Task("multiclass", 4, prediction="labels"), labels, d["targets"])


def _multilabel_probs_weighted(rng):
    # label 2 rare, label 3 never positive, label 4 always positive
    d = multilabel_data(rng, 3000, [0.5, 0.2, 0.01, 0.0, 1.0])
    return make_case(rng, Task("multilabel", 5), d["probabilities"], d["targets"], weights_for(rng, 3000))


def _multilabel_logits_ignore(rng):
    d = multilabel_data(rng, 2000, [0.3, 0.6, 0.1])
    targets = d["targets"].copy()
    targets[rng.random(targets.shape) < 0.1] = -1
    task = Task("multilabel", 3, prediction="logits", ignore_index=-1)
    return make_case(rng, task, d["logits"], targets)


def _multilabel_labels(rng):
    d = multilabel_data(rng, 2000, [0.4, 0.05, 0.7, 0.2])
    return make_case(rng, Task("multilabel", 4, prediction="labels"), d["labels"], d["targets"])


SCENARIOS = {
    "binary-probs": (_binary_probs, TaskKind.BINARY, True),
    "binary-1pct-weighted": (_binary_rare_weighted, TaskKind.BINARY, True),
    "binary-logits-threshold0.3-weighted": (_binary_logits_threshold, TaskKind.BINARY, True),
    "binary-labels-ignore": (_binary_labels_ignore, TaskKind.BINARY, False),
    "multiclass-probs-absent-weighted": (_multiclass_probs_absent, TaskKind.MULTICLASS, True),
    "multiclass-logits": (_multiclass_logits, TaskKind.MULTICLASS, True),
    "multiclass-labels-ignore-weighted": (_multiclass_labels_ignore, TaskKind.MULTICLASS, False),
    "multiclass-labels-never-predicted": (_multiclass_labels_never_predicted, TaskKind.MULTICLASS, False),
    "multilabel-probs-weighted": (_multilabel_probs_weighted, TaskKind.MULTILABEL, True),
    "multilabel-logits-ignore": (_multilabel_logits_ignore, TaskKind.MULTILABEL, True),
    "multilabel-labels": (_multilabel_labels, TaskKind.MULTILABEL, False),
}

RATIOS = ("precision", "recall", "sensitivity", "specificity", "f1_score")


def specs_for(kind: TaskKind, has_scores: bool) -> list[tuple[str, dict]]:
    """Every (metric, params) combination that applies to a task kind."""
    averages = ["micro", "macro", "weighted", "none"]
    if kind is TaskKind.BINARY:
        averages = ["binary", *averages]
    specs: list[tuple[str, dict]] = [("accuracy", {})]
    specs += [("accuracy", {"average": a}) for a in averages]
    if kind is TaskKind.MULTILABEL:
        specs.append(("accuracy", {"average": "subset"}))
    for name in RATIOS:
        specs.append((name, {}))
        specs += [(name, {"average": a}) for a in averages]
    for name in ("precision", "recall", "f1_score", "specificity"):
        specs += [(name, {"average": a, "zero_division": 1.0}) for a in ("macro", "weighted", "none")]
    specs += [
        ("fbeta_score", {"beta": 0.5}),
        ("fbeta_score", {"beta": 2.0, "average": "macro"}),
        ("fbeta_score", {"beta": 2.0, "average": "weighted"}),
        ("fbeta_score", {"beta": 0.5, "average": "none"}),
        ("fbeta_score", {"beta": 3.0, "average": "micro"}),
    ]
    specs += [("confusion_matrix", {})] + [("confusion_matrix", {"normalize": k}) for k in ("true", "pred", "all")]
    if kind is not TaskKind.MULTILABEL:
        specs += [("balanced_accuracy", {}), ("balanced_accuracy", {"adjusted": True}), ("matthews_corrcoef", {})]
        specs += [("cohen_kappa", {})] + [("cohen_kappa", {"weights": k}) for k in ("linear", "quadratic")]
    if kind is TaskKind.MULTICLASS and has_scores:
        specs += [("accuracy", {"top_k": 2, "average": a}) for a in ("micro", "macro", "weighted", "none")]
        specs += [("accuracy", {"top_k": 3})]
    return specs


@functools.cache
def scenario(name: str) -> Case:
    build = SCENARIOS[name][0]
    return build(np.random.default_rng(sum(map(ord, name))))


@functools.cache
def scenario_values(name: str) -> dict:
    _, kind, has_scores = SCENARIOS[name]
    rng = np.random.default_rng(len(name))
    return case_values(scenario(name), specs_for(kind, has_scores), rng)


CASES = [
    pytest.param(s, m, p, id=f"{s}-{spec_id(m, p)}")
    for s, (_, kind, has_scores) in SCENARIOS.items()
    for m, p in specs_for(kind, has_scores)
]


# --- scikit-learn references ---------------------------------------------------------------------


def _sk_average(average: str, num_classes: int) -> dict:
    if average == "none":
        return {"average": None, "labels": list(range(num_classes))}
    if average == "binary":
        return {"average": "binary", "pos_label": 1}
    return {"average": average}


def _sk_ratio(name: str, y, y_pred, w, average: str, num_classes: int, zero_division: float, beta: float = 1.0):
    kw = {"sample_weight": w, "zero_division": zero_division, **_sk_average(average, num_classes)}
    if name in ("recall", "sensitivity"):
        return skm.recall_score(y, y_pred, **kw)
    if name == "precision":
        return skm.precision_score(y, y_pred, **kw)
    if name == "f1_score":
        return skm.f1_score(y, y_pred, **kw)
    return skm.fbeta_score(y, y_pred, beta=beta, **kw)


def _average_by_hand(values: np.ndarray, support: np.ndarray, present: np.ndarray, average: str, zd: float):
    """scikit-learn's averaging of per-class values (used where it has no function: specificity)."""
    if average == "none":
        return values
    if average == "macro":
        return values[present].mean() if present.any() else zd
    if average == "weighted":
        return np.average(values, weights=support) if support.sum() > 0 else zd
    raise AssertionError(average)


def _specificity_from_mcm(mcm: np.ndarray, average: str, present: np.ndarray, zd: float):
    tn, fp, fn, tp = mcm[:, 0, 0], mcm[:, 0, 1], mcm[:, 1, 0], mcm[:, 1, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = np.where(tn + fp > 0, tn / (tn + fp), zd)
    if average == "binary":
        return spec[1]
    if average == "micro":
        return tn.sum() / (tn + fp).sum()
    return _average_by_hand(spec, tp + fn, present, average, zd)


def _smaller_index_first(scores: np.ndarray) -> np.ndarray:
    """Scores of the same per-row order, with ties broken towards the smaller class index (``argmax``'s rule, and
    evalpipe's ``top_k``), as distinct values: scikit-learn's ``top_k_accuracy_score`` puts the larger index first."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (equal scores keep their index order)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return (scores.shape[1] - ranks).astype(np.float64)


def _top_k_reference(c: Case, k: int, average: str):
    # scikit-learn ranks the raw scores (logits or probabilities; a softmax keeps their order), here with ties broken
    # as argmax breaks them
    scores = _smaller_index_first(c.predictions[c.keep])
    labels = list(range(c.task.classes))
    if average == "micro":
        return skm.top_k_accuracy_score(c.y, scores, k=k, labels=labels, sample_weight=c.w)
    w = np.ones(len(c.y)) if c.w is None else c.w
    hits = np.zeros(len(labels))
    support = np.zeros(len(labels))
    for cls in labels:
        rows = c.y == cls
        support[cls] = w[rows].sum()
        if rows.any():
            hits[cls] = skm.top_k_accuracy_score(c.y[rows], scores[rows], k=k, labels=labels, sample_weight=w[rows])
    return _average_by_hand(hits, support, support > 0, average, 0.0)


def single_label_reference(name: str, params: dict, c: Case):
    num_classes = c.task.classes
    labels = list(range(num_classes))
    y, y_pred, w = c.y, c.y_pred, c.w
    default = "binary" if c.task.kind is TaskKind.BINARY else "macro"
    average = params.get("average") or default
    zd = params.get("zero_division", 0.0)
    if name == "accuracy":
        if params.get("top_k", 1) > 1:
            return _top_k_reference(c, params["top_k"], params.get("average") or "micro")
        average = params.get("average") or "micro"
        if average in ("micro", "binary"):
            return skm.accuracy_score(y, y_pred, sample_weight=w)
        return _sk_ratio("recall", y, y_pred, w, average, num_classes, 0.0)
    if name in ("precision", "recall", "sensitivity", "f1_score", "fbeta_score"):
        return _sk_ratio(name, y, y_pred, w, average, num_classes, zd, params.get("beta", 1.0))
    if name == "specificity":
        mcm = skm.multilabel_confusion_matrix(y, y_pred, sample_weight=w, labels=labels)
        present = np.isin(labels, unique_labels(y, y_pred))
        value = _specificity_from_mcm(mcm, average, present, zd)
        if average == "binary":
            assert value == pytest.approx(skm.recall_score(y, y_pred, pos_label=0, sample_weight=w), abs=1e-15)
        return value
    if name == "balanced_accuracy":
        return skm.balanced_accuracy_score(y, y_pred, sample_weight=w, adjusted=params.get("adjusted", False))
    if name == "matthews_corrcoef":
        return skm.matthews_corrcoef(y, y_pred, sample_weight=w)
    if name == "cohen_kappa":
        return skm.cohen_kappa_score(y, y_pred, labels=labels, weights=params.get("weights"), sample_weight=w)
    if name == "confusion_matrix":
        return skm.confusion_matrix(y, y_pred, labels=labels, sample_weight=w, normalize=params.get("normalize"))
    raise AssertionError(name)


def multilabel_reference(name: str, params: dict, c: Case):
    """Per label on the kept elements; micro on all kept elements pooled; macro / weighted by hand."""
    n_labels = c.task.classes
    w_full = np.ones(len(c.y)) if c.w is None else c.w
    cols = []
    for j in range(n_labels):
        k = c.keep[:, j]
        cols.append((c.y[k, j], c.y_pred[k, j], w_full[k]))
    pooled = tuple(np.concatenate(parts) for parts in zip(*cols, strict=True))
    support = np.array([wj[yj == 1].sum() for yj, _, wj in cols])
    all_labels = np.ones(n_labels, bool)
    average = params.get("average") or "macro"
    zd = params.get("zero_division", 0.0)
    full_rows = bool(c.keep.all())
    if name == "accuracy":
        average = params.get("average") or "subset"
        if average == "subset":
            if full_rows:
                return skm.accuracy_score(c.y, c.y_pred, sample_weight=c.w)
            match = np.all((c.y_pred == c.y) | ~c.keep, axis=1)
            return np.average(match, weights=w_full)
        if average == "micro":
            return skm.accuracy_score(pooled[0], pooled[1], sample_weight=pooled[2])
        per_label = np.array([skm.accuracy_score(yj, pj, sample_weight=wj) for yj, pj, wj in cols])
        return _average_by_hand(per_label, support, all_labels, average, 0.0)
    if name in ("precision", "recall", "sensitivity", "f1_score", "fbeta_score"):
        beta = params.get("beta", 1.0)
        if full_rows:  # scikit-learn's own multilabel averaging
            return _sk_ratio(name, c.y, c.y_pred, c.w, average, n_labels, zd, beta)
        if average == "micro":
            return _sk_ratio(name, *pooled, "binary", 2, zd, beta)
        per_label = np.array([_sk_ratio(name, yj, pj, wj, "binary", 2, zd, beta) for yj, pj, wj in cols])
        return _average_by_hand(per_label, support, all_labels, average, zd)
    if name == "specificity":
        mcm = np.stack([skm.confusion_matrix(yj, pj, labels=[0, 1], sample_weight=wj) for yj, pj, wj in cols])
        if full_rows:
            # scikit-learn forms tn as total - tp - fp - fn, hence the absolute tolerance
            sk_mcm = skm.multilabel_confusion_matrix(c.y, c.y_pred, sample_weight=c.w)
            np.testing.assert_allclose(mcm, sk_mcm, rtol=1e-12, atol=1e-9)
        return _specificity_from_mcm(mcm, average, all_labels, zd)
    if name == "confusion_matrix":
        normalize = params.get("normalize")
        return np.stack(
            [skm.confusion_matrix(yj, pj, labels=[0, 1], sample_weight=wj, normalize=normalize) for yj, pj, wj in cols]
        )
    raise AssertionError(name)


def ours(values: dict, params: dict, c: Case):
    if params.get("average") == "none":
        return per_class(values, c.task.classes)
    return values[""]


@pytest.mark.parametrize(("scenario_name", "name", "params"), CASES)
def test_metric_matches_sklearn(scenario_name, name, params):
    c = scenario(scenario_name)
    got = ours(scenario_values(scenario_name)[spec_key(name, params)], params, c)
    if c.task.kind is TaskKind.MULTILABEL:
        expected = multilabel_reference(name, params, c)
    else:
        expected = single_label_reference(name, params, c)
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=RTOL, atol=ATOL)


def test_scenarios_exercise_the_edge_cases():
    """The data really has what the reference tests claim: empty and single-class shards, absent classes."""
    for name in SCENARIOS:
        c = scenario(name)
        sizes = [len(s) for s in c.shards]
        assert sizes.count(0) >= 2 and 1 in sizes
        assert sorted(np.concatenate(c.shards).tolist()) == list(range(len(c.targets)))
        first = c.targets if c.targets.ndim == 1 else c.targets[:, 0]
        assert any(len(s) > 1 and len(np.unique(first[s])) == 1 for s in c.shards)
    rare = scenario("binary-1pct-weighted")
    assert 0.005 < rare.y.mean() < 0.02
    assert 3 not in scenario("multiclass-probs-absent-weighted").y
    never = scenario("multiclass-labels-never-predicted")
    assert 1 in never.y and 1 not in never.y_pred and 3 not in np.union1d(never.y, never.y_pred)
    assert scenario("multilabel-probs-weighted").y[:, 3].sum() == 0


# --- the functional API ------------------------------------------------------------------------------

# calibrax's worked example
TARGETS = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
PREDS_HARD = np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0])
PREDS_SOFT = np.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.6, 0.3, 0.1, 0.85, 0.15])


def test_functional_names_are_the_catalogue():
    assert sorted(F.__all__) == sorted(catalog.METRICS)
    for name in F.__all__:
        fn = getattr(F, name)
        positional = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional[1] == "targets" and positional[0] in ("predictions", "probabilities"), name


@pytest.mark.parametrize(
    ("fn", "reference"),
    [
        (F.accuracy, skm.accuracy_score),
        (F.precision, skm.precision_score),
        (F.recall, skm.recall_score),
        (F.sensitivity, skm.recall_score),
        (F.specificity, lambda y, p: skm.recall_score(y, p, pos_label=0)),
        (F.f1_score, skm.f1_score),
        (F.fbeta_score, lambda y, p: skm.fbeta_score(y, p, beta=1.0)),
        (F.balanced_accuracy, skm.balanced_accuracy_score),
        (F.matthews_corrcoef, skm.matthews_corrcoef),
        (F.cohen_kappa, skm.cohen_kappa_score),
        (F.confusion_matrix, skm.confusion_matrix),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_functional_calibrax_example_hard_labels(fn, reference):
    np.testing.assert_allclose(fn(PREDS_HARD, TARGETS), reference(TARGETS, PREDS_HARD), rtol=RTOL, atol=ATOL)


def test_functional_calibrax_example_soft_scores():
    # ten distinct scores: each sits in its own histogram bin, so the binned values are exact
    assert F.roc_auc(PREDS_SOFT, TARGETS) == pytest.approx(skm.roc_auc_score(TARGETS, PREDS_SOFT), abs=1e-12)
    assert F.roc_auc(PREDS_SOFT, TARGETS, mode="exact") == pytest.approx(
        skm.roc_auc_score(TARGETS, PREDS_SOFT), abs=1e-12
    )
    assert F.average_precision(PREDS_SOFT, TARGETS) == pytest.approx(
        skm.average_precision_score(TARGETS, PREDS_SOFT), abs=1e-12
    )
    assert F.log_loss(PREDS_SOFT, TARGETS) == pytest.approx(skm.log_loss(TARGETS, y_proba=PREDS_SOFT), rel=RTOL)
    # thresholded metrics from scores: p > 0.5
    assert F.accuracy(PREDS_SOFT, TARGETS) == pytest.approx(skm.accuracy_score(TARGETS, PREDS_SOFT > 0.5))
    assert F.f1_score(PREDS_SOFT, TARGETS) == pytest.approx(skm.f1_score(TARGETS, PREDS_SOFT > 0.5), abs=1e-12)
    # logits are recognised by their range
    logits = np.log(PREDS_SOFT / (1 - PREDS_SOFT))
    assert F.precision(logits, TARGETS) == pytest.approx(skm.precision_score(TARGETS, PREDS_SOFT > 0.5), abs=1e-12)


def test_functional_average_none_is_one_value_per_class_as_in_scikit_learn():
    """``average=None`` is scikit-learn's and torchmetrics' one value per class (it gave the task's default, macro,
    0.722 where scikit-learn's F1 reads [1, 0.667, 0.5]); left out, the task's default."""
    rng = np.random.default_rng(17)
    y, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(4), 300)
    for name, reference in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1_score", skm.f1_score),
    ):
        function = getattr(F, name)
        np.testing.assert_allclose(function(p, y, average=None), reference(y, p, average=None), atol=1e-12)
        assert function(p, y) == pytest.approx(reference(y, p, average="macro"), abs=1e-12)
    np.testing.assert_allclose(
        F.fbeta_score(p, y, beta=2.0, average=None), skm.fbeta_score(y, p, beta=2.0, average=None), atol=1e-12
    )
    np.testing.assert_allclose(
        F.roc_auc(probs, y, average=None), skm.roc_auc_score(y, probs, multi_class="ovr", average=None), atol=1e-12
    )
    ap = [skm.average_precision_score(y == c, probs[:, c]) for c in range(4)]
    np.testing.assert_allclose(F.average_precision(probs, y, average=None), ap, atol=1e-12)
    binary_y, binary_p = y % 2, p % 2  # a binary task: both classes, as scikit-learn's average=None
    np.testing.assert_allclose(
        F.precision(binary_p, binary_y, average=None), skm.precision_score(binary_y, binary_p, average=None), atol=1e-12
    )
    assert F.precision(binary_p, binary_y) == pytest.approx(skm.precision_score(binary_y, binary_p), abs=1e-12)
    scores = probs[:, 1]  # (binary ROC-AUC and AP: scikit-learn's average=None is their one value)
    assert F.roc_auc(scores, binary_y, average=None) == pytest.approx(skm.roc_auc_score(binary_y, scores), abs=1e-12)
    assert F.average_precision(scores, binary_y, average=None) == pytest.approx(
        skm.average_precision_score(binary_y, scores, average=None), abs=1e-12
    )
    masks_y, masks_p = y.reshape(30, 10), p.reshape(30, 10)
    for function in (F.iou, F.mean_iou):
        np.testing.assert_allclose(
            function(masks_p, masks_y, average=None), skm.jaccard_score(y, p, average=None), atol=1e-12
        )
    for function in (F.dice_coefficient, F.dice_score):
        np.testing.assert_allclose(
            function(masks_p, masks_y, average=None), skm.f1_score(y, p, average=None), atol=1e-12
        )
    np.testing.assert_allclose(
        F.pixel_accuracy(masks_p, masks_y, average=None), skm.recall_score(y, p, average=None), atol=1e-12
    )
    two = (masks_y % 2, masks_p % 2)  # class-id masks of two classes: calibrax's binary default, or both classes
    assert F.iou(two[1], two[0]) == pytest.approx(skm.jaccard_score(two[0].ravel(), two[1].ravel()), abs=1e-12)
    np.testing.assert_allclose(
        F.iou(two[1], two[0], average=None), skm.jaccard_score(two[0].ravel(), two[1].ravel(), average=None)
    )


def test_functional_multiclass_inference_and_params():
    rng = np.random.default_rng(7)
    d = multiclass_data(rng, 600, 4, absent=(2,))
    y, probs, labels = d["targets"], d["probabilities"], d["labels"]
    w = weights_for(rng, 600)
    # [n, C] probabilities: multiclass with C columns; argmax labels
    y_hat = probs.argmax(axis=1)
    assert F.accuracy(probs, y) == pytest.approx(skm.accuracy_score(y, y_hat), abs=1e-12)
    assert F.f1_score(probs, y, average="weighted", weights=w) == pytest.approx(
        skm.f1_score(y, y_hat, average="weighted", sample_weight=w), abs=1e-12
    )
    np.testing.assert_allclose(
        F.recall(probs, y, average="none"), skm.recall_score(y, y_hat, average=None, labels=range(4)), atol=1e-12
    )
    # logits are recognised by their range; top-k (ties to the smaller class index, as argmax)
    assert F.accuracy(d["logits"], y, top_k=2) == pytest.approx(
        skm.top_k_accuracy_score(y, _smaller_index_first(d["logits"]), k=2, labels=range(4)), abs=1e-12
    )
    # integer labels: C inferred from the largest label, or given
    assert F.matthews_corrcoef(labels, y) == pytest.approx(skm.matthews_corrcoef(y, labels), abs=1e-12)
    np.testing.assert_allclose(
        F.confusion_matrix(labels, y, num_classes=6), skm.confusion_matrix(y, labels, labels=range(6)), atol=0
    )
    assert F.cohen_kappa(labels, y, weights="quadratic", num_classes=6) == pytest.approx(
        skm.cohen_kappa_score(y, labels, weights="quadratic", labels=range(6)), abs=1e-12
    )


def test_functional_multilabel_and_ignore_index():
    rng = np.random.default_rng(11)
    d = multilabel_data(rng, 400, [0.3, 0.5, 0.05])
    y, probs = d["targets"], d["probabilities"]
    y_hat = (probs > 0.5).astype(int)
    assert F.accuracy(probs, y) == pytest.approx(skm.accuracy_score(y, y_hat), abs=1e-12)
    assert F.precision(probs, y, average="micro") == pytest.approx(
        skm.precision_score(y, y_hat, average="micro"), abs=1e-12
    )
    np.testing.assert_allclose(F.confusion_matrix(probs, y), skm.multilabel_confusion_matrix(y, y_hat), atol=0)
    # binary with ignore_index: those rows are left out
    yb = TARGETS.copy()
    yb[[2, 5]] = -100
    keep = yb != -100
    assert F.recall(PREDS_HARD, yb, ignore_index=-100) == pytest.approx(
        skm.recall_score(yb[keep], PREDS_HARD[keep]), abs=1e-12
    )


def test_top_k_of_saturated_logits_ranks_the_logits():
    """Logits far apart underflow to probabilities of exactly 0, which tie: ranked by the logits (as scikit-learn and
    torchmetrics rank them), the target below two others is a miss at k=2, not a hit by the tie rule."""
    logits = np.array([[0.0, -800.0, -900.0], [5.0, 1.0, 0.0], [-1000.0, 0.0, -1000.5], [0.0, -745.0, -746.0]])
    targets = np.array([2, 0, 0, 1])
    for k in (1, 2):
        metric = catalog.build("accuracy", Task("multiclass", 3, prediction="logits"), {"top_k": k})
        expected = skm.top_k_accuracy_score(targets, logits, k=k, labels=[0, 1, 2])
        assert evaluate([metric], logits, targets)[0][""] == pytest.approx(expected, abs=1e-15)
    assert expected == 0.75  # (k=2: rows 1, 2 and 3 hit; row 0's target is last)


def test_a_class_seen_only_in_rows_of_weight_0_is_absent():
    """Weight 0 means the row counts nowhere: class 2 below is absent from the macro average (scikit-learn, which
    counts it present, gives F1 0 to it); equal to scikit-learn on the rows of positive weight."""
    y, p, w = np.array([1, 0, 0, 0, 2]), np.array([1, 0, 1, 0, 1]), np.array([1.0, 1, 1, 1, 0])
    kept = w > 0
    for name, sk in (("f1_score", skm.f1_score), ("precision", skm.precision_score), ("recall", skm.recall_score)):
        got = getattr(F, name)(p, y, weights=w, num_classes=3)
        assert got == pytest.approx(sk(y[kept], p[kept], average="macro"), abs=1e-12), name
    assert F.f1_score(p, y, weights=w, num_classes=3) != pytest.approx(
        skm.f1_score(y, p, average="macro", sample_weight=w)
    )
    assert F.balanced_accuracy(p, y, weights=w, num_classes=3) == skm.balanced_accuracy_score(y, p, sample_weight=w)


@pytest.mark.parametrize(
    ("kind", "predictions", "targets"),
    [
        ("multiclass", np.array([0, 2, 1]), np.array([9, 9, 9])),  # every row ignored
        ("binary", np.array([0.2, 0.9]), np.array([9, 9])),
        ("multilabel", np.array([[1, 0], [0, 1]]), np.full((2, 2), 9)),
    ],
)
def test_no_counted_row_is_refused_by_the_functional_api_and_nan_in_a_state(kind, predictions, targets):
    """Every row ignored (or of weight 0): scikit-learn refuses the empty rows, and so does the functional API, as a
    job does (exit 2); a state of such rows (a slice's) gives no averaged value that is a number (not zero_division's
    0 or 1), while per class a zero denominator still takes zero_division."""
    with pytest.raises(ValueError):
        skm.precision_score([], [], zero_division=1.0)
    classes = {"multiclass": 3, "multilabel": 2}.get(kind)
    kw = {"task": kind, "ignore_index": 9, "num_classes": 3 if kind == "multiclass" else None}
    averages = ["binary"] if kind == "binary" else ["micro", "macro", "weighted"]
    task = Task(kind, classes, ignore_index=9) if classes else Task(kind, ignore_index=9)
    ignored = f"all {len(predictions)} rows have only the target 9, which ignore_index leaves out"
    for name in ("precision", "recall", "f1_score", "specificity", "accuracy"):
        extra = {} if name == "accuracy" else {"zero_division": 1.0}
        for average in averages:
            with pytest.raises(ValueError, match=ignored):
                getattr(F, name)(predictions, targets, average=average, **extra, **kw)
            metric = catalog.build(name, task, {**extra, **({} if average == "binary" else {"average": average})})
            assert np.isnan(evaluate([metric], predictions, targets)[0][""]), (name, average)
    if kind != "multilabel":
        for name in ("balanced_accuracy", "matthews_corrcoef", "cohen_kappa"):
            with pytest.raises(ValueError, match=ignored):
                getattr(F, name)(predictions, targets, **kw)
            assert np.isnan(evaluate([catalog.build(name, task)], predictions, targets)[0][""]), name
    recall = catalog.build("recall", task, {"average": "none", "zero_division": 1.0})
    per_class = [v for k, v in evaluate([recall], predictions, targets)[0].items() if k.startswith("[")]
    assert per_class and np.all(np.asarray(per_class) == 1.0)
    weights = np.zeros(len(predictions))
    with pytest.raises(ValueError, match=f"weights: all {len(predictions)} rows have weight 0"):
        F.f1_score(predictions, np.zeros_like(predictions), weights=weights, task=kind, average=averages[0])
    if kind == "multiclass":
        with pytest.raises(ValueError, match=ignored):
            F.accuracy(np.eye(3)[predictions], targets, top_k=2, ignore_index=9)


def test_undefined_combinations_raise():
    for name in ("balanced_accuracy", "matthews_corrcoef", "cohen_kappa"):
        with pytest.raises(ValueError, match="not multilabel"):
            catalog.build(name, Task("multilabel", 3))
    with pytest.raises(ValueError, match="binary"):
        catalog.build("precision", Task("multiclass", 3), {"average": "binary"})
    with pytest.raises(ValueError, match="top_k"):
        catalog.build("accuracy", Task("multiclass", 3, prediction="labels"), {"top_k": 2})
    with pytest.raises(catalog.UnknownMetricError, match="did you mean 'average'"):
        catalog.build("recall", Task("binary"), {"averge": "macro"})


@pytest.mark.parametrize("seed", range(40))
def test_mcc_of_one_target_class_with_fractional_weights_is_sklearns_0(seed):
    """All targets in one class: MCC's denominator is 0 by definition; with fractional weights ``n^2 - t @ t`` left
    rounding noise, whose sign gave NaN or about 1e-9 (scikit-learn: 0)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    pred, w = rng.integers(0, 5, n), rng.random(n) * 3
    for y in (np.ones(n, int), pred.copy()):
        expected = skm.matthews_corrcoef(y, pred, sample_weight=w)
        assert F.matthews_corrcoef(pred, y, weights=w, num_classes=5) == pytest.approx(expected, abs=1e-12)


def test_probabilities_a_rounding_outside_0_1_are_refused_not_read_as_logits():
    """One value of ``1.0000001`` among probabilities used to turn the whole batch into logits (accuracy 0.52
    instead of 0.75); values well outside [0, 1] are still logits."""
    rng = np.random.default_rng(0)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(int)
    for nudged in (1.0000001, -1e-12):
        q = p.copy()
        q[0] = nudged
        with pytest.raises(ValueError, match=r"1 values outside \[0, 1\].*prediction='logits'"):
            F.accuracy(q, y)
    probs = rng.dirichlet(np.ones(4), 200)
    probs[0, 0] = -1e-12
    with pytest.raises(ValueError, match="clip probabilities"):
        F.log_loss(probs, rng.integers(0, 4, 200))
    logits = np.log(p / (1 - p))
    assert F.accuracy(logits, y) == skm.accuracy_score(y, p >= 0.5)
    assert F.accuracy(q, y, prediction="logits") == skm.accuracy_score(y, q >= 0)


def test_a_few_scores_well_outside_0_1_among_probabilities_are_refused_not_read_as_logits():
    """One corrupt probability of 1.5 among 2,000 turned every row into a logit (accuracy 0.762 -> 0.4935; a
    multiclass row of [1.5, -0.5, 0, 0] among 1,000 changed log loss from 1.904 to 1.419), where the CLI refuses the
    same rows. At most 1% of the values outside [0, 1]: a ValueError that asks which they are; logits of a model
    (far more of them outside [0, 1]) are read as before, and a declared kind is taken as it is."""
    rng = np.random.default_rng(11)
    p = rng.random(2000)
    y = (rng.random(2000) < p).astype(int)
    for corrupt in (1.5, 1.0011, -0.01, 40.0):
        q = p.copy()
        q[0] = corrupt
        with pytest.raises(ValueError, match=r"1 of 2000 values lie outside \[0, 1\].*prediction='logits'"):
            F.accuracy(q, y)
        assert F.accuracy(q, y, prediction="logits") == skm.accuracy_score(y, q > 0)
    probs = rng.dirichlet(np.ones(4), 1000)
    probs[0] = [1.5, -0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"2 of 4000 values lie outside"):
        F.log_loss(probs, rng.integers(0, 4, 1000))
    logits = rng.normal(0.5, 0.3, 2000)  # (a weak model's logits: 5% outside [0, 1], still logits)
    assert F.accuracy(logits, y) == skm.accuracy_score(y, logits > 0)


@pytest.mark.parametrize("zero_division", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_weighted_average_without_any_positive_target_is_sklearns_plain_mean(seed, zero_division):
    """Multilabel targets without a positive in any label weigh every label 0: scikit-learn then takes the plain
    mean of the labels' values (1.0 here before, from ``zero_division``, where scikit-learn gave 0.5)."""
    rng = np.random.default_rng(seed)
    scores = rng.random((30, 4))
    targets = np.zeros((30, 4), int)
    w = rng.random(30) + 0.1
    predicted = (scores >= 0.5).astype(int)
    for fn, reference in ((F.precision, skm.precision_score), (F.recall, skm.recall_score), (F.f1_score, skm.f1_score)):
        got = fn(scores, targets, average="weighted", zero_division=zero_division, weights=w)
        expected = reference(targets, predicted, average="weighted", zero_division=zero_division, sample_weight=w)
        assert got == pytest.approx(expected, abs=1e-12), fn.__name__


@pytest.mark.parametrize("kappa_weights", [None, "linear", "quadratic"])
def test_cohen_kappa_takes_sample_weights_beside_its_own_weighting(kappa_weights):
    rng = np.random.default_rng(7)
    y, pred, w = rng.integers(0, 4, 200), rng.integers(0, 4, 200), rng.random(200) * 2
    expected = skm.cohen_kappa_score(y, pred, weights=kappa_weights, sample_weight=w)
    got = F.cohen_kappa(pred, y, weights=kappa_weights, sample_weight=w, num_classes=4)
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("scores", "targets", "by_hand"),
    [
        ([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]], [0, 0], [1.0, 1.0, 1.0]),
        ([[1 / 3, 1 / 3, 1 / 3], [0.2, 0.4, 0.4], [0.2, 0.4, 0.4]], [2, 2, 1], [1 / 3, 2 / 3, 1.0]),
        ([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], [0, 1, 1, 0], [0.5, 1.0, 1.0]),
    ],
)
def test_top_k_ties_go_to_the_smaller_class_index_at_every_k(scores, targets, by_hand):
    """Tied scores rank the smaller class index first at every ``k``, as ``argmax`` does for ``top_k=1``, so the
    value never falls as ``k`` grows (``top_k=2`` had put the larger index first, scikit-learn's rule: 1.0, 0.5, 1.0
    for k = 1, 2, 3 on the first case). Values by hand (second case: k=1 hits row 2 only; k=2 rows 1 and 2), and
    scikit-learn's on scores whose ties are broken that way."""
    from evaluators.functional import accuracy

    x, y = np.asarray(scores, np.float64), np.asarray(targets)
    values = [accuracy(x, y, top_k=k, num_classes=3) for k in (1, 2, 3)]
    assert values == pytest.approx(by_hand, abs=1e-15) and values == sorted(values)
    for k, value in zip((1, 2, 3), values, strict=True):
        reference = skm.top_k_accuracy_score(y, _smaller_index_first(x), k=k, labels=[0, 1, 2])
        assert value == pytest.approx(reference, abs=1e-15)


@pytest.mark.parametrize("scale", [1e-300, 1e-100, 1e75, 1e200, 1e300])
def test_mcc_and_kappa_do_not_depend_on_the_scale_of_the_weights(scale):
    """Every weighted mean is unchanged when all weights are multiplied by one number: MCC multiplied weighted sums,
    which left float64's range (0 at weights of 1e-100 or 1e75 on 3,000 rows, NaN at 1e200). Equal to scikit-learn on
    the same weights divided by their mean."""
    rng = np.random.default_rng(31)
    for classes in (2, 4):
        y, p = rng.integers(0, classes, 3000), rng.integers(0, classes, 3000)
        agree = rng.random(3000) < 0.4  # (a model better than chance: MCC and kappa away from 0)
        p[agree] = y[agree]
        w = rng.random(3000) + 0.5
        unit = w / w.mean()
        expected = skm.matthews_corrcoef(y, p, sample_weight=unit)
        assert F.matthews_corrcoef(p, y, weights=w * scale, num_classes=classes) == pytest.approx(expected, abs=1e-12)
        for kind in ("linear", "quadratic"):
            expected = skm.cohen_kappa_score(y, p, weights=kind, sample_weight=unit)
            got = F.cohen_kappa(p, y, weights=kind, sample_weight=w * scale, num_classes=classes)
            assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_jaccard_and_dice_of_a_binary_task_are_the_positive_classs_by_default(seed):
    """A binary job's ``jaccard_index`` / ``dice_score`` averaged both classes (0.5948 where scikit-learn's
    ``jaccard_score`` gives 0.5900, and a Dice of 0.7459 beside the same job's F1 of 0.7421); ``mean_iou`` is the
    mean over both classes by its name, and ``average: macro`` still gives that."""
    rng = np.random.default_rng(seed)
    p = rng.random(2000)
    y = (rng.random(2000) < p).astype(np.int64)
    w = rng.exponential(1.0, 2000)
    names = ("jaccard_index", "iou", "dice_score", "dice_coefficient", "mean_iou", "f1_score")
    metrics = [catalog.build(n, Task("binary")) for n in names]
    metrics.append(catalog.build("jaccard_index", Task("binary"), {"average": "macro"}))
    values = [v[""] for v in evaluate(metrics, p, y, w)]
    jaccard = skm.jaccard_score(y, p > 0.5, sample_weight=w)
    f1 = skm.f1_score(y, p > 0.5, sample_weight=w)
    macro = skm.jaccard_score(y, p > 0.5, sample_weight=w, average="macro")
    assert values == pytest.approx([jaccard, jaccard, f1, f1, macro, f1, macro], abs=1e-12)
