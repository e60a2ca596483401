"""Group fairness of a binary classifier, from per-group confusion counts.

The batch has, beside ``predictions`` / ``targets`` / ``weights`` of a binary task, a ``sensitive`` column: one
group label per row (integers or strings; a group is named by its label as a string). The state is one row of
weighted confusion counts per group met so far, merged by adding the counts of equal labels:

==========  =======================  ==========================================================
leaf        shape / dtype            meaning
==========  =======================  ==========================================================
``groups``  ``[G]`` unicode, sorted  group labels (as strings)
``counts``  ``[G, 4]`` float64       weighted true negatives, false positives, false negatives,
                                     true positives of each group
==========  =======================  ==========================================================

Its size follows the number of groups, never the rows. Bootstrap buckets share one label axis (``counts``
``[buckets, G, 4]``), so a replicate's counts are one weighted sum over buckets. Predicted labels follow the task (``p > threshold``, logits
through the sigmoid, or labels as given). Rates are fairlearn's: ``selection_rate`` = predicted positive over all,
``true_positive_rate`` = TP / (TP + FN), ``false_positive_rate`` = FP / (FP + TN), **0 when the group has no row of
the class** (a group with one class); differences are max - min over groups, ratios min / max (NaN when every
group's rate is 0, as fairlearn's 0 / 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from evaluators.lazyjax import jax, jnp
from evaluators.statistic import (
    NON_NEGATIVE,
    RATIO,
    Batch,
    DerivedMetric,
    Direction,
    RowsError,
    State,
    Statistic,
)
from evaluators.task import PredictionKind, Task, TaskKind, predicted_labels

SENSITIVE = "sensitive"
"""The batch key (and ``data.columns`` role) of the group labels."""


def predicted_positive(task: Task, predictions: np.ndarray) -> np.ndarray:
    """bool ``[n]``: the rows a binary task predicts positive, as the confusion counts of the same job do
    (:func:`evaluators.task.predicted_labels`): a score compared with the threshold in its own dtype (a float32 score
    of 0.3 is not above a threshold of 0.3), a logit through the compiled update's sigmoid."""
    if task.prediction is PredictionKind.LOGITS:  # (the confusion counts of logits take the compiled update)
        with jax.enable_x64(True):
            return np.asarray(predicted_labels(task, jnp.asarray(predictions))) == 1
    return predicted_labels(task, np.asarray(predictions)) == 1


class GroupLabelsError(RowsError):
    """A group label that ends in a NUL character: the counts name groups by their labels as NumPy strings, which
    drop it, so that ``'a\\x00'`` would be counted as group ``'a'``."""

    role = SENSITIVE

    def __init__(self, label: str) -> None:
        super().__init__(
            f"the group label {label!r} ends in a NUL character, which group names cannot hold (it would be counted "
            f"as group {label.rstrip(chr(0))!r}); remove the NUL characters from the labels"
        )


@dataclass(frozen=True)
class GroupConfusion(Statistic):
    """Weighted ``[tn, fp, fn, tp]`` per group label (see the module)."""

    task: Task

    jittable = False
    columns = (SENSITIVE,)

    def zero(self) -> State:
        return {"groups": np.zeros(0, "<U1"), "counts": np.zeros((0, 4), np.float64)}

    def zero_grouped(self, groups: int) -> State:
        """One label axis shared by the ``groups`` bootstrap buckets: ``counts`` is ``[groups, G, 4]``."""
        return {"groups": np.zeros(0, "<U1"), "counts": np.zeros((groups, 0, 4), np.float64)}

    def _counts(self, batch: Batch, bucket: np.ndarray, buckets: int) -> State:
        """``{"groups": [G], "counts": [buckets, G, 4]}`` of the rows of ``batch`` in ``bucket`` (int ``[n]``)."""
        labels = np.asarray(batch[SENSITIVE])
        names, group = np.unique(labels.astype(str), return_inverse=True)
        if labels.dtype == object:  # (NumPy's strings drop a trailing NUL: 'a' and 'a\x00' would be one group)
            ended = sorted(v for v in set(labels) if isinstance(v, str) and v.endswith("\x00"))
            if ended:
                raise GroupLabelsError(ended[0])
        cell = 2 * (np.asarray(batch["targets"]) > 0) + predicted_positive(self.task, batch["predictions"])
        index = (bucket * len(names) + group) * 4 + cell
        weights = np.asarray(batch["weights"], np.float64)
        if self.task.ignore_index is not None:  # (an ignored row weighs 0: its group takes no part without others)
            weights = np.where(np.asarray(batch["targets"]) != self.task.ignore_index, weights, 0.0)
        counts = np.bincount(index, weights, minlength=4 * len(names) * buckets)
        return {"groups": names, "counts": counts.reshape(buckets, len(names), 4)}

    def update(self, state: State, batch: Batch) -> State:
        if not len(batch[SENSITIVE]):
            return state
        found = self._counts(batch, np.zeros(len(batch[SENSITIVE]), np.int64), 1)
        return self.merge(state, {"groups": found["groups"], "counts": found["counts"][0]})

    def occupied_groups(self, stacked: State, groups: int) -> np.ndarray:
        return (np.asarray(stacked["counts"]) != 0).reshape(groups, -1).any(axis=1)

    def update_grouped(self, batch: Batch, stacked: State, group: np.ndarray) -> State:
        if not len(batch[SENSITIVE]):
            return stacked
        return self.merge(stacked, self._counts(batch, np.asarray(group, np.int64), stacked["counts"].shape[0]))

    def merge(self, a: State, b: State) -> State:
        """Counts of equal labels added (``counts`` ``[G, 4]``, or ``[buckets, G, 4]`` for bucket states)."""
        names, index = np.unique(np.concatenate([a["groups"], b["groups"]]), return_inverse=True)
        lead = np.shape(a["counts"])[:-2]
        counts = np.zeros((*lead, len(names), 4), np.float64)
        counts[..., index[: len(a["groups"])], :] += a["counts"]  # labels are unique within each side
        counts[..., index[len(a["groups"]) :], :] += b["counts"]
        return {"groups": names, "counts": counts}

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        mixed = np.tensordot(np.asarray(weights, np.float64), np.asarray(stacked["counts"], np.float64), axes=1)
        return [{"groups": stacked["groups"], "counts": c} for c in mixed]


