"""The ``metrics:`` and ``functions:`` sections: each metric entry bound to what computes it (a catalogue
metric, a torchmetrics class, a user statistic class) and each user function's outputs to score summaries.

:func:`build_metric` turns a validated :class:`MetricSpec` into its :class:`~evaluators.statistic.DerivedMetric`;
:func:`function_metrics` gives one metric per user-function output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluators import catalog
from evaluators.sketch import ScoreSketch
from evaluators.sketch import mean_and_std as sketch_mean_and_std
from evaluators.sketch import summary as sketch_summary
from evaluators.statistic import DerivedMetric, Direction
from evaluators.task import Task
from evaluators.torchmetrics_backend import native_equivalent, task_disagreement, torchmetrics_metric
from pipelines.errors import SpecError
from pipelines.functions import (
    FunctionSpec,
    allowed_prefixes,
    custom_statistic_metric,
    import_function,
    split_path,
)
from pipelines.records import metric_key, selects, unknown_message
from pipelines.spec_yaml import NAME, Section, describe, suggest
from pipelines.yamlsource import Path

PRIORITIES = ("primary", "secondary", "tertiary")


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


def read_metrics(root: Section, task: Task, allow_empty: bool = False) -> tuple[MetricSpec, ...]:
    """The ``metrics:`` list of ``root``: each entry checked against the catalogue (name, parameters, the
    task) or bound to a torchmetrics class or a user statistic class; keys unique. ``allow_empty``: a job
    with ``functions:`` may list none."""
    root.allowed.append("metrics")
    raw = root.value.get("metrics")
    if allow_empty and raw in (None, []):
        return ()
    if not isinstance(raw, list) or not raw:
        raise SpecError(
            f"{root.source.where(('metrics',))}: expected a non-empty list of metrics, got {describe(raw)}."
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
                raise SpecError(f"{root.source.where(path)}: expected a mapping of parameters, got {describe(params)}.")
            params = dict(params)
            key = params.pop("as", None)
            priority = params.pop("priority", "secondary")
        else:
            raise SpecError(
                f"{where}: expected a metric name, `{{name: ..., <params>}}` or `{{<name>: {{<params>}}}}`; "
                f"got {describe(entry)}."
            )
        if not isinstance(name, str):
            raise SpecError(f"{where}: metric name must be a string, got {describe(name)}.")
        if name not in catalog.METRICS:
            raise SpecError(
                f"{where}: unknown metric {name!r}{catalog.metric_hint(name)}; "
                f"metrics for a {task.kind} task: {', '.join(_metrics_for(task))}."
            )
        if priority not in PRIORITIES:
            raise SpecError(f"{where}.priority: expected one of {', '.join(PRIORITIES)}; got {priority!r}.")
        accepted = catalog.parameters(name)
        for param in params:
            if param not in accepted:
                raise SpecError(
                    f"{root.source.where((*path, param))}: metric {name!r} has no parameter {param!r}"
                    f"{suggest(str(param), list(accepted))}; its parameters: {', '.join(accepted) or 'none'}."
                )
        if "average" in params and params["average"] is None:
            raise SpecError(
                f"{root.source.where((*path, 'average'))}: metric {name!r}: `average: null` is ambiguous (scikit-learn's "
                "None is one value per class; a YAML null reads as no value): write `average: none` for one value per "
                "class, or leave `average` out for the task's default."
            )
        try:
            catalog.build(name, task, params)
        except (ValueError, TypeError) as exc:
            raise SpecError(f"{where}: {name}: {exc}.") from None
        if key is None:
            key = metric_key(name, params)
        if not isinstance(key, str) or not key:
            raise SpecError(f"{where}.as: expected a non-empty string, got {describe(key)}.")
        _claim(keys, key, i, where, "give one of them `as: <key>`")
        specs.append(MetricSpec(name, key, dict(params), priority))
    return tuple(specs)


RESERVED_KEYS = ("rows",)
"""Keys every point records besides its metrics' (the rows it holds)."""


def overlaps(key: str, other: str) -> bool:
    """Whether one of two output keys lies among the other's sub-keys (``roc_auc.error_bound``, ``f1[2]``)."""
    return key.startswith((other + ".", other + "[")) or other.startswith((key + ".", key + "["))


def _claim(keys: dict[str, int], key: str, i: int, where: str, hint: str) -> None:
    """Record ``metrics[i]``'s output key, refusing one that would overwrite another's values: the same key, a
    reserved one, or one inside another's sub-keys (``roc_auc.error_bound``, ``f1[2]``, ``confusion_matrix[0,1]``)
    or holding them."""
    if key in RESERVED_KEYS:
        raise SpecError(f"{where}: metric key {key!r} is reserved (every point records its {key}); choose another.")
    for other, j in keys.items():
        inside = overlaps(key, other)
        if key == other:
            raise SpecError(f"{where}: metric key {key!r} is already used by metrics[{j}]; {hint}.")
        if inside:
            raise SpecError(
                f"{where}: metric key {key!r} overlaps metrics[{j}]'s key {other!r} (a metric's values are recorded "
                f"as <key>, <key>.<part> and <key>[i]); {hint}."
            )
    keys[key] = i


TORCHMETRICS_PREFIX = "torchmetrics:"
"""``MetricSpec.name`` of a metric that torchmetrics runs: the prefix, then the class name."""

