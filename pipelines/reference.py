"""Reference statistics computed once: a job's predictions against a stored reference run.

A *reference job* (an image or text job with a reference side only, see :mod:`pipelines.sides`) commits
a run whose ``statistics.npz`` holds the reference side of its distribution statistics: for ``fid`` /
``frechet_embedding_distance`` the count, mean ``[D]`` and centred co-moment ``[D, D]`` of the real
features (:class:`~evaluators.frechet.FeatureMoments`), for ``kid`` the kept subset of real features
(:class:`~evaluators.image.KernelSubset`); the candidate side of these states is empty. Its points
hold row counts only.

A later job names it with ``reference: RUN_URI`` and reads only predictions. After its units are
merged, every slice's state of such a statistic is merged with the reference run's overall state of the
same statistic: the candidate side is the slice's, the reference side the stored one (Chan's merge with
an empty side is exact, so the value equals a paired run over the same rows). The sides may differ in
size. The committed run stores the merged states, so its statistics give back its values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluators.statistic import DerivedMetric, State, Statistic
from pipelines.errors import SpecError, UserError
from pipelines.fingerprint import tree_digest
from pipelines.sides import unpaired
from pipelines.spec import JobSpec, MetricSpec
from pipelines.storage import read_run
from pipelines.unit_result import Partial


@dataclass(frozen=True)
class ReferenceStatistics:
    """The reference side a job reads: the stored run (``uri``, ``run_id``), its rows, and the overall
    state of each distribution statistic the job's metrics read."""

    uri: str
    run_id: str
    rows: int
    states: Mapping[Statistic, State]

    def describe(self) -> dict[str, Any]:
        """What ``run.json`` records under ``metadata.reference``."""
        return {"run": self.uri, "run_id": self.run_id, "rows": self.rows}


def is_reference_job(spec: JobSpec) -> bool:
    """A job with a reference side only: it stores reference statistics and computes no metric values."""
    columns = spec.data.columns
    return spec.reference is None and not (columns.predictions or columns.predictions_features)


def _feature_source(recorded: Mapping[str, Any]) -> dict[str, Any] | None:
    """A recorded spec's backbone (kind, weights, dtype), or None when its features came from columns."""
    backbone = recorded.get("backbone")
    if not backbone:
        return None
    return {
        "kind": backbone.get("kind"),
        "weights": backbone.get("weights"),
        "dtype": backbone.get("dtype") or "float32",
    }


def load_reference(spec: JobSpec) -> ReferenceStatistics | None:
    """The reference statistics ``spec.reference`` names, checked against the job; None without one.

    Raises:
        SpecError: no committed run there, a run that is no reference run, another task, another backbone,
            or no statistic for one of the job's metrics (another ``dimension`` or ``subset_size``).
    """
    if spec.reference is None:
        return None
    name = f"{spec.source}: reference"
    options = spec.output.storage_options
    try:
        from pipelines.results import resolve_run_uri  # polars: only for jobs that read a reference

        uri = resolve_run_uri(spec.reference, options)
        run = read_run(uri, options)
    except UserError as exc:
        raise SpecError(f"{name}: {exc}") from None
    recorded = run.metadata.get("spec") or {}
    columns = (recorded.get("data") or {}).get("columns") or {}
    if columns.get("predictions") or columns.get("predictions_features") or recorded.get("reference"):
        raise SpecError(
            f"{name}: {uri} is not a reference run: it evaluated predictions (a reference run is a job with only "
            "`targets` or `targets_features`, run once to store the real side's statistics)."
        )
    task = recorded.get("task")
    kind = task.get("kind") if isinstance(task, dict) else task
    if kind != spec.task.kind.value:
        raise SpecError(f"{name}: {uri} is a reference run of a {kind} task; this job is a {spec.task.kind} task.")
    _check_backbone(name, uri, spec, recorded, (run.metadata.get("backbone") or {}).get("weights_digest"))
    from pipelines.results import load_statistics

    stored = load_statistics(uri, options)
    states = {}
    for metric_spec, metric in spec.derived_metrics():
        if unpaired(metric):
            states[metric.statistic] = _stored_state(name, uri, stored, metric_spec, metric)
    rows = next((p.metrics["rows"].value for p in run.points if p.name == "overall"), 0.0)
    return ReferenceStatistics(uri, run.id, int(rows), states)


