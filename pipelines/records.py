"""Result records, following calibrax's data model: frozen dataclasses with ``to_dict`` / ``from_dict``.

* :class:`Run` - one evaluation of one job: its points, id, UTC timestamp,
  commit, environment, metadata and metric definitions;
* :class:`Point` - one measurement (the whole dataset or one slice), tags
  holding the slice's key/values;
* :class:`Metric` - one value with optional interval and samples;
* :class:`MetricDef` - how to read a metric (direction, unit, group);
* :class:`Regression`, :class:`SignificanceResult`, :class:`RankEntry`, :class:`ScalingLaw`,
  :class:`TrendPoint`, :class:`TrendSeries` - what comparisons of runs produce.

Numbers are stored as Python floats; NaN is written as ``null`` in JSON and
read back as NaN.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.errors import UserError


def unknown_message(what: str, name: str, valid: Iterable[str]) -> str:
    """``what 'name' not found (did you mean ...?); the ones there are: ...``."""
    names = sorted(set(valid))
    near = _near(name, names)
    quoted = [repr(n) for n in near]
    either = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
    hint = f" (did you mean {either}?)" if near else ""
    listed = ", ".join(names[:60]) + (f" and {len(names) - 60} more" if len(names) > 60 else "")
    return f"{what} {name!r} not found{hint}; {'the ones there are: ' + listed if names else 'there are none'}."


def _near(name: str, names: list[str]) -> list[str]:
    """The names ``name`` most likely meant: a close spelling, else up to three that begin with it or with its first
    word (``f1_score`` -> ``f1_macro``, a metric a job named with ``as:``), else a looser spelling."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
    if close:
        return close
    stem = name.split("_", 1)[0].split("(", 1)[0]
    begun = [n for n in names if stem and (n.startswith(name) or n.split("_", 1)[0].split("(", 1)[0] == stem)]
    return begun[:3] or difflib.get_close_matches(name, names, n=1, cutoff=0.6)


class NotFound(UserError, KeyError):
    """A metric or point name that a run does not have: a :class:`UserError` (exit 2, naming the names there
    are) that is also the ``KeyError`` a mapping raises."""


class PointMetrics(dict):
    """A point's metrics by key; an unknown key raises :class:`NotFound` naming the point and the keys there are."""

    point = ""

    def __missing__(self, key: str) -> Any:
        keys = {k for k in self if "[" not in k} | {k.split("[", 1)[0] for k in self}
        raise NotFound(unknown_message(f"point {self.point!r}: metric", str(key), keys))


class MetricDirection(enum.StrEnum):
    """Whether higher or lower values are better (``info``: no ranking)."""

    HIGHER = "higher"
    LOWER = "lower"
    INFO = "info"


class MetricPriority(enum.StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    TERTIARY = "tertiary"


def _num(value: Any) -> float | None:
    """JSON-safe float: NaN and None become None."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _from_num(value: Any) -> float:
    return float("nan") if value is None else float(value)


@dataclass(frozen=True)
class MetricDef:
    """How to interpret a metric: direction, unit and grouping."""

    name: str
    unit: str = ""
    direction: MetricDirection = MetricDirection.HIGHER
    group: str = ""
    priority: MetricPriority = MetricPriority.SECONDARY
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", MetricDirection(self.direction))
        object.__setattr__(self, "priority", MetricPriority(self.priority))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "direction": str(self.direction),
            "group": self.group,
            "priority": str(self.priority),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricDef:
        return cls(
            name=data["name"],
            unit=data.get("unit", ""),
            direction=MetricDirection(data.get("direction", "higher")),
            group=data.get("group", ""),
            priority=MetricPriority(data.get("priority", "secondary")),
            description=data.get("description", ""),
        )


@dataclass(frozen=True)
class Metric:
    """A single value with an optional confidence interval and samples (e.g. bootstrap replicates)."""

    value: float
    lower: float | None = None
    upper: float | None = None
    samples: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict, omitting None fields."""
        out: dict[str, Any] = {"value": _num(self.value)}
        if self.lower is not None:
            out["lower"] = _num(self.lower)
        if self.upper is not None:
            out["upper"] = _num(self.upper)
        if self.samples is not None:
            out["samples"] = [_num(s) for s in self.samples]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metric:
        samples = data.get("samples")
        return cls(
            value=_from_num(data.get("value")),
            lower=None if "lower" not in data else _from_num(data["lower"]),
            upper=None if "upper" not in data else _from_num(data["upper"]),
            samples=None if samples is None else tuple(_from_num(s) for s in samples),
        )


@dataclass(frozen=True)
class Point:
    """One measurement under one configuration (the dataset, or one slice of it)."""

    name: str
    scenario: str
    tags: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, Metric] = field(default_factory=dict)

    def __post_init__(self) -> None:
        metrics = PointMetrics(self.metrics)
        metrics.point = self.name
        object.__setattr__(self, "metrics", metrics)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scenario": self.scenario,
            "tags": dict(self.tags),
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Point:
        return cls(
            name=data["name"],
            scenario=data.get("scenario", ""),
            tags=dict(data.get("tags", {})),
            metrics={k: Metric.from_dict(v) for k, v in data.get("metrics", {}).items()},
        )


