"""Stateful metrics for notebooks and training loops: ``update`` / ``compute`` / ``reset`` / ``merge``.

:class:`MetricCollection` holds the states of catalogue metrics (the same statistics, compiled update and
compute as the pipeline and the functional API) and folds batches in as they come::

    >>> import numpy as np
    >>> from evaluators.stateful import MetricCollection
    >>> metrics = MetricCollection(["accuracy", {"name": "f1_score", "average": "macro", "as": "f1"}],
    ...                            task="multiclass", num_classes=3, prediction="labels")
    >>> metrics.update(predictions=np.array([0, 1, 2, 2]), targets=np.array([0, 1, 1, 2]))
    >>> metrics.update(predictions=np.array([1]), targets=np.array([1]))
    >>> {k: round(v, 4) for k, v in metrics.compute().items()}
    {'accuracy': 0.8, 'f1': 0.8222}

With a ``backbone`` (a loaded feature extractor, anything with ``extract(columns) -> features``), each
``update`` runs it on the raw columns first, as calibrax's ``FrozenBackboneMetric`` does: FID, KID, BERTScore
and the other backbone metrics then accumulate only their sufficient statistics.

:class:`FrozenBackboneMetric` is calibrax's abstract base (``_extract_features`` / ``_accumulate`` /
``_compute_from_accumulated``) for metrics written by hand.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.statistic import DerivedMetric, State
from evaluators.task import PredictionKind, Task, TaskKind

MetricEntry = str | Mapping[str, Any]
"""A metric as in a YAML job: ``"accuracy"`` or ``{"name": "f1_score", "average": "macro", "as": "f1"}``."""


def metric_key(name: str, params: Mapping[str, Any]) -> str:
    """The key a metric is stored under by default: ``name``, or ``name(param=value,...)``."""
    return name if not params else name + "(" + ",".join(f"{k}={params[k]}" for k in sorted(params)) + ")"


def _entry(entry: MetricEntry | tuple[str, DerivedMetric], task: Task) -> tuple[str, DerivedMetric]:
    if isinstance(entry, tuple):
        return entry
    if isinstance(entry, str):
        return entry, catalog.build(entry, task)
    params = {k: v for k, v in entry.items() if k not in ("name", "as")}
    name = entry["name"]
    return str(entry.get("as") or metric_key(name, params)), catalog.build(name, task, params)


class MetricCollection:
    """Catalogue metrics accumulated batch by batch.

    Args:
        metrics: entries as in a YAML job's ``metrics:`` (a name, or a mapping with ``name``, parameters and an
            optional ``as`` key), or ``(key, DerivedMetric)`` pairs.
        task: a :class:`Task`, or its kind (``"binary"``, ``"multiclass"``, ``"text"``, ...).
        num_classes, prediction, threshold, ignore_index: the task's settings when ``task`` is a kind.
        backbone: a loaded backbone for metrics that read features (text and image metrics).
    """

    def __init__(
        self,
        metrics: Sequence[MetricEntry | tuple[str, DerivedMetric]],
        task: Task | str = "binary",
        *,
        num_classes: int | None = None,
        prediction: str = PredictionKind.PROBABILITIES,
        threshold: float = 0.5,
        ignore_index: int | None = None,
        backbone: Any = None,
    ) -> None:
        self.task = (
            task if isinstance(task, Task) else Task(TaskKind(task), num_classes, prediction, threshold, ignore_index)
        )
        self.metrics: dict[str, DerivedMetric] = dict(_entry(e, self.task) for e in metrics)
        if len(self.metrics) != len(metrics):
            raise ValueError("two metrics share one key: give one of them another `as`")
        self.accumulator = Accumulator.for_metrics(self.metrics.values())
        self.backbone = backbone
        if self.accumulator.features() and backbone is None:
            raise ValueError(
                f"metrics {', '.join(k for k, m in self.metrics.items() if m.statistic.features)} read backbone "
                "features: pass backbone= (a loaded backbone, e.g. evaluators.backbones.load_backbone(spec))"
            )
        self.states: tuple[State, ...] = self.accumulator.zero()
        self.rows = 0

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self.states = self.accumulator.zero()
        self.rows = 0

    def update(self, **columns: Any) -> None:
        """Fold one batch in: ``predictions``, ``targets`` and optional ``weights`` (arrays of ``n`` rows), or the
        raw columns the backbone reads (``predictions`` / ``targets`` strings or images)."""
        if self.backbone is not None and self.accumulator.features():
            features = self.backbone.extract(columns)
            batch = {name: features[name] for name in self.accumulator.features()}
        else:
            batch = {k: np.asarray(v) for k, v in columns.items() if v is not None}
        rows = len(next(iter(batch.values()))) if batch else 0
        self.states = self.accumulator.update(self.states, batch)
        self.rows += rows

    def merge(self, other: MetricCollection) -> None:
        """Fold in another collection's batches (same metrics and task), e.g. from another process or device."""
        if list(other.metrics) != list(self.metrics) or other.accumulator.statistics != self.accumulator.statistics:
            raise ValueError("only collections of the same metrics and task merge")
        self.states = self.accumulator.merge(self.states, other.states)
        self.rows += other.rows

    def compute(self) -> dict[str, Any]:
        """``{key: value}``: a metric's headline value under its key, its other values as ``key.suffix`` or
        ``key[i]`` (per class); array values (a confusion matrix) stay arrays."""
        out: dict[str, Any] = {}
        for key, metric in self.metrics.items():
            state = self.states[self.accumulator.index(metric.statistic)]
            metric.statistic.refuse_merged(state)  # (as the functional API and a job: rows that count nowhere)
            metric.statistic.refuse_light(state, self.rows)  # (and weights too light for its fixed point)
            for suffix, value in metric.compute(state).items():
                out[key + suffix] = value
        return out


