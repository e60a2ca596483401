"""The job spec: YAML -> validated, frozen dataclasses.

A job spec names the data (Parquet files through fsspec and which column
plays which role), the task, the metrics, how to execute and where results
go. Every error names the YAML key path and line and, for a misspelt name,
suggests the closest valid one. See the README for the full schema.

Minimal example::

    name: churn
    data:
      path: s3://bucket/preds/${DATE}/*.parquet
      columns: {predictions: score, targets: label}
    task: binary
    metrics: [accuracy, roc_auc, {name: f1_score, average: macro, as: f1_macro}]
    output: {uri: s3://bucket/evals}
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import yaml

from evaluators import catalog
from evaluators.adapters import roles_problem
from evaluators.backbones.base import BACKBONE_KINDS, DTYPES, BackboneSpec, is_dotted_path, user_backbone_loader
from evaluators.sketch import ScoreSketch
from evaluators.sketch import mean_and_std as sketch_mean_and_std
from evaluators.sketch import summary as sketch_summary
from evaluators.statistic import DerivedMetric, Direction
from evaluators.task import PredictionKind, Task, TaskKind
from evaluators.torchmetrics_backend import native_equivalent, torchmetrics_metric
from pipelines.errors import SpecError
from pipelines.functions import (
    FunctionSpec,
    allowed_prefixes,
    custom_statistic_metric,
    import_function,
    split_path,
)
from pipelines.sides import check_sides, one_side_allowed
from pipelines.slicing import FILTER_OPS, Condition, SliceSpec
from pipelines.templating import env_values, redact, render
from pipelines.yamlsource import Path, YamlSource, load_scalar, load_yaml

RUNNERS = ("ray", "local", "beam")
BEAM_RUNNERS = ("DirectRunner", "PrismRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")
"""Apache Beam runners by name (``execution.beam.runner``); a dotted path names any other runner class."""
BEAM_RUNNING_MODES = ("in_memory", "multi_threading", "multi_processing")
BEAM_COMBINE = ("driver", "beam")
_BEAM_OPTION_KEYS: dict[str, type | tuple[type, ...]] = {
    "project": str,
    "region": str,
    "temp_location": str,
    "num_workers": int,
    "max_num_workers": int,
    "machine_type": str,
    "sdk_container_image": str,
    "direct_num_workers": int,
    "direct_running_mode": str,
}
"""Beam pipeline options with a key of their own under ``execution.beam``; any other goes under ``options``."""
_BEAM_OPTION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FEATURE_ROLES = ("predictions_features", "targets_features")
DETECTION_ROLES = ("scores", "labels", "target_labels", "iscrowd", "area", "image_id", "masks", "target_masks")
BAD_ROW_POLICIES = ("fail", "drop")
PRIORITIES = ("primary", "secondary", "tertiary")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MAX_ACTORS = 4096
_MAX_CPUS = 1024
_MAX_GPUS = 64
_MAX_INTEGER = 2**63 - 1
"""Largest integer a spec may hold anywhere (a 64-bit signed integer): larger ones are refused up front."""


@dataclass(frozen=True)
class Columns:
    """Parquet column names for each role."""

    predictions: str | None
    targets: str | None
    weights: str | None = None
    row_id: str | None = None
    scores: str | None = None
    labels: str | None = None
    target_labels: str | None = None
    iscrowd: str | None = None
    area: str | None = None
    image_id: str | None = None
    masks: str | None = None
    target_masks: str | None = None
    """Detection only: predicted box scores and labels, ground-truth labels, crowd flags, areas, image ids;
    predicted and ground-truth instance masks (``iou_type: segm``; without them, masks are read from
    ``predictions`` / ``targets``)."""
    predictions_features: str | None = None
    targets_features: str | None = None
    """Image and text tasks: precomputed feature vectors (``list<float>`` ``[D]`` per row) of the generated /
    real side, read instead of running a backbone. Image and text jobs may also leave out one side (see
    :mod:`pipelines.sides`): ``predictions`` and ``targets`` are then None."""
    query_id: str | None = None
    """Ranking only: the query id of each row (one row per item); a query's rows are contiguous in one file."""
    sensitive: str | None = None
    """Fairness metrics: the group label (sensitive feature) of each row."""

    def roles(self) -> dict[str, str]:
        """Role -> column name, for the roles that are set."""
        return {role: name for role, name in vars(self).items() if name is not None}


@dataclass(frozen=True)
class DataSpec:
    """Where the prediction shards are: globs, directories or files, any fsspec URL."""

    paths: tuple[str, ...]
    columns: Columns
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    on_bad_rows: str = "fail"
    """``fail``: a row with a bad value (NaN score, probability outside [0, 1], label out of range...)
    fails the job, naming file, row group, column and count; ``drop``: such rows are left out and
    counted per reason in the Run's ``metadata.dropped_rows``."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric entry: catalogue name, output key, parameters.

    ``backend``: ``"evalpipe"``; ``"evalpipe (torchmetrics.<Class>)"`` for a torchmetrics class computed
    natively; ``"torchmetrics"`` when torchmetrics itself runs (``name`` is then ``torchmetrics:<Class>``).
    """

    name: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    priority: str = "secondary"
    backend: str = "evalpipe"


@dataclass(frozen=True)
class BeamSpec:
    """``execution.beam``: how ``runner: beam`` runs its pipeline (see :mod:`pipelines.runners.beam`).

    ``options`` are Beam pipeline options from the YAML as ``(name, value)`` pairs, value a scalar or a
    tuple (a repeated flag); ``flags`` are Beam command-line flags given after ``--`` on the evalpipe
    command line, which win over the YAML. ``combine``: ``driver`` sends every unit's states back and
    merges them on the driver; ``beam`` merges them inside the pipeline with a ``CombineFn``.
    """

    runner: str = "DirectRunner"
    options: tuple[tuple[str, Any], ...] = ()
    flags: tuple[str, ...] = ()
    combine: str = "driver"

    def pipeline_args(self) -> list[str]:
        """The options as Beam flags: ``--runner=...``, then the YAML's options (``true``: the bare flag,
        ``false``: left out, a list: the flag once per item), then the command line's flags."""
        args = [f"--runner={self.runner}"]
        for name, value in self.options:
            for item in value if isinstance(value, tuple) else (value,):
                if item is True:
                    args.append(f"--{name}")
                elif item is not False:
                    args.append(f"--{name}={item}")
        return args + list(self.flags)

    def option(self, name: str) -> str | None:
        """The value an option ends up with (the last ``--name=value`` or ``--name value`` wins), as text."""
        args = self.pipeline_args()
        found = None
        for i, arg in enumerate(args):
            if arg.startswith(f"--{name}="):
                found = arg.split("=", 1)[1]
            elif arg == f"--{name}" and i + 1 < len(args) and not args[i + 1].startswith("--"):
                found = args[i + 1]
        return found