AUTOTIMM_KEYS = ("stages", "prog_bar", "log_on_step", "log_on_epoch")
"""Keys of AutoTimm's ``MetricConfig`` that say when a training loop logs a metric: accepted, not used."""


def _backend_entry(root: Section, i: int, entry: dict[str, Any], task: Task, keys: dict[str, int]) -> MetricSpec:
    """An AutoTimm ``MetricConfig``: ``{name, backend: torchmetrics, metric_class, params}``. A class evalpipe
    computes natively becomes that catalogue metric with torchmetrics' defaults; any other runs torchmetrics."""
    sec = Section(root.source, ("metrics", i), entry)
    backend = sec.get("backend", str, "torchmetrics")
    if backend != "torchmetrics":
        raise SpecError(
            f"{sec.where('backend')}: expected torchmetrics; got {backend!r}. A metric class of your own is an "
            "entry `{statistic: package.module.Class}`, a per-row function goes under `functions:` (README: "
            '"Your own metric functions").'
        )
    class_name = sec.get("metric_class", str, required=True).removeprefix("torchmetrics.")  # (AutoTimm's full path)
    params = sec.get("params", dict, {})
    key = sec.get("name", str) or sec.get("as", str) or class_name
    priority = sec.get("priority", str, "secondary", choices=PRIORITIES)
    for ignored in AUTOTIMM_KEYS:
        sec.get(ignored, (list, bool, str))
    sec.finish()
    _claim(keys, key, i, sec.where("name"), "rename one of them")
    disagreement = task_disagreement(task, params)
    if disagreement is not None:
        raise SpecError(f"{sec.where('params')}: {class_name}: {disagreement}.")
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
    root: Section, i: int, entry: dict[str, Any], task: Task, keys: dict[str, int]
) -> MetricSpec:
    sec = Section(root.source, ("metrics", i), entry)
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
    _claim(keys, key, i, sec.where(), "set `as:`")
    return MetricSpec(CUSTOM_PREFIX + path, key, dict(params), priority)


def _allowed_prefixes(root: Section, spec_allowed: list[str]) -> tuple[str, ...]:
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


def read_functions(root: Section, metric_keys: set[str]) -> tuple[FunctionSpec, ...]:
    """The ``functions:`` list (and ``allow_modules:``) of ``root``: importable user functions whose output
    keys differ from ``metric_keys`` and from each other."""
    root.allowed.extend(["functions", "allow_modules"])
    allowed_raw = root.value.get("allow_modules") or []
    if not isinstance(allowed_raw, list) or not all(isinstance(m, str) for m in allowed_raw):
        raise SpecError(
            f"{root.where('allow_modules')}: expected a list of module prefixes, got {describe(allowed_raw)}."
        )
    raw = root.value.get("functions")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError(f"{root.where('functions')}: expected a list of metric functions, got {describe(raw)}.")
    prefixes = _allowed_prefixes(root, allowed_raw)
    out: list[FunctionSpec] = []
    for i, entry in enumerate(raw):
        sec = Section(root.source, ("functions", i), entry, "a mapping with `function` and `outputs`")
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
        if not outputs or not all(isinstance(o, str) and NAME.fullmatch(o) for o in outputs):
            raise SpecError(f"{sec.where('outputs')}: expected a list of score names, got {describe(outputs)}.")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
            raise SpecError(f"{sec.where('columns')}: expected keyword: column-name pairs, got {describe(columns)}.")
        if not ({"samples", "outputs"} & set(columns)):
            raise SpecError(
                f"{sec.where('columns')}: map at least `samples` or `outputs` to a column (trlx's metric_fn arguments)."
            )
        key = key or split_path(path)[1]
        claimed = metric_keys | {f"{f.key}.{o}" for f in out for o in f.outputs} | set(RESERVED_KEYS)
        clashes = sorted((f"{key}.{o}", k) for o in outputs for k in claimed if overlaps(f"{key}.{o}", k))
        taken = sorted({f"{key}.{o}" for o in outputs} & claimed)
        if taken:
            raise SpecError(f"{sec.where()}: output keys {', '.join(taken)} are already used; set `as:`.")
        if clashes:
            mine, other = clashes[0]
            raise SpecError(
                f"{sec.where()}: output key {mine!r} overlaps the key {other!r} (values are recorded as <key>, "
                "<key>.<part> and <key>[i]); set `as:`."
            )
        out.append(FunctionSpec(key, path, tuple(outputs), dict(columns), scores, tokenizer))
    return tuple(out)


def check_tolerance_names(
    where: str, tolerance: float | dict[str, float], metrics: Sequence[MetricSpec], functions: Sequence[FunctionSpec]
) -> None:
    """Refuse a ``baseline.tolerance`` name that selects none of the job's values: each is ``*``, ``rows``, a metric's
    key (its ``as:`` where it has one) or one of its values (``f1_score[2]``, ``roc_auc.error_bound``), or a function's
    output (``key.output``). Checked before any row is read, so that a name the gate would not find costs no run."""
    if not isinstance(tolerance, dict):
        return
    keys = {m.key for m in metrics} | {f"{f.key}.{output}" for f in functions for output in f.outputs}
    for name in tolerance:
        if name not in ("*", "rows") and not any(selects(key, name) for key in keys):
            raise SpecError(f"{where}: {unknown_message('metric', name, keys)}")
