"""Functional metrics with calibrax's names and ``(predictions, targets, **params)`` signatures.

Each function runs the statistic that the distributed pipeline runs: one
update over the whole batch, then the same compute.
"""

from evaluators.functional.calibration import (
    adaptive_calibration_error,
    brier_decomposition,
    brier_score,
    classwise_ece,
    expected_calibration_error,
    maximum_calibration_error,
    reliability_diagram,
)
from evaluators.functional.classification import (
    accuracy,
    average_precision,
    balanced_accuracy,
    cohen_kappa,
    confusion_matrix,
    f1_score,
    fbeta_score,
    log_loss,
    matthews_corrcoef,
    precision,
    recall,
    roc_auc,
    sensitivity,
    specificity,
)
from evaluators.functional.corpus_text import bleu, cer, chrf, rouge_l, rouge_n, wer
from evaluators.functional.detection import mean_average_precision
from evaluators.functional.image import fid, inception_score, kid
from evaluators.functional.regression import explained_variance, mae, mse, pearson_corrcoef, r2, rmse
from evaluators.functional.retrieval import (
    hit_rate,
    mean_reciprocal_rank,
    ndcg,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from evaluators.functional.segmentation import (
    dice_coefficient,
    dice_score,
    iou,
    jaccard_index,
    mean_iou,
    mean_pixel_accuracy,
    pixel_accuracy,
    pixel_confusion_matrix,
)
from evaluators.functional.text import (
    bertscore_f1,
    bertscore_precision,
    bertscore_recall,
    embedding_similarity,
    frechet_embedding_distance,
)

__all__ = [
    "accuracy",
    "adaptive_calibration_error",
    "average_precision",
    "balanced_accuracy",
    "bertscore_f1",
    "bertscore_precision",
    "bertscore_recall",
    "bleu",
    "brier_decomposition",
    "brier_score",
    "cer",
    "chrf",
    "classwise_ece",
    "cohen_kappa",
    "confusion_matrix",
    "dice_coefficient",
    "dice_score",
    "embedding_similarity",
    "expected_calibration_error",
    "explained_variance",
    "f1_score",
    "fbeta_score",
    "fid",
    "frechet_embedding_distance",
    "hit_rate",
    "inception_score",
    "iou",
    "jaccard_index",
    "kid",
    "log_loss",
    "mae",
    "matthews_corrcoef",
    "maximum_calibration_error",
    "mean_average_precision",
    "mean_iou",
    "mean_pixel_accuracy",
    "mean_reciprocal_rank",
    "mse",
    "ndcg",
    "ndcg_at_k",
    "pearson_corrcoef",
    "pixel_accuracy",
    "pixel_confusion_matrix",
    "precision",
    "precision_at_k",
    "r2",
    "recall",
    "recall_at_k",
    "reliability_diagram",
    "rmse",
    "roc_auc",
    "rouge_l",
    "rouge_n",
    "sensitivity",
    "specificity",
    "wer",
]
