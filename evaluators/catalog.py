"""The one table from metric names (as written in YAML and in the functional API) to factories.

A factory takes the :class:`~evaluators.task.Task` and keyword parameters and
returns a :class:`~evaluators.statistic.DerivedMetric`. Parameters are
checked against the factory's signature, so a misspelt YAML key is caught
before any data is read.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evaluators import domains
from evaluators.statistic import DerivedMetric
from evaluators.task import Task, TaskKind

Factory = Callable[..., DerivedMetric]


@dataclass(frozen=True)
class FamilyFactory:
    """The factory ``name`` of the metric family module ``evaluators.<family>``, imported when a metric of the
    family is first built or inspected: a job imports the families of its own metrics only."""

    family: str
    name: str

    def resolve(self) -> Factory:
        return getattr(importlib.import_module(f"evaluators.{self.family}"), self.name)

    def __call__(self, task: Task | None, **params: Any) -> DerivedMetric:
        return self.resolve()(task, **params)


def _family(family: str, *names: str, **renamed: str) -> dict[str, Factory]:
    """Catalogue entries of one family: ``names`` are the module's factory names, ``renamed`` maps a catalogue name
    to a factory of another name."""
    return {name: FamilyFactory(family, factory) for name, factory in {**{n: n for n in names}, **renamed}.items()}


def factory(name: str) -> Factory:
    """The factory of metric ``name`` itself (its module imported), for its signature and docstring."""
    entry = METRICS[name]
    return entry.resolve() if isinstance(entry, FamilyFactory) else entry


def _mean_average_precision(
    task: Task | None,
    *,
    k: int | None = None,
    iou_thresholds: Any = None,
    max_detection_thresholds: Any = None,
    box_format: str = "xyxy",
    iou_type: str = "bbox",
    class_metrics: bool = False,
) -> DerivedMetric:
    """calibrax's one name for two metrics: COCO mAP of a detection task (:func:`evaluators.detection.
    mean_average_precision`), retrieval MAP of a ranking task (:func:`evaluators.retrieval.mean_average_precision`,
    ``k`` only)."""
    detection_params = {
        "iou_thresholds": iou_thresholds,
        "max_detection_thresholds": max_detection_thresholds,
        "box_format": box_format,
        "iou_type": iou_type,
        "class_metrics": class_metrics,
    }
    if task is not None and TaskKind(task.kind) is TaskKind.RANKING:
        defaults = {"box_format": "xyxy", "iou_type": "bbox", "class_metrics": False}
        given = [key for key, value in detection_params.items() if value != defaults.get(key)]
        if given:
            raise ValueError(f"mean_average_precision of a ranking task takes only k, not {', '.join(given)}")
        return FamilyFactory("retrieval", "mean_average_precision")(task, k=k)
    if k is not None:
        raise ValueError(
            "parameter 'k' of mean_average_precision is for ranking tasks (a detection task's cut-offs "
            "are max_detection_thresholds)"
        )
    return FamilyFactory("detection", "mean_average_precision")(task, **detection_params)


METRICS: Mapping[str, Factory] = {
    # classification (one confusion matrix)
    **_family(
        "classification",
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "sensitivity",
        "specificity",
        "f1_score",
        "fbeta_score",
        "matthews_corrcoef",
        "cohen_kappa",
        "confusion_matrix",
    ),
    # ranking (one score histogram)
    **_family("ranking", "roc_auc", "average_precision"),
    # probabilities and calibration
    **_family(
        "calibration",
        "log_loss",
        "brier_score",
        "expected_calibration_error",
        "maximum_calibration_error",
        "reliability_diagram",
    ),
    **_family("binned_calibration", "brier_decomposition", "classwise_ece", "adaptive_calibration_error"),
    # regression (one set of moments)
    **_family("regression", "mse", "rmse", "mae", "r2", "explained_variance", "pearson_corrcoef"),
    # object detection (COCO); ranking tasks: retrieval MAP
    "mean_average_precision": _mean_average_precision,
    # semantic segmentation (one pixel confusion matrix)
    **_family(
        "segmentation",
        mean_iou="mean_iou_metric",
        jaccard_index="jaccard_index_metric",
        iou="jaccard_index_metric",
        dice_coefficient="dice_score_metric",
        dice_score="dice_score_metric",
        pixel_accuracy="pixel_accuracy_metric",
        mean_pixel_accuracy="mean_pixel_accuracy_metric",
        pixel_confusion_matrix="pixel_confusion_matrix_metric",
    ),
    # text pairs (a backbone turns strings into features)
    **_family(
        "text",
        "embedding_similarity",
        "bertscore_precision",
        "bertscore_recall",
        "bertscore_f1",
        "frechet_embedding_distance",
    ),
    # text pairs without a backbone (corpus counts)
    **_family("corpus_text", "bleu", "chrf", "wer", "cer", "rouge_n", "rouge_l", "distinct_n"),
    # ranking / retrieval (per-query values summed over queries)
    **_family("retrieval", "ndcg", "ndcg_at_k", "precision_at_k", "recall_at_k", "mean_reciprocal_rank", "hit_rate"),
    **_family("coverage", "coverage"),
    # group fairness of a binary classifier (per-group confusion counts)
    **_family(
        "fairness",
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "disparate_impact_ratio",
        "equalized_odds_difference",
        "equal_opportunity_difference",
    ),
    # generated vs real images (a backbone turns images into features)
    **_family("image", "fid", "kid", "inception_score"),
}


_CLASSIFICATION = (TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.MULTILABEL)
_SINGLE_LABEL = (TaskKind.BINARY, TaskKind.MULTICLASS)
_PIXELS = (TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.SEGMENTATION)

TASKS: Mapping[str, tuple[TaskKind, ...]] = {
    **dict.fromkeys(
        ("accuracy", "precision", "recall", "sensitivity", "specificity", "f1_score", "fbeta_score"), _CLASSIFICATION
    ),
    **dict.fromkeys(("confusion_matrix", "roc_auc", "average_precision"), _CLASSIFICATION),
    **dict.fromkeys(("balanced_accuracy", "matthews_corrcoef", "cohen_kappa"), _SINGLE_LABEL),
    **dict.fromkeys(
        (
            "log_loss",
            "brier_score",
            "expected_calibration_error",
            "maximum_calibration_error",
            "reliability_diagram",
            "brier_decomposition",
            "classwise_ece",
            "adaptive_calibration_error",
        ),
        _SINGLE_LABEL,
    ),
    **dict.fromkeys(("mse", "rmse", "mae", "r2", "explained_variance", "pearson_corrcoef"), (TaskKind.REGRESSION,)),
    "mean_average_precision": (TaskKind.DETECTION, TaskKind.RANKING),
    **dict.fromkeys(
        ("ndcg", "ndcg_at_k", "precision_at_k", "recall_at_k", "mean_reciprocal_rank", "hit_rate", "coverage"),
        (TaskKind.RANKING,),
    ),
    **dict.fromkeys(
        (
            "mean_iou",
            "jaccard_index",
            "iou",
            "dice_score",
            "dice_coefficient",
            "pixel_accuracy",
            "mean_pixel_accuracy",
            "pixel_confusion_matrix",
        ),
        _PIXELS,
    ),
    **dict.fromkeys(
        ("embedding_similarity", "bertscore_precision", "bertscore_recall", "bertscore_f1"), (TaskKind.TEXT,)
    ),
    "frechet_embedding_distance": (TaskKind.TEXT,),
    **dict.fromkeys(("bleu", "chrf", "wer", "cer", "rouge_n", "rouge_l", "distinct_n"), (TaskKind.TEXT,)),
    **dict.fromkeys(("fid", "kid", "inception_score"), (TaskKind.IMAGE,)),
    **dict.fromkeys(
        (
            "demographic_parity_difference",
            "demographic_parity_ratio",
            "disparate_impact_ratio",
            "equalized_odds_difference",
            "equal_opportunity_difference",
        ),
        (TaskKind.BINARY,),
    ),
}
"""The task kinds each metric serves (segmentation metrics also read the pixels of binary / multiclass label
columns). :func:`build` refuses any other task, before the metric's own checks."""

_CLASSES = domains.number(2, integer=True, optional=True)
PARAMETERS: Mapping[str, domains.Domain] = {
    "average": domains.text(),
    "top_k": domains.number(1, integer=True),
    "adjusted": domains.flag(),
    "zero_division": domains.number(0, 1),
    "beta": domains.number(0, low_open=True),
    "weights": domains.text(),
    "normalize": domains.text(),
    "mode": domains.text(optional=False),
    "precision_bits": domains.number(4, 16, integer=True, optional=True),
    "exact_cells": domains.number(0, 1 << 28, integer=True),
    "score_decimals": domains.number(0, 5, integer=True, optional=True),
    "bin_scores": domains.number(1, 64, integer=True, optional=True),
    "eps": domains.number(0, 0.5, low_open=True, high_open=True),
    "n_bins": domains.number(1, 100_000, integer=True, optional=True),
    "num_bins": domains.number(1, 100_000, integer=True, optional=True),
    "max_order": domains.number(1, 9, integer=True),
    "char_order": domains.number(1, 12, integer=True),
    "n": domains.number(1, 9, integer=True),
    "lowercase": domains.flag(),
    "iou_thresholds": domains.numbers(domains.number(0, 1)),
    "max_detection_thresholds": domains.numbers(domains.number(1, integer=True)),
    "box_format": domains.text(optional=False),
    "iou_type": domains.text(optional=False),
    "class_metrics": domains.flag(),
    "num_classes": _CLASSES,
    "ignore_index": domains.number(0, integer=True, optional=True),
    "idf": domains.flag(),
    "dimension": domains.number(1, integer=True),
    "subset_size": domains.number(2, integer=True),
    "classes": domains.number(2, integer=True),
    "k": domains.number(1, integer=True, optional=True),
    "catalog_size": domains.number(1, integer=True, optional=True),
}
"""The domain of every metric parameter, by name (a name means the same wherever it appears). String
parameters list their own choices when a value is not one of them."""


def metrics_for(kind: TaskKind) -> list[str]:
    """Catalogue metrics that serve a task kind, sorted."""
    return sorted(name for name, kinds in TASKS.items() if kind in kinds)


class UnknownMetricError(KeyError):
    """A metric name or parameter that the catalogue does not know."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def closest(name: str, candidates: Any) -> str:
    """`` (did you mean 'x'?)`` for the nearest candidate, or ``""``."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def parameters(name: str) -> dict[str, inspect.Parameter]:
    """Keyword parameters a metric accepts (besides the task)."""
    signature = inspect.signature(factory(name))
    return {p.name: p for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


OTHER_NAMES: Mapping[str, str] = {
    "auroc": "roc_auc",
    "auc": "roc_auc",
    "roc": "roc_auc",
    "ap": "average_precision",
    "map": "mean_average_precision",
    "f1": "f1_score",
    "fbeta": "fbeta_score",
    "f_beta": "fbeta_score",
    "dice": "dice_score",
    "miou": "mean_iou",
    "jaccard": "jaccard_index",
    "mcc": "matthews_corrcoef",
    "kappa": "cohen_kappa",
    "ece": "expected_calibration_error",
    "mce": "maximum_calibration_error",
    "brier": "brier_score",
    "r2_score": "r2",
    "mean_squared_error": "mse",
    "mean_absolute_error": "mae",
    "mrr": "mean_reciprocal_rank",
    "ndcg_score": "ndcg",
    "word_error_rate": "wer",
    "char_error_rate": "cer",
    "rouge": "rouge_n",
    "bertscore": "bertscore_f1",
    "fid_score": "fid",
    # torchmetrics classes (of older releases too), named where such a class is not found
    "dicescore": "dice_score",
    "meaniou": "mean_iou",
    "bleuscore": "bleu",
    "charerrorrate": "cer",
    "rougescore": "rouge_n",
    "chrfscore": "chrf",
    "frechetinceptiondistance": "fid",
    "kernelinceptiondistance": "kid",
    "inceptionscore": "inception_score",
    "retrievalnormalizeddcg": "ndcg",
    "retrievalmrr": "mean_reciprocal_rank",
    "retrievalmap": "mean_average_precision",
    "retrievalhitrate": "hit_rate",
    "retrievalprecision": "precision_at_k",
    "retrievalrecall": "recall_at_k",
}
"""Names other libraries and guides use (lower case: ``mAP``, ``AUROC``, torchmetrics' ``Dice``) -> the
catalogue's, suggested when a job names them (not accepted: one name per metric)."""


def metric_hint(name: str) -> str:
    """`` (evalpipe calls it 'x')`` for another library's name of a catalogue metric, else :func:`closest`."""
    other = OTHER_NAMES.get(name.lower())
    return f" (evalpipe calls it {other!r})" if other else closest(name, METRICS)


def check_name(name: str) -> None:
    if name not in METRICS:
        raise UnknownMetricError(
            f"unknown metric {name!r}{metric_hint(name)}; known metrics: {', '.join(sorted(METRICS))}"
        )


def build(name: str, task: Task, params: Mapping[str, Any] | None = None) -> DerivedMetric:
    """The metric ``name`` for ``task`` with ``params``.

    Raises:
        UnknownMetricError: unknown name or parameter (with the nearest valid one).
        ValueError: a task the metric does not serve (:data:`TASKS`), a parameter outside its domain
            (:data:`PARAMETERS`), or a value the metric cannot take.
    """
    check_name(name)
    params = dict(params or {})
    accepted = parameters(name)
    for key in params:
        if key not in accepted:
            allowed = ", ".join(accepted) or "none"
            raise UnknownMetricError(
                f"metric {name!r} has no parameter {key!r}{closest(key, accepted)}; its parameters: {allowed}"
            )
    kind = TaskKind(task.kind)
    if kind not in TASKS[name]:
        raise ValueError(
            f"metric {name!r} serves {', '.join(TASKS[name])} tasks, not {kind}; metrics for a {kind} task: "
            f"{', '.join(metrics_for(kind))}"
        )
    for key, value in params.items():
        PARAMETERS[key].check(name, key, value)
    return METRICS[name](task, **params)
