"""The command line as a new user and the person on call meet it: version, the run's outcome, the recorded
commit, one-paragraph errors (exit 2) for what the user can fix, and comparisons that refuse to pass silently."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn import metrics as skm

from pipelines import __version__
from pipelines.cli import main
from pipelines.errors import UserError
from pipelines.outcome import OUTCOME_PREFIX, OUTCOMES_DIR, outcome_uri, parse_outcome
from pipelines.results import load_runs, trend
from pipelines.storage import read_run
from pipelines.synthetic import concatenated, write_shards

ROWS = 3_000


def _job(tmp: Path, name: str, data: str, output: Path, **extra) -> Path:
    spec = {
        "name": name,
        "data": {"path": data, "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": [
            "accuracy",
            {"name": "roc_auc", "mode": "exact", "as": "roc_auc", "priority": "primary"},
            "f1_score",
            "confusion_matrix",
        ],
        "execution": {"runner": "local"},
        "output": {"uri": str(output)},
        **extra,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, object]:
    """Two runs of job ``gate`` (the second on other data) and one of job ``other``, run through the CLI."""
    tmp = tmp_path_factory.mktemp("cli")
    first = write_shards(str(tmp / "a"), "binary", ROWS, 2, seed=1)
    write_shards(str(tmp / "b"), "binary", ROWS, 2, seed=2)
    output = tmp / "results"
    gate = _job(tmp, "gate", str(tmp / "a" / "*.parquet"), output)
    other = _job(tmp, "other", str(tmp / "b" / "*.parquet"), output)
    runs = {}
    for key, argv in {
        "first": ["run", str(gate), "--quiet", "--commit", "c0ffee", "--branch", "main"],
        "second": ["run", str(gate), "--quiet", "--set", f"data.path={tmp / 'b' / '*.parquet'}"],
        "other": ["run", str(other), "--quiet"],
    }.items():
        code = main(argv)
        assert code == 0, key
        runs[key] = read_run(
            sorted(p for p in (output / argv[1].rsplit("/", 1)[-1][:-5]).iterdir() if "T" in p.name)[-1].as_posix()
        )
    return {"tmp": tmp, "output": output, "gate": gate, "runs": runs, "paths": first}


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"evalpipe {__version__}"
    installed = subprocess.run([sys.executable, "-m", "pip", "show", "evalpipe"], capture_output=True, text=True)
    version = next(line.split(": ", 1)[1] for line in installed.stdout.splitlines() if line.startswith("Version: "))
    assert __version__ == version


def test_outcome_of_a_committed_run_and_the_recorded_commit(results, capsys) -> None:
    output: Path = results["output"]
    first = results["runs"]["first"]
    assert (first.commit, first.branch) == ("c0ffee", "main")
    data = concatenated(results["paths"], ["score", "label"])
    y, p = data["label"].astype(np.int64), data["score"].astype(np.float64)
    assert first.point("overall").metrics["roc_auc"].value == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    outcome = json.loads((output / OUTCOMES_DIR / "gate" / f"{first.id}.json").read_text())
    assert outcome == {
        "status": "committed",
        "exit_code": 0,
        "job": "gate",
        "run_id": first.id,
        "run_uri": str(output / "gate" / first.id),
        "regressions": [],
        "error": None,
    }


def test_commit_from_the_environment_and_outcome_as_last_line(results, capsys, monkeypatch) -> None:
    monkeypatch.setenv("EVALPIPE_COMMIT", "feedbeef")
    monkeypatch.setenv("EVALPIPE_BRANCH", "release")
    code, out, _ = _run(["run", str(results["gate"]), "--quiet"], capsys)
    assert code == 0
    outcome = parse_outcome(out)
    *_, run_line, last = out.rstrip().splitlines()
    assert last.startswith(OUTCOME_PREFIX) and run_line == f"run: {outcome['run_uri']}"
    run = read_run(outcome["run_uri"])
    assert (run.commit, run.branch) == ("feedbeef", "release")


def test_regressed_run_outcome_lists_the_regressions(results, capsys) -> None:
    """A baseline gate: the second data set's accuracy is compared with the first's (same job)."""
    tmp: Path = results["tmp"]
    baseline = str(results["output"] / "gate" / results["runs"]["first"].id)
    good, bad = results["runs"]["first"], results["runs"]["second"]
    worse = good.point("overall").metrics["accuracy"].value > bad.point("overall").metrics["accuracy"].value
    code, out, _ = _run(
        [
            "run",
            str(results["gate"]),
            "--quiet",
            "--set",
            f"data.path={tmp / 'b' / '*.parquet'}",
            "--set",
            f"baseline.run={baseline}",
        ],
        capsys,
    )
    outcome = parse_outcome(out)
    regressed = {r["metric"] for r in outcome["regressions"]}
    assert ("accuracy" in regressed) == worse
    assert code == (3 if regressed else 0) and outcome["exit_code"] == code
    assert outcome["status"] == ("regressed" if regressed else "committed")
    on_disk = json.loads(Path(outcome_uri(str(results["output"]), "gate", outcome["run_id"])).read_text())
    assert on_disk == outcome


def test_user_error_outcome_is_printed_and_nothing_written(results, capsys) -> None:
    code, out, err = _run(["run", str(results["gate"]), "--quiet", "--set", "data.path=/nonexistent/*.parquet"], capsys)
    assert code == 2 and "Traceback" not in err and "/nonexistent" in err and err.count("\n") == 1
    outcome = parse_outcome(out)
    assert outcome["status"] == "user_error" and outcome["run_uri"] is None and "/nonexistent" in outcome["error"]
    assert not Path(outcome_uri(str(results["output"]), "gate", outcome["run_id"])).exists()
    assert not (results["output"] / "gate" / outcome["run_id"]).exists()


def test_missing_backbone_weights_exit_2_in_validate_and_run(tmp_path: Path, capsys) -> None:
    write_shards(str(tmp_path / "text"), "text", 100, 1, seed=0)
    for command in ("validate", "run"):
        code, _, err = _run(
            [
                command,
                "configs/text.yaml",
                "--set",
                f"data.path={tmp_path / 'text'}",
                "--set",
                f"backbone.weights={tmp_path / 'no-such-model'}",
                "--set",
                f"output.uri={tmp_path / 'out'}",
            ],
            capsys,
        )
        assert code == 2, err
        assert f"backbone.weights '{tmp_path / 'no-such-model'}': no such file or directory" in err
        assert "Traceback" not in err
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.json").write_text("{}")
    code, _, err = _run(
        [
            "validate",
            "configs/text.yaml",
            "--set",
            f"data.path={tmp_path / 'text'}",
            "--set",
            f"backbone.weights={tmp_path / 'partial'}",
        ],
        capsys,
    )
    assert code == 2 and "lacks model.safetensors, tokenizer.json" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()  # (a cnn directory without its weights passed validate and failed in the run)
    code, _, err = _run(
        ["validate", "configs/image.yaml", "--set", f"backbone.weights={tmp_path / 'empty'}"],
        capsys,
    )
    assert code == 2 and "backbone.weights" in err and "lacks model.safetensors or model.npz" in err, err


def test_missing_object_store_credentials_exit_2(results, capsys, monkeypatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, out, err = _run(
        [
            "run",
            str(results["gate"]),
            "--quiet",
            "--output",
            "s3://evalpipe-no-credentials/evals",
            "--set",
            "output.storage_options.endpoint_url=http://127.0.0.1:9",
        ],
        capsys,
    )
    assert code == 2, err
    assert "no credentials for the object store" in err and "Traceback" not in err
    assert parse_outcome(out)["status"] == "user_error"


def test_runs_names_what_exists(results, capsys) -> None:
    output = str(results["output"])
    code, out, err = _run(["runs", output, "--job", "gate"], capsys)
    assert code == 0 and "committed runs" in out
    code, _, err = _run(["runs", output, "--job", "gatee"], capsys)
    assert code == 2 and "job 'gatee' not found (did you mean 'gate'?)" in err and "gate, other" in err
    code, _, err = _run(["runs", str(results["tmp"] / "nonexistent")], capsys)
    assert code == 2 and "no such results location" in err
    code, _, err = _run(["runs", output, "--since", "yesterday"], capsys)
    assert code == 2 and "since 'yesterday': expected an ISO date" in err


def test_load_runs_and_trend_name_what_exists(results) -> None:
    output = str(results["output"])
    with pytest.raises(UserError, match=r"job 'gte' not found \(did you mean 'gate'\?\)"):
        load_runs(output, job="gte")
    with pytest.raises(UserError, match=r"metric 'roc_acu' not found \(did you mean 'roc_auc'\?\)"):
        trend(output, "gate", "roc_acu")
    with pytest.raises(UserError, match=r"point 'overal' not found"):
        trend(output, "gate", "roc_auc", point="overal")
    assert len(trend(output, "gate", "roc_auc").points) >= 2


def test_compare_refuses_unknown_names_and_other_jobs(results, capsys) -> None:
    output = results["output"]
    runs = results["runs"]
    first, second = (str(output / "gate" / runs[k].id) for k in ("first", "second"))
    other = str(output / "other" / runs["other"].id)
    code, out, err = _run(["compare", first, second, "--metric", "recal"], capsys)
    assert code == 2 and "metric 'recal' not found" in err and "roc_auc" in err
    code, _, err = _run(["compare", first, second, "--point", "overal"], capsys)
    assert code == 2 and "point 'overal' not found (did you mean 'overall'?)" in err
    code, _, err = _run(["compare", first, second, "--tolerance", "roc_acu=0.01"], capsys)
    assert code == 2 and "tolerance for metric 'roc_acu' not found (did you mean 'roc_auc'?)" in err
    code, _, err = _run(["compare", first, other], capsys)
    assert code == 2 and "job 'gate'" in err and "job 'other'" in err and "--force" in err
    code, out, _ = _run(["compare", first, other, "--force", "--all", "--metric", "accuracy"], capsys)
    assert code in (0, 3) and "1 metrics compared" in out
    # default tolerance 0: any worsening regresses
    a, b = runs["first"].point("overall").metrics, runs["second"].point("overall").metrics
    worse = [m for m in ("accuracy", "roc_auc", "f1_score") if b[m].value < a[m].value]
    code, out, _ = _run(["compare", first, second], capsys)
    assert f"3 metrics compared, {len(worse)} regressed" in out
    assert code == (3 if worse else 0)


def test_compare_tolerances_name_keys_with_parameters_and_bucket_points_are_listed(tmp_path, capsys) -> None:
    """A metric entry without ``as:`` is keyed ``name(param=value,...)``: ``--tolerance`` split such a key at its
    ``=`` and its commas (exit 2, "expected a number or NAME=NUMBER pairs"), so no per-metric tolerance could name it.
    And an unknown ``--point`` listed the points without bucket points (``score=[0.5, inf)``): the names shown
    could not be the ones a user needed."""
    write_shards(str(tmp_path / "a"), "binary", ROWS, 2, seed=3)
    write_shards(str(tmp_path / "b"), "binary", ROWS, 2, seed=4)
    metrics = [
        {"name": "roc_auc", "mode": "exact"},
        {"name": "average_precision", "mode": "binned", "precision_bits": 10},
    ]
    job = _job(
        tmp_path, "keys", str(tmp_path / "a"), tmp_path / "out", slices=[{"column": "score", "boundaries": [0.5]}]
    )
    spec = yaml.safe_load(job.read_text())
    job.write_text(yaml.safe_dump({**spec, "metrics": metrics}, sort_keys=False))
    assert main(["run", str(job), "--quiet"]) == 0
    assert main(["run", str(job), "--quiet", "--set", f"data.path={tmp_path / 'b'}"]) == 0
    capsys.readouterr()
    first, second = sorted(str(p) for p in (tmp_path / "out" / "keys").iterdir() if "T" in p.name)
    auc, ap = "roc_auc(mode=exact)", "average_precision(mode=binned,precision_bits=10)"
    before, after = (read_run(r).point("overall").metrics for r in (first, second))
    assert set(before) >= {auc, ap} and before[auc].value != after[auc].value
    if after[auc].value > before[auc].value:  # (the baseline: the run of the higher ROC-AUC)
        (first, second), (before, after) = (second, first), (after, before)
    worse = before[auc].value - after[auc].value
    selected = ["--point", "overall", "--metric", auc, "--metric", ap]
    for tolerance, code_wanted, regressed in (
        (f"{auc}=1,{ap}=1,*=0", 0, 0),  # (every worsening of these two allowed)
        (f"{auc}={worse / 2:.12g},{ap}=1", 3, 1),  # (ROC-AUC worsened by more than its tolerance)
    ):
        code, out, err = _run(["compare", first, second, *selected, "--tolerance", tolerance], capsys)
        assert code == code_wanted and f"2 metrics compared, {regressed} regressed" in out, (out, err)

    code, _, err = _run(["compare", first, second, "--point", "score=XX"], capsys)
    assert code == 2 and "point 'score=XX' not found" in err
    assert "score=[-inf, 0.5)" in err and "score=[0.5, inf)" in err and "overall" in err, err


@pytest.mark.parametrize("tolerance", ["nan", "-1", "inf", "accuracy=nan", "roc_auc=0.01,*=-0.5", "*=-inf"])
def test_compare_refuses_a_tolerance_that_is_not_finite_and_at_least_0(results, capsys, tolerance) -> None:
    output, runs = results["output"], results["runs"]
    first, second = (str(output / "gate" / runs[k].id) for k in ("first", "second"))
    code, out, err = _run(["compare", first, second, "--tolerance", tolerance], capsys)
    assert code == 2 and "Traceback" not in err and "metrics compared" not in out, (code, err)
    assert f"--tolerance {tolerance!r}" in err and "finite number of at least 0" in err, err


def test_compare_force_of_runs_with_no_metric_in_common_exits_2_naming_both(results, capsys) -> None:
    tmp, output, runs = results["tmp"], results["output"], results["runs"]
    regression = tmp / "reg.yaml"
    regression.write_text(
        yaml.safe_dump(
            {
                "name": "reg",
                "data": {"path": str(tmp / "a" / "*.parquet"), "columns": {"predictions": "score", "targets": "label"}},
                "task": "regression",
                "metrics": ["mse"],
                "execution": {"runner": "local"},
                "output": {"uri": str(output)},
            }
        )
    )
    assert main(["run", str(regression), "--quiet"]) == 0
    capsys.readouterr()
    reg = next(p for p in (output / "reg").iterdir() if "T" in p.name)
    first = str(output / "gate" / runs["first"].id)
    code, out, err = _run(["compare", first, str(reg), "--force"], capsys)
    assert code == 2 and "metrics compared" not in out and "Traceback" not in err, (code, out, err)
    assert "no metric in common" in err and "metrics accuracy, f1_score, roc_auc and" in err and "mse" in err
    assert "job 'gate'" in err and "job 'reg'" in err, err


def test_show_latest_filters_formats_and_collapsed_vectors(results, capsys) -> None:
    output = results["output"]
    runs = results["runs"]
    latest = read_run(str(output / "gate" / sorted(p.name for p in (output / "gate").iterdir() if "T" in p.name)[-1]))
    code, out, _ = _run(["show", f"{output}/gate/latest", "--metric", "roc_auc", "--format", "json"], capsys)
    assert code == 0
    shown = json.loads(out)
    assert shown["run_id"] == latest.id
    assert [(m["metric"], m["value"]) for m in shown["metrics"]] == [
        ("roc_auc", latest.point("overall").metrics["roc_auc"].value)
    ]
    first = output / "gate" / runs["first"].id
    code, out, _ = _run(["show", str(first), "--metric", "confusion_matrix", "--format", "csv"], capsys)
    lines = list(csv.reader(io.StringIO(out)))
    assert lines[0] == ["point", "metric", "value", "lower", "upper"] and len(lines) == 1 + 4
    matrix = runs["first"].point("overall").metrics
    assert lines[1] == ["overall", "confusion_matrix[0,0]", str(matrix["confusion_matrix[0,0]"].value), "", ""]
    # text: the 2 x 2 matrix is one row unless --all
    code, out, _ = _run(["show", str(first)], capsys)
    cells = ", ".join(str(int(matrix[f"confusion_matrix[{i},{j}]"].value)) for i in (0, 1) for j in (0, 1))
    assert f"confusion_matrix[…]  4 values: {cells}" in out and "confusion_matrix[0,1]" not in out
    assert "(1 vector collapsed: evalpipe show RUN --all lists every entry)" in out
    code, out, _ = _run(["show", str(first), "--all", "--point", "overall"], capsys)
    assert "confusion_matrix[0,1]" in out and "collapsed" not in out
    code, _, err = _run(["show", str(first), "--metric", "roc_acu"], capsys)
    assert code == 2 and "metric 'roc_acu' not found (did you mean 'roc_auc'?)" in err
    code, _, err = _run(["show", str(first), "--point", "US"], capsys)
    assert code == 2 and "point 'US' not found" in err


def test_runs_lists_rows_commit_and_primary_metric(results, capsys) -> None:
    first = results["runs"]["first"]
    code, out, _ = _run(["runs", str(results["output"]), "--job", "gate"], capsys)
    assert code == 0
    header, _, row = out.splitlines()[:3]
    assert header.split()[:8] == [
        "job",
        "run",
        "id",
        "time",
        "(UTC)",
        "rows",
        "commit",
        "primary",
    ]  # (a backfill: its night)
    roc = first.point("overall").metrics["roc_auc"].value
    assert row.split()[:7] == [
        "gate",
        first.id,
        *row.split()[2:4],
        str(ROWS * 2 // 2),
        "c0ffee",
        f"roc_auc={roc:.6f}".rstrip("0"),
    ]


def test_run_repr_html_in_a_notebook(results) -> None:
    run = results["runs"]["first"]
    page = run._repr_html_()
    assert run.id in page and "c0ffee" in page and f"{ROWS} rows" in page
    roc = run.point("overall").metrics["roc_auc"].value
    assert f"<td>overall</td><td>roc_auc</td><td>{roc:.6g}</td>" in page
    assert "<td>overall</td><td>confusion_matrix[…]</td><td>4 values</td>" in page
    assert "confusion_matrix[0,1]" not in page


def test_empty_load_runs_has_the_dtypes_of_a_non_empty_one(results) -> None:
    import polars as pl

    output = str(results["output"])
    full = load_runs(output, job="gate")
    empty = load_runs(output, job="gate", since="2100-01-01")
    assert empty.height == 0 and full.height > 0
    assert empty.schema == full.schema
    assert pl.concat([empty, full]).height == full.height


def test_units_are_sized_for_the_actors(tmp_path: Path, capsys) -> None:
    """4,000 rows in row groups of 100: one unit with the default unit_rows; with 2 actors, one unit each; a
    backbone job (rows cost far more) gets 4 units per actor."""
    write_shards(str(tmp_path / "binary"), "binary", 4_000, 1, seed=0, row_group_rows=100)
    job = _job(tmp_path, "units", str(tmp_path / "binary" / "*.parquet"), tmp_path / "out")
    # 3 actors: units of at most ceil(4000 / 3) = 1334 rows, cut at row groups: 1300, 1300, 1300, 100
    for actors, units in ((None, 1), (1, 1), (2, 2), (3, 4)):
        extra = ["--set", f"execution.actors={actors}"] if actors else []
        code, out, err = _run(["validate", str(job), *extra], capsys)
        assert code == 0, err
        assert f"4000 rows, {units} work unit{'s' if units > 1 else ''};" in out, (actors, out)
    write_shards(str(tmp_path / "text"), "text", 4_000, 1, seed=0, row_group_rows=100)
    (tmp_path / "model").mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (tmp_path / "model" / name).write_bytes(b"")
    code, out, err = _run(
        [
            "validate",
            "configs/text.yaml",
            "--set",
            f"data.path={tmp_path / 'text'}",
            "--set",
            f"backbone.weights={tmp_path / 'model'}",
        ],
        capsys,
    )
    assert code == 0, err
    assert "4000 rows, 8 work units" in out  # configs/text.yaml: 2 actors


WIDTH_PROBE = """<script>
window.addEventListener("load", () => {
  const box = document.querySelector("table.metrics").parentElement;
  document.title = JSON.stringify({scroll: box.scrollWidth, client: box.clientWidth,
                                   page: document.documentElement.clientWidth,
                                   right: document.querySelector("table.metrics").getBoundingClientRect().right});
});
</script>"""


@pytest.mark.slow
def test_report_of_the_example_job_fits_a_1280_px_page(results, tmp_path: Path, capsys) -> None:
    """configs/binary.yaml's 14 metrics (23 columns with vector entries left out) in a 1280 px window: the metric
    table needs no horizontal scrolling."""
    from tests.test_plots_report import _chromium, _headless

    binary = _chromium()
    code, _, err = _run(
        [
            "run",
            "configs/binary.yaml",
            "--runner",
            "local",
            "--quiet",
            "--set",
            f"data.path={results['tmp'] / 'a'}",
            "--output",
            str(tmp_path / "out"),
        ],
        capsys,
    )
    assert code == 0, err
    report = tmp_path / "report.html"
    code, out, err = _run(["report", f"{tmp_path / 'out'}/churn-binary/latest", "-o", str(report)], capsys)
    assert code == 0 and out.strip() == f"report: {report}", err
    page = tmp_path / "probe.html"
    page.write_text(report.read_text().replace("</body>", WIDTH_PROBE + "</body>"))
    dom = _headless(
        binary,
        tmp_path / "profile",
        "--window-size=1280,2000",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ).stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None, dom[:500]
    probe = json.loads(html.unescape(title.group(1)))
    assert probe["scroll"] <= probe["client"] and probe["right"] <= probe["page"], probe


def test_precision_recall_figure_is_titled_by_its_point(tmp_path: Path, capsys) -> None:
    """A multiclass job with roc_auc only: the curves come from roc_auc's statistic, the title names the curve."""
    from pipelines.plots import precision_recall_figure
    from pipelines.results import load_statistics

    write_shards(str(tmp_path / "mc"), "multiclass", 2_000, 1, seed=0, num_classes=4)
    spec = {
        "name": "mc",
        "data": {"path": str(tmp_path / "mc"), "columns": {"predictions": "probs", "targets": "label"}},
        "task": {"kind": "multiclass", "num_classes": 4},
        "metrics": ["roc_auc"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    (tmp_path / "mc.yaml").write_text(yaml.safe_dump(spec))
    code, out, err = _run(["run", str(tmp_path / "mc.yaml"), "--quiet"], capsys)
    assert code == 0, err
    fig = precision_recall_figure(load_statistics(parse_outcome(out)["run_uri"]))
    assert fig.axes[0].get_title() == "Precision-recall - overall"


def test_paths_of_the_wrong_kind_and_a_damaged_run_exit_2_in_a_sentence(results, capsys, tmp_path: Path) -> None:
    """A directory where a file goes, a file where a directory goes, and a run.json damaged after the commit (its
    size unchanged) ended in tracebacks."""
    run = sorted(p for p in (results["output"] / "gate").iterdir() if "T" in p.name)[0]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        (["report", str(run), "-o", str(tmp_path)], f"{tmp_path} is a directory where a file was expected"),
        (["report", str(run), "-o", str(a_file / "r.html")], "where a directory was expected"),
        (["runs", str(a_file)], f"{a_file}: a file, not a results location"),
        (["merge", str(run), "--name", "m", "--output", str(a_file)], "where a directory was expected"),
    ]
    for argv, needle in cases:
        code, _, err = _run(argv, capsys)
        assert code == 2 and needle in err and "Traceback" not in err and err.count("\n") == 1, (argv, err)
    damaged = tmp_path / "damaged"

    shutil.copytree(run, damaged)
    size = (damaged / "run.json").stat().st_size
    (damaged / "run.json").write_text("{" + " " * (size - 1))
    code, _, err = _run(["show", str(damaged)], capsys)
    assert code == 2 and "run.json is unreadable although it has the size" in err and "Traceback" not in err, err
    # valid JSON without its points (or a point without its metrics), padded to the size: read as an empty run
    record = json.loads((run / "run.json").read_text())
    for spoil, named in (
        (lambda r: r.pop("points"), "KeyError: 'points'"),
        (lambda r: r["points"][0].pop("metrics"), "points[0].metrics"),
    ):
        spoiled = dict(record, points=[dict(p) for p in record["points"]])
        spoil(spoiled)
        text = json.dumps(spoiled)
        (damaged / "run.json").write_text(text + " " * (size - len(text.encode())))
        listed = tmp_path / "listed" / "gate" / run.name  # (where `runs` finds it)
        shutil.rmtree(listed.parent.parent, ignore_errors=True)
        shutil.copytree(damaged, listed)
        for argv in (["show", str(damaged)], ["runs", str(listed.parent.parent)]):
            code, _, err = _run(argv, capsys)
            assert code == 2 and "run.json is unreadable although it has the size" in err and named in err, err


def test_output_cut_short_by_the_reader_is_no_internal_error(results) -> None:
    """`evalpipe show RUN --all | head -1`: the reader closes the pipe; that was a BrokenPipeError traceback, exit 1."""
    run = sorted(p for p in (results["output"] / "gate").iterdir() if "T" in p.name)[0]
    script = f"{sys.executable} -m pipelines show {run} --all | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, cwd=Path.cwd())
    assert done.returncode == 0 and done.stdout.startswith(f"run {run.name}"), done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_python_api_takes_latest_as_the_command_line_does(results) -> None:
    """`{output}/{job}/latest` works for `show` and `compare`; `load_run`, `compare` and `load_statistics` said "no
    evalpipe run here"."""
    from pipelines.results import compare, list_runs, load_run, load_statistics

    latest = f"{results['output']}/gate/latest"
    newest = load_run(list_runs(str(results["output"]), "gate")[-1].uri)  # (other tests add runs of the job)
    assert load_run(latest).id == newest.id
    assert compare(latest, newest) == []
    statistics = load_statistics(latest)
    accuracy = statistics.metric("accuracy").compute(statistics.state("accuracy"))[""]
    assert accuracy == newest.point("overall").metrics["accuracy"].value


@pytest.mark.parametrize("kind", ["multiclass", "multilabel"])
def test_validate_refuses_a_fixed_list_width_other_than_the_tasks(tmp_path: Path, capsys, kind) -> None:
    """A ``fixed_size_list`` of 5 scores in one file of a 4-class task: the footer tells, so ``validate`` refuses it
    (exit 2 naming the file, the column and the width expected) as ``run`` does before any row is read (it said
    "valid", and the run failed at the file's first row group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    (tmp_path / "data").mkdir()
    for name, width in (("a", 4), ("b", 5)):
        scores = rng.random((40, width))
        targets = rng.integers(0, 4, 40) if kind == "multiclass" else list(rng.integers(0, 2, (40, width)))
        table = pa.table({"probs": pa.array(list(scores), pa.list_(pa.float64(), width)), "label": targets})
        pq.write_table(table, tmp_path / "data" / f"{name}.parquet")
    path = _job(tmp_path, "widths", str(tmp_path / "data"), tmp_path / "out", task={"kind": kind, "num_classes": 4})
    spec = yaml.safe_load(path.read_text())
    spec["data"]["columns"]["predictions"] = "probs"
    spec["metrics"] = ["accuracy"]
    path.write_text(yaml.safe_dump(spec))
    for command in ("validate", "run"):
        code, _, err = _run([command, str(path), "--quiet"] if command == "run" else [command, str(path)], capsys)
        assert code == 2, (command, err)
        assert "b.parquet: column 'probs' (data.columns.predictions) has type fixed_size_list" in err, err
        assert "expected a list column of 4 numbers per row" in err
    assert not (tmp_path / "out").exists()


def test_keys_of_a_users_own_holding_brackets_and_dots_show_and_compare_as_declared(tmp_path: Path, capsys) -> None:
    """``as: auc[main]`` was shown as a vector ("auc[…]  1 values", its interval lost) and ``f1.per[cls]`` as two;
    ``--metric 'f1.per[cls]'`` was unknown ("did you mean 'f1.per'?") and the names listed were fragments; compare
    --metric acc (for ``acc.v1``) said every chosen metric was undefined. A declared key is a scalar with its
    interval, its own ``[i]`` values collapse under it, and show, compare and the errors name keys alike."""
    write_shards(str(tmp_path / "data"), "binary", 2_000, 2, seed=9)
    metrics = [
        {"name": "roc_auc", "as": "auc[main]", "priority": "primary"},
        {"name": "f1_score", "average": "none", "as": "f1.per[cls]"},
        {"name": "accuracy", "as": "acc.v1"},
    ]
    path = _job(tmp_path, "own-keys", str(tmp_path / "data"), tmp_path / "out", confidence={"replicates": 40})
    spec = yaml.safe_load(path.read_text())
    spec["metrics"] = metrics
    path.write_text(yaml.safe_dump(spec))
    for _ in range(2):
        assert _run(["run", str(path), "--quiet"], capsys)[0] == 0
    first, second = sorted(str(p.parent) for p in (tmp_path / "out").glob("own-keys/*/_COMMITTED"))
    run = read_run(first)
    code, out, _ = _run(["show", first], capsys)
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("overall")}
    auc = run.point("overall").metrics["auc[main]"]
    assert code == 0 and "1 values" not in out
    assert lines["auc[main]"].split()[2:] == [f"{auc.value:g}", f"[{auc.lower:g},", f"{auc.upper:g}]"]
    assert "2 values" in lines["f1.per[cls][…]"] and "acc.v1" in lines
    code, out, _ = _run(["show", first, "--metric", "f1.per[cls]", "--format", "json"], capsys)
    shown = {m["metric"] for m in json.loads(out)["metrics"]}
    assert code == 0 and shown == {"f1.per[cls][0]", "f1.per[cls][1]"}, out
    code, _, err = _run(["show", first, "--metric", "nope"], capsys)
    assert code == 2 and "the ones there are: acc.v1, auc[main], f1.per[cls], rows." in err, err
    for name, compared in (("acc", 1), ("acc.v1", 1), ("f1.per[cls]", 2), ("auc[main]", 1)):
        code, out, err = _run(["compare", first, second, "--metric", name], capsys)
        assert code == 0 and f"{compared} metrics compared, 0 regressed" in out, (name, out, err)


def test_report_judges_the_runs_own_baseline_with_its_gates_tolerance(tmp_path: Path, capsys) -> None:
    """A run gated with ``baseline: {tolerance: 0.5}`` regressed on nothing, yet ``evalpipe report`` of it judged its
    baseline at tolerance 0 (every worsening a regression): the page and the gate disagreed."""
    write_shards(str(tmp_path / "data"), "binary", 3_000, 2, seed=10)
    path = _job(tmp_path, "gated", str(tmp_path / "data"), tmp_path / "out", baseline={"tolerance": 0.5})
    assert _run(["run", str(path), "--quiet"], capsys)[0] == 0
    write_shards(str(tmp_path / "data"), "binary", 3_000, 2, seed=11)  # (other rows: some values worse)
    code, _, err = _run(["run", str(path), "--quiet"], capsys)
    assert code == 0, err
    latest = sorted(str(p.parent) for p in (tmp_path / "out").glob("gated/*/_COMMITTED"))[-1]
    gate = read_run(latest).metadata["baseline"]
    assert gate["tolerance"] == 0.5 and gate["regressions"] == []
    assert _run(["report", latest, "-o", str(tmp_path / "r.html")], capsys)[0] == 0
    page = (tmp_path / "r.html").read_text()
    assert re.search(r"0 of \d+ values regressed", page), re.findall(r"\d+ of \d+ values regressed", page)


def test_a_committed_run_whose_reader_stops_reading_exits_0_without_a_traceback(tmp_path) -> None:
    """``evalpipe run job.yaml --quiet | head -1``: the run committed, then writing its outcome line to the closed
    pipe raised ``BrokenPipeError``: a traceback and exit 1 (an internal failure) for a run that succeeded."""
    write_shards(str(tmp_path / "a"), "binary", ROWS, 2, seed=5)
    job = _job(tmp_path, "piped", str(tmp_path / "a"), tmp_path / "out")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "run", str(job), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()  # (`| head -1`: one line read, then the reader is gone)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0 and "Traceback" not in err, err
    [run] = [p for p in (tmp_path / "out" / "piped").iterdir() if "T" in p.name]
    assert (run / "_COMMITTED").exists()


@pytest.mark.parametrize(
    ("path", "package", "extra"), [("s3://bucket/p", "s3fs", "s3"), ("gs://bucket/p", "gcsfs", "gcs")]
)
def test_object_store_paths_without_their_package_name_the_extra_to_install(tmp_path, path, package, extra) -> None:
    """Without the s3 extra, a spec reading ``s3://`` said only fsspec's "Install s3fs to access S3." (exit 2): the
    message names evalpipe's extra, as the README installs it."""
    job = _job(tmp_path, "remote", f"{path}/*.parquet", tmp_path / "out")
    script = (
        f"import sys; sys.modules[{package!r}] = None; from pipelines.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "validate", str(job)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot open this location: {path[:5]} paths need {package}, which is not installed: " in result.stderr
    assert f"pip install 'evalpipe[{extra}]'" in result.stderr
    assert f".venv/bin/pip install -e '.[{extra}]'" in result.stderr
