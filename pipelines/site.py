"""A static results site over every committed run of a results location: ``evalpipe site RESULTS -o SITE``.

The site is plain files on any fsspec location (the bucket's static hosting serves it as is; no server, no
script, no URL outside it)::

    {site}/index.html                  every job: latest primary metrics, change and significance, sparkline
    {site}/jobs/{job}.html             trends with interval bands and regression markers, slice x night heatmap,
                                       the runs table
    {site}/runs/{job}/{run id}.html    each run's report (:mod:`pipelines.report`), against the run before it
    {site}/_site/...                   the incremental state (:mod:`pipelines.site_index`)

Regenerating reads the site's index and only the runs it does not list yet (plus their outcome records):
after one new nightly run, one ``run.json`` (and, for its report, its statistics). A run older than the newest
one indexed (a backfill) rebuilds its job's part from every run; a missing or outdated index, the whole site.

    >>> build_site("s3://ml-evals", "s3://ml-evals-site")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from fsspec.core import url_to_fs

from pipelines import plots
from pipelines.errors import UserError, opening_problem
from pipelines.outcome import OUTCOMES_DIR, outcome_uri
from pipelines.records import Run
from pipelines.report import render_loaded
from pipelines.results import RunInfo, list_runs
from pipelines.site_index import (
    EMPTY_JOB,
    INDEX_FILE,
    Failure,
    JobIndex,
    SiteIndex,
    last_run_file,
    run_tolerance,
    summarise,
)
from pipelines.site_pages import index_page, job_page
from pipelines.storage import join, read_run


@dataclass(frozen=True)
class SiteBuild:
    """What one regeneration did."""

    site: str
    new_runs: int  # runs read and added
    jobs_written: tuple[str, ...]  # jobs whose page was rewritten
    rebuilt: bool  # the index was missing or unusable: everything was read


def report_path(job: str, run_id: str) -> str:
    """A run's report, relative to the site root."""
    return f"runs/{job}/{run_id}.html"


def _read_text(fs: Any, path: str) -> str | None:
    try:
        with fs.open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    except FileNotFoundError:
        return None


def _status(results_uri: str, run: Run, storage_options: Mapping[str, Any] | None) -> str:
    """The run's outcome status from its ``_outcomes`` record; without one, from its own baseline gate."""
    job = str(run.metadata.get("job", ""))
    fs, path = url_to_fs(outcome_uri(results_uri, job, run.id), **(storage_options or {}))
    text = _read_text(fs, path)
    if text is not None:
        return str(json.loads(text).get("status", "committed"))
    return "regressed" if (run.metadata.get("baseline") or {}).get("regressions") else "committed"


def _scope(results_uri: str, since: dt.datetime | dt.date | str | None) -> str:
    """What an index was built from: a regeneration with another scope rebuilds."""
    return results_uri.rstrip("/") + ("" if since is None else f" since {since}")


def build_site(
    results_uri: str,
    site_uri: str,
    *,
    job: str | None = None,
    since: dt.datetime | dt.date | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    site_storage_options: Mapping[str, Any] | None = None,
    reports: bool = True,
    rebuild: bool = False,
) -> SiteBuild:
    """Write or update the site at ``site_uri`` from the committed runs under ``results_uri``.

    Args:
        results_uri: the jobs' ``output.uri`` (any fsspec URL).
        site_uri: where the site goes (any fsspec URL; may be in the same bucket).
        job: only add runs of this job (the index keeps the other jobs it has); a site rebuilt whole (``rebuild``, or
            a ``since`` other than its index's) reads every job's runs again.
        since: only runs started at or after this time (ISO date or datetime, UTC).
        storage_options: open the runs; ``site_storage_options`` (default: the same) the site.
        reports: write each new run's report page (reads its statistics for the figures).
        rebuild: ignore the index and read every run.

    Raises:
        UserError: ``results_uri`` does not exist, or ``job`` has no committed run there.
    """
    options = dict(storage_options or {})
    site_options = dict(options if site_storage_options is None else site_storage_options)
    try:
        site_fs, site_root = url_to_fs(site_uri, **site_options)
    except (ImportError, ValueError) as exc:
        raise UserError(f"{site_uri}: cannot open this location: {opening_problem(exc)}.") from None
    scope = _scope(results_uri, since)
    stored = _read_text(site_fs, join(site_root, INDEX_FILE))
    index = SiteIndex.from_json(stored) if stored is not None and not rebuild else None
    rebuilt = index is None or index.results != scope
    if index is None or rebuilt:
        index = SiteIndex(scope, {})
    known = {f"{name}/{r.run_id}" for name, j in index.jobs.items() for r in j.runs}
    every_job = rebuilt and stored is not None  # a site rebuilt whole (a new scope, or asked): its other jobs too
    found = list_runs(results_uri, None if every_job else job, since, options, must_exist=True, skip=known)
    if every_job and job is not None and not any(info.job == job for info in found):
        list_runs(results_uri, job, since, options, must_exist=True)  # (a misspelt job: refused, naming the others)
    jobs = dict(index.jobs)
    written: list[str] = []
    added = 0
    for name in dict.fromkeys(
        [*(info.job for info in found), *(jobs if job is None else [job] if job in jobs else [])]
    ):
        new = [info for info in found if info.job == name]
        current = jobs.get(name, EMPTY_JOB)
        read = 0
        if new:
            current, read = _with_new_runs(
                current, name, new, results_uri, site_uri, since, options, site_options, reports
            )
        failures = _new_failures(results_uri, name, current, options)
        if read or failures:
            jobs[name] = replace(current, failures=(*current.failures, *failures))
            written.append(name)
        added += read
    index = replace(index, jobs=jobs)
    for name in dict.fromkeys(written) if not rebuilt else list(jobs):
        plots.write_bytes(
            join(site_uri, "jobs", f"{name}.html"), job_page(name, jobs[name]).encode("utf-8"), site_options
        )
    plots.write_bytes(join(site_uri, "index.html"), index_page(index).encode("utf-8"), site_options)
    plots.write_bytes(join(site_uri, INDEX_FILE), index.to_json().encode("utf-8"), site_options)  # last: a failed
    # regeneration leaves the previous index, and the next one reads the same new runs again
    return SiteBuild(site_uri, added, tuple(written), rebuilt)


