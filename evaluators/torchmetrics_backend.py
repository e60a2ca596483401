"""torchmetrics metrics as mergeable statistics (``backend: torchmetrics`` with AutoTimm's ``metric_class`` /
``params``).

A torchmetrics class that evalpipe computes natively (``F1Score``, ``AUROC``, ``JaccardIndex``, ...) maps to
the native metric with the same parameters and defaults (:func:`native_equivalent`): the same value, computed
from evalpipe's statistics, sliced and bootstrapped like any other metric. Any other class, or parameters the
native metric has no counterpart for, runs torchmetrics itself through :class:`TorchmetricsStatistic`:

* the state is the torchmetrics object's own state (``metric_state``), as numpy arrays; list ("cat") states are
  kept concatenated along their first axis;
* ``update`` loads the state into a fresh object, calls ``metric.update(preds, target)`` and reads it back;
* ``merge`` uses torchmetrics' own ``merge_state``, so sum, max, min and cat reductions are torchmetrics';
* a state that grows with the rows (a list state) is marked ``bounded = False``.

torch and torchmetrics are imported only when such a metric is built.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.catalog import OTHER_NAMES
from evaluators.statistic import Batch, DerivedMetric, Direction, State, Statistic
from evaluators.task import PredictionKind, Task, TaskKind

UPDATES = "__updates__"
"""State entry counting the batches folded in (torchmetrics warns when computing before any update)."""

LOWER_IS_BETTER = {"CalibrationError", "MeanSquaredError", "MeanAbsoluteError", "HammingDistance", "WordErrorRate"}


def _torchmetrics() -> Any:
    try:
        return importlib.import_module("torchmetrics")
    except ImportError:
        raise ValueError(
            "backend: torchmetrics needs torch and torchmetrics installed (pip install torchmetrics)"
        ) from None


def metric_class(name: str) -> type:
    """The torchmetrics class ``name`` (``"F1Score"``, ``"classification.MulticlassAUROC"``,
    ``"segmentation.DiceScore"``, or any of these as ``"torchmetrics.F1Score"``, AutoTimm's full path)."""
    module = _torchmetrics()
    path = name.removeprefix("torchmetrics.")
    found: Any = module
    for i, part in enumerate(path.split(".")):
        within = found
        found = getattr(within, part, None)
        if found is None and isinstance(within, type(module)):  # (a subpackage not imported yet: segmentation)
            found = _submodule(module.__name__, path.split(".")[: i + 1])
        if found is None:
            raise ValueError(_not_found(name, path))
    if not isinstance(found, type):
        raise ValueError(f"torchmetrics.{path} is not a metric class")
    return found


def _submodule(root: str, parts: list[str]) -> Any:
    try:
        return importlib.import_module(".".join([root, *parts]))
    except ImportError:
        return None


def _not_found(name: str, path: str) -> str:
    last = path.rsplit(".", 1)[-1]
    message = f"torchmetrics has no metric class {name!r}"
    ours = OTHER_NAMES.get(last.lower())  # (the catalogue's table of other libraries' names)
    if ours is not None:
        return f"{message}; evalpipe computes it as the metric {ours!r} (metrics: [{ours}])"
    for package in _PACKAGES:  # (a class its package does not export at the top: classification.MulticlassAccuracy)
        module = _submodule(_torchmetrics().__name__, [package])
        if "." not in path and module is not None and isinstance(getattr(module, last, None), type):
            return f"{message} (did you mean '{package}.{last}'?)"
    close = difflib.get_close_matches(last, list(getattr(_torchmetrics(), "__all__", [])), n=1)
    return f"{message} (did you mean {close[0]!r}?)" if close else message


_PACKAGES = ("classification", "regression", "segmentation", "detection", "retrieval", "text", "image", "audio")


@dataclass(frozen=True)
class TorchmetricsStatistic(Statistic):
    """The state of one torchmetrics metric object, merged through its ``merge_state``.

    Attributes:
        task: the job's task (its predictions are passed to torchmetrics as they are read).
        class_name: the torchmetrics class.
        params: its constructor arguments, as sorted ``(name, value)`` pairs (lists as tuples).
    """

    task: Task
    class_name: str
    params: tuple[tuple[str, Any], ...] = ()

    jittable = False
    bootstrap = False

    def build(self) -> Any:
        kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}
        return metric_class(self.class_name)(**kwargs)

    @property
    def bounded(self) -> bool:
        """False when the metric keeps a list state that grows with the rows (e.g. exact AUROC)."""
        return not any(isinstance(v, list) for v in self.build()._defaults.values())

    def _dump(self, metric: Any) -> dict[str, np.ndarray]:
        import torch

        out: dict[str, np.ndarray] = {}
        for name, default in metric._defaults.items():
            value = getattr(metric, name)
            if isinstance(default, list):
                value = torch.cat([torch.atleast_1d(v) for v in value]) if value else torch.zeros(0)
            out[name] = value.detach().cpu().numpy().copy()
        out[UPDATES] = np.asarray(metric._update_count, np.int64)
        return out

    def _load(self, state: Mapping[str, np.ndarray]) -> Any:
        import torch

        metric = self.build()
        for name, default in metric._defaults.items():
            value = torch.from_numpy(np.array(state[name]))
            if isinstance(default, list):
                setattr(metric, name, [value] if value.numel() else [])
            else:
                setattr(metric, name, value)
        metric._update_count = int(state[UPDATES])
        metric._computed = None
        return metric

    def code_owner(self) -> str:
        return f"torchmetrics.{self.class_name}({', '.join(f'{k}={v!r}' for k, v in self.params)})"

    def zero(self) -> State:
        return self._dump(self.build())

    def update(self, state: State, batch: Batch) -> State:
        import torch

        weights = np.asarray(batch.get("weights", ()))  # (none: the job has no weights column)
        if weights.size and not np.all(weights == 1.0):
            raise ValueError(f"torchmetrics' {self.class_name} takes no sample weights; leave data.columns.weights out")
        metric = self._load(state)
        # (class ids as torch's long, as torchmetrics takes them: int32 ids failed its one_hot; booleans are labels)
        preds, targets = (_long_ids(np.asarray(batch[role])) for role in ("predictions", "targets"))
        if self.task.kind is TaskKind.SEGMENTATION:
            preds, targets = self._pixels(preds, targets)
        metric.update(torch.from_numpy(preds), torch.from_numpy(targets))
        return self._dump(metric)

    def _pixels(self, preds: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A segmentation batch's pixel rows (``[m, w]`` ids; predictions may be ``[m, w, C]`` scores) -> its counted
        pixels: the padding that ends each image's last row and the ``ignore_index`` pixels left out, as
        :class:`~evaluators.segmentation.PixelConfusion` leaves them out. ``[P]`` (``[P, C]``) for a classification
        class; one sample of all of them (``[1, P]``) for a class of torchmetrics' ``segmentation`` package (allowed
        with ``aggregation_level: global`` only, which pools its samples)."""
        from evaluators.segmentation import FILL

        flat = targets.reshape(-1)
        keep = flat != FILL
        if self.task.ignore_index is not None:
            keep &= flat != self.task.ignore_index
        preds = preds.reshape(len(flat), *preds.shape[targets.ndim :])[keep]
        if per_image(self.class_name):
            return preds[None], flat[keep][None]
        return preds, flat[keep]

    def merge(self, a: State, b: State) -> State:
        left, right = self._load(a), self._load(b)
        left._update_count += right._update_count
        left.merge_state(right)
        return self._dump(left)

    def finalize(self, state: State) -> dict[str, Any]:
        if int(state[UPDATES]) == 0:
            return {"": float("nan")}
        value = self._load(state).compute()
        if isinstance(value, Mapping):
            return {f".{k}": _plain(v) for k, v in value.items()}
        value = _plain(value)
        if np.ndim(value) == 1:
            return {f"[{i}]": float(v) for i, v in enumerate(value)}
        return {"": value}


def _long_ids(values: np.ndarray) -> np.ndarray:
    """Integer or boolean ``values`` (class ids, labels) as int64; scores as they are."""
    return values.astype(np.int64) if values.dtype.kind in "iub" else values


def _plain(value: Any) -> Any:
    array = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, np.float64)
    return float(array) if array.ndim == 0 else array


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list | tuple) else value


_TASK_NAMES: Mapping[TaskKind, str] = {
    TaskKind.BINARY: "binary",
    TaskKind.MULTICLASS: "multiclass",
    TaskKind.MULTILABEL: "multilabel",
    TaskKind.SEGMENTATION: "multiclass",
}
"""The torchmetrics ``task`` of each job task that has one."""


def task_disagreement(task: Task, params: Mapping[str, Any]) -> str | None:
    """What in torchmetrics ``params`` describes another task than the job's, or None: a ``task`` other than the
    job's (torchmetrics would read a binary job's probabilities as multiclass labels: an accuracy of 0), or a
    ``num_classes`` / ``num_labels`` other than its classes (a failure in every worker)."""
    kind, expected = params.get("task"), _TASK_NAMES.get(task.kind)
    if kind is not None and kind != expected:
        wanted = f"task: {expected} (or leave it out)" if expected else "no task"
        return f"task is {kind!r} but the job's task is {task.kind}: give {wanted}"
    for name in ("num_classes", "num_labels"):
        given = params.get(name)
        if given is not None and task.num_classes and given != task.num_classes:
            return (
                f"{name} is {given!r} but the job's task has {task.num_classes} classes (task.num_classes): give "
                f"{name}: {task.num_classes}, or leave it out (it defaults to the job's)"
            )
    return None


def with_job_task(task: Task, class_name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with what the job's task says and they leave out, where the class takes it: ``task`` (the task
    wrappers need it), ``num_classes`` / ``num_labels`` (AutoTimm leaves them to the model; the job knows them), and
    a binary or multilabel task's ``threshold``, and the task's ``ignore_index``."""
    accepted = inspect.signature(metric_class(class_name)).parameters
    out, name = dict(params), _TASK_NAMES.get(task.kind)
    if name is not None and "task" in accepted:
        out.setdefault("task", name)
    kind = out.get("task", name)
    if task.num_classes and kind == "multiclass" and "num_classes" in accepted:
        out.setdefault("num_classes", task.num_classes)
    if task.num_classes and kind == "multilabel" and "num_labels" in accepted:
        out.setdefault("num_labels", task.num_classes)
    if kind in ("binary", "multilabel") and "threshold" in accepted:
        out.setdefault("threshold", task.threshold)  # (the job's, as its own metrics read scores)
    if task.ignore_index is not None and kind is not None and "ignore_index" in accepted:
        out.setdefault("ignore_index", task.ignore_index)  # (rows the job's own metrics leave out: torchmetrics too)
    return out