@dataclass(frozen=True)
class ExecutionSpec:
    """How to run: runner (``ray``, ``local`` or ``beam``), actors and their resources (Ray), Beam's
    pipeline options, work-unit size."""

    runner: str = "ray"
    actors: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    unit_rows: int = 1_000_000
    ray_address: str | None = None
    max_attempts: int = 3
    """Attempts per work unit when its worker dies (Ray runner); a unit is never retried for an error
    in its data or in user code, which would fail the same way again."""
    checkpoints: bool = True
    """Keep each finished unit's states next to the output (``{job}/_checkpoints/``) until the run
    commits, so that a rerun after a crash reuses them."""
    memory_budget_mb: float = 1024.0
    """Largest decoded size of one read: a row group above it is read in slices of rows that fit."""
    unit_timeout_s: float | None = None
    """Ray runner: a worker still on one unit after this many seconds is stopped and the unit retried
    (an attempt, as when a worker dies); None: no limit."""
    beam: BeamSpec = field(default_factory=BeamSpec)
    """Pipeline options of the Beam runner (``execution.beam``, and flags after ``--``)."""
    resource_wait_s: float = 600.0
    """Ray runner: how long an actor may wait for the cluster to add a node with the CPUs/GPUs it asks for
    (an autoscaling cluster); a cluster that can never provide them is refused at once."""


@dataclass(frozen=True)
class OutputSpec:
    """Where runs are written: ``{uri}/{job name}/{run id}/``."""

    uri: str
    storage_options: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    on_existing: str = "new"
    """``new``: every run is a new run; ``refuse``: refuse a run whose resolved inputs (e.g. the same
    night's paths) already have a committed run of this job."""
    create: bool = False
    """Create the output bucket when it does not exist (otherwise a missing bucket, often a typo, is refused)."""


@dataclass(frozen=True)
class BaselineSpec:
    """``baseline:``: compare the run with a committed run before committing it.

    ``run`` is ``latest`` (the newest committed run of the same job) or a run URI; ``tolerance``
    is absolute, in each metric's units (one number, or per metric name with ``"*"`` as default).
    """

    run: str = "latest"
    tolerance: float | dict[str, float] = 0.0
    alpha: float = 0.05


@dataclass(frozen=True)
class ConfidenceSpec:
    """Bootstrap confidence intervals (see README: one pass, Poisson weights per hash bucket of row keys)."""

    replicates: int = 100
    level: float = 0.95
    seed: int = 0
    buckets: int = 128
    samples: bool = False


@dataclass(frozen=True)
class WindowSpec:
    """``window:``: after each run commits, a run merged from the job's last ``runs`` runs or ``days`` days
    (see :mod:`pipelines.window`), committed as job ``name``."""

    runs: int | None
    days: int | None
    name: str


@dataclass(frozen=True)
class JobSpec:
    """A validated job. ``recorded`` is the resolved spec fit to be written (no secrets)."""

    name: str
    data: DataSpec
    task: Task
    metrics: tuple[MetricSpec, ...]
    execution: ExecutionSpec
    output: OutputSpec
    description: str = ""
    slices: tuple[SliceSpec, ...] = ()
    confidence: ConfidenceSpec | None = None
    commit: str | None = None
    branch: str | None = None
    baseline: BaselineSpec | None = None
    backbone: BackboneSpec | None = None
    functions: tuple[FunctionSpec, ...] = ()
    window: WindowSpec | None = None
    site: str | None = None
    """``site:``: the results site (``evalpipe site``) regenerated after each committed run (output's storage
    options)."""
    reference: str | None = None
    """A stored reference run (``reference: RUN_URI``) whose reference-side statistics this job's
    predictions are compared with (FID, KID, Fréchet distance); see :mod:`pipelines.reference`."""
    source: str = "<spec>"
    recorded: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    env: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    """``${env:NAME}`` values the spec resolved (name -> value): never written, see :meth:`redact`."""
    idf: Any = field(default=None, compare=False, repr=False)
    """BERTScore idf weights ``[V]`` float32, set by the driver before the main pass (see
    :mod:`pipelines.idf`); None when no metric weights tokens by idf."""

    def redact(self, text: str) -> str:
        """``text`` with every resolved ``${env:...}`` value written back as its placeholder."""
        return redact(text, self.env)

    def derived_metrics(self) -> list[tuple[MetricSpec, DerivedMetric]]:
        """Each metric entry with its built metric (validated at load time), then one per user-function output."""
        built = [(m, build_metric(m, self.task)) for m in self.metrics]
        return built + function_metrics(self.functions)


# --- reading helpers -----------------------------------------------------------

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a mapping",
}


def _suggest(name: str, candidates: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


class _Section:
    """Typed access to one mapping of the spec; unknown keys are errors."""

    def __init__(self, source: YamlSource, path: Path, value: Any, what: str = "a mapping") -> None:
        if not isinstance(value, dict):
            raise SpecError(f"{source.where(path)}: expected {what}, got {_describe(value)}.")
        self.source = source
        self.path = path
        self.value = value
        self.allowed: list[str] = []

    def where(self, key: str | int | None = None) -> str:
        return self.source.where(self.path if key is None else (*self.path, key))

    def missing(self, key: str, what: str = "key") -> SpecError:
        """The error for a required ``key`` that is absent: a misspelling of it if there is one."""
        near = difflib.get_close_matches(key, [str(k) for k in self.value], n=1, cutoff=0.6)
        if near:
            return SpecError(f"{self.where(near[0])}: unknown key {near[0]!r} (did you mean {key!r}?).")
        return SpecError(f"{self.where()}: missing required {what} {key!r}.")

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        *,
        required: bool = False,
        choices: Sequence[str] | None = None,
    ) -> Any:
        self.allowed.append(key)
        if key not in self.value or self.value[key] is None:
            if required:
                raise self.missing(key)
            return default
        value = self.value[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise SpecError(f"{self.where(key)}: expected {expected}, got {_describe(value)}.")
        if choices is not None and value not in choices:
            raise SpecError(
                f"{self.where(key)}: expected one of {', '.join(map(str, choices))}; got {value!r}"
                f"{_suggest(str(value), choices)}."
            )
        return value

    def section(self, key: str, *, required: bool = False) -> _Section:
        self.allowed.append(key)
        if key not in self.value or self.value[key] is None:
            if required:
                raise self.missing(key, "section")
            return _Section(self.source, (*self.path, key), {})
        return _Section(self.source, (*self.path, key), self.value[key])

    def finish(self) -> None:
        for key in self.value:
            if key not in self.allowed:
                raise SpecError(
                    f"{self.where(key)}: unknown key {key!r}{_suggest(str(key), self.allowed)}; "
                    f"expected one of: {', '.join(self.allowed)}."
                )


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _positive(
    section: _Section, key: str, value: float | None, upper: float, integer: bool = False, allow_zero: bool = False
) -> None:
    if value is None:
        return
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and math.isfinite(value) and value <= upper) or (integer and int(value) != value):
        kind = "an integer" if integer else "a number"
        low = "0" if allow_zero else "above 0"
        raise SpecError(f"{section.where(key)}: expected {kind} from {low} to {upper:g}, got {value!r}.")


