"""Merging committed runs into a new run, from their stored statistics alone (no prediction is read again).

Every run stores its merged sufficient statistics (``statistics.npz``): per slice the statistics' states, the
bootstrap-bucket states of the replicate statistics and the rows. :func:`merge_runs` reads them back, merges the
runs' partial results with the run's own ordered tree merge (:class:`~pipelines.unit_result.OrderedMerger`), turns
the result into points with the run's own reducer (:func:`~pipelines.reduce.build_points`: metrics, slices,
intervals) and commits a new run through the same commit protocol as ``evalpipe run``.

Runs merge only when their statistics mean the same thing: the same task, column roles, metrics with their
parameters, slices (with the same quantile boundaries), confidence settings and row key, and backbone. An input
file listed by two runs would count its rows twice: refused unless ``allow_overlap``.

Exactness: bootstrap buckets depend on row keys alone (``row_id``, or file URL and row position), so the merged
bucket states, and with them the intervals, are those of one run over all the runs' files. Statistics that merge
by integer or fixed-point addition, or by concatenation in a canonical order (classification, calibration,
segmentation, detection, corpus text and per-row text scores), give a merged run bit-identical to such a run.
Float moments merged with Chan's formula (regression, embedding and FID feature moments) are bit-identical when
the runs' merge tree is the single run's (the runs are merged in the order of their first input file, as a run
merges its units: e.g. runs of one work unit each, over consecutive files) and agree to about 1e-15 otherwise.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import json
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines import timing
from pipelines.bootstrap import DIGEST_MODULUS
from pipelines.errors import UserError
from pipelines.finite import check_states, check_values, statistic_keys
from pipelines.job_statistics import JobStatistics
from pipelines.records import Run, recorded_spec
from pipelines.reduce import build_points, metric_defs, reported_rows
from pipelines.results import resolve_run_uri
from pipelines.run_text import counted
from pipelines.spec import _NAME, metrics_of_recorded, settings_of_recorded
from pipelines.stopping import StopControl, committing
from pipelines.storage import (
    STATISTICS_FILE,
    STATISTICS_INDEX,
    StoredLayoutError,
    StoredStatistics,
    decode_stored,
    new_run_id,
    open_run,
    read_manifest,
    read_run,
    run_location,
    stored_positions,
    write_run,
)
from pipelines.unit_result import OrderedMerger, Partial

SETTINGS = ("task", "columns", "metrics", "slices", "confidence", "backbone")
"""What two runs must share to be merged (see :func:`run_settings`)."""


@dataclass(frozen=True)
class MergeOutcome:
    """The committed merged run and its URI."""

    run: Run
    uri: str


def run_settings(run: Run, uri: str) -> dict[str, Any]:
    """What decides the meaning of ``run``'s statistics (:data:`SETTINGS`, quantile boundaries within
    ``slices``, the bootstrap row key within ``confidence``), as comparable values."""
    settings = settings_of_recorded(recorded_spec(run, uri), f"{uri}/run.json")
    settings["slices"] = (settings["slices"], run.metadata.get("quantile_boundaries"))
    settings["confidence"] = (settings["confidence"], (run.metadata.get("bootstrap") or {}).get("row_key"))
    return settings


def _plain(value: Any) -> Any:
    """A setting as plain data, as a job spec writes it: a record's fields that give its meaning (no positions in
    the spec), an enumeration's value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _shown(first: Any, other: Any, limit: int = 160) -> tuple[str, str]:
    """Both values as text (JSON of their plain data), each cut to about ``limit`` characters around where they
    first differ (quantile boundaries deep in a long slices setting stay in view)."""
    texts = tuple(json.dumps(_plain(v), default=str, ensure_ascii=False) for v in (first, other))
    same = next((i for i, (a, b) in enumerate(zip(*texts, strict=False)) if a != b), min(map(len, texts)))
    start = max(0, same - limit // 4)

    def cut(text: str) -> str:
        window = text[start : start + limit]
        return ("..." if start else "") + window + ("..." if start + limit < len(text) else "")

    return cut(texts[0]), cut(texts[1])


def check_mergeable(runs: Sequence[tuple[str, Run]]) -> None:
    """Raise :class:`UserError` naming what differs when ``runs`` (``(uri, run)``) cannot be merged: other
    settings than the first run's, metrics whose states depend on each run's whole input (BERTScore idf), or
    runs whose statistics include a stored reference set (``reference:``)."""
    for uri, run in runs:
        if run.metadata.get("bertscore_idf"):
            raise UserError(
                f"{uri}: its BERTScore metrics with idf: true weight tokens by the document frequencies of this "
                "run's own references, so their statistics do not merge with another run's; merge runs of a job "
                "without idf weighting."
            )
        if run.metadata.get("reference"):
            source = run.metadata["reference"].get("run", "a stored reference run")
            raise UserError(
                f"{uri}: its statistics include the reference set of {source} (reference:), which merging it with "
                "another run would count twice. Merge the reference runs themselves (a job with only targets), or "
                "runs that did not read a reference."
            )
    first_uri, first = runs[0]
    reference = run_settings(first, first_uri)
    for uri, run in runs[1:]:
        settings = run_settings(run, uri)
        differ = [name for name in SETTINGS if settings[name] != reference[name]]
        if differ:
            details = "; ".join(
                "{}: {} in the first run, {} in this one".format(name, *_shown(reference[name], settings[name]))
                for name in differ
            )
            raise UserError(
                f"cannot merge run {uri} with the first run given, {first_uri}: their job settings differ in "
                f"{', '.join(differ)} "
                f"({details}). Runs merge only when task, column roles, metrics with their parameters, slices "
                "(and quantile boundaries), confidence settings (and row key) and backbone are the same."
            )


def overlapping_inputs(runs: Sequence[tuple[str, Run]]) -> dict[str, list[str]]:
    """Input file URL -> the URIs of the runs that list it, for files listed by more than one run."""
    readers: dict[str, list[str]] = {}
    for uri, run in runs:
        for path in dict.fromkeys(entry["path"] for entry in run.metadata.get("inputs", [])):
            readers.setdefault(path, []).append(uri)
    return {path: uris for path, uris in readers.items() if len(uris) > 1}


def _stored(uri: str, statistics: Sequence[Any], templates: Sequence[Any], options: Mapping[str, Any]) -> Partial:
    loc = open_run(uri, options)
    try:
        stored: StoredStatistics | None = decode_stored(
            statistics,
            templates,
            loc.fs.cat_file(loc.file(STATISTICS_FILE)),
            loc.fs.cat_file(loc.file(STATISTICS_INDEX)),
            uri,
        )
    except StoredLayoutError as exc:
        raise UserError(f"{uri}: {exc}; run its job again to merge it.") from None
    if stored is None:
        raise UserError(
            f"{uri}: this run's {STATISTICS_FILE} holds no rows per slice nor bootstrap-bucket states (it was "
            "written by an evalpipe that could not merge runs yet); run its job again to merge it."
        )
    return Partial(stored.states, stored.bucket_states, stored.rows)


def stores_statistics_of(uri: str, statistics: Sequence[Any], options: Mapping[str, Any]) -> bool:
    """Whether the run at ``uri`` stored per-slice states of ``statistics`` (those this evalpipe builds for its
    metrics) as they are, so that :func:`merge_runs` reads it: a window leaves out a run stored under an earlier form
    of them (a binary ranking metric of the 10-bit default), as it leaves out runs of other settings, and a run whose
    index was damaged after its commit. A run without the file counts as stored: the merge then names it."""
    loc = open_run(uri, options)
    try:
        meta = json.loads(loc.fs.cat_file(loc.file(STATISTICS_INDEX)))
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict):  # (valid JSON, but not the index evalpipe writes)
        return False
    return "slice_rows" in meta and stored_positions(statistics, meta) == list(range(len(statistics)))


