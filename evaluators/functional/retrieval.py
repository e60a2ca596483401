"""Ranking / retrieval metrics as functions of item scores, relevance and query ids (one row per item).

The rows of one query must be contiguous (see :mod:`evaluators.retrieval`).

>>> ndcg([0.9, 0.1, 0.8, 0.3], [1, 0, 0, 1], ["a", "a", "b", "b"])
0.8154648767857288
>>> mean_reciprocal_rank([0.9, 0.1, 0.8, 0.3], [0, 1, 0, 1], ["a", "a", "b", "b"])
0.5
>>> coverage([0.9, 0.1, 0.8, 0.3], [1, 0, 0, 1], ["a", "a", "b", "b"], ["x", "y", "x", "z"], k=1, catalog_size=4)
0.25
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluators.coverage import ITEM
from evaluators.functional._common import with_columns
from evaluators.retrieval import QUERY
from evaluators.task import Task, TaskKind


def id_column(ids: Sequence[Any], argument: str = "query_ids") -> Any:
    """``ids`` of ``argument`` (``query_ids``, ``item_ids``) as a column whose values keep their type: an
    array as it is; a sequence of integers as int64 (object where one passes int64), of strings as an object array.
    Refuses (:class:`ValueError`) a missing id and ids of mixed types, which a conversion to one NumPy dtype would
    merge (``1`` and ``"1"``: one query) where a job reads them from one typed column."""
    if isinstance(ids, np.ndarray) and ids.dtype != object:
        return ids
    values = list(np.asarray(ids, dtype=object).reshape(-1))
    missing = sum(v is None for v in values)
    if missing:
        rows = "1 row has" if missing == 1 else f"{missing} rows have"
        raise ValueError(f"{argument}: {rows} no {argument.removesuffix('s').replace('_', ' ')} (None)")
    integers = [isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values]
    if all(integers):
        try:
            return np.asarray(values, np.int64)
        except OverflowError:  # (integers beyond int64: keyed by their text, see evaluators.retrieval.id_key)
            return np.asarray(values, dtype=object)
    if any(integers) or not all(isinstance(v, str) for v in values):
        kinds = sorted({type(v).__name__ for v in values})
        raise ValueError(
            f"{argument}: ids of {'mixed types' if len(kinds) > 1 else 'type'} {', '.join(kinds)}; give every row an "
            "id of one type, integers or strings (1 and '1' would be one id in a column of one type)"
        )
    return np.asarray(values, dtype=object)


def _ranking(
    name: str, predictions: Any, targets: Any, query_ids: Sequence[Any], weights: Any, params: dict
) -> dict[str, Any]:
    columns = {"predictions": predictions, "targets": targets, QUERY: id_column(query_ids), "weights": weights}
    return with_columns(name, Task(TaskKind.RANKING), columns, params)


def ndcg(predictions: Any, targets: Any, query_ids: Sequence[Any], *, weights: Any = None) -> float:
    """Mean nDCG over queries (scikit-learn ``ndcg_score`` per query, ties averaged)."""
    return float(_ranking("ndcg", predictions, targets, query_ids, weights, {})[""])


def ndcg_at_k(predictions: Any, targets: Any, query_ids: Sequence[Any], *, k: int = 10, weights: Any = None) -> float:
    """Mean nDCG@k over queries (scikit-learn ``ndcg_score(k=k)`` per query, ties averaged)."""
    return float(_ranking("ndcg_at_k", predictions, targets, query_ids, weights, {"k": k})[""])


def mean_average_precision(
    predictions: Any, targets: Any, query_ids: Sequence[Any], *, k: int | None = None, weights: Any = None
) -> float:
    """Retrieval MAP (@k): torchmetrics ``retrieval_average_precision`` averaged over queries."""
    return float(_ranking("mean_average_precision", predictions, targets, query_ids, weights, {"k": k})[""])


def precision_at_k(
    predictions: Any, targets: Any, query_ids: Sequence[Any], *, k: int = 10, weights: Any = None
) -> float:
    """Mean precision@k over queries (over ``min(k, items)``)."""
    return float(_ranking("precision_at_k", predictions, targets, query_ids, weights, {"k": k})[""])


def recall_at_k(predictions: Any, targets: Any, query_ids: Sequence[Any], *, k: int = 10, weights: Any = None) -> float:
    """Mean recall@k over queries."""
    return float(_ranking("recall_at_k", predictions, targets, query_ids, weights, {"k": k})[""])


def mean_reciprocal_rank(
    predictions: Any, targets: Any, query_ids: Sequence[Any], *, k: int | None = None, weights: Any = None
) -> float:
    """Mean reciprocal rank of the first relevant item (within the top ``k``)."""
    return float(_ranking("mean_reciprocal_rank", predictions, targets, query_ids, weights, {"k": k})[""])


def hit_rate(predictions: Any, targets: Any, query_ids: Sequence[Any], *, k: int = 10, weights: Any = None) -> float:
    """Fraction of queries with a relevant item in the top ``k``."""
    return float(_ranking("hit_rate", predictions, targets, query_ids, weights, {"k": k})[""])


def coverage(
    predictions: Any,
    targets: Any,
    query_ids: Sequence[Any],
    item_ids: Sequence[Any],
    *,
    k: int = 10,
    catalog_size: int | None = None,
    weights: Any = None,
) -> float:
    """Catalogue coverage: distinct items in some query's top ``k`` over ``catalog_size`` (None: the distinct
    items among the rows). ``targets`` (relevance) are checked as a ranking job checks them but do not enter the
    value: coverage counts what is shown, relevant or not."""
    columns = {
        "predictions": predictions,
        "targets": targets,
        QUERY: id_column(query_ids),
        ITEM: id_column(item_ids, "item_ids"),
        "weights": weights,
    }
    params = {"k": k, "catalog_size": catalog_size}
    return float(with_columns("coverage", Task(TaskKind.RANKING), columns, params)[""])
