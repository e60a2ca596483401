"""Window runs: after a job's run commits, a run merged from the job's last N runs or N days (``window:``).

The window is the committed runs of the job up to and including the run just committed: the last ``runs`` of
them, or those of its last ``days`` calendar days (UTC: the days from ``days - 1`` days before its own, a backfilled
night counted on its night, :func:`~pipelines.templating.as_of`). A rerun of the same inputs (the same night run
again) replaces the earlier run of those inputs, and runs whose settings differ from the new run's (a metric
added since) are left out and listed in the window run's ``metadata.window.skipped``. The window run is merged
by :func:`pipelines.merge.merge_runs` and committed as job ``window.name`` (default ``{job}-{N}d`` or
``{job}-{N}runs``) in the same output location, so a dashboard reads a smooth trend without recomputation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipelines.errors import DamagedRunFile, UserError
from pipelines.job_statistics import job_statistics
from pipelines.merge import merge_runs, run_settings, stores_statistics_of
from pipelines.records import Run
from pipelines.results import RunInfo, list_runs
from pipelines.spec import JobSpec, WindowSpec
from pipelines.storage import read_run


@dataclass(frozen=True)
class WindowSelection:
    """The runs a window merges (oldest first) and those left out for other settings."""

    uris: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class WindowOutcome:
    """The committed window run's URI, or why it was not written (the job's own run is committed either way)."""

    uri: str | None
    error: str | None = None


def window_start(end: dt.datetime, days: int) -> dt.datetime:
    """The first time of a window of ``days`` calendar days (UTC) ending on ``end``'s day: midnight ``days - 1`` days
    before it (a nightly job's last ``days`` nights, whatever time each ran or, backfilled, stands for)."""
    return dt.datetime.combine(end.astimezone(dt.UTC).date() - dt.timedelta(days=days - 1), dt.time.min, dt.UTC)


def select_window(
    candidates: Sequence[RunInfo], current: RunInfo, window: WindowSpec, same_settings: Callable[[RunInfo], bool]
) -> WindowSelection:
    """The runs of ``window`` ending at ``current``, from ``candidates`` (the job's committed runs).

    Runs after ``current`` are not taken; of runs of the same inputs (``RunInfo.instance``) only the newest;
    with ``window.days`` only runs of its last that many calendar days (:func:`window_start`); runs for which
    ``same_settings`` is false are skipped; with ``window.runs`` at most that many, newest first.
    """
    latest: dict[object, RunInfo] = {}
    for info in sorted(candidates, key=lambda r: (r.timestamp, r.run_id)):
        if (info.timestamp, info.run_id) > (current.timestamp, current.run_id):
            continue
        if window.days is not None and info.timestamp < window_start(current.timestamp, window.days):
            continue
        latest[info.instance if info.instance is not None else info.run_id] = info
    chosen: list[RunInfo] = []
    skipped: list[str] = []
    for info in sorted(latest.values(), key=lambda r: (r.timestamp, r.run_id), reverse=True):
        if window.runs is not None and len(chosen) == window.runs:
            break
        if info.run_id == current.run_id or same_settings(info):
            chosen.append(info)
        else:
            skipped.append(info.uri)
    return WindowSelection(tuple(info.uri for info in reversed(chosen)), tuple(reversed(skipped)))


def commit_window(spec: JobSpec, run: Run, run_uri: str) -> WindowOutcome:
    """Merge and commit ``spec``'s window run ending at ``run`` (just committed at ``run_uri``).

    Returns the window run's URI, or the one-paragraph reason it could not be merged (runs of the window
    that read the same input files, say); the job's own run stays committed.
    """
    window = spec.window
    assert window is not None
    options = spec.output.storage_options
    since = window_start(run.timestamp, window.days) if window.days is not None else None
    candidates = list_runs(spec.output.uri, spec.name, since=since, storage_options=options)
    current = next((info for info in candidates if info.run_id == run.id), None)
    if current is None:
        return WindowOutcome(None, f"run {run_uri} is not listed under {spec.output.uri}/{spec.name}.")
    settings = run_settings(run, run_uri)
    statistics = job_statistics(spec).accumulator.statistics

    def mergeable(info: RunInfo) -> bool:  # (the same settings, and statistics stored as this evalpipe reads them)
        try:
            same = run_settings(read_run(info.uri, options), info.uri) == settings
            return same and stores_statistics_of(info.uri, statistics, options)
        except UserError:  # (a run damaged after its commit: skipped, as `show` names it, not every night's window)
            return False

    selection = select_window(candidates, current, window, mergeable)
    uris, skipped = list(selection.uris), list(selection.skipped)
    while True:
        note = {"job": spec.name, "runs": window.runs, "days": window.days, "skipped": skipped}
        try:
            merged = merge_runs(
                uris,
                window.name,
                output=spec.output.uri,
                storage_options=options,
                metadata={"window": note},
                as_of=run.timestamp,  # (a backfilled night's window is that night's)
            )
        except DamagedRunFile as exc:  # (statistics damaged after an earlier run's commit: left out, as run.json is)
            if exc.run_uri in uris and exc.run_uri != current.uri:
                uris.remove(exc.run_uri)
                skipped = [*skipped, exc.run_uri]
                continue
            return WindowOutcome(None, str(exc))
        except UserError as exc:
            return WindowOutcome(None, str(exc))
        return WindowOutcome(merged.uri)