def per_image(class_name: str) -> bool:
    """Whether ``class_name`` is of torchmetrics' ``segmentation`` package, whose classes score each image (sample)."""
    return metric_class(class_name).__module__.startswith("torchmetrics.segmentation")


def torchmetrics_metric(task: Task, class_name: str, params: Mapping[str, Any], key: str) -> DerivedMetric:
    """A metric that runs torchmetrics' ``class_name(**params)`` in every worker."""
    if task.kind is TaskKind.SEGMENTATION and per_image(class_name) and params.get("aggregation_level") != "global":
        raise ValueError(
            f"torchmetrics.{class_name} averages a score per image, and a segmentation job's statistics see pixels "
            "(each image cut into fixed-width rows), not whole images: its value would average rows of pixels. "
            "evalpipe's mean_iou and dice_score are the dataset-level scores over the pooled pixels (torchmetrics' "
            "DiceScore with aggregation_level: global, which runs here, equals dice_score)"
        )
    params = with_job_task(task, class_name, params)
    statistic = TorchmetricsStatistic(task, class_name, tuple(sorted((k, _hashable(v)) for k, v in params.items())))
    try:
        statistic.build()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"torchmetrics.{class_name}({params}) cannot be built: {exc}") from None
    direction = Direction.LOWER if class_name in LOWER_IS_BETTER else Direction.HIGHER
    return DerivedMetric(key, statistic, statistic.finalize, direction, description=f"torchmetrics.{class_name}")