def _rates(state: State) -> dict[str, np.ndarray]:
    """Per-group rates ``[G]`` (0 where the denominator is 0, as fairlearn)."""
    tn, fp, fn, tp = np.asarray(state["counts"], np.float64).T

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    return {
        "selection_rate": ratio(fp + tp, tn + fp + fn + tp),
        "true_positive_rate": ratio(tp, tp + fn),
        "false_positive_rate": ratio(fp, fp + tn),
    }


def _disparity(rates: tuple[str, ...], ratio: bool, state: State) -> dict[str, float]:
    """Worst case over ``rates`` of max - min (or min / max) over groups, with each group's rates."""
    present = np.asarray(state["counts"], np.float64).sum(axis=1) > 0  # a bootstrap replicate may miss a group
    state = {"groups": np.asarray(state["groups"])[present], "counts": np.asarray(state["counts"])[present]}
    groups = [str(g) for g in state["groups"]]
    if not groups:
        return {"": float("nan")}
    per_group = _rates(state)
    values = []
    for name in rates:
        low, high = float(per_group[name].min()), float(per_group[name].max())
        values.append((low / high if high > 0 else float("nan")) if ratio else high - low)
    out = {"": min(values) if ratio else max(values), ".groups": float(len(groups))}
    for name in rates:
        out.update({f".{name}[{g}]": float(v) for g, v in zip(groups, per_group[name], strict=True)})
    return out


def _fairness(
    name: str, task: Task, rates: tuple[str, ...], ratio: bool, direction: Direction = Direction.LOWER
) -> DerivedMetric:
    if task.kind is not TaskKind.BINARY:
        raise ValueError(f"{name} is defined for binary tasks with a sensitive column, not {task.kind}")
    parts = ((".groups", NON_NEGATIVE), *((f".{rate}", RATIO) for rate in rates))  # (a rate's ``[group]`` values)
    value_of = partial(_disparity, rates, ratio)
    info = tuple(part for part, _ in parts)  # (a count, and each group's rates: none is better or worse)
    return DerivedMetric(
        name, GroupConfusion(task), value_of, direction, value_range=RATIO, part_ranges=parts, info_parts=info
    )


def demographic_parity_difference(task: Task) -> DerivedMetric:
    """Largest minus smallest selection rate over groups (fairlearn); also ``.selection_rate[group]``."""
    return _fairness("demographic_parity_difference", task, ("selection_rate",), False)


def demographic_parity_ratio(task: Task) -> DerivedMetric:
    """Smallest over largest selection rate over groups (fairlearn); also ``.selection_rate[group]``."""
    return _fairness("demographic_parity_ratio", task, ("selection_rate",), True, Direction.HIGHER)


def disparate_impact_ratio(task: Task) -> DerivedMetric:
    """calibrax's name of :func:`demographic_parity_ratio` (the "80% rule")."""
    return _fairness("disparate_impact_ratio", task, ("selection_rate",), True, Direction.HIGHER)


def equalized_odds_difference(task: Task) -> DerivedMetric:
    """The larger of the TPR and FPR differences over groups (fairlearn); also the per-group rates."""
    return _fairness("equalized_odds_difference", task, ("true_positive_rate", "false_positive_rate"), False)


def equal_opportunity_difference(task: Task) -> DerivedMetric:
    """Largest minus smallest true positive rate over groups (fairlearn); also ``.true_positive_rate[group]``."""
    return _fairness("equal_opportunity_difference", task, ("true_positive_rate",), False)
