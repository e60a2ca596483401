"""The results site's incremental index over hand-written runs (committed with the storage layer's protocol):
changes and regression verdicts equal hand-derived ones, a regeneration reads only what is new, a backfilled run
rebuilds its job in time order, ``since`` scopes the site, and the incremental index equals a full rebuild."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

import pytest
from fsspec.registry import register_implementation

from pipelines.errors import UserError
from pipelines.records import Metric, MetricDef, MetricDirection, MetricPriority, Point, Run
from pipelines.site import build_site
from pipelines.site_index import INDEX_FILE, Change, SiteIndex, last_run_file
from pipelines.storage import COMMIT_MARKER, RUN_FILE, new_run_id, run_location, write_run

JOB = "hand"
DEFS = {
    "auc": MetricDef("auc", direction=MetricDirection.HIGHER, priority=MetricPriority.PRIMARY),
    "loss": MetricDef("loss", direction=MetricDirection.LOWER),
    "rows": MetricDef("rows", direction=MetricDirection.INFO),
}
# (auc, loss) of the overall point per night, each with an interval of +-0.02; country=US is 0.01 lower in auc
NIGHTS = {
    "2026-11-18": (0.90, 0.30),
    "2026-11-19": (0.89, 0.35),  # auc worse by 0.01, 0.90 inside [0.87, 0.91]: not significant; loss regressed
    "2026-11-20": (0.80, 0.25),  # auc worse by 0.09, 0.89 outside [0.78, 0.82]: regressed; loss better
}


def _metric(value: float) -> Metric:
    return Metric(value, value - 0.02, value + 0.02)


def _commit(results: Path, day: str, auc: float, loss: float, job: str = JOB) -> Run:
    timestamp = dt.datetime.fromisoformat(day).replace(hour=3, minute=30, tzinfo=dt.UTC)
    points = tuple(
        Point(name, "hand", {}, {"auc": _metric(auc - shift), "loss": _metric(loss), "rows": Metric(100.0)})
        for name, shift in (("overall", 0.0), ("country=US", 0.01))
    )
    run = Run(points, new_run_id(timestamp), timestamp, "c0ffee", None, {}, {"job": job, "rows": 100}, DEFS)
    write_run(run_location(str(results), job, run.id, {}), run, job, (), {})
    return run


def _index(site: Path) -> SiteIndex:
    index = SiteIndex.from_json((site / INDEX_FILE).read_text())
    assert index is not None
    return index


def test_incremental_index_backfill_and_since(tmp_path):
    results, site = tmp_path / "results", tmp_path / "site"
    runs = [_commit(results, day, *values) for day, values in list(NIGHTS.items())[:2]]
    first = build_site(str(results), str(site), reports=False)
    assert (first.rebuilt, first.new_runs, first.jobs_written) == (True, 2, (JOB,))
    runs.append(_commit(results, "2026-11-20", *NIGHTS["2026-11-20"]))
    second = build_site(str(results), str(site), reports=False)
    assert (second.rebuilt, second.new_runs, second.jobs_written) == (False, 1, (JOB,))

    job = _index(site).jobs[JOB]
    assert [r.run_id for r in job.runs] == [r.id for r in runs]
    assert job.primary_metrics() == ["auc"]
    for run, summary in zip(runs, job.runs, strict=True):
        for point in run.points:
            for name in ("auc", "loss") if point.name == "overall" else ("auc",):  # slices: the primary metric
                m = point.metrics[name]
                assert summary.values[point.name][name] == (m.value, m.lower, m.upper)
    assert job.runs[0].changes == {}
    overall = [r.changes["overall"] for r in job.runs[1:]]
    expected = [
        {"auc": (0.01, False, False), "loss": (0.05, True, True)},
        {"auc": (0.09, True, True), "loss": (-0.10, True, False)},
    ]
    for got, want in zip(overall, expected, strict=True):
        for name, (worse_by, significant, regressed) in want.items():
            change = got[name]
            assert isinstance(change, Change) and change.p_value is None
            assert change.worse_by == pytest.approx(worse_by, abs=1e-12)
            assert (change.significant, change.regressed) == (significant, regressed)
    assert "loss" not in job.runs[1].changes["country=US"]  # slices keep only the primary metric
    assert [r.regressions for r in job.runs] == [0, 2, 2]  # loss of both points, then auc of both points

    page = (site / "jobs" / f"{JOB}.html").read_text()
    marked = re.findall(
        r'data-run-id="([^"]+)" data-value="[^"]*" data-lower="[^"]*" data-upper="[^"]*" '
        r'data-regressed="true"',
        page,
    )
    assert page.index('data-metric="auc"') < page.index('data-metric="loss"')
    assert marked == [runs[2].id, runs[1].id]  # page order: auc of the third run, then loss of the second

    nothing = build_site(str(results), str(site), reports=False)
    assert (nothing.new_runs, nothing.jobs_written) == (0, ())

    # a backfilled night, older than every indexed run: the job is rebuilt in time order
    early = _commit(results, "2026-11-17", 0.95, 0.20)
    backfill = build_site(str(results), str(site), reports=False)
    assert (backfill.rebuilt, backfill.new_runs) == (False, 4)
    job = _index(site).jobs[JOB]
    assert [r.run_id for r in job.runs] == [early.id, *(r.id for r in runs)]
    assert job.runs[1].changes["overall"]["auc"].regressed  # 0.95 -> 0.90, outside [0.88, 0.92]

    rebuilt = tmp_path / "rebuilt"
    assert build_site(str(results), str(rebuilt), reports=False).rebuilt
    assert (rebuilt / INDEX_FILE).read_text() == (site / INDEX_FILE).read_text()
    assert (rebuilt / "jobs" / f"{JOB}.html").read_text() == (site / "jobs" / f"{JOB}.html").read_text()

    (site / INDEX_FILE).write_text('{"version": 1, "results": ')  # a torn write: the site is rebuilt
    assert build_site(str(results), str(site), reports=False).rebuilt
    assert (site / INDEX_FILE).read_text() == (rebuilt / INDEX_FILE).read_text()

    since = build_site(str(results), str(site), since="2026-11-19", reports=False)
    assert (since.rebuilt, since.new_runs) == (True, 2)
    assert [r.run_id for r in _index(site).jobs[JOB].runs] == [r.id for r in runs[1:]]


def test_bad_locations_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such results location"):
        build_site(str(tmp_path / "nothing"), str(tmp_path / "site"))
    _commit(tmp_path / "results", "2026-11-18", 0.9, 0.3)
    with pytest.raises(UserError, match=r"job 'hnad' not found \(did you mean 'hand'\?\)"):
        build_site(str(tmp_path / "results"), str(tmp_path / "site"), job="hnad")
    assert not (tmp_path / "site").exists()


def test_regeneration_reads_the_index_and_the_new_run_only(tmp_path):
    """Through a filesystem counting every byte read: after one new run, the index, the last run's state, the new
    run's manifest (listed, then checked again by read_run) and its run.json; nothing of the older runs."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from bench_site import PROTOCOL, CountingFileSystem

    register_implementation(PROTOCOL, CountingFileSystem, clobber=True)
    results, site = tmp_path / "results", tmp_path / "site"
    for day in range(10, 20):
        _commit(results, f"2026-11-{day}", 0.9, 0.3)
    build_site(f"{PROTOCOL}://{results}", f"{PROTOCOL}://{site}", reports=False)
    state = [site / INDEX_FILE, site / last_run_file(JOB)]
    expected = sum(path.stat().st_size for path in state)
    new = _commit(results, "2026-11-20", 0.9, 0.3)
    run_dir = results / JOB / new.id
    expected += 2 * (run_dir / COMMIT_MARKER).stat().st_size + (run_dir / RUN_FILE).stat().st_size
    CountingFileSystem.reset()
    built = build_site(f"{PROTOCOL}://{results}", f"{PROTOCOL}://{site}", reports=False)
    assert built.new_runs == 1
    assert CountingFileSystem.bytes_read == expected
    assert CountingFileSystem.files_opened == 6  # the 4 files above, the manifest twice, the absent outcome record


