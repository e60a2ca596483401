"""Export a committed run to MLflow: ``evalpipe export RUN_URI --to mlflow``.

One evalpipe run becomes one MLflow run in the experiment named after the job (created when absent):

* params: the recorded job spec flattened to dotted keys (``task.kind``, ``metrics.0.name``, ...; list
  items by position), values as text (storage options are recorded redacted, so never exported);
* metrics: every point's values at step 0 with the run's timestamp, as ``metric`` and, when the run has
  bootstrap intervals, ``metric_lower`` / ``metric_upper``. The ``overall`` point's names are the metric
  keys; a slice's are prefixed with the slice, ``country-de/f1_score``. Names are made MLflow-safe: only
  letters, digits, ``_ - . /`` and spaces (``confusion_matrix[0,1]`` -> ``confusion_matrix.0.1``);
* tags: ``evalpipe.run_id``, ``evalpipe.run_uri``, ``evalpipe.job``, the commit and branch;
* artifacts: the HTML report (``report.html``) and the run record (``run.json``).

Exporting a run that the experiment already holds (same ``evalpipe.run_id`` tag) creates nothing and
returns the existing MLflow run, so a retried export is safe. MLflow is an optional dependency
(``pip install 'evalpipe[mlflow]'``); the tracking URI is ``--tracking-uri`` or MLflow's own default
(``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import UserError
from pipelines.records import Run

INSTALL_HINT = (
    "evalpipe export --to mlflow needs MLflow: pip install 'evalpipe[mlflow]' (or pip install mlflow-skinny)."
)
_UNSAFE = re.compile(r"[^A-Za-z0-9_./\- ]")
_MAX_KEY = 250
_MAX_PARAM_VALUE = 6000
_BATCH = 100


@dataclass(frozen=True)
class Export:
    """Where a run went: the MLflow run id, its experiment, and whether it was already there."""

    mlflow_run_id: str
    experiment: str
    existed: bool


def mlflow_name(name: str) -> str:
    """``name`` as an MLflow metric or param key: brackets and commas of vector entries become dots, ``=``
    of slice tags a dash, any other character outside letters, digits, ``_ - . /`` and space an underscore;
    no empty, ``.`` or ``..`` path segments (MLflow treats names as paths); beyond 250 characters (MLflow's
    limit), cut and ended by 12 hex digits of a hash of ``name``."""
    text = name.replace("[", ".").replace("]", "").replace(",", ".").replace("=", "-")
    text = _UNSAFE.sub("_", text)
    segments = [s.replace("..", "__") for s in text.split("/") if s not in ("", ".", "..")]
    text = "/".join(segments) or "_"
    if len(text) <= _MAX_KEY:
        return text
    # longer than MLflow takes: cut, and told apart by a hash of the whole name (names that differ only after the
    # cut, such as a metric and its `.error_bound`, stay apart)
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{text[: _MAX_KEY - len(digest) - 1].rstrip('/')}_{digest}"


def metric_entries(run: Run) -> dict[str, float]:
    """``{mlflow name: value}`` of every point's metrics, with ``_lower`` / ``_upper`` for intervals."""
    out: dict[str, float] = {}
    for point in run.points:
        prefix = "" if point.name == "overall" else point.name.replace(",", "/") + "/"
        for key, metric in point.metrics.items():
            for suffix, value in (("", metric.value), ("_lower", metric.lower), ("_upper", metric.upper)):
                if value is None:
                    continue
                entry = mlflow_name(prefix + key + suffix)
                if entry in out:
                    raise UserError(
                        f"point {point.name!r}, metric {key!r}: its MLflow name {entry!r} is taken by another "
                        "entry of the run; rename the slice or the metric (`as:`) to export it."
                    )
                out[entry] = float(value)
    return out


def spec_params(recorded: Mapping[str, Any]) -> dict[str, str]:
    """The recorded job spec flattened to ``{dotted key: text}`` (list items by position)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list) and value:
            for i, item in enumerate(value):
                walk(f"{prefix}.{i}", item)
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out[mlflow_name(prefix)] = text[:_MAX_PARAM_VALUE]

    walk("", dict(recorded))
    return out


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def export_run(
    run_uri: str, tracking_uri: str | None = None, storage_options: Mapping[str, Any] | None = None
) -> Export:
    """Create the MLflow run of the committed run at ``run_uri`` (see the module docstring).

    Raises:
        UserError: MLflow is not installed (:data:`INSTALL_HINT`), no committed run at ``run_uri``, or the
            tracking store refused a request (its message).
    """
    try:
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    from pipelines.report import write_report
    from pipelines.results import resolve_run_uri
    from pipelines.storage import read_run

    run_uri = resolve_run_uri(run_uri, storage_options)
    run = read_run(run_uri, storage_options)
    job = str(run.metadata.get("job") or "evalpipe")
    params = [Param(k, v) for k, v in spec_params(run.metadata.get("spec") or {}).items()]
    millis = int(run.timestamp.timestamp() * 1000)
    metrics = [Metric(k, v, millis, 0) for k, v in metric_entries(run).items()]  # (names refused before a run exists)
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment = client.get_experiment_by_name(job)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(job)
        done = f"tags.`evalpipe.run_id` = '{run.id}' and attributes.status = 'FINISHED'"
        found = client.search_runs([experiment_id], done, max_results=1)
        if found:
            return Export(found[0].info.run_id, job, existed=True)
        tags = {"evalpipe.run_id": run.id, "evalpipe.run_uri": run_uri, "evalpipe.job": job}
        tags.update({k: v for k, v in (("evalpipe.commit", run.commit), ("evalpipe.branch", run.branch)) if v})
        mlflow_id = client.create_run(experiment_id, start_time=millis, tags=tags, run_name=run.id).info.run_id
    except MlflowException as exc:
        raise UserError(_failed(tracking_uri, exc)) from None
    try:
        for chunk in _chunks(params, _BATCH):
            client.log_batch(mlflow_id, params=chunk)
        for chunk in _chunks(metrics, 10 * _BATCH):
            client.log_batch(mlflow_id, metrics=chunk)
        with tempfile.TemporaryDirectory(prefix="evalpipe-mlflow-") as tmp:
            report = Path(tmp) / "report.html"
            write_report(run_uri, str(report), storage_options=storage_options)
            record = Path(tmp) / "run.json"
            record.write_text(json.dumps(run.to_dict(), indent=1))
            client.log_artifact(mlflow_id, str(report))
            client.log_artifact(mlflow_id, str(record))
        client.set_terminated(mlflow_id, "FINISHED")
    except BaseException as exc:  # a run left half-written is marked FAILED: a retry creates a new one
        client.set_terminated(mlflow_id, "FAILED")
        if isinstance(exc, MlflowException):
            raise UserError(_failed(tracking_uri, exc)) from None
        raise
    return Export(mlflow_id, job, existed=False)


def _failed(tracking_uri: str | None, exc: Any) -> str:
    message = " ".join(str(getattr(exc, "message", exc)).split())
    return f"MLflow ({tracking_uri or 'default tracking URI'}) refused the export: {message}"