# --- sections --------------------------------------------------------------------


def _paths(section: _Section) -> tuple[str, ...]:
    section.allowed.append("path")
    raw = section.value.get("path")
    if raw is None:
        raise SpecError(f"{section.where()}: missing required key 'path' (a glob, directory or list of Parquet files).")
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(p, str) and p.strip() for p in items):
        raise SpecError(
            f"{section.where('path')}: expected a path string or a list of path strings, got {_describe(raw)}."
        )
    return tuple(p.strip() for p in items)


def _storage_options(section: _Section) -> dict[str, Any]:
    return dict(section.get("storage_options", dict, {}))


def _data(root: _Section) -> DataSpec:
    data = root.section("data", required=True)
    paths = _paths(data)
    cols = data.section("columns", required=True)
    two_sided = not one_side_allowed(root.value.get("task"))  # image and text jobs may read one side
    columns = Columns(
        predictions=cols.get("predictions", str, required=two_sided),
        targets=cols.get("targets", str, required=two_sided),
        weights=cols.get("weights", str),
        row_id=cols.get("row_id", str),
        **{role: cols.get(role, str) for role in (*DETECTION_ROLES, *FEATURE_ROLES)},
        query_id=cols.get("query_id", str),
        sensitive=cols.get("sensitive", str),
    )
    cols.finish()
    options = _storage_options(data)
    on_bad_rows = data.get("on_bad_rows", str, "fail", choices=BAD_ROW_POLICIES)
    data.finish()
    return DataSpec(paths, columns, options, on_bad_rows)


def _task(root: _Section) -> Task:
    root.allowed.append("task")
    raw = root.value.get("task")
    if raw is None:
        raise SpecError(f"{root.where()}: missing required key 'task' (binary, multiclass, multilabel or regression).")
    kinds = [k.value for k in TaskKind]
    if isinstance(raw, str):
        raw = {"kind": raw}
    sec = _Section(root.source, ("task",), raw, "a task name or a mapping with `kind`")
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
    _positive(sec, "num_classes", num_classes, 1_000_000, integer=True)
    if num_classes is not None and num_classes < 2:
        raise SpecError(f"{sec.where('num_classes')}: expected at least 2 classes, got {num_classes}.")
    if not 0.0 <= threshold <= 1.0:
        raise SpecError(f"{sec.where('threshold')}: expected a probability threshold in [0, 1], got {threshold}.")
    return Task(TaskKind(kind), num_classes, PredictionKind(prediction), threshold, ignore_index)


def _metrics_for(task: Task) -> list[str]:
    """Catalogue metrics that serve ``task`` and build for it with default parameters."""
    found = []
    for name in catalog.metrics_for(task.kind):
        try:
            catalog.build(name, task)
        except (ValueError, TypeError):
            continue
        found.append(name)
    return found


def _metric_entries(root: _Section, task: Task, allow_empty: bool = False) -> tuple[MetricSpec, ...]:
    root.allowed.append("metrics")
    raw = root.value.get("metrics")
    if allow_empty and raw in (None, []):
        return ()
    if not isinstance(raw, list) or not raw:
        raise SpecError(
            f"{root.source.where(('metrics',))}: expected a non-empty list of metrics, got {_describe(raw)}."
        )
    specs: list[MetricSpec] = []
    keys: dict[str, int] = {}
    for i, entry in enumerate(raw):
        path: Path = ("metrics", i)
        where = root.source.where(path)
        if isinstance(entry, dict) and "statistic" in entry:
            specs.append(_custom_statistic_entry(root, i, entry, task, keys))
            continue
        if isinstance(entry, dict) and ("backend" in entry or "metric_class" in entry):
            specs.append(_backend_entry(root, i, entry, task, keys))
            continue
        if isinstance(entry, str):
            name, params, key, priority = entry, {}, None, "secondary"
        elif isinstance(entry, dict) and "name" in entry:
            params = {k: v for k, v in entry.items() if k not in ("name", "as", "priority")}
            name, key, priority = entry["name"], entry.get("as"), entry.get("priority", "secondary")
        elif isinstance(entry, dict) and len(entry) == 1:
            ((name, params),) = entry.items()
            params = {} if params is None else params
            key, priority = None, "secondary"
            path = (*path, name)
            if not isinstance(params, dict):
                raise SpecError(
                    f"{root.source.where(path)}: expected a mapping of parameters, got {_describe(params)}."
                )
            params = dict(params)
            key = params.pop("as", None)
            priority = params.pop("priority", "secondary")
        else:
            raise SpecError(
                f"{where}: expected a metric name, `{{name: ..., <params>}}` or `{{<name>: {{<params>}}}}`; "
                f"got {_describe(entry)}."
            )
        if not isinstance(name, str):
            raise SpecError(f"{where}: metric name must be a string, got {_describe(name)}.")
        if name not in catalog.METRICS:
            raise SpecError(
                f"{where}: unknown metric {name!r}{_suggest(name, list(catalog.METRICS))}; "
                f"metrics for a {task.kind} task: {', '.join(_metrics_for(task))}."
            )
        if priority not in PRIORITIES:
            raise SpecError(f"{where}.priority: expected one of {', '.join(PRIORITIES)}; got {priority!r}.")
        accepted = catalog.parameters(name)
        for param in params:
            if param not in accepted:
                raise SpecError(
                    f"{root.source.where((*path, param))}: metric {name!r} has no parameter {param!r}"
                    f"{_suggest(str(param), list(accepted))}; its parameters: {', '.join(accepted) or 'none'}."
                )
        try:
            catalog.build(name, task, params)
        except (ValueError, TypeError) as exc:
            raise SpecError(f"{where}: {name}: {exc}.") from None
        if key is None:
            key = name if not params else name + "(" + ",".join(f"{k}={params[k]}" for k in sorted(params)) + ")"
        if not isinstance(key, str) or not key:
            raise SpecError(f"{where}.as: expected a non-empty string, got {_describe(key)}.")
        if key in keys:
            raise SpecError(
                f"{where}: metric key {key!r} is already used by metrics[{keys[key]}]; give one of them `as: <key>`."
            )
        keys[key] = i
        specs.append(MetricSpec(name, key, dict(params), priority))
    return tuple(specs)


