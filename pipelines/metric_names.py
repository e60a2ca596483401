"""The names that select a run's metric values (``evalpipe show`` / ``compare --metric``, :func:`~pipelines.results.
compare_all`), and the error that names the valid ones."""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.errors import UserError
from pipelines.records import Run, declared_keys, selects, unknown_message


def metric_names(run: Run) -> set[str]:
    """Every metric key of ``run``, the keys its spec declares (``as: auc[main]``) and the base names of its keys
    (``f1_score`` for ``f1_score[2]``, ``roc_auc`` for ``roc_auc.error_bound``): the names that select values
    (:func:`~pipelines.records.selects`)."""
    keys = {k for p in run.points for k in p.metrics}
    bases = {k.split("[", 1)[0] for k in keys} | {k.split("[", 1)[0].split(".", 1)[0] for k in keys}
    return keys | bases | declared_keys(run)


def listed_names(run: Run, names: set[str]) -> set[str]:
    """The names an error lists as valid: the keys the spec declares and the others without a per-class index (a
    user function's outputs, ``rows``); for a run that recorded no spec, the names without a per-class index."""
    declared = declared_keys(run)
    if not declared:
        return {n for n in names if "[" not in n}
    keys = {k for p in run.points for k in p.metrics}
    return declared | {k for k in keys if "[" not in k and not any(selects(d, k) for d in declared)}


def check_names(run: Run, metrics: Iterable[str] | None, points: Iterable[str] | None) -> None:
    """Every name in ``metrics`` (keys or base names) and ``points`` is one of ``run``'s.

    Raises:
        UserError: naming the unknown name and the ones there are.
    """
    names = metric_names(run)
    for name in metrics or ():
        if name not in names:
            raise UserError(unknown_message("metric", name, listed_names(run, names)))
    point_names = {p.name for p in run.points}
    for name in points or ():
        if name not in point_names:
            raise UserError(unknown_message("point", name, point_names))
