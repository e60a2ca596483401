"""A backfilled night (`--set vars.DATE=...`, configs/nightly.yaml's header) stands for the night it evaluates: it is
listed, gated against the night before it and windowed with the nights around it, not after the newest run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.cli import main
from pipelines.results import list_runs, load_run, trend
from pipelines.templating import as_of
from tests.conftest import write_job

TODAY = dt.datetime.now(dt.UTC).date()


def _night(root: Path, day: dt.date, seed: int, quality: float) -> None:
    rng = np.random.default_rng(seed)
    n = 2_000
    label = (rng.random(n) < 0.4).astype(np.int64)
    score = np.clip(quality * label + (1 - quality) * rng.random(n), 0, 1)
    directory = root / f"{day:%Y/%m/%d}"
    directory.mkdir(parents=True)
    pq.write_table(pa.table({"score": score, "label": label}), directory / "part-0.parquet")


def _job(tmp_path: Path) -> Path:
    spec = {
        "name": "nightly",
        "vars": {"root": str(tmp_path / "preds")},
        "data": {"path": "${root}/${DATE:%Y/%m/%d}/*.parquet", "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": [{"name": "roc_auc", "priority": "primary"}, "accuracy"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
        "window": {"days": 7},
        "baseline": {"run": "latest", "tolerance": 0.0},
    }
    return write_job(tmp_path / "job.yaml", spec)


def _run(job: Path, capsys, *assignments: str) -> int:
    argv = ["run", str(job), "--quiet"]
    for assignment in assignments:
        argv += ["--set", assignment]
    code = main(argv)
    capsys.readouterr()
    return code


def test_a_backfilled_night_is_ordered_gated_and_windowed_by_its_date(tmp_path, capsys) -> None:
    old, before_old = TODAY - dt.timedelta(days=16), TODAY - dt.timedelta(days=17)
    _night(tmp_path / "preds", before_old, 1, 0.5)  # a good night
    _night(tmp_path / "preds", old, 2, 0.2)  # the backfilled night: worse than the night before it
    _night(tmp_path / "preds", TODAY, 3, 0.45)
    job = _job(tmp_path)
    assert _run(job, capsys, f"vars.DATE={before_old}") == 0
    assert _run(job, capsys) == 3  # tonight (0.45) is gated against the night 17 days ago (0.5): worse
    out = tmp_path / "out"
    assert main(["site", str(out), "-o", str(tmp_path / "site")]) == 0  # then updated with the backfill below
    code = _run(job, capsys, f"vars.DATE={old}")
    runs = list_runs(str(out), "nightly")
    assert [r.timestamp.date() for r in runs] == [before_old, old, TODAY]  # the backfill sits between its neighbours
    backfill = load_run(runs[1].uri)
    # gated against the night before it (17 days ago), not tonight's run
    assert backfill.metadata["baseline"]["found"] == runs[0].run_id
    assert code == 3  # worse than the night before it
    assert dt.datetime.fromisoformat(backfill.metadata["started"]).date() == TODAY
    assert backfill.timestamp == dt.datetime.combine(old, dt.time.max, dt.UTC)  # after the runs of that night
    # `latest` is still tonight's run, and the trend reads the nights in date order
    latest = load_run(str(out / "nightly" / "latest"))
    assert latest.id == runs[2].run_id
    series = trend(str(out), "nightly", "roc_auc")
    assert [p.timestamp.date() for p in series.points] == [before_old, old, TODAY]
    # the backfill's 7-day window holds its night and the one before it, not tonight's
    merged = [load_run(w.uri) for w in list_runs(str(out), "nightly-7d")]
    (backfill_window,) = [w for w in merged if w.timestamp == backfill.timestamp]
    sources = [s["uri"] for s in backfill_window.metadata["merged_from"]]
    assert sources == [runs[0].uri, runs[1].uri]
    assert backfill_window.point("overall").metrics["rows"].value == 4_000
    # the site's latest value is tonight's (its runs table is a log of the runs as they ran, newest first)
    assert main(["site", str(out), "-o", str(tmp_path / "site")]) == 0
    capsys.readouterr()
    index = (tmp_path / "site" / "index.html").read_text()
    tonight = latest.point("overall").metrics["roc_auc"].value
    assert f'data-label="latest" data-value="{tonight!r}"' in index
    page = (tmp_path / "site" / "jobs" / "nightly.html").read_text()
    log = page.split('<section id="runs">', 1)[1]
    assert [log.index(r.run_id) for r in sorted(runs, key=lambda r: r.run_id, reverse=True)] == sorted(
        log.index(r.run_id) for r in runs
    )
    assert main(["site", str(out), "-o", str(tmp_path / "full")]) == 0  # a full rebuild: the same pages
    for name in ("index.html", "jobs/nightly.html"):
        assert (tmp_path / "site" / name).read_text() == (tmp_path / "full" / name).read_text()
    # the same night backfilled again: listed after the first backfill of it, whose place it takes in its window
    assert _run(job, capsys, f"vars.DATE={old}") == 3
    again = list_runs(str(out), "nightly")
    assert [r.run_id for r in again[:2]] == [runs[0].run_id, runs[1].run_id] and again[3].run_id == runs[2].run_id
    assert again[2].timestamp == again[1].timestamp and again[2].run_id > again[1].run_id
    newest_window = load_run(str(out / "nightly-7d" / "latest"))
    assert newest_window.timestamp == again[3].timestamp  # tonight's window stays the latest window run
    windows = [load_run(w.uri) for w in list_runs(str(out), "nightly-7d")]
    last_backfill_window = [w for w in windows if w.timestamp == backfill.timestamp][-1]
    assert [s["uri"] for s in last_backfill_window.metadata["merged_from"]] == [runs[0].uri, again[2].uri]


def test_only_an_earlier_day_is_a_backfill() -> None:
    now = dt.datetime(2026, 12, 6, 6, 16, 2, tzinfo=dt.UTC)
    assert as_of({}, now) == now
    assert as_of({"DATE": "2026-12-06"}, now) == now  # tonight's date pinned: tonight's run
    assert as_of({"DATE": "2026-12-07"}, now) == now  # a later day (a scheduler ahead of UTC): not stamped ahead
    assert as_of({"DATE": "2026-11-20"}, now) == dt.datetime(2026, 11, 20, 23, 59, 59, 999999, tzinfo=dt.UTC)