def evalpipe_run_dict(data: Any) -> Any:
    """``data`` (a ``run.json``) checked for what every run evalpipe writes holds, though a calibrax record may
    lack it: points (``overall`` at least), each with its metrics; ``ValueError`` or ``KeyError`` otherwise."""
    points = data["points"]
    if not isinstance(points, list) or not points:
        raise ValueError(f"'points' holds {points!r}; every run holds its overall point at least")
    missing = [i for i, point in enumerate(points) if "metrics" not in point]
    if missing:
        raise KeyError(f"points[{missing[0]}].metrics")
    return data


def slice_name(key: Iterable[tuple[str, object]]) -> str:
    """A point's name: ``overall``, or ``column=value`` pairs joined by ``,`` (``filter=name`` for a filter entry),
    with ``\\``, ``,`` and ``=`` inside a column name or value written ``\\\\``, ``\\,`` and ``\\=``, so that
    two slices never share a name (a value ``1,b=2`` of ``a`` is ``a=1\\,b\\=2``; the cross ``a=1, b=2`` is
    ``a=1,b=2``); a bucket keeps its label (``age=[18, 65)``)."""
    return "overall" if not key else ",".join(f"{_escaped(k)}={_escaped(v)}" for k, v in key)


_BUCKET = re.compile(r"\[[^,=\\]+, [^,=\\]+\)")
"""A bucket's label (``[18, 65)``, :func:`~pipelines.slicing.bucket_label`), named as it is: a text of this form
holds one ``,`` and no ``=`` or ``\\``, and each pair of a name holds an unescaped ``=``, so it never reads as
two pairs, nor as another value (whose ``,`` is escaped)."""


def _escaped(text: object) -> str:
    text = str(text)
    if ("\\" in text or "," in text or "=" in text) and not _BUCKET.fullmatch(text):
        return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
    return text


def recorded_spec(run: Run, uri: str) -> Mapping[str, Any]:
    """The job spec ``run`` recorded (``metadata.spec`` of its ``run.json`` at ``uri``).

    Raises:
        UserError: the run's ``run.json`` has no such mapping (damaged or edited after the commit).
    """
    spec = run.metadata.get("spec")
    if not isinstance(spec, Mapping):
        raise UserError(
            f"{uri.rstrip('/')}/run.json: metadata.spec is {'missing' if spec is None else type(spec).__name__}; "
            "expected the job spec the run recorded (a mapping), which reading its statistics needs. The file was "
            "changed after the run committed: restore it, or run the job again."
        )
    return spec


def declared_keys(run: Run) -> frozenset[str]:
    """The metric keys ``run``'s spec declares (an entry's ``as:``, else its name): a key of a user's own may hold
    ``[`` or ``.`` (``auc[main]``), which its values' keys (``key[i]``, ``key.part``) follow."""
    spec = run.metadata.get("spec")
    entries = spec.get("metrics") if isinstance(spec, Mapping) else None
    keys = (_declared_key(entry) for entry in (entries if isinstance(entries, list) else ()))
    return frozenset(key for key in keys if isinstance(key, str))


def _declared_key(entry: Any) -> Any:
    """The key of one ``metrics:`` entry of a recorded spec, as the spec reader gives it: ``name``,
    ``{name: ..., <params>, as: ...}``, ``{name: {<params>, as: ...}}`` (without ``as:``, the name and its parameters:
    :func:`metric_key`), an AutoTimm ``MetricConfig`` (its ``name``, else ``as:``, else its class) or
    ``{statistic: module.Class, as: ...}`` (else the class's name)."""
    if not isinstance(entry, Mapping):
        return entry
    if "backend" in entry or "metric_class" in entry:
        return entry.get("name") or entry.get("as") or str(entry.get("metric_class", "")).removeprefix("torchmetrics.")
    if "statistic" in entry:
        return entry.get("as") or str(entry["statistic"]).replace(":", ".").rsplit(".", 1)[-1]
    if "name" in entry:
        given, name = entry, entry["name"]
    elif len(entry) == 1:
        ((name, raw),) = entry.items()
        given = raw if isinstance(raw, Mapping) else {}
    else:
        return None
    params = {k: v for k, v in given.items() if k not in ("name", "as", "priority")}
    return given.get("as") or (metric_key(name, params) if isinstance(name, str) else None)


