"""The results site: configs/nightly.yaml over three nights and a fourth whose scores were degraded (the planted
regression), each committed through ``evalpipe run`` with ``site:`` set, so the site is regenerated after every
run from its own index; the same site rebuilt at once by ``evalpipe site`` is identical. Every page renders in
headless Chromium with no error and no request outside the site, the regression is marked, and every trend
point carries exactly the value, lower and upper bound that ``load_runs`` reads back.

``EVALPIPE_SITE_SHOTS=DIR`` also copies the screenshots (index and job page, 1280 px and 390 px wide) to DIR.
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from pipelines.execute import run_job
from pipelines.outcome import Outcome, outcome_id, write_outcome
from pipelines.records import MetricDirection
from pipelines.results import compare_all, list_runs, load_run, load_runs
from pipelines.site import build_site
from pipelines.site_index import INDEX_FILE, SiteIndex, run_tolerance
from pipelines.synthetic import write_shards
from tests.test_notebook_nightly import COMMIT, JOB, NIGHTLY, NIGHTS, ROWS, SHARDS
from tests.test_object_storage import _load, _options, _spec
from tests.test_object_storage import s3 as s3
from tests.test_plots_report import PNG_SIGNATURE, _chromium, _headless, _with_scores

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")

PLANTED = "2026-11-21"  # the fourth night: the same model with noise on its logits
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?!data:)(?:[a-z][a-z0-9+.-]*:|//)|url\(|@import""", re.IGNORECASE)


def _degrade(paths: list[str], seed: int) -> None:
    """Add N(0, 1.5) noise to the logits of every shard's scores, in place."""
    rng = np.random.default_rng(seed)
    for path in paths:
        table = pq.read_table(path)
        score = table.column("score").to_numpy().astype(np.float64)
        logit = np.log(score / (1.0 - score)) + rng.normal(0.0, 1.5, len(score))
        pq.write_table(_with_scores(table, 1.0 / (1.0 + np.exp(-logit))), path)


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """``(results, site, exit codes)``: four nightly runs through the CLI, the site regenerated after each."""
    base = tmp_path_factory.mktemp("site")
    preds, results, site = base / "preds", base / "results", base / "site"
    codes = []
    failed = Outcome(1, JOB, outcome_id(), None, (), "the cluster lost its workers")
    for seed, day in enumerate((*NIGHTS, PLANTED), start=1):
        if day == PLANTED:  # a night that failed before committing, then the planted one
            assert write_outcome(str(results), {}, failed) is not None
        partition = preds / f"{dt.date.fromisoformat(day):%Y/%m/%d}"
        paths = write_shards(str(partition), "binary", ROWS, SHARDS, seed=seed)
        if day == PLANTED:
            _degrade(paths, seed)
        argv = ["run", str(NIGHTLY), "--runner", "local", "--quiet", "--commit", COMMIT]
        for assignment in (
            f"vars.root={preds}",
            f"vars.results={results}",
            f"vars.DATE={day}",
            "confidence.replicates=20",
            f"site={site}",
            "window=null",  # the nightly job's own runs only: its 7-day window runs are tested with merging
        ):
            argv += ["--set", assignment]
        codes.append(cli.main(argv))
    return results, site, codes, failed


def _pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


@pytest.mark.slow
def test_site_is_incremental_and_equals_a_full_rebuild(nights, tmp_path, capsys):
    results, site, codes, failed = nights
    assert codes[-1] == 3  # the nightly gate caught the planted regression
    runs = list_runs(str(results), JOB)
    assert len(runs) == 4
    index = SiteIndex.from_json((site / INDEX_FILE).read_text())
    assert index is not None and [r.run_id for r in index.jobs[JOB].runs] == [r.run_id for r in runs]
    assert [r.status for r in index.jobs[JOB].runs][-1] == "regressed"
    assert [f.run_id for f in index.jobs[JOB].failures] == [failed.run_id]
    page = (site / "jobs" / f"{JOB}.html").read_text()
    rows = re.findall(r'<tr data-run-id="([^"]+)"', page)
    assert rows == sorted([failed.run_id, *(r.run_id for r in runs)], reverse=True)  # newest first
    assert f'<tr data-run-id="{failed.run_id}" class="failed">' in page and "failed (exit 1)" in page

    rebuilt = tmp_path / "rebuilt"
    capsys.readouterr()
    assert cli.main(["site", str(results), "-o", str(rebuilt)]) == 0
    assert capsys.readouterr().out.strip() == f"site: {rebuilt}/index.html (rebuilt: 4 new runs)"
    assert (rebuilt / INDEX_FILE).read_text() == (site / INDEX_FILE).read_text()
    assert [p.relative_to(rebuilt) for p in _pages(rebuilt)] == [p.relative_to(site) for p in _pages(site)]
    for page in _pages(rebuilt):
        assert page.read_text() == (site / page.relative_to(rebuilt)).read_text(), page
    # nothing new: the index alone is read and nothing is added
    assert cli.main(["site", str(results), "-o", str(rebuilt)]) == 0
    assert capsys.readouterr().out.strip() == f"site: {rebuilt}/index.html (updated: 0 new runs)"