def _slices(root: _Section) -> tuple[SliceSpec, ...]:
    root.allowed.append("slices")
    raw = root.value.get("slices")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError(f"{root.where('slices')}: expected a list of slice entries, got {_describe(raw)}.")
    out: list[SliceSpec] = []
    names: set[str] = set()
    bucketed: dict[tuple[str, ...], int] = {}
    for i, entry in enumerate(raw):
        sec = _Section(root.source, ("slices", i), entry, "a mapping with `column`, `columns` or `filter`")
        column = sec.get("column", str)
        columns = sec.get("columns", list)
        filters = sec.get("filter", dict)
        boundaries = sec.get("boundaries", list)
        quantiles = sec.get("quantiles", int)
        name = sec.get("name", str)
        min_count = sec.get("min_count", int, 0)
        max_slices = sec.get("max_slices", int, 100)
        sec.finish()
        given = [k for k, v in (("column", column), ("columns", columns), ("filter", filters)) if v is not None]
        if len(given) != 1:
            raise SpecError(
                f"{sec.where()}: give exactly one of `column`, `columns` or `filter`; got {given or 'none'}."
            )
        if columns is not None and (not columns or not all(isinstance(c, str) for c in columns)):
            raise SpecError(
                f"{sec.where('columns')}: expected a non-empty list of column names, got {_describe(columns)}."
            )
        cols = (column,) if column else tuple(columns or ())
        if boundaries is not None:
            if len(cols) != 1:
                raise SpecError(f"{sec.where('boundaries')}: buckets need exactly one `column`.")
            if (
                not boundaries
                or not all(
                    isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in boundaries
                )
                or sorted(boundaries) != boundaries
                or len(set(boundaries)) != len(boundaries)
            ):
                raise SpecError(
                    f"{sec.where('boundaries')}: expected increasing finite numbers, got {_describe(boundaries)}."
                )
        if quantiles is not None:
            if len(cols) != 1 or boundaries is not None:
                raise SpecError(
                    f"{sec.where('quantiles')}: quantile buckets need exactly one `column` and no `boundaries`."
                )
            _positive(sec, "quantiles", quantiles, 1000, integer=True)
            if quantiles < 2:
                raise SpecError(f"{sec.where('quantiles')}: expected at least 2 buckets, got {quantiles}.")
        conditions: list[Condition] = []
        for col, cond in (filters or {}).items():
            path = ("slices", i, "filter", col)
            if not isinstance(cond, dict):
                cond = {"eq": cond}
            for op, value in cond.items():
                if op not in FILTER_OPS:
                    raise SpecError(
                        f"{root.source.where((*path, op))}: unknown filter operator {op!r}"
                        f"{_suggest(str(op), FILTER_OPS)}; expected one of {', '.join(FILTER_OPS)}."
                    )
                if op in ("in", "not_in") and not isinstance(value, list):
                    raise SpecError(f"{root.source.where((*path, op))}: `{op}` needs a list, got {_describe(value)}.")
                conditions.append(Condition(str(col), op, tuple(value) if isinstance(value, list) else value))
        _positive(sec, "max_slices", max_slices, 100_000, integer=True)
        _positive(sec, "min_count", min_count, 10**12, integer=True, allow_zero=True)
        label = name or (f"filter{i}" if filters else "x".join(cols))
        if label in names:
            raise SpecError(f"{sec.where()}: slice name {label!r} is used twice; give this entry `name:`.")
        names.add(label)
        if not filters:
            if cols in bucketed:
                raise SpecError(
                    f"{sec.where()}: column(s) {', '.join(cols)} are already sliced by entry {bucketed[cols]}; "
                    "one entry per column (or cross) of columns, since its slices are tagged by column name."
                )
            bucketed[cols] = i
        out.append(
            SliceSpec(
                label,
                () if filters else cols,
                tuple(float(b) for b in boundaries) if boundaries else None,
                quantiles,
                tuple(conditions),
                min_count,
                max_slices,
            )
        )
    return tuple(out)


def _confidence(root: _Section) -> ConfidenceSpec | None:
    root.allowed.append("confidence")
    if root.value.get("confidence") is None:
        return None
    sec = _Section(root.source, ("confidence",), root.value["confidence"])
    sec.get("method", str, "bootstrap", choices=("bootstrap",))
    spec = ConfidenceSpec(
        replicates=sec.get("replicates", int, 100),
        level=sec.get("level", float, 0.95),
        seed=sec.get("seed", int, 0),
        buckets=sec.get("buckets", int, 128),
        samples=sec.get("samples", bool, False),
    )
    sec.finish()
    _positive(sec, "replicates", spec.replicates, 100_000, integer=True)
    _positive(sec, "buckets", spec.buckets, 4096, integer=True)
    _positive(sec, "seed", spec.seed, _MAX_INTEGER, integer=True, allow_zero=True)
    if not 0.5 <= spec.level < 1.0:
        raise SpecError(f"{sec.where('level')}: expected a confidence level in [0.5, 1), got {spec.level}.")
    return spec