# --- classes evalpipe computes natively ----------------------------------------------------------------------

_AVERAGED = ("average", "zero_division")
NATIVE: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "Accuracy": ("accuracy", ("average", "top_k")),
    "Precision": ("precision", _AVERAGED),
    "Recall": ("recall", _AVERAGED),
    "F1Score": ("f1_score", _AVERAGED),
    "FBetaScore": ("fbeta_score", ("beta", *_AVERAGED)),
    "Specificity": ("specificity", _AVERAGED),
    "MatthewsCorrCoef": ("matthews_corrcoef", ()),
    "CohenKappa": ("cohen_kappa", ("weights",)),
    "AUROC": ("roc_auc", ("average",)),
    "AveragePrecision": ("average_precision", ("average",)),
    "CalibrationError": ("expected_calibration_error", ("n_bins",)),
    "MeanSquaredError": ("mse", ()),
    "MeanAbsoluteError": ("mae", ()),
    "R2Score": ("r2", ()),
    "PearsonCorrCoef": ("pearson_corrcoef", ()),
    "ExplainedVariance": ("explained_variance", ()),
    "MeanAveragePrecision": ("mean_average_precision", ("box_format", "iou_type", "iou_thresholds", "class_metrics")),
    "JaccardIndex": ("jaccard_index", ("average",)),
}
"""torchmetrics class -> (evalpipe metric, the parameters passed on). ``task``, ``num_classes``,
``num_labels``, ``ignore_index`` and ``threshold`` describe the job's task and must agree with it."""

