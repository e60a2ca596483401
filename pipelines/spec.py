"""The job spec: YAML -> validated, frozen dataclasses.

A job spec names the data (Parquet files through fsspec and which column
plays which role), the task, the metrics, how to execute and where results
go. Every error names the YAML key path and line and, for a misspelt name,
suggests the closest valid one. See the README for the full schema.

This module holds the schema (the frozen dataclasses) and reads the sections of its own; the YAML toolkit is
:mod:`pipelines.spec_yaml`, the ``execution:`` section (runner table, Ray and Beam options)
:mod:`pipelines.spec_execution`, metric entries and user functions :mod:`pipelines.spec_metrics`, slice
entries :mod:`pipelines.spec_slices`.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec

from evaluators import catalog
from evaluators.adapters import roles_problem
from evaluators.backbones.base import (
    BACKBONE_INPUTS,
    BACKBONE_KINDS,
    DTYPES,
    BackboneSpec,
    is_dotted_path,
    user_backbone_loader,
)
from evaluators.statistic import DerivedMetric
from evaluators.task import Task
from pipelines.errors import SpecError
from pipelines.functions import (
    FunctionSpec,
    allowed_prefixes,
    import_function,
    split_path,
)
from pipelines.sides import check_sides, one_side_allowed
from pipelines.slicing import SliceSpec
from pipelines.spec_execution import ExecutionSpec
from pipelines.spec_execution import read_execution as _read_execution
from pipelines.spec_metrics import MetricSpec, build_metric, check_tolerance_names, function_metrics
from pipelines.spec_metrics import read_functions as _read_functions
from pipelines.spec_metrics import read_metrics as _read_metrics
from pipelines.spec_slices import read_slices as _read_slices
from pipelines.spec_task import read_task as _task
from pipelines.spec_yaml import MAX_INTEGER as _MAX_INTEGER
from pipelines.spec_yaml import NAME as _NAME
from pipelines.spec_yaml import Section as _Section
from pipelines.spec_yaml import apply_overrides, assigned_paths, check_numbers
from pipelines.spec_yaml import check_range as _positive
from pipelines.spec_yaml import describe as _describe
from pipelines.spec_yaml import suggest as _suggest
from pipelines.templating import env_values, redact, render
from pipelines.yamlsource import YamlSource, load_yaml

FEATURE_ROLES = ("predictions_features", "targets_features")
DETECTION_ROLES = ("scores", "labels", "target_labels", "iscrowd", "area", "image_id", "masks", "target_masks")
BAD_ROW_POLICIES = ("fail", "drop")


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
    item_id: str | None = None
    """Ranking ``coverage`` only: the item id of each row (integers or strings)."""
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
        item_id=cols.get("item_id", str),
        sensitive=cols.get("sensitive", str),
    )
    cols.finish()
    options = _storage_options(data)
    on_bad_rows = data.get("on_bad_rows", str, "fail", choices=BAD_ROW_POLICIES)
    data.finish()
    return DataSpec(paths, columns, options, on_bad_rows)


MIN_BUCKETS = 8
"""The fewest ``confidence.buckets`` a job may set: the bootstrap resamples buckets, not rows."""


def _confidence(root: _Section, recorded: bool = False) -> ConfidenceSpec | None:
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
    if spec.buckets < MIN_BUCKETS and not recorded:  # (a run recorded before the minimums still merges)
        raise SpecError(
            f"{sec.where('buckets')}: expected at least {MIN_BUCKETS} buckets, got {spec.buckets}: a replicate weights "
            "whole buckets, so with fewer the interval's width rests on how a handful of bucket values happen to differ "
            "(2 buckets of 2,000 rows read accuracy's 95% interval as +-0.0001, where its sampling error is +-0.02); "
            "the default is 128."
        )
    if spec.replicates < 2 and not recorded:
        raise SpecError(
            f"{sec.where('replicates')}: expected at least 2 replicates, got {spec.replicates}: an interval is read "
            "from the spread of the replicates' values (the default is 100)."
        )
    if not 0.5 <= spec.level < 1.0:
        raise SpecError(f"{sec.where('level')}: expected a confidence level in [0.5, 1), got {spec.level}.")
    return spec


def _output(root: _Section, overrides: Mapping[str, Any]) -> OutputSpec:
    sec = root.section("output", required=not overrides.get("output"))
    uri = sec.get("uri", str, required=not overrides.get("output"))
    if uri is not None and not uri.strip() and not overrides.get("output"):
        raise SpecError(f"{sec.where('uri')}: expected the location runs are written to (a path or URL), got {uri!r}.")
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
    encodes = BACKBONE_INPUTS.get(kind)
    if encodes is not None and encodes != task.kind:
        fitting = ", ".join(k for k, v in BACKBONE_INPUTS.items() if v == task.kind) or "none of the built-in kinds"
        raise SpecError(
            f"{sec.where('kind')}: a {kind} backbone encodes {encodes}, not the rows of task kind {task.kind}; "
            f"backbones for task kind {task.kind}: {fitting}."
        )
    weights = sec.get("weights", str, required=kind in BACKBONE_KINDS) or ""
    dtype = sec.get("dtype", str, "float32", choices=DTYPES)
    batch_size = sec.get("batch_size", int, 64)
    max_length = sec.get("max_length", int, None)
    sec.finish()
    _positive(sec, "batch_size", batch_size, 4096, integer=True)
    if max_length is not None:
        _positive(sec, "max_length", max_length, 4096, integer=True)
    if max_length is not None and max_length < 8:
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
    source = YamlSource(source.name, resolved, source.lines, assigned_paths(overrides.get("set", ())))
    check_numbers(source)
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
    metrics = _read_metrics(root, task, allow_empty=bool(root.value.get("functions")))
    for entry in (m for m in metrics if m.name in catalog.METRICS):
        missing = [r for r in build_metric(entry, task).statistic.columns if getattr(data.columns, r, None) is None]
        if missing:
            raise SpecError(
                f"{source.where(('data', 'columns'))}: metric {entry.key!r} reads the column role "
                f"{', '.join(missing)}; map it to a column (`{missing[0]}: <column name>`)."
            )
    slices = _read_slices(root)
    confidence = _confidence(root)
    execution = _read_execution(root, overrides)
    output = _output(root, overrides)
    commit = root.get("commit", str)
    branch = root.get("branch", str)
    baseline = _baseline(root)
    reference = root.get("reference", str)
    built = [(m.key, build_metric(m, task)) for m in metrics]
    check_sides(source, data.columns, task, built, reference, root.value.get("backbone"))
    backbone = _backbone(root, task, metrics if data.columns.predictions or data.columns.targets else ())
    functions = _read_functions(root, {m.key for m in metrics})
    if baseline is not None:
        check_tolerance_names(source.where(("baseline", "tolerance")), baseline.tolerance, metrics, functions)
    window = _window(root, name)
    site = root.get("site", str)
    root.finish()
    for section in ("data", "output"):
        if isinstance(recorded.get(section), dict) and "storage_options" in recorded[section]:
            recorded[section]["storage_options"] = {k: "<redacted>" for k in recorded[section]["storage_options"]}
    check_numbers(source, finite=True)
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
    entries = _read_metrics(root, task, allow_empty=bool(recorded.get("functions")))
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
    entries = _read_metrics(root, task, allow_empty=bool(recorded.get("functions")))
    columns = (recorded.get("data") or {}).get("columns") or {}
    backbone = dict(recorded.get("backbone") or {})
    backbone.pop("batch_size", None)
    return {
        "task": task,
        "columns": sorted(columns),
        "metrics": [(m.name, m.key, m.params, m.backend) for m in entries]
        + [(f.get("function"), f.get("as"), f.get("outputs")) for f in recorded.get("functions") or []],
        "slices": _read_slices(root),
        "confidence": _confidence(root, recorded=True),
        "backbone": backbone or None,
    }
