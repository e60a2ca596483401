"""Which sides an image or text job reads, and whether its metrics can be computed from them.

An image or text job compares a candidate side (generated images, candidate texts) with a reference side
(real images, reference texts). Each side comes from one source:

* candidate: ``data.columns.predictions`` (images or texts, through the backbone) or
  ``data.columns.predictions_features`` (precomputed feature vectors, ``list<float>`` ``[D]`` per row);
* reference: ``data.columns.targets``, ``data.columns.targets_features``, or ``reference: RUN_URI`` (the
  reference statistics a stored run computed once, see :mod:`pipelines.reference`).

A job with only a reference side is a *reference job*: it stores the reference-side statistics of its
distribution metrics (FID, KID, Fréchet embedding distance) for later jobs to name. Metrics that compare
rows pairwise (embedding similarity, BERTScore) or read the texts themselves (BLEU, WER, ...) need both
sides in the same rows; only statistics whose sides are independent sets (``unpaired_sides``) work with one
side or a stored reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evaluators.adapters import ADAPTERS
from evaluators.backbones.cnn import row_hashes, split_keys
from evaluators.statistic import DerivedMetric, Statistic
from evaluators.task import Task, TaskKind
from pipelines.errors import DataError, SpecError
from pipelines.yamlsource import YamlSource

SIDED_TASKS = tuple(kind for kind, adapter in ADAPTERS.items() if adapter.one_sided)
_SIDE_FEATURES = {
    "predictions": ("candidate", "candidate_key", "candidate_logits"),
    "predictions_features": ("candidate", "candidate_key"),
    "targets": ("reference", "reference_key"),
    "targets_features": ("reference", "reference_key"),
    "reference": ("reference", "reference_key"),
}
"""Features each side's source provides when the job does not read both raw columns."""


def one_side_allowed(task: Any) -> bool:
    """Whether the (unvalidated) ``task:`` value names an image or text task, whose jobs may read one side."""
    kind = task.get("kind") if isinstance(task, dict) else task
    return isinstance(kind, str) and kind in {k.value for k in SIDED_TASKS}


def unpaired(metric: DerivedMetric) -> bool:
    """Whether the metric's statistic holds its two sides as independent sets (FID, KID, Fréchet distance)."""
    return bool(getattr(metric.statistic, "unpaired_sides", False))


def check_sides(
    source: YamlSource,
    columns: Any,
    task: Task,
    metrics: Sequence[tuple[str, DerivedMetric]],
    reference: str | None,
    backbone: object | None,
) -> None:
    """Raise :class:`SpecError` unless the job's sides (``columns``: :class:`~pipelines.spec.Columns`) and
    ``reference`` give every metric (``(key, metric)``) what it reads."""
    where_columns = source.where(("data", "columns"))
    if task.kind not in SIDED_TASKS:
        for role in ("predictions_features", "targets_features"):
            if getattr(columns, role):
                raise SpecError(
                    f"{source.where(('data', 'columns', role))}: precomputed feature columns are for image and text "
                    f"jobs (FID, KID, Fréchet distance), not for a {task.kind} task."
                )
        if reference is not None:
            raise SpecError(
                f"{source.where(('reference',))}: a stored reference serves image and text jobs (FID, KID, Fréchet "
                f"distance), not a {task.kind} task."
            )
        return
    candidate = [r for r in ("predictions", "predictions_features") if getattr(columns, r)]
    references = [r for r in ("targets", "targets_features") if getattr(columns, r)]
    references += ["reference"] if reference is not None else []
    if len(candidate) > 1:
        raise SpecError(
            f"{where_columns}: give one of `predictions` (read through the backbone) and `predictions_features` "
            "(precomputed features), not both."
        )
    if len(references) > 1:
        raise SpecError(
            f"{where_columns}: the reference side comes from one of `data.columns.targets`, "
            f"`data.columns.targets_features` and `reference: RUN_URI`; this job gives {', '.join(references)}."
        )
    if not candidate and not references:
        raise SpecError(f"{where_columns}: missing required key 'predictions' (and 'targets').")
    if not references:
        raise SpecError(
            f"{where_columns}: the job has predictions but nothing to compare them with; add `targets` or "
            "`targets_features`, or name a stored reference run with `reference: RUN_URI`."
        )
    if reference is not None and not candidate:
        raise SpecError(
            f"{source.where(('reference',))}: a job against a stored reference evaluates predictions: set "
            "data.columns.predictions or data.columns.predictions_features."
        )
    raw = [r for r in (*candidate, *references) if r in ("predictions", "targets")]
    both_raw = len(raw) == 2
    if task.kind is TaskKind.TEXT and raw and not both_raw:
        raise SpecError(
            f"{where_columns}: the text backbone reads candidate and reference texts together; with one side (or "
            "a stored reference) give the embeddings as `predictions_features` / `targets_features` columns."
        )
    if backbone is not None and not raw:
        raise SpecError(
            f"{source.where(('backbone',))}: the job reads precomputed features only "
            f"({', '.join(candidate + references)}), so no backbone runs; leave `backbone:` out."
        )
    if both_raw:
        return  # the backbone gives every feature, as for any paired job
    available = {f for side in (*candidate, *references) for f in _SIDE_FEATURES[side]}
    one_sided = not candidate or reference is not None
    for key, metric in metrics:
        needed = set(metric.statistic.features)
        where = f"{source.where(('metrics',))}: metric {key!r}"
        if not needed:
            raise SpecError(
                f"{where} reads the predictions and targets columns themselves; it needs both in the same rows, "
                f"and this job gives {', '.join(candidate + references)}."
            )
        if one_sided and "reference" in needed and not unpaired(metric):
            raise SpecError(
                f"{where} compares the two sides row by row; a reference job or a stored reference carries only "
                "distribution statistics (fid, kid, frechet_embedding_distance)."
            )
        if unpaired(metric) and not candidate:  # a reference job: the candidate side comes later
            needed -= {"candidate", "candidate_key"}
        missing = sorted(needed - available)
        if missing:
            side = "candidate (predictions)" if any(f.startswith("candidate") for f in missing) else "reference"
            hints = [_FROM_BACKBONE[f] for f in missing if f in _FROM_BACKBONE]
            raise SpecError(
                f"{where} reads {', '.join(missing)}, which the job's {side} side does not give (it reads "
                f"{', '.join(candidate + references)}{''.join(f'; {h}' for h in hints)})."
            )


