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
    detection,
    image,
    ranking,
    regression,
    segmentation,
    text,
)
from evaluators.statistic import DerivedMetric
from evaluators.task import Task

Factory = Callable[..., DerivedMetric]

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
    # object detection (COCO)
    "mean_average_precision": detection.mean_average_precision,
    # semantic segmentation (one pixel confusion matrix)
    "mean_iou": segmentation.mean_iou_metric,
    "jaccard_index": segmentation.jaccard_index_metric,
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
    # generated vs real images (a backbone turns images into features)
    "fid": image.fid,
    "kid": image.kid,
    "inception_score": image.inception_score,
}


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
        ValueError: a parameter value the metric cannot take, or a task it is not defined for.
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
    return METRICS[name](task, **params)
