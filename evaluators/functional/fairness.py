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

import numpy as np

from evaluators.fairness import SENSITIVE
from evaluators.functional._common import infer_task, with_columns


def check_group_labels(sensitive_features: Sequence[Any]) -> None:
    """Raise :class:`ValueError` for group labels the per-group counts would silently misread: a missing label
    (``None`` or NaN, which fairlearn refuses and a Parquet column cannot hold), or distinct labels that the
    counts, which name groups by their labels as strings, would take for one group or split (``1`` and ``"1"``:
    fairlearn keeps two groups)."""
    labels = np.asarray(sensitive_features, dtype=object)
    if labels.ndim != 1:  # (a string is no sequence of labels; fairlearn's intersecting groups are not read here)
        raise ValueError(
            f"sensitive_features must hold one group label per row, a sequence of shape [n]; got shape {labels.shape}"
        )
    values = list(labels)
    missing = sum(v is None or (isinstance(v, float | np.floating) and np.isnan(v)) for v in values)
    if missing:
        rows = "1 row has" if missing == 1 else f"{missing} rows have"
        raise ValueError(f"sensitive_features: {rows} no group label (None or NaN)")
    try:
        distinct = len(set(values))
    except TypeError:
        raise ValueError("sensitive_features must hold one integer or string group label per row") from None
    named = len(np.unique(np.asarray(sensitive_features).astype(str)))
    if named != distinct:
        raise ValueError(
            f"sensitive_features: {distinct} distinct group labels read as {named} groups (labels of mixed types, "
            "such as 1 and '1', or 1 and 1.0 in an object array); give every group a label of one type"
        )


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
        check_group_labels(sensitive_features)
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
