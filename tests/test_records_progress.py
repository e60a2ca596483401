"""Records round-trip, run ids sort by time, progress output, and the package boundaries."""

from __future__ import annotations

import ast
import datetime as dt
import io
import json
import math
from pathlib import Path

from pipelines.progress import Progress
from pipelines.records import Metric, MetricDef, MetricDirection, Point, Run, TrendSeries, is_higher_better
from pipelines.storage import new_run_id

ROOT = Path(__file__).resolve().parent.parent


def test_run_round_trips_through_json_with_nan_as_null():
    run = Run(
        points=(
            Point("overall", "data/*.parquet", {}, {"auc": Metric(0.9, 0.88, 0.92), "mcc": Metric(math.nan)}),
            Point("country=US", "data/*.parquet", {"country": "US"}, {"auc": Metric(0.8, samples=(0.79, 0.81))}),
        ),
        id="20261123T000000000Z-abcdef",
        timestamp=dt.datetime(2026, 11, 23, 1, 2, 3, tzinfo=dt.UTC),
        commit="abc",
        metric_defs={"auc": MetricDef("auc", direction=MetricDirection.HIGHER)},
    )
    text = json.dumps(run.to_dict(), allow_nan=False)
    back = Run.from_dict(json.loads(text))
    assert back.point("overall").metrics["auc"] == Metric(0.9, 0.88, 0.92)
    assert math.isnan(back.point("overall").metrics["mcc"].value)
    assert back.point("country=US").metrics["auc"].samples == (0.79, 0.81)
    assert back.timestamp == run.timestamp and back.timestamp.tzinfo is not None
    assert back.metric_defs == run.metric_defs
    assert is_higher_better(back.metric_defs["auc"]) and not is_higher_better(MetricDef("x", direction="lower"))
    assert TrendSeries.from_dict(TrendSeries("auc", "overall").to_dict()) == TrendSeries("auc", "overall")


def test_run_ids_sort_by_time():
    t0 = dt.datetime(2026, 1, 31, 23, 59, 59, 999_000, tzinfo=dt.UTC)
    later = [t0 + dt.timedelta(milliseconds=k) for k in (1, 1000, 86_400_000)]
    ids = [new_run_id(t) for t in [t0, *later]]
    assert sorted(ids) == ids and len(set(ids)) == 4
    assert ids[0].startswith("20260131T235959999Z-")


def test_progress_bar_on_terminal_and_log_lines_otherwise():
    tty = io.StringIO()
    bar = Progress(4, 400, stream=tty, interactive=True)
    for _ in range(4):
        bar.advance(100)
    assert "\r[" in tty.getvalue() and "4/4 units" in tty.getvalue() and "rows/s" in tty.getvalue()
    assert "ETA" in tty.getvalue() and tty.getvalue().endswith("\n")

    log = io.StringIO()
    quiet = Progress(1000, 1000, stream=log, interactive=False, log_every=3600)
    for _ in range(1000):
        quiet.advance(1)
    lines = log.getvalue().splitlines()
    # No redraws in a log: the first unit and the last one only (the interval is an hour).
    assert len(lines) == 2 and lines[-1].startswith("evalpipe: [") and "1000/1000 units" in lines[-1]
    assert "\r" not in log.getvalue()


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_evaluators_know_nothing_of_pipelines_ray_storage_or_yaml():
    assert not _imports("evaluators") & {"pipelines", "ray", "fsspec", "yaml", "pyarrow", "polars"}


def test_only_the_ray_runner_imports_ray():
    """The Ray runner, and ``evalpipe submit`` (Ray's Jobs API client, imported when that command runs)."""
    importers = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "pipelines").rglob("*.py")
        if "ray" in {n.split(".")[0] for n in _module_imports(p)}
    }
    assert importers == {"pipelines/runners/ray.py", "pipelines/submit.py"}
    cli = (ROOT / "pipelines" / "cli.py").read_text()
    assert "from pipelines.submit import" in cli and "\nfrom pipelines.submit" not in cli  # only inside cmd_submit


def _module_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_metric_defs_describe_a_metric_in_its_first_sentence_and_keep_one_primary_key():
    """A description was the docstring's first line, cut mid-sentence ("... ``mode: binned`` is exact while the rows
    hold"); a primary metric's bound (``roc_auc.error_bound``) was primary too, two primary metrics in one run."""
    from evaluators import catalog
    from evaluators.task import Task
    from pipelines.reduce import metric_defs
    from pipelines.spec import MetricSpec

    metrics = [
        (MetricSpec("roc_auc", "roc_auc", {}, "primary"), catalog.build("roc_auc", Task("binary"))),
        (MetricSpec("ndcg", "ndcg", {}, "secondary"), catalog.build("ndcg", Task("ranking"))),
        (MetricSpec("bleu", "bleu", {}, "secondary"), catalog.build("bleu", Task("text"))),
    ]
    keys = ["roc_auc", "roc_auc.error_bound", "ndcg", "ndcg.queries", "bleu", "bleu.sys_len", "bleu.precision_1"]
    defs = metric_defs(metrics, [*keys, "rows"])
    assert defs["roc_auc"].description == "Area under the ROC curve (one-vs-rest for multiclass)."
    assert defs["ndcg"].description.endswith("tie-averaged).") and "\n" not in defs["ndcg"].description
    assert [k for k, d in defs.items() if d.priority == "primary"] == ["roc_auc"]
    assert defs["roc_auc.error_bound"].priority == defs["ndcg.queries"].priority == "tertiary"
    # counts beside a headline rank nothing: a run with fewer queries or shorter outputs is no regression
    assert defs["ndcg.queries"].direction == defs["bleu.sys_len"].direction == "info"
    assert defs["bleu.precision_1"].direction == "higher"
    from pipelines.reduce import _summary

    kid = _summary(catalog.factory("kid").__doc__)  # (a period in code ends no sentence: it was cut at "(x .")
    assert kid.endswith("``(x . y / d + 1)^3`` on one deterministic subset.")
    assert "(mean_average_precision)" in _summary(catalog.factory("mean_average_precision").__doc__)


def test_units_read_back_from_checkpoints_count_as_done_but_not_in_the_rate_or_eta():
    # after resuming 12 of 20 units, the first computed unit showed 716 rows/s where the workers did 230
    stream = io.StringIO()
    progress = Progress(20, 20_000, stream=stream, interactive=True)
    for _ in range(12):
        progress.advance(1_000, resumed=True)
    assert stream.getvalue() == ""  # (no bar while checkpoints are read back: Ray's log lines came between)
    progress.restart_clock()
    progress.advance(1_000)
    line = progress.line(now=progress.started + 4.0)  # 1,000 rows computed in 4 s
    assert "13/20 units" in line and "250 rows/s" in line and "ETA 0:28" in line  # 7,000 rows left at 250 rows/s