_FROM_BACKBONE = {
    "candidate_logits": "class logits come from the backbone on `predictions` images",
    "bertscore": "token embeddings come from the backbone on `predictions` and `targets` texts",
}
"""Features only a backbone gives (no feature column holds them), and where they come from."""
_FEATURE_SIDES = {"predictions_features": "candidate", "targets_features": "reference"}


def feature_columns(
    columns: Mapping[str, np.ndarray], statistics: Sequence[Statistic], where: str, roles: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """The features of the batch's precomputed feature columns: ``candidate`` / ``reference`` ``[n, D]`` (as
    stored, float) and ``candidate_key`` / ``reference_key`` ``[n, 2]`` int32 (each row's 64-bit hash of its
    vector in float64, which picks KID's subset as an image's hash does). Raises :class:`DataError` when a
    column's width is not the ``dimension`` a metric expects, naming the column (``roles``: role -> column)."""
    out: dict[str, np.ndarray] = {}
    widths = {int(s.dimension) for s in statistics if getattr(s, "unpaired_sides", False)}
    for role, side in _FEATURE_SIDES.items():
        if role not in columns:
            continue
        values = np.asarray(columns[role])
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float64)
        width = values.shape[1] if values.ndim == 2 else None
        wrong = sorted(d for d in widths if d != width)
        if wrong:
            raise DataError(
                f"{where}: column {roles[role]!r} (data.columns.{role}) holds vectors of {width} features, and the "
                f"job's metrics expect dimension {wrong[0]}; set the metrics' `dimension` to the features' width."
            )
        out[side] = values
        # (the hash of the float64 vector, whatever width a file stores it at: a unit joining a float32 file with a
        # float64 one holds both as float64, and the rows' keys, KID's subset, must not depend on that grouping)
        out[f"{side}_key"] = split_keys(row_hashes(values.astype(np.float64, copy=False)))
    if "candidate" in out and "reference" in out and out["candidate"].shape[1:] != out["reference"].shape[1:]:
        widths = [out[side].shape[1] if out[side].ndim == 2 else None for side in ("candidate", "reference")]
        raise DataError(
            f"{where}: column {roles['predictions_features']!r} (data.columns.predictions_features) holds vectors "
            f"of {widths[0]} features and column {roles['targets_features']!r} (data.columns.targets_features) of "
            f"{widths[1]}; a row's two vectors are compared feature by feature: expected one width."
        )
    return out