def test_a_site_rebuilt_for_one_job_keeps_the_other_jobs(tmp_path):
    """``job`` with a new ``since`` (or ``rebuild``) rebuilds the site whole: the index kept only that job before,
    leaving the other jobs' pages unlinked until a build without filters."""
    results, site = tmp_path / "results", tmp_path / "site"
    for day, values in NIGHTS.items():
        for job in (JOB, "other"):
            _commit(results, day, *values, job=job)
    build_site(str(results), str(site), reports=False)
    assert sorted(_index(site).jobs) == [JOB, "other"]
    since = build_site(str(results), str(site), job=JOB, since="2026-11-19", reports=False)
    assert since.rebuilt and sorted(_index(site).jobs) == [JOB, "other"]
    for job in (JOB, "other"):
        assert [r.timestamp[:10] for r in _index(site).jobs[job].runs] == ["2026-11-19", "2026-11-20"]
    assert 'href="jobs/other.html"' in (site / "index.html").read_text()
    assert build_site(str(results), str(site), job="other", rebuild=True, reports=False).rebuilt
    assert sorted(_index(site).jobs) == [JOB, "other"] and len(_index(site).jobs[JOB].runs) == 3
    with pytest.raises(UserError, match=r"job 'hnad' not found \(did you mean 'hand'\?\)"):
        build_site(str(results), str(site), job="hnad", rebuild=True, reports=False)