@pytest.mark.slow
def test_unknown_job_is_a_user_error(nights, tmp_path, capsys):
    results, _, _, _ = nights
    assert cli.main(["site", str(results), "-o", str(tmp_path / "s"), "--job", "churn-nightlly"]) == 2
    err = capsys.readouterr().err
    assert "job 'churn-nightlly' not found (did you mean 'churn-nightly'?)" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


PROBE = """<script>
window.__errors = [];
const __error = console.error.bind(console);
console.error = (...args) => { window.__errors.push(args.join(" ")); __error(...args); };
window.addEventListener("error", (e) => window.__errors.push(
  "error: " + (e.message || (e.target && (e.target.src || e.target.href)) || "?")), true);
window.addEventListener("load", () => {
  const svgData = (g) => ({metric: g.closest("svg").dataset.metric, point: g.closest("svg").dataset.point,
    run: g.dataset.runId, value: g.dataset.value, lower: g.dataset.lower, upper: g.dataset.upper,
    regressed: g.dataset.regressed});
  document.title = JSON.stringify({
    errors: window.__errors,
    resources: performance.getEntriesByType("resource").map((r) => r.name),
    points: Array.from(document.querySelectorAll("svg.trend g.point")).map(svgData),
    marked: Array.from(document.querySelectorAll("[data-regressed=true]")).length,
    tables: document.querySelectorAll("table").length,
    images: Array.from(document.images).filter((i) => i.complete && i.naturalWidth > 0).length,
    scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
    overflowing: Array.from(document.querySelectorAll("table.jobs, table.runs")).filter(
      (t) => t.parentElement.scrollWidth > t.parentElement.clientWidth).length,
  });
});
</script>"""


def _render(binary: str, page: Path, profile: Path, width: int) -> dict:
    """Load ``page`` (with the probe) in headless Chromium at ``width`` px; what the probe saw."""
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    try:
        dom = _headless(
            binary,
            profile,
            f"--window-size={width},900",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ).stdout
    finally:
        probe.unlink()
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None, dom[:500]
    return json.loads(html.unescape(title.group(1)))