def metric_key(name: str, params: Mapping[str, Any]) -> str:
    """The key of a catalogue metric entry without ``as:``: its name, with its parameters where it has some
    (``expected_calibration_error(n_bins=10)``)."""
    return name if not params else name + "(" + ",".join(f"{k}={params[k]}" for k in sorted(params)) + ")"


def selects(name: str, key: str) -> bool:
    """Whether a metric ``name`` given to select values (``--metric``) selects the value ``key``: the key itself, or
    one of its values (``f1_score`` selects ``f1_score[2]``, ``roc_auc`` ``roc_auc.error_bound``, ``auc[main]``
    ``auc[main].error_bound``)."""
    return key == name or key.startswith((name + "[", name + "."))


def manifest_problem(manifest: Any) -> str | None:
    """What a parsed ``_COMMITTED`` manifest lacks (None when it has all a reader needs): ``files`` (name ->
    size), ``job`` and ``run_id`` (strings) and ``timestamp`` (an ISO date and time)."""
    if not isinstance(manifest, dict):
        return "expected a JSON object"
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(n, int) for n in files.values()):
        return '"files": expected a mapping of file names to sizes'
    for key in ("job", "run_id", "timestamp"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            return f"{key!r}: expected a non-empty string"
    try:
        utc(dt.datetime.fromisoformat(manifest["timestamp"]))
    except ValueError:
        return f"'timestamp' {manifest['timestamp']!r}: expected an ISO date and time"
    return None


def listed_files_problem(files: Mapping[str, int], sizes: Mapping[str, int]) -> str | None:
    """Which files a manifest lists (name -> size) are missing from ``sizes`` (those found) or of another size there,
    in words; None when every one is there at its size."""
    missing = [name for name in sorted(files) if name not in sizes]
    other = [
        f"{n} ({sizes[n]} bytes, listed as {files[n]})" for n in sorted(files) if n in sizes and sizes[n] != files[n]
    ]
    parts = ([f"missing: {', '.join(missing)}"] if missing else []) + (
        [f"of another size: {', '.join(other)}"] if other else []
    )
    return "; ".join(parts) or None


def utc(timestamp: dt.datetime) -> dt.datetime:
    """``timestamp`` as an aware UTC datetime (naive input is taken as UTC)."""
    return timestamp.replace(tzinfo=dt.UTC) if timestamp.tzinfo is None else timestamp.astimezone(dt.UTC)


@dataclass(frozen=True)
class Run:
    """One execution of an evaluation job."""

    points: tuple[Point, ...]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """calibrax's default: 12 random hex digits (evalpipe's own runs get time-ordered ids instead)."""
    timestamp: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    commit: str | None = None
    branch: str | None = None
    environment: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    metric_defs: Mapping[str, MetricDef] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "timestamp": utc(self.timestamp).isoformat(),
            "commit": self.commit,
            "branch": self.branch,
            "environment": dict(self.environment),
            "metadata": dict(self.metadata),
            "metric_defs": {k: d.to_dict() for k, d in self.metric_defs.items()},
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        return cls(
            points=tuple(Point.from_dict(p) for p in data.get("points", [])),
            id=data["id"],
            timestamp=utc(dt.datetime.fromisoformat(data["timestamp"])),
            commit=data.get("commit"),
            branch=data.get("branch"),
            environment=dict(data.get("environment", {})),
            metadata=dict(data.get("metadata", {})),
            metric_defs={k: MetricDef.from_dict(v) for k, v in data.get("metric_defs", {}).items()},
        )

    def _repr_html_(self) -> str:
        """The run as a table in a notebook."""
        from pipelines.notebook import run_html

        return run_html(self)

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        near = difflib.get_close_matches(name, [p.name for p in self.points], n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise NotFound(f"run {self.id} has no point {name!r}{hint}; points: {', '.join(p.name for p in self.points)}")


@dataclass(frozen=True)
class Regression:
    """A metric that got worse than its baseline beyond tolerance."""

    metric: str
    point_name: str
    baseline_value: float
    current_value: float
    delta_pct: float
    direction: MetricDirection

    def __post_init__(self) -> None:
        object.__setattr__(self, "direction", MetricDirection(self.direction))

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "point_name": self.point_name,
            "baseline_value": _num(self.baseline_value),
            "current_value": _num(self.current_value),
            "delta_pct": _num(self.delta_pct),
            "direction": str(self.direction),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Regression:
        return cls(
            metric=data["metric"],
            point_name=data["point_name"],
            baseline_value=_from_num(data["baseline_value"]),
            current_value=_from_num(data["current_value"]),
            delta_pct=_from_num(data["delta_pct"]),
            direction=MetricDirection(data["direction"]),
        )


@dataclass(frozen=True)
class SignificanceResult:
    """Result of a statistical significance test."""

    p_value: float
    statistic: float
    effect_size: float
    significant: bool
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_value": _num(self.p_value),
            "statistic": _num(self.statistic),
            "effect_size": _num(self.effect_size),
            "significant": bool(self.significant),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignificanceResult:
        return cls(
            p_value=_from_num(data["p_value"]),
            statistic=_from_num(data["statistic"]),
            effect_size=_from_num(data["effect_size"]),
            significant=bool(data["significant"]),
            method=data["method"],
        )


@dataclass(frozen=True)
class RankEntry:
    """One row of a ranking table: ``rank`` 1 is the best (equal values share a rank), ``delta_from_best`` is
    ``value - best value`` (so never positive when higher is better, never negative when lower is better)."""

    label: str
    value: float
    rank: int
    is_best: bool
    delta_from_best: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": _num(self.value),
            "rank": int(self.rank),
            "is_best": bool(self.is_best),
            "delta_from_best": _num(self.delta_from_best),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RankEntry:
        return cls(
            label=data["label"],
            value=_from_num(data["value"]),
            rank=int(data["rank"]),
            is_best=bool(data["is_best"]),
            delta_from_best=_from_num(data["delta_from_best"]),
        )


@dataclass(frozen=True)
class ScalingLaw:
    """Power-law fit ``value = coefficient * size ** exponent`` over runs of different sizes; ``r_squared`` of
    the least-squares line in log-log space; ``complexity`` names what the size measures (``"params"``)."""

    coefficient: float
    exponent: float
    r_squared: float
    complexity: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "coefficient": _num(self.coefficient),
            "exponent": _num(self.exponent),
            "r_squared": _num(self.r_squared),
            "complexity": self.complexity,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScalingLaw:
        return cls(
            coefficient=_from_num(data["coefficient"]),
            exponent=_from_num(data["exponent"]),
            r_squared=_from_num(data["r_squared"]),
            complexity=data["complexity"],
        )

    def predict(self, size: float) -> float:
        """The fitted value at ``size``."""
        return float(self.coefficient * float(size) ** self.exponent)


@dataclass(frozen=True)
class TrendPoint:
    """One run's value of one metric, for a time series."""

    run_id: str
    timestamp: dt.datetime
    value: float
    commit: str | None = None
    lower: float | None = None
    upper: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "timestamp": utc(self.timestamp).isoformat(),
            "value": _num(self.value),
        }
        for key in ("commit", "lower", "upper"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key) if key == "commit" else _num(getattr(self, key))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrendPoint:
        return cls(
            run_id=data["run_id"],
            timestamp=utc(dt.datetime.fromisoformat(data["timestamp"])),
            value=_from_num(data.get("value")),
            commit=data.get("commit"),
            lower=None if "lower" not in data else _from_num(data["lower"]),
            upper=None if "upper" not in data else _from_num(data["upper"]),
        )


@dataclass(frozen=True)
class TrendSeries:
    """Time series of one metric of one point across runs."""

    metric: str
    point_name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    points: tuple[TrendPoint, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "point_name": self.point_name,
            "tags": dict(self.tags),
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrendSeries:
        return cls(
            metric=data["metric"],
            point_name=data["point_name"],
            tags=dict(data.get("tags", {})),
            points=tuple(TrendPoint.from_dict(p) for p in data.get("points", [])),
        )


def is_higher_better(md: MetricDef | None) -> bool:
    """True for 'higher', 'info' and unknown metrics; False for 'lower'."""
    return md is None or md.direction is not MetricDirection.LOWER


def extract_framework_metrics(run: Run, metric_names: Iterable[str]) -> dict[str, dict[str, float]]:
    """``{framework tag or point name: {metric: value}}`` for the requested metrics."""
    names = list(metric_names)
    out: dict[str, dict[str, float]] = {}
    for p in run.points:
        label = p.tags.get("framework", p.name)
        values = out.setdefault(label, {})
        for name in names:
            if name in p.metrics:
                values[name] = p.metrics[name].value
    return out