def _spec_of_merge(runs: Sequence[tuple[str, Run]], name: str) -> dict[str, Any]:
    """The newest run's recorded spec, named ``name``, reading every run's input paths (no baseline, no window)."""
    spec = copy.deepcopy(dict(max(runs, key=lambda r: r[1].timestamp)[1].metadata["spec"]))
    paths: list[str] = []
    for _, run in runs:
        path = (run.metadata["spec"].get("data") or {}).get("path")
        for p in path if isinstance(path, list) else [path]:
            if p is not None and p not in paths:
                paths.append(p)
    spec["name"] = name
    spec.setdefault("data", {})["path"] = paths
    for key in ("baseline", "window"):
        spec.pop(key, None)
    return spec


def _source(uri: str, run: Run) -> dict[str, Any]:
    return {
        "run": run.id,
        "uri": uri,
        "job": run.metadata.get("job"),
        "timestamp": run.timestamp.isoformat(),
        "commit": run.commit,
        "rows": run.metadata.get("rows"),
        "inputs": [entry["path"] for entry in run.metadata.get("inputs", [])],
    }


def _dropped(runs: Sequence[tuple[str, Run]]) -> dict[str, Any]:
    summaries = [run.metadata["dropped_rows"] for _, run in runs if "dropped_rows" in run.metadata]
    if not summaries:
        return {}
    reasons: dict[str, int] = {}
    for summary in summaries:
        for reason, count in summary["by_reason"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    return {"dropped_rows": {"rows": sum(s["rows"] for s in summaries), "by_reason": reasons}}


def _read_sources(
    run_uris: Sequence[str], name: str, allow_overlap: bool, options: Mapping[str, Any]
) -> tuple[list[tuple[str, Run]], dict[str, list[str]]]:
    """The runs to merge as ``(uri, run)``, in the order a single run over all their files would merge them
    (by first input file), and their overlapping inputs; refusals as :func:`merge_runs` lists them."""
    if not run_uris:
        raise UserError("merge: give at least one run URI ({output}/{job}/{run id}) to merge.")
    if not _NAME.fullmatch(name):
        raise UserError(
            f"merge --name {name!r}: a job name must start with a letter or digit and use only letters, digits, "
            "'.', '_' and '-' (it becomes a directory name)."
        )
    uris = [resolve_run_uri(u.rstrip("/"), options) for u in run_uris]
    twice = next((uri for i, uri in enumerate(uris) if uri in uris[:i]), None)
    if twice is not None:
        raise UserError(
            f"run {twice} is given twice: merged with itself, its rows would count twice; give each run once."
        )
    runs = [(uri, read_run(uri, options)) for uri in uris]
    check_mergeable(runs)
    overlap = overlapping_inputs(runs)
    if overlap and not allow_overlap:
        path, readers = next(iter(overlap.items()))
        raise UserError(
            f"input files listed by more than one run would count their rows twice ({len(overlap)} in all; e.g. "
            f"{path} in runs {', '.join(readers)}). Merge runs over disjoint inputs, or pass --allow-overlap "
            "(merge_runs(..., allow_overlap=True)) to count them once per run."
        )
    runs.sort(key=lambda r: (min((e["path"] for e in r[1].metadata.get("inputs", [])), default=""), r[1].timestamp))
    return runs, overlap


def _merged_metadata(runs: Sequence[tuple[str, Run]], name: str, overlap: Mapping[str, list[str]]) -> dict[str, Any]:
    """The merged run's metadata besides slices and timings: spec, inputs, rows, sources, shared settings."""
    newest = max(runs, key=lambda r: r[1].timestamp)[1].metadata
    return {
        "job": name,
        "description": f"Merged from {counted(len(runs), 'committed run')}: " + ", ".join(u for u, _ in runs),
        "spec_source": max(runs, key=lambda r: r[1].timestamp)[0],
        "spec": _spec_of_merge(runs, name),
        "inputs": [entry for _, run in runs for entry in run.metadata.get("inputs", [])],
        "rows": sum(int(run.metadata.get("rows", 0)) for _, run in runs),
        "units": sum(int(run.metadata.get("units", 0)) for _, run in runs),
        "merged_from": [_source(uri, run) for uri, run in runs],
        **({"overlapping_inputs": dict(overlap)} if overlap else {}),
        **{
            k: newest[k]
            for k in ("metric_backends", "unbounded_metrics", "quantile_boundaries", "bootstrap")
            if k in newest
        },
        **_dropped(runs),
        **_rows_digest(runs),
    }


def _rows_digest(runs: Sequence[tuple[str, Run]]) -> dict[str, str]:
    """The merged run's ``rows_digest``: the sum of its sources' (the digest of the union of their rows), where
    every source has one."""
    digests = [run.metadata.get("rows_digest") for _, run in runs]
    if not digests or any(not isinstance(d, str) for d in digests):
        return {}
    return {"rows_digest": f"{sum(int(d, 16) for d in digests) % DIGEST_MODULUS:016x}"}


def merge_runs(
    run_uris: Sequence[str],
    name: str,
    *,
    output: str | None = None,
    allow_overlap: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    stop: StopControl | None = None,
    as_of: dt.datetime | None = None,
) -> MergeOutcome:
    """Commit a run named ``name`` whose statistics are the merge of the committed runs at ``run_uris``.

    Args:
        run_uris: ``{output}/{job}/{run id}`` (or ``{output}/{job}/latest``) of each run; at least one.
        name: the merged run's job name: it goes to ``{output}/{name}/{run id}/``.
        output: where to write (default: the output location of the newest run).
        allow_overlap: merge runs that list the same input file (its rows then count twice).
        metadata: extra entries for the merged run's metadata (a window's settings).
        stop: the process's SIGTERM control (:func:`~pipelines.stopping.stop_on_sigterm`), told when the manifest
            exists, so that a signal from then on is only noted.
        as_of: the time the merged run stands for (a window's: the run it ends at); default its start.

    Raises:
        UserError: no runs, a bad name, runs whose settings differ, overlapping inputs, or a run stored
            without the statistics a merge needs.
    """
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    options = dict(storage_options or {})
    runs, overlap = _read_sources(run_uris, name, allow_overlap, options)
    newest_uri, newest = max(runs, key=lambda r: r[1].timestamp)
    metrics = metrics_of_recorded(recorded_spec(newest, newest_uri), f"{newest_uri}/run.json")
    settings = run_settings(newest, newest_uri)
    slices, confidence = settings["slices"][0], settings["confidence"][0]
    statistics = JobStatistics.of(metrics, confidence)
    acc, racc = statistics.accumulator, statistics.replicates
    templates = racc.zero_grouped(confidence.buckets) if racc is not None and confidence else ()
    merger = OrderedMerger(acc, racc)
    for i, (uri, _) in enumerate(runs):
        merger.add(i, _stored(uri, acc.statistics, templates, options))
    merged = merger.result()
    check_states(acc.statistics, merged.states, statistic_keys(metrics), rows=reported_rows(merged.rows, slices))
    scenario = ", ".join(dict.fromkeys(p.scenario for _, run in runs for p in run.points[:1]))
    points, slice_report = build_points(scenario, acc, metrics, merged, slices, confidence, racc)
    check_values(points)
    from pipelines.execute import library_versions  # the runner machinery: only once the inputs are checked

    run = Run(
        points=tuple(points),
        id=new_run_id(started),
        timestamp=as_of or started,
        commit=newest.commit,
        branch=newest.branch,
        environment={"libraries": library_versions(), "platform": platform.platform(), "runner": "merge"},
        metadata={
            **_merged_metadata(runs, name, overlap),
            **slice_report,
            **dict(metadata or {}),
            "timings": {"merge_seconds": round(time.perf_counter() - t0, 6)},
        },
        metric_defs=metric_defs(metrics, sorted({k for p in points for k in p.metrics})),
    )
    target = output or newest_uri.rsplit("/", 2)[0]
    location = run_location(target, name, run.id, options)
    t_commit = time.perf_counter()
    with committing(stop, location.uri, lambda: read_manifest(location) is not None) as on_commit:
        write_run(
            location,
            run,
            name,
            acc.statistics,
            merged.states,
            bucket_states=merged.bucket_states,
            slice_rows=merged.rows,
            on_commit=on_commit,
            finish=lambda written: timing.with_process_timings(written, time.perf_counter() - t_commit),
        )
    return MergeOutcome(run, location.uri)
