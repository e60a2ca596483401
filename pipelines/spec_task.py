"""The job spec's ``task:`` key: what kind of predictions the rows hold, and the settings that kind reads."""

from __future__ import annotations

from evaluators.task import PredictionKind, Task, TaskKind
from pipelines.errors import SpecError
from pipelines.spec_yaml import Section, check_range


def read_task(root: Section) -> Task:
    """The ``task:`` key: a kind, or a mapping of its kind and settings, each checked against the kind."""
    root.allowed.append("task")
    raw = root.value.get("task")
    kinds = [k.value for k in TaskKind]
    if raw is None:
        raise SpecError(f"{root.where()}: missing required key 'task' ({', '.join(kinds[:-1])} or {kinds[-1]}).")
    if isinstance(raw, str):
        raw = {"kind": raw}
    sec = Section(root.source, ("task",), raw, "a task name or a mapping with `kind`")
    kind = sec.get("kind", str, required=True, choices=kinds)
    num_classes = sec.get("num_classes", int)
    prediction = sec.get("prediction", str, "probabilities", choices=[p.value for p in PredictionKind])
    threshold = sec.get("threshold", float, 0.5)
    ignore_index = sec.get("ignore_index", int)
    sec.finish()
    if kind in ("multiclass", "multilabel", "segmentation") and num_classes is None:
        raise SpecError(
            f"{sec.where()}: a {kind} task needs `num_classes` (the number of {'classes' if kind == 'multiclass' else 'labels'})."
        )
    check_range(sec, "num_classes", num_classes, 1_000_000, integer=True)
    if num_classes is not None and num_classes < 2:
        raise SpecError(f"{sec.where('num_classes')}: expected at least 2 classes, got {num_classes}.")
    if kind == "binary" and num_classes not in (None, 2):
        raise SpecError(
            f"{sec.where('num_classes')}: a binary task has 2 classes, got {num_classes}; for more, use "
            "`kind: multiclass` (one label per row) or `kind: multilabel` (several)."
        )
    if not 0.0 <= threshold <= 1.0:
        raise SpecError(f"{sec.where('threshold')}: expected a probability threshold in [0, 1], got {threshold}.")
    for key, kinds, why in _TASK_KEYS:
        if raw.get(key) is not None and kind not in kinds:  # (null: the key left unset)
            raise SpecError(
                f"{sec.where(key)}: a {kind} task reads no {key} (it would be ignored); `{key}` is for "
                f"{', '.join(kinds[:-1])} and {kinds[-1]} tasks, {why}"
                + (": a multiclass row's prediction is its class of highest score." if kind == "multiclass" else ".")
            )
    return Task(TaskKind(kind), num_classes, PredictionKind(prediction), threshold, ignore_index)


_THRESHOLDED = ("binary", "multilabel")
_LABELLED = ("binary", "multiclass", "multilabel", "segmentation")
_TASK_KEYS = (
    ("threshold", _THRESHOLDED, "whose scores count as positive above it"),
    ("num_classes", _LABELLED, "whose targets are class labels"),
    ("ignore_index", _LABELLED, "whose targets are class labels"),
)
"""Task keys only some kinds read: ``(key, kinds, what those kinds are)``."""
"""The task kinds whose predicted labels are scores above ``task.threshold``."""
