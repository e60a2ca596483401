"""The one table from metric names (as written in YAML and in the functional API) to factories.

A factory takes the :class:`~evaluators.task.Task` and keyword parameters and
returns a :class:`~evaluators.statistic.DerivedMetric`. Parameters are
checked against the factory's signature, so a misspelt YAML key is caught
before any data is read.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from evaluators import (
    binned_calibration,
    calibration,
    classification,
    corpus_text,
    coverage,
    detection,
    domains,
    fairness,
    image,
    ranking,
    regression,
    retrieval,
    segmentation,
    text,
)
from evaluators.statistic import DerivedMetric
from evaluators.task import Task, TaskKind

Factory = Callable[..., DerivedMetric]


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
        return retrieval.mean_average_precision(task, k=k)
    if k is not None:
        raise ValueError(
            "parameter 'k' of mean_average_precision is for ranking tasks (a detection task's cut-offs "
            "are max_detection_thresholds)"
        )
    return detection.mean_average_precision(task, **detection_params)


METRICS: Mapping[str, Factory] = {
    # classification (one confusion matrix)
    "accuracy": classification.accuracy,
    "balanced_accuracy": classification.balanced_accuracy,
    "precision": classification.precision,
    "recall": classification.recall,
    "sensitivity": classification.sensitivity,
    "specificity": classification.specificity,
    "f1_score": classification.f1_score,
    "fbeta_score": classification.fbeta_score,
    "matthews_corrcoef": classification.matthews_corrcoef,
    "cohen_kappa": classification.cohen_kappa,
    "confusion_matrix": classification.confusion_matrix,
    # ranking (one score histogram)
    "roc_auc": ranking.roc_auc,
    "average_precision": ranking.average_precision,
    # probabilities and calibration
    "log_loss": calibration.log_loss,
    "brier_score": calibration.brier_score,
    "expected_calibration_error": calibration.expected_calibration_error,
    "maximum_calibration_error": calibration.maximum_calibration_error,
    "reliability_diagram": calibration.reliability_diagram,
    "brier_decomposition": binned_calibration.brier_decomposition,
    "classwise_ece": binned_calibration.classwise_ece,
    "adaptive_calibration_error": binned_calibration.adaptive_calibration_error,
    # regression (one set of moments)
    "mse": regression.mse,
    "rmse": regression.rmse,
    "mae": regression.mae,
    "r2": regression.r2,
    "explained_variance": regression.explained_variance,
    "pearson_corrcoef": regression.pearson_corrcoef,
    # object detection (COCO); ranking tasks: retrieval MAP
    "mean_average_precision": _mean_average_precision,
    # semantic segmentation (one pixel confusion matrix)
    "mean_iou": segmentation.mean_iou_metric,
    "jaccard_index": segmentation.jaccard_index_metric,
    "iou": segmentation.jaccard_index_metric,  # calibrax's name
    "dice_coefficient": segmentation.dice_score_metric,  # calibrax's name
    "dice_score": segmentation.dice_score_metric,
    "pixel_accuracy": segmentation.pixel_accuracy_metric,
    "mean_pixel_accuracy": segmentation.mean_pixel_accuracy_metric,
    "pixel_confusion_matrix": segmentation.pixel_confusion_matrix_metric,
    # text pairs (a backbone turns strings into features)
    "embedding_similarity": text.embedding_similarity,
    "bertscore_precision": text.bertscore_precision,
    "bertscore_recall": text.bertscore_recall,
    "bertscore_f1": text.bertscore_f1,
    "frechet_embedding_distance": text.frechet_embedding_distance,
    # text pairs without a backbone (corpus counts)
    "bleu": corpus_text.bleu,
    "chrf": corpus_text.chrf,
    "wer": corpus_text.wer,
    "cer": corpus_text.cer,
    "rouge_n": corpus_text.rouge_n,
    "rouge_l": corpus_text.rouge_l,
    "distinct_n": corpus_text.distinct_n,
    # ranking / retrieval (per-query values summed over queries)
    "ndcg": retrieval.ndcg,
    "ndcg_at_k": retrieval.ndcg_at_k,
    "precision_at_k": retrieval.precision_at_k,
    "recall_at_k": retrieval.recall_at_k,
    "mean_reciprocal_rank": retrieval.mean_reciprocal_rank,
    "hit_rate": retrieval.hit_rate,
    "coverage": coverage.coverage,
    # group fairness of a binary classifier (per-group confusion counts)
    "demographic_parity_difference": fairness.demographic_parity_difference,
    "demographic_parity_ratio": fairness.demographic_parity_ratio,
    "disparate_impact_ratio": fairness.disparate_impact_ratio,
    "equalized_odds_difference": fairness.equalized_odds_difference,
    "equal_opportunity_difference": fairness.equal_opportunity_difference,
    # generated vs real images (a backbone turns images into features)
    "fid": image.fid,
    "kid": image.kid,
    "inception_score": image.inception_score,
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
    "precision_bits": domains.number(4, 16, integer=True),
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
    signature = inspect.signature(METRICS[name])
    return {p.name: p for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_name(name: str) -> None:
    if name not in METRICS:
        raise UnknownMetricError(
            f"unknown metric {name!r}{closest(name, METRICS)}; known metrics: {', '.join(sorted(METRICS))}"
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