def _with_new_runs(
    job: JobIndex,
    name: str,
    new: list[RunInfo],
    results_uri: str,
    site_uri: str,
    since: dt.datetime | dt.date | str | None,
    options: Mapping[str, Any],
    site_options: Mapping[str, Any],
    reports: bool,
) -> tuple[JobIndex, int]:
    """``job`` with the runs ``new`` added (a backfilled one rebuilds it from every run), the newest run kept in
    the site's state; and how many runs were read."""
    site_fs, site_root = url_to_fs(site_uri, **site_options)
    if job.runs and (new[0].timestamp.isoformat(), new[0].run_id) < (job.runs[-1].timestamp, job.runs[-1].run_id):
        job = replace(EMPTY_JOB, failures=job.failures)  # a backfilled run: rebuilt in time order
        new = list_runs(results_uri, name, since, options)
    previous = None
    if job.runs:
        text = _read_text(site_fs, join(site_root, last_run_file(name)))
        previous = Run.from_dict(json.loads(text)) if text is not None else None
    job, previous = _add_runs(job, previous, new, results_uri, site_uri, options, site_options, reports)
    if previous is not None:
        state = json.dumps(previous.to_dict()).encode("utf-8")
        plots.write_bytes(join(site_uri, last_run_file(name)), state, site_options)
    return job, len(new)


def _new_failures(results_uri: str, job: str, known: JobIndex, options: Mapping[str, Any]) -> list[Failure]:
    """The outcome records of ``job``'s runs that committed nothing, other than those ``known`` lists (one listing;
    only records of run ids the index does not know are read)."""
    fs, directory = url_to_fs(join(results_uri, OUTCOMES_DIR, job), **options)
    try:
        listed = sorted(fs.ls(directory, detail=False))
    except FileNotFoundError:
        return []
    seen = {r.run_id for r in known.runs} | {f.run_id for f in known.failures}
    found = []
    for path in listed:
        run_id = path.rsplit("/", 1)[-1].removesuffix(".json")
        if run_id in seen or not path.endswith(".json"):
            continue
        text = _read_text(fs, path)
        record = json.loads(text) if text is not None else {}
        if record.get("run_uri") is None and record.get("status") not in (None, "committed", "regressed"):
            error = record.get("error")
            found.append(Failure(run_id, str(record["status"]), int(record.get("exit_code", 1)), error and error[:400]))
    return found


def _add_runs(
    job: JobIndex,
    previous: Run | None,
    infos: list[RunInfo],
    results_uri: str,
    site_uri: str,
    options: Mapping[str, Any],
    site_options: Mapping[str, Any],
    reports: bool,
) -> tuple[JobIndex, Run | None]:
    """``job`` with the runs of ``infos`` (oldest first) summarised, each against the one before; and the newest run."""
    for info in infos:
        run = read_run(info.uri, options)
        report = None
        if reports:
            report = report_path(info.job, run.id)
            page = render_loaded(run, info.uri, previous, tolerance=run_tolerance(run), storage_options=options)
            plots.write_bytes(join(site_uri, report), page.encode("utf-8"), site_options)
        job = job.with_run(run, summarise(run, previous, _status(results_uri, run, options), report))
        previous = run
    return job, previous