def _beam(sec: _Section) -> BeamSpec:
    """``execution.beam``: the Beam runner, the common pipeline options by name, any other under ``options``."""
    runner = sec.get("runner", str, "DirectRunner")
    known = {name.lower(): name for name in BEAM_RUNNERS}
    canonical = known.get(runner.lower()) or known.get(f"{runner.lower()}runner")
    if canonical is None and "." not in runner:
        raise SpecError(
            f"{sec.where('runner')}: expected an Apache Beam runner, one of {', '.join(BEAM_RUNNERS)} (or the "
            f"dotted path of a runner class); got {runner!r}{_suggest(runner, BEAM_RUNNERS)}."
        )
    runner = canonical or runner
    combine = sec.get("combine", str, "driver", choices=BEAM_COMBINE)
    options: dict[str, Any] = {}
    for key, kind in _BEAM_OPTION_KEYS.items():
        value = sec.get(key, kind, choices=BEAM_RUNNING_MODES if key == "direct_running_mode" else None)
        if isinstance(value, str) and not value.strip():
            raise SpecError(f"{sec.where(key)}: expected a non-empty string, got {value!r}.")
        if value is not None:
            options[key] = value
    extra = sec.get("options", dict, {})
    sec.finish()
    _positive(sec, "direct_num_workers", options.get("direct_num_workers"), _MAX_CPUS, integer=True)
    _positive(sec, "num_workers", options.get("num_workers"), _MAX_ACTORS, integer=True)
    _positive(sec, "max_num_workers", options.get("max_num_workers"), _MAX_ACTORS, integer=True)
    direct = [k for k in ("direct_num_workers", "direct_running_mode") if k in options]
    if direct and runner != "DirectRunner":
        raise SpecError(
            f"{sec.where(direct[0])}: {direct[0]} applies to the DirectRunner only, and execution.beam.runner is "
            f"{runner}; leave it out (size a {runner} job with num_workers and max_num_workers)."
        )
    for name, value in extra.items():
        where = sec.source.where((*sec.path, "options", name))
        if not isinstance(name, str) or not _BEAM_OPTION_NAME.match(name):
            raise SpecError(
                f"{where}: expected the name of a Beam pipeline option, its flag without the dashes (e.g. "
                f"flink_master for --flink_master); got {name!r}."
            )
        if name in ("runner", "combine", *_BEAM_OPTION_KEYS):
            raise SpecError(
                f"{where}: {name} has a key of its own: set execution.beam.{name} instead of "
                f"execution.beam.options.{name}."
            )
        items = value if isinstance(value, list) else [value]
        scalar = (str, int, float) if isinstance(value, list) else (str, int, float, bool)
        if not items or not all(isinstance(v, scalar) for v in items):
            raise SpecError(
                f"{where}: expected a string, a number, true or false, or a non-empty list of strings and numbers "
                f"(the flag repeated), got {_describe(value)}."
            )
        options[name] = tuple(value) if isinstance(value, list) else value
    return BeamSpec(runner, tuple(options.items()), (), combine)


def _beam_flags(sec: _Section, beam: BeamSpec, runner: str, checkpoints: bool, flags: Sequence[str]) -> BeamSpec:
    """``beam`` with the Beam flags given after ``--`` on the command line, checked against the runner."""
    flags = tuple(flags)
    if flags and runner != "beam":
        raise SpecError(
            f"arguments after `--` ({' '.join(flags)}) are Apache Beam pipeline options: they need "
            f"execution.runner: beam (or --runner beam), and this job's runner is {runner!r}."
        )
    if flags and not flags[0].startswith("--"):
        raise SpecError(
            "arguments after `--`: expected Beam pipeline flags such as --runner=DataflowRunner "
            f"--project=my-project; got {flags[0]!r}."
        )
    if runner == "beam" and beam.combine == "beam" and checkpoints:
        raise SpecError(
            f"{sec.source.where((*sec.path, 'beam', 'combine'))}: combine: beam merges the units' states inside "
            "the pipeline, so the driver never holds one unit's states to keep as a checkpoint; set "
            "execution.checkpoints: false as well, or use combine: driver (the default)."
        )
    return BeamSpec(beam.runner, beam.options, flags, beam.combine)


def _execution(root: _Section, overrides: Mapping[str, Any]) -> ExecutionSpec:
    sec = root.section("execution")
    runner = sec.get("runner", str, "ray", choices=RUNNERS)
    actors = sec.get("actors", (int, str))
    if isinstance(actors, str):
        if actors != "auto":
            raise SpecError(f"{sec.where('actors')}: expected a positive integer or 'auto', got {actors!r}.")
        actors = None
    num_cpus = sec.get("num_cpus", float, 1.0)
    num_gpus = sec.get("num_gpus", float, 0.0)
    unit_rows = sec.get("unit_rows", int, 1_000_000)
    address = sec.get("ray_address", str)
    max_attempts = sec.get("max_attempts", int, 3)
    checkpoints = sec.get("checkpoints", bool, True)
    memory_budget_mb = sec.get("memory_budget_mb", float, 1024.0)
    unit_timeout_s = sec.get("unit_timeout_s", float)
    resource_wait_s = sec.get("resource_wait_s", float, 600.0)
    beam = _beam(sec.section("beam"))
    sec.finish()
    _positive(sec, "actors", actors, _MAX_ACTORS, integer=True)
    _positive(sec, "num_cpus", num_cpus, _MAX_CPUS, allow_zero=True)
    _positive(sec, "num_gpus", num_gpus, _MAX_GPUS, allow_zero=True)
    _positive(sec, "unit_rows", unit_rows, 10**10, integer=True)
    _positive(sec, "max_attempts", max_attempts, 20, integer=True)
    _positive(sec, "memory_budget_mb", memory_budget_mb, 10**7)
    _positive(sec, "unit_timeout_s", unit_timeout_s, 7 * 86400)
    _positive(sec, "resource_wait_s", resource_wait_s, 7 * 86400)
    runner = overrides.get("runner") or runner
    if runner not in RUNNERS:
        raise SpecError(f"--runner: expected one of {', '.join(RUNNERS)}; got {runner!r}.")
    beam = _beam_flags(sec, beam, runner, checkpoints, overrides.get("beam_args") or ())
    return ExecutionSpec(
        runner,
        actors,
        num_cpus,
        num_gpus,
        unit_rows,
        address,
        max_attempts,
        checkpoints,
        memory_budget_mb,
        unit_timeout_s=unit_timeout_s,
        beam=beam,
        resource_wait_s=resource_wait_s,
    )


def _output(root: _Section, overrides: Mapping[str, Any]) -> OutputSpec:
    sec = root.section("output", required=not overrides.get("output"))
    uri = sec.get("uri", str, required=not overrides.get("output"))
    options = _storage_options(sec)
    on_existing = sec.get("on_existing", str, "new", choices=("new", "refuse"))
    create = sec.get("create", bool, False)
    sec.finish()
    return OutputSpec(overrides.get("output") or uri, options, on_existing, create)


