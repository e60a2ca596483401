"""Group fairness of binary predictions as functions of predictions, targets and group labels, each
``name(predictions, targets, sensitive_features, *, prediction=None, threshold=0.5, weights=None)`` equal to
fairlearn's ``name(targets, predictions, sensitive_features=..., sample_weight=weights)``.

>>> demographic_parity_difference([1, 1, 0, 0, 1, 1], [1, 0, 0, 1, 1, 0], ["a", "a", "a", "b", "b", "b"])
0.0
>>> equalized_odds_difference([1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 0, 0], [0, 0, 0, 1, 1, 1])
0.5
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from evaluators.fairness import SENSITIVE
from evaluators.functional._common import infer_task, with_columns


def _function(name: str, doc: str) -> Callable[..., float]:
    def fairness_metric(
        predictions: Any,
        targets: Any,
        sensitive_features: Sequence[Any],
        *,
        prediction: str | None = None,
        threshold: float = 0.5,
        weights: Any = None,
    ) -> float:
        task = infer_task(predictions, targets, task="binary", prediction=prediction, threshold=threshold)
        columns = {"predictions": predictions, "targets": targets, SENSITIVE: sensitive_features, "weights": weights}
        return float(with_columns(name, task, columns)[""])

    fairness_metric.__name__ = fairness_metric.__qualname__ = name
    fairness_metric.__doc__ = doc
    return fairness_metric


demographic_parity_difference = _function(
    "demographic_parity_difference", "Largest minus smallest selection rate over groups (fairlearn)."
)
demographic_parity_ratio = _function(
    "demographic_parity_ratio", "Smallest over largest selection rate over groups (fairlearn)."
)
disparate_impact_ratio = _function("disparate_impact_ratio", "calibrax's name of the demographic parity ratio.")
equalized_odds_difference = _function(
    "equalized_odds_difference", "The larger of the TPR and FPR differences over groups (fairlearn)."
)
equal_opportunity_difference = _function(
    "equal_opportunity_difference", "Largest minus smallest true positive rate over groups (fairlearn)."
)