def weights_digest(spec: JobSpec) -> dict[str, str]:
    """What a reference job's ``run.json`` records under ``metadata.backbone``: the digest of its backbone's weight
    files (:func:`~pipelines.fingerprint.tree_digest`), by which a job reading it knows the same weights wherever
    they lie; nothing for other jobs."""
    if spec.backbone is None or not is_reference_job(spec):
        return {}
    digest = _digest(spec.backbone.weights)
    return {} if digest is None else {"weights_digest": digest}


def _digest(weights: str) -> str | None:
    """:func:`~pipelines.fingerprint.tree_digest` of ``weights``; None where nothing is there (loading the backbone
    then names the path)."""
    try:
        return tree_digest(weights)
    except FileNotFoundError:
        return None


def _check_backbone(name: str, uri: str, spec: JobSpec, recorded: Mapping[str, Any], stored_digest: str | None) -> None:
    """Refuse a reference run whose features came from another backbone than the job's: another kind or dtype, or
    weights of other content (by their digest; the weights' path where the run stored no digest)."""
    ours, theirs = _job_feature_source(spec), _feature_source(recorded)
    if ours is None or theirs is None:
        return
    assert spec.backbone is not None
    if stored_digest is not None and ours | {"weights": ""} == theirs | {"weights": ""}:
        if _digest(spec.backbone.weights) == stored_digest:
            return
        raise SpecError(
            f"{name}: {uri} computed its features with the weights at {theirs['weights']!r} as they were then, and "
            f"the files at {ours['weights']!r} now hold other content; features of different weights are not "
            "comparable (run the reference job again with these weights)."
        )
    if ours != theirs:
        raise SpecError(
            f"{name}: {uri} computed its features with backbone {theirs}, this job with {ours}; features of "
            "different backbones are not comparable (run the reference job with this job's backbone)."
        )


def _job_feature_source(spec: JobSpec) -> dict[str, Any] | None:
    if spec.backbone is None:
        return None
    return _feature_source({"backbone": dataclasses.asdict(spec.backbone)})


def _stored_state(name: str, uri: str, stored: Any, metric_spec: MetricSpec, metric: DerivedMetric) -> State:
    """The reference run's overall state of the statistic ``metric`` reads."""
    same = [(s, m) for s, m in stored.metrics if m.statistic == metric.statistic]
    if same:
        return stored.state(same[0][0].key)
    kin = [m.statistic for _, m in stored.metrics if type(m.statistic) is type(metric.statistic)]
    if kin:
        raise SpecError(
            f"{name}: metric {metric_spec.key!r} reads {metric.statistic!r}, and {uri} stored {kin[0]!r}: the "
            "feature dimension (or KID's subset size) differs from the reference's; set the metric's parameters "
            "to the reference job's."
        )
    stored_keys = ", ".join(s.key for s, _ in stored.metrics) or "none"
    raise SpecError(
        f"{name}: {uri} has no reference statistics for metric {metric_spec.key!r} ({metric_spec.name}); its "
        f"metrics: {stored_keys}. Add the metric to the reference job and run it again."
    )


def with_reference(merged: Partial, statistics: Sequence[Statistic], reference: ReferenceStatistics | None) -> Partial:
    """``merged`` with every slice's state of a reference statistic merged with the stored reference side."""
    if reference is None:
        return merged
    states = {
        key: tuple(
            st.merge(state, reference.states[st]) if st in reference.states else state
            for st, state in zip(statistics, per_stat, strict=True)
        )
        for key, per_stat in merged.states.items()
    }
    return dataclasses.replace(merged, states=states)