def _backbone(root: _Section, task: Task, metrics: Sequence[MetricSpec]) -> BackboneSpec | None:
    sec = root.section("backbone")
    needs = [m.key for m in metrics if build_metric(m, task).statistic.features]
    if not sec.value:
        if needs:
            raise SpecError(
                f"{root.where('backbone')}: metrics {', '.join(needs)} need a backbone; add e.g. "
                "`backbone: {kind: bert, weights: <directory with config.json, model.safetensors, tokenizer.json>}`."
            )
        return None
    kind = sec.get("kind", str, required=True)
    if kind not in BACKBONE_KINDS:
        _user_backbone(root, sec, kind)
    weights = sec.get("weights", str, required=kind in BACKBONE_KINDS) or ""
    dtype = sec.get("dtype", str, "float32", choices=DTYPES)
    batch_size = sec.get("batch_size", int, 64)
    max_length = sec.get("max_length", int, 256)
    sec.finish()
    _positive(sec, "batch_size", batch_size, 4096, integer=True)
    _positive(sec, "max_length", max_length, 4096, integer=True)
    if max_length < 8:
        raise SpecError(f"{sec.where('max_length')}: expected at least 8 tokens, got {max_length}.")
    return BackboneSpec(kind, weights, dtype, batch_size, max_length)


def _user_backbone(root: _Section, sec: _Section, kind: str) -> None:
    """Check a user backbone's dotted path: allowed module, importable, with a loader."""
    if not is_dotted_path(kind):
        raise SpecError(
            f"{sec.where('kind')}: expected one of {', '.join(sorted(BACKBONE_KINDS))} or the dotted path of your own "
            f"backbone class (package.module.Class){_suggest(kind, list(BACKBONE_KINDS))}; got {kind!r}."
        )
    allowed = root.value.get("allow_modules") or []
    try:
        import_function(kind, allowed_prefixes(allowed if isinstance(allowed, list) else []))
        user_backbone_loader(kind)
    except PermissionError as exc:
        raise SpecError(f"{sec.where('kind')}: backbone {kind!r}: {exc}.") from None
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise SpecError(
            f"{sec.where('kind')}: backbone {kind!r} cannot be loaded: {type(exc).__name__}: {exc}."
        ) from None


TORCHMETRICS_PREFIX = "torchmetrics:"
"""``MetricSpec.name`` of a metric that torchmetrics runs: the prefix, then the class name."""

AUTOTIMM_KEYS = ("stages", "prog_bar", "log_on_step", "log_on_epoch")
"""Keys of AutoTimm's ``MetricConfig`` that say when a training loop logs a metric: accepted, not used."""


def _backend_entry(root: _Section, i: int, entry: dict[str, Any], task: Task, keys: dict[str, int]) -> MetricSpec:
    """An AutoTimm ``MetricConfig``: ``{name, backend: torchmetrics, metric_class, params}``. A class evalpipe
    computes natively becomes that catalogue metric with torchmetrics' defaults; any other runs torchmetrics."""
    sec = _Section(root.source, ("metrics", i), entry)
    backend = sec.get("backend", str, "torchmetrics", choices=("torchmetrics",))
    class_name = sec.get("metric_class", str, required=True)
    params = sec.get("params", dict, {})
    key = sec.get("name", str) or sec.get("as", str) or class_name
    priority = sec.get("priority", str, "secondary", choices=PRIORITIES)
    for ignored in AUTOTIMM_KEYS:
        sec.get(ignored, (list, bool, str))
    sec.finish()
    if key in keys:
        raise SpecError(f"{sec.where('name')}: metric key {key!r} is already used by metrics[{keys[key]}].")
    keys[key] = i
    native = native_equivalent(task, class_name, params)
    if native is not None:
        name, native_params = native
        try:
            catalog.build(name, task, native_params)
        except (ValueError, TypeError) as exc:
            raise SpecError(f"{sec.where('params')}: {class_name}: {exc}.") from None
        return MetricSpec(name, key, native_params, priority, f"evalpipe (torchmetrics.{class_name})")
    try:
        torchmetrics_metric(task, class_name, params, key)
    except ValueError as exc:
        raise SpecError(f"{sec.where('metric_class')}: {backend}: {exc}.") from None
    return MetricSpec(TORCHMETRICS_PREFIX + class_name, key, dict(params), priority, backend)


CUSTOM_PREFIX = "statistic:"
"""``MetricSpec.name`` of a user statistic class: the prefix, then its dotted path."""


def build_metric(metric: MetricSpec, task: Task) -> DerivedMetric:
    """The catalogue metric, or the user statistic class, that a metric entry names."""
    if metric.name.startswith(CUSTOM_PREFIX):
        return custom_statistic_metric(metric.name.removeprefix(CUSTOM_PREFIX), metric.key, metric.params)
    if metric.name.startswith(TORCHMETRICS_PREFIX):
        return torchmetrics_metric(task, metric.name.removeprefix(TORCHMETRICS_PREFIX), metric.params, metric.key)
    return catalog.build(metric.name, task, metric.params)


def _custom_statistic_entry(
    root: _Section, i: int, entry: dict[str, Any], task: Task, keys: dict[str, int]
) -> MetricSpec:
    sec = _Section(root.source, ("metrics", i), entry)
    path = sec.get("statistic", str, required=True)
    params = sec.get("params", dict, {})
    key = sec.get("as", str)
    priority = sec.get("priority", str, "secondary", choices=PRIORITIES)
    sec.finish()
    allowed = root.value.get("allow_modules") or []
    prefixes = _allowed_prefixes(root, allowed if isinstance(allowed, list) else [])
    try:
        import_function(path, prefixes)
        key = key or split_path(path)[1]
        custom_statistic_metric(path, key, params)
    except PermissionError as exc:
        raise SpecError(f"{sec.where('statistic')}: {path!r}: {exc}.") from None
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise SpecError(f"{sec.where('statistic')}: cannot use {path!r}: {type(exc).__name__}: {exc}.") from None
    if key in keys:
        raise SpecError(f"{sec.where()}: metric key {key!r} is already used by metrics[{keys[key]}]; set `as:`.")
    keys[key] = i
    return MetricSpec(CUSTOM_PREFIX + path, key, dict(params), priority)


def _allowed_prefixes(root: _Section, spec_allowed: list[str]) -> tuple[str, ...]:
    try:
        return allowed_prefixes(spec_allowed)
    except PermissionError as exc:
        raise SpecError(f"{root.where('allow_modules')}: {exc}.") from None