@pytest.mark.slow
def test_pages_render_in_chromium_with_the_regression_and_the_runs_values(nights, tmp_path):
    binary = _chromium()
    results, site, _, _ = nights
    pages = _pages(site)
    assert {p.relative_to(site).as_posix() for p in pages} >= {"index.html", f"jobs/{JOB}.html"}
    assert len([p for p in pages if p.parent.name == JOB]) == 4  # one report per run
    for path in site.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".svg", ".css"):
            assert not EXTERNAL.search(path.read_text()), path
    seen = {}
    for page in pages:
        for width in (1280, 390) if page.parent == site or page.parent.name == "jobs" else (1280,):
            probe = _render(binary, page, tmp_path / "profile", width)
            assert probe["errors"] == [], (page, probe["errors"])
            site_root = site.resolve().as_uri()
            assert all(r.startswith(site_root) or r.startswith("data:") for r in probe["resources"]), probe
            assert probe["scroll"] <= probe["client"], (page, width, probe["scroll"], probe["client"])
            assert probe["overflowing"] == 0, (page, width)  # the jobs and runs tables fit without scrolling
            seen[(page.relative_to(site).as_posix(), width)] = probe

    # every trend point is a run's own value, interval and all
    frame = load_runs(str(results), JOB)
    assert isinstance(frame, pl.DataFrame)
    job_page = seen[(f"jobs/{JOB}.html", 1280)]
    shown = {(p["run"], p["metric"]): p for p in job_page["points"]}
    stored = frame.filter((pl.col("point") == "overall") & (pl.col("direction") != str(MetricDirection.INFO)))
    stored = stored.filter(pl.col("metric") != "rows")
    assert len(shown) == len(job_page["points"]) == stored.height == 4 * 9
    for row in stored.iter_rows(named=True):
        point = shown[(row["run_id"], row["metric"])]
        assert float(point["value"]) == row["value"]
        assert float(point["lower"]) == row["lower"] and float(point["upper"]) == row["upper"]

    # the regression markers are exactly the worsenings beyond the gate's tolerance that fall outside the newer
    # run's interval (the runs keep no replicates, so that is the significance test)
    runs = [load_run(r.uri) for r in list_runs(str(results), JOB)]
    expected = set()
    for before, after in itertools.pairwise(runs):
        for c in compare_all(before, after, run_tolerance(after)):
            metric = after.point(c.point).metrics[c.metric]
            if c.regressed and c.point == "overall" and not metric.lower <= c.baseline <= metric.upper:
                expected.add((after.id, c.metric))
    marked = {(p["run"], p["metric"]) for p in job_page["points"] if p["regressed"] == "true"}
    assert marked == expected
    planted = runs[-1].id
    assert {(planted, "roc_auc"), (planted, "average_precision")} <= marked
    index_page = seen[("index.html", 1280)]
    assert index_page["marked"] == 1  # roc_auc, the primary metric, regressed last night
    assert runs[-1].point("overall").metrics["roc_auc"].value < runs[-2].point("overall").metrics["roc_auc"].value
    report = seen[(f"runs/{JOB}/{planted}.html", 1280)]
    assert report["images"] == 5  # the run's report, with its figures, against the night before

    shots = tmp_path / "shots"
    shots.mkdir()
    for name, page in (("index", site / "index.html"), ("job", site / "jobs" / f"{JOB}.html")):
        for width, height in ((1280, 1400), (390, 1400)):
            shot = shots / f"site-{name}-{width}.png"
            _headless(
                binary,
                tmp_path / "profile",
                f"--screenshot={shot}",
                f"--window-size={width},{height}",
                "--force-device-scale-factor=1",
                page.as_uri(),
            )
            assert shot.read_bytes().startswith(PNG_SIGNATURE)
    target = os.environ.get("EVALPIPE_SITE_SHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, target)


@pytest.mark.slow
def test_site_on_s3_is_updated_from_its_index(tmp_path, s3, capsys):
    """Runs and site in one bucket of a loopback S3 server: the second regeneration reads one new run."""
    job = _load(tmp_path, _spec(tmp_path, s3, name="site-s3"))
    for _ in range(2):
        run_job(job, show_progress=False)
    site = "s3://results/site"
    first = build_site("s3://results/evals", site, storage_options=_options(s3))
    assert (first.rebuilt, first.new_runs, first.jobs_written) == (True, 2, ("site-s3",))
    third = run_job(job, show_progress=False)
    second = build_site("s3://results/evals", site, storage_options=_options(s3))
    assert (second.rebuilt, second.new_runs) == (False, 1)
    fs = s3["fs"]
    fs.invalidate_cache()
    index = SiteIndex.from_json(fs.cat(f"results/site/{INDEX_FILE}"))
    assert index is not None
    runs = list_runs("s3://results/evals", "site-s3", storage_options=_options(s3))
    assert [r.run_id for r in index.jobs["site-s3"].runs] == [r.run_id for r in runs]
    assert runs[-1].run_id == third.run.id
    page = fs.cat("results/site/jobs/site-s3.html").decode()
    assert f'data-run-id="{third.run.id}"' in page and not EXTERNAL.search(page)
    auc = third.run.point("overall").metrics["auc"]
    assert f'data-value="{auc.value!r}"' in page
    assert fs.exists(f"results/site/runs/site-s3/{third.run.id}.html")


def test_site_key_must_be_a_location(tmp_path, capsys):
    spec = tmp_path / "job.yaml"
    spec.write_text(NIGHTLY.read_text() + "site: [s3://a]\n")
    assert cli.main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    line = len(NIGHTLY.read_text().splitlines()) + 1
    assert f"{spec}: site (line {line}): expected a string, got list ['s3://a']." in err and "Traceback" not in err


def test_a_jobs_site_shows_its_window_run_too(tmp_path, capsys):
    """``site:`` with ``window:``: the window's run is committed as a job of its own (``{job}-2runs``), which the
    site left out until ``evalpipe site`` was run by hand."""
    import pyarrow as pa

    from tests.conftest import accuracy_job, write_job

    site = tmp_path / "site"
    for night, labels in enumerate(([0, 1, 1, 0], [1, 1, 1, 0])):
        data = tmp_path / f"night{night}.parquet"
        pq.write_table(pa.table({"score": [0.2, 0.8, 0.6, 0.4], "label": labels}), data)
        spec = accuracy_job("sis", str(data), {"uri": str(tmp_path / "out")})
        spec.update({"window": {"runs": 2}, "site": str(site)})
        assert cli.main(["run", str(write_job(tmp_path / "job.yaml", spec)), "--quiet"]) == 0
    index = SiteIndex.from_json((site / INDEX_FILE).read_text())
    assert index is not None and sorted(index.jobs) == ["sis", "sis-2runs"]
    window = index.jobs["sis-2runs"].runs[-1].values["overall"]["accuracy"]
    assert window[0] == pytest.approx(7 / 8)  # the two nights' 8 rows: 4 + 3 right
    assert 'href="jobs/sis-2runs.html"' in (site / "index.html").read_text()