_TASK_PARAMS = ("task", "num_classes", "num_labels", "ignore_index", "threshold")


def native_equivalent(task: Task, class_name: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(evalpipe metric name, its parameters)`` computing what torchmetrics' ``class_name(**params)`` computes on
    ``task``, with torchmetrics' defaults made explicit; None when there is none (then torchmetrics runs)."""
    if class_name not in NATIVE:
        return None
    name, passed = NATIVE[class_name]
    kind = params.get("task")
    if (
        kind is not None
        and kind != str(task.kind)
        and not (task.kind is TaskKind.SEGMENTATION and kind == "multiclass")
    ):
        return None
    if params.get("num_classes") not in (None, task.num_classes) or params.get("ignore_index") not in (
        None,
        task.ignore_index,
    ):
        return None
    if params.get("threshold") not in (None, task.threshold):
        return None
    extra = {k: v for k, v in params.items() if k not in _TASK_PARAMS}
    if any(k not in passed for k in extra):
        return None
    if class_name == "CalibrationError" and params.get("norm", "l1") != "l1":
        return None
    out = dict(extra)
    multi = task.kind in (TaskKind.MULTICLASS, TaskKind.MULTILABEL, TaskKind.SEGMENTATION)
    if class_name in ("Precision", "Recall", "F1Score", "FBetaScore", "Specificity"):
        # the task wrappers (``F1Score(task=...)``) default to micro averaging, unlike ``MulticlassF1Score``
        out.setdefault("average", "micro" if multi else "binary")
    if class_name in ("AUROC", "AveragePrecision") and multi:
        out.setdefault("average", "macro")
    if class_name == "Accuracy" and multi:
        out.setdefault("average", "micro")
    if class_name in ("AUROC", "AveragePrecision"):
        out["mode"] = "exact"  # torchmetrics' default (thresholds=None) is exact
    if class_name == "CalibrationError":
        out.setdefault("n_bins", 15)
    if class_name == "JaccardIndex":
        out.setdefault("average", "macro")
    if task.prediction is PredictionKind.LABELS and class_name in ("AUROC", "AveragePrecision", "CalibrationError"):
        return None
    return name, out