def function_metrics(functions: Sequence[FunctionSpec]) -> list[tuple[MetricSpec, DerivedMetric]]:
    """A metric per output of every user function: the summary of its per-row scores."""
    out = []
    for fn in functions:
        for output in fn.outputs:
            key = f"{fn.key}.{output}"
            metric = DerivedMetric(
                key,
                ScoreSketch(fn.feature(output)),
                sketch_summary,
                Direction.INFO,
                description=f"{output} returned by {fn.path}: mean per row (.std, .min, .max, .p10/.p50/.p90, .count)",
                interval_values=sketch_mean_and_std,
            )
            out.append((MetricSpec(key, key, {}, "secondary"), metric))
    return out


def _functions(root: _Section, metric_keys: set[str]) -> tuple[FunctionSpec, ...]:
    root.allowed.extend(["functions", "allow_modules"])
    allowed_raw = root.value.get("allow_modules") or []
    if not isinstance(allowed_raw, list) or not all(isinstance(m, str) for m in allowed_raw):
        raise SpecError(
            f"{root.where('allow_modules')}: expected a list of module prefixes, got {_describe(allowed_raw)}."
        )
    raw = root.value.get("functions")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError(f"{root.where('functions')}: expected a list of metric functions, got {_describe(raw)}.")
    prefixes = _allowed_prefixes(root, allowed_raw)
    out: list[FunctionSpec] = []
    for i, entry in enumerate(raw):
        sec = _Section(root.source, ("functions", i), entry, "a mapping with `function` and `outputs`")
        path = sec.get("function", str, required=True)
        outputs = sec.get("outputs", list, required=True)
        columns = sec.get("columns", dict, {})
        key = sec.get("as", str)
        scores = sec.get("scores", bool, False)
        tokenizer = sec.get("tokenizer", str)
        sec.finish()
        if tokenizer is not None and "://" not in tokenizer and not os.path.isfile(tokenizer):
            raise SpecError(f"{sec.where('tokenizer')}: no tokenizer file {tokenizer!r} (expected a tokenizer.json).")
        try:
            import_function(path, prefixes)
        except PermissionError as exc:
            raise SpecError(f"{sec.where('function')}: {path!r}: {exc}.") from None
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            raise SpecError(f"{sec.where('function')}: cannot import {path!r}: {type(exc).__name__}: {exc}.") from None
        if not outputs or not all(isinstance(o, str) and _NAME.fullmatch(o) for o in outputs):
            raise SpecError(f"{sec.where('outputs')}: expected a list of score names, got {_describe(outputs)}.")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
            raise SpecError(f"{sec.where('columns')}: expected keyword: column-name pairs, got {_describe(columns)}.")
        if not ({"samples", "outputs"} & set(columns)):
            raise SpecError(
                f"{sec.where('columns')}: map at least `samples` or `outputs` to a column (trlx's metric_fn arguments)."
            )
        key = key or split_path(path)[1]
        taken = {f"{key}.{o}" for o in outputs} & (metric_keys | {f"{f.key}.{o}" for f in out for o in f.outputs})
        if taken:
            raise SpecError(f"{sec.where()}: output keys {', '.join(sorted(taken))} are already used; set `as:`.")
        out.append(FunctionSpec(key, path, tuple(outputs), dict(columns), scores, tokenizer))
    return tuple(out)


def _baseline(root: _Section) -> BaselineSpec | None:
    raw = root.value.get("baseline")
    if raw is None:
        root.allowed.append("baseline")
        return None
    if isinstance(raw, str):
        root.allowed.append("baseline")
        return BaselineSpec(run=raw)
    sec = root.section("baseline")
    run = sec.get("run", str, "latest")
    tolerance = sec.get("tolerance", (float, dict), 0.0)
    alpha = sec.get("alpha", float, 0.05)
    sec.finish()
    if isinstance(tolerance, dict):
        for name, value in tolerance.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise SpecError(
                    f"{sec.where('tolerance')}: tolerance of {name!r} must be a number >= 0, got {value!r}."
                )
        tolerance = {str(k): float(v) for k, v in tolerance.items()}
    elif tolerance < 0:
        raise SpecError(f"{sec.where('tolerance')}: expected a number >= 0, got {tolerance!r}.")
    if not 0 < alpha < 1:
        raise SpecError(f"{sec.where('alpha')}: expected a number between 0 and 1, got {alpha!r}.")
    return BaselineSpec(run, tolerance, alpha)


_MAX_WINDOW = 100_000


def _window(root: _Section, job: str) -> WindowSpec | None:
    """``window: {runs: N}`` or ``window: {days: N}`` (optionally ``name:``, default ``{job}-{N}runs`` /
    ``{job}-{N}d``)."""
    root.allowed.append("window")
    if root.value.get("window") is None:
        return None
    sec = _Section(root.source, ("window",), root.value["window"], "a mapping with `runs` or `days`")
    runs = sec.get("runs", int)
    days = sec.get("days", int)
    name = sec.get("name", str)
    sec.finish()
    if (runs is None) == (days is None):
        raise SpecError(
            f"{sec.where()}: give exactly one of `runs` (the last N runs of the job) or `days` (its runs of the "
            f"last N days), e.g. window: {{days: 7}}; got {'both' if runs is not None else 'neither'}."
        )
    key, count = ("runs", runs) if runs is not None else ("days", days)
    _positive(sec, key, count, _MAX_WINDOW, integer=True)
    name = name or f"{job}-{count}{'runs' if key == 'runs' else 'd'}"
    if not _NAME.fullmatch(name) or name == job:
        raise SpecError(
            f"{sec.where('name')}: window run name {name!r} must differ from the job's name and start with a letter "
            "or digit, using only letters, digits, '.', '_' and '-' (at most 128 characters)."
        )
    return WindowSpec(runs, days, name)


# --- entry points ----------------------------------------------------------------