class FrozenBackboneMetric(abc.ABC):
    """calibrax's base for a metric over a frozen feature extractor: ``update(**kwargs)`` extracts features and
    accumulates them, ``compute()`` returns ``{name: value}``, ``reset()`` clears the accumulated state.

    Subclasses implement ``_extract_features(**kwargs)``, ``_accumulate(features)``,
    ``_compute_from_accumulated()`` and ``reset()``; :class:`BackboneMetric` is the ready-made one over
    evalpipe's statistics.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def update(self, **kwargs: Any) -> None:
        self._accumulate(self._extract_features(**kwargs))

    def compute(self) -> dict[str, float]:
        return self._compute_from_accumulated()

    @abc.abstractmethod
    def reset(self) -> None:
        """Clear the accumulated state."""

    @abc.abstractmethod
    def _extract_features(self, **kwargs: Any) -> Any: ...

    @abc.abstractmethod
    def _accumulate(self, features: Any) -> None: ...

    @abc.abstractmethod
    def _compute_from_accumulated(self) -> dict[str, float]: ...


class BackboneMetric(FrozenBackboneMetric):
    """One backbone metric of the catalogue (``"fid"``, ``"bertscore_f1"``, ...) as a calibrax stateful metric.

    Args:
        name: the catalogue name.
        backbone: a loaded backbone (``extract(columns) -> features``).
        task: ``"image"`` or ``"text"``.
        **params: the metric's parameters.
    """

    def __init__(self, name: str, backbone: Any, task: str = "image", **params: Any) -> None:
        super().__init__(name)
        self._collection = MetricCollection([{"name": name, "as": name, **params}], task, backbone=backbone)
        self.backbone = backbone

    def reset(self) -> None:
        self._collection.reset()

    def _extract_features(self, **kwargs: Any) -> Mapping[str, Any]:
        return self.backbone.extract(kwargs)

    def _accumulate(self, features: Mapping[str, Any]) -> None:
        collection = self._collection
        batch = {k: features[k] for k in collection.accumulator.features()}
        collection.states = collection.accumulator.update(collection.states, batch)

    def _compute_from_accumulated(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._collection.compute().items() if np.ndim(v) == 0}