def _check_integers(source: YamlSource) -> None:
    """Refuse an integer outside the 64-bit range anywhere in the document (such numbers overflow floats and
    array dtypes far from where they were written)."""
    stack: list[tuple[Path, Any]] = [((), source.data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*path, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_INTEGER:
            digits = len(str(abs(value)))
            raise SpecError(
                f"{source.where(path)}: an integer of {digits} digits is out of range; expected an integer "
                f"between {-_MAX_INTEGER} and {_MAX_INTEGER}."
            )


def apply_overrides(data: dict[str, Any], assignments: Sequence[str], source_name: str) -> dict[str, Any]:
    """Apply ``--set key.path=value`` assignments (values parsed as YAML scalars)."""
    data = copy.deepcopy(data)
    if assignments and isinstance(data.get("task"), str):
        data["task"] = {"kind": data["task"]}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set execution.actors=4.")
        try:
            value = load_scalar(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        target = data
        for depth, part in enumerate(parts[:-1]):
            nxt = target.get(part)
            if nxt is None:
                nxt = target[part] = {}
            if not isinstance(nxt, dict):
                raise SpecError(f"--set {key}: {'.'.join(parts[: depth + 1])} in {source_name} is not a mapping.")
            target = nxt
        target[parts[-1]] = value
    return data


def parse(source: YamlSource, overrides: Mapping[str, Any] | None = None) -> JobSpec:
    """Validate a loaded YAML document into a :class:`JobSpec`. Error messages never hold the value of an
    ``${env:...}`` placeholder (it is written back as the placeholder)."""
    overrides = dict(overrides or {})
    raw = apply_overrides(source.data, overrides.get("set", ()), source.name)
    env = env_values(raw)
    try:
        return _parse(source, raw, overrides, env)
    except SpecError as exc:
        raise SpecError(redact(str(exc), env)) from None


def _parse(source: YamlSource, raw: dict[str, Any], overrides: Mapping[str, Any], env: dict[str, str]) -> JobSpec:
    variables = raw.get("vars") or {}
    if not isinstance(variables, dict):
        raise SpecError(
            f"{source.where(('vars',))}: expected a mapping of template variables, got {_describe(variables)}."
        )
    resolved, recorded = render(raw, variables, source.where)
    source = YamlSource(source.name, resolved, source.lines)
    _check_integers(source)
    root = _Section(source, (), resolved)
    name = root.get("name", str, required=True)
    if not _NAME.fullmatch(name):
        raise SpecError(
            f"{root.where('name')}: job name {name!r} must start with a letter or digit and use only letters, "
            "digits, '.', '_' and '-' (it becomes a directory name)."
        )
    root.allowed.append("vars")
    root.get("description", str, "")
    description = recorded.get("description") or ""  # placeholders kept: the description is written into runs
    data = _data(root)
    task = _task(root)
    roles_wrong = roles_problem(task, data.columns.roles())
    if roles_wrong is not None:
        raise SpecError(f"{source.where(('data', 'columns'))}: {roles_wrong}")
    metrics = _metric_entries(root, task, allow_empty=bool(root.value.get("functions")))
    for entry in (m for m in metrics if m.name in catalog.METRICS):
        missing = [r for r in build_metric(entry, task).statistic.columns if getattr(data.columns, r, None) is None]
        if missing:
            raise SpecError(
                f"{source.where(('data', 'columns'))}: metric {entry.key!r} reads the column role "
                f"{', '.join(missing)}; map it to a column (for example `{missing[0]}: group`)."
            )
    slices = _slices(root)
    confidence = _confidence(root)
    execution = _execution(root, overrides)
    output = _output(root, overrides)
    commit = root.get("commit", str)
    branch = root.get("branch", str)
    baseline = _baseline(root)
    reference = root.get("reference", str)
    built = [(m.key, build_metric(m, task)) for m in metrics]
    check_sides(source, data.columns, task, built, reference, root.value.get("backbone"))
    backbone = _backbone(root, task, metrics if data.columns.predictions or data.columns.targets else ())
    functions = _functions(root, {m.key for m in metrics})
    window = _window(root, name)
    site = root.get("site", str)
    root.finish()
    for section in ("data", "output"):
        if isinstance(recorded.get(section), dict) and "storage_options" in recorded[section]:
            recorded[section]["storage_options"] = {k: "<redacted>" for k in recorded[section]["storage_options"]}
    return JobSpec(
        name=name,
        data=data,
        task=task,
        metrics=metrics,
        execution=execution,
        output=output,
        description=description,
        slices=slices,
        confidence=confidence,
        commit=commit,
        branch=branch,
        baseline=baseline,
        backbone=backbone,
        functions=functions,
        window=window,
        site=site,
        reference=reference,
        source=source.name,
        recorded=recorded,
        env=env,
    )


def load(path: str, overrides: Mapping[str, Any] | None = None) -> JobSpec:
    """Read and validate the job spec at ``path`` (any fsspec URL)."""
    try:
        with fsspec.open(path, "rb") as handle:
            payload = handle.read(1_000_001)
    except FileNotFoundError:
        raise SpecError(f"{path}: job spec not found.") from None
    except (OSError, ValueError) as exc:
        raise SpecError(f"{path}: cannot read the job spec: {exc}.") from None
    if len(payload) > 1_000_000:
        raise SpecError(f"{path}: the job spec is larger than 1 MB; expected a short YAML file.")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: the job spec is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    return parse(load_yaml(text, path), overrides)


def metrics_of_recorded(recorded: Mapping[str, Any], name: str = "run.json") -> list[tuple[MetricSpec, DerivedMetric]]:
    """The metrics of a run's recorded spec (``Run.metadata["spec"]``), rebuilt to read its statistics."""
    source = YamlSource(name, dict(recorded))
    root = _Section(source, (), source.data)
    task = _task(root)
    entries = _metric_entries(root, task, allow_empty=bool(recorded.get("functions")))
    functions = [
        FunctionSpec(f.get("as") or split_path(f["function"])[1], f["function"], tuple(f["outputs"]))
        for f in recorded.get("functions") or []
    ]  # rebuilt from the record alone: user modules are not imported to read a run
    return [(m, build_metric(m, task)) for m in entries] + function_metrics(functions)


def settings_of_recorded(recorded: Mapping[str, Any], name: str = "run.json") -> dict[str, Any]:
    """What decides the meaning of a run's statistics, from its recorded spec, as comparable values:
    ``task``, ``columns`` (the roles set), ``metrics`` (name, key, parameters, backend; user functions),
    ``slices``, ``confidence`` and ``backbone`` (its batch size left out: it only chunks the forward pass)."""
    source = YamlSource(name, dict(recorded))
    root = _Section(source, (), source.data)
    task = _task(root)
    entries = _metric_entries(root, task, allow_empty=bool(recorded.get("functions")))
    columns = (recorded.get("data") or {}).get("columns") or {}
    backbone = dict(recorded.get("backbone") or {})
    backbone.pop("batch_size", None)
    return {
        "task": task,
        "columns": sorted(columns),
        "metrics": [(m.name, m.key, m.params, m.backend) for m in entries]
        + [(f.get("function"), f.get("as"), f.get("outputs")) for f in recorded.get("functions") or []],
        "slices": _slices(root),
        "confidence": _confidence(root),
        "backbone": backbone or None,
    }
