"""What users read after a run: metric names declared with ``as:`` inside a metric's parameters, locations given one
level too deep, values that became or stopped being NaN on the site, the report's comparison of runs with different
metrics, and the slices figure of long or undefined values."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import plots
from pipelines.cli import main
from pipelines.errors import UserError
from pipelines.records import declared_keys, unknown_message
from pipelines.results import list_runs, load_run, load_runs
from tests.conftest import write_job


def _write(path: Path, seed: int, *, one_class: bool = False, group: str = "g") -> str:
    rng = np.random.default_rng(seed)
    n = 1_000
    label = np.ones(n, np.int64) if one_class else (rng.random(n) < 0.4).astype(np.int64)
    score = np.clip(0.3 * label + 0.7 * rng.random(n), 0, 1)
    groups = np.where(np.arange(n) % 2 == 0, group, "short")
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"score": score, "label": label, "g": groups}), path)
    return str(path)


def _job(tmp_path: Path, data: str, metrics: list, **extra) -> Path:
    spec = {
        "name": "surf",
        "data": {"path": data, "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": metrics,
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
        **extra,
    }
    return write_job(tmp_path / "job.yaml", spec)


def _run(job: Path, capsys) -> tuple[int, str]:
    code = main(["run", str(job), "--quiet"])
    return code, capsys.readouterr().err


NESTED = [{"name": "roc_auc", "priority": "primary"}, {"expected_calibration_error": {"n_bins": 10, "as": "ece"}}]


def test_a_key_set_by_as_inside_the_parameters_is_the_metrics_name(tmp_path, capsys) -> None:
    # `- expected_calibration_error: {n_bins: 10, as: ece}` (configs/binary.yaml's form) is the metric `ece`: a
    # tolerance under the other name was accepted and ignored, and `show --metric expected_calibration_error` printed
    # an empty table
    data = _write(tmp_path / "d0.parquet", 0)
    code, err = _run(_job(tmp_path, data, NESTED), capsys)
    assert code == 0, err
    run = load_run(str(tmp_path / "out" / "surf" / "latest"))
    assert declared_keys(run) == {"roc_auc", "ece"}
    assert main(["show", str(tmp_path / "out" / "surf" / "latest"), "--metric", "expected_calibration_error"]) == 2
    assert "metric 'expected_calibration_error' not found" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "out" / "surf" / "latest"), "--metric", "ece"]) == 0
    assert re.search(r"overall\s+ece\s+0\.\d+", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("tolerance", "refused"),
    [
        ({"roc_auc": 1, "expected_calibration_error": 1}, "expected_calibration_error"),
        ({"ece": 1, "roc_auc.error_bound": 1, "*": 0.1, "rows": 0}, None),  # keys, parts of them, every value, rows
        ({"roc_auc[2]": 1}, None),  # (a value of a key: roc_auc selects roc_auc[2])
        ({"roc_aucx": 1}, "roc_aucx"),
    ],
)
def test_tolerance_names_are_checked_against_the_jobs_keys_before_any_row_is_read(
    tmp_path, capsys, tolerance, refused
) -> None:
    data = _write(tmp_path / "d0.parquet", 0)
    job = _job(tmp_path, data, NESTED, baseline={"run": "latest", "tolerance": tolerance})
    code = main(["validate", str(job)])
    err = capsys.readouterr().err
    if refused is None:
        assert code == 0, err
        return
    assert code == 2 and "Traceback" not in err
    assert f"baseline.tolerance (line 20): metric {refused!r} not found" in err, err
    assert "the ones there are: ece, roc_auc" in err


def test_a_job_or_run_directory_given_as_the_results_location_is_refused_naming_the_one_above(tmp_path, capsys) -> None:
    data = _write(tmp_path / "d0.parquet", 0)
    assert _run(_job(tmp_path, data, ["accuracy"]), capsys)[0] == 0
    out = tmp_path / "out"
    (run_dir,) = list_runs(str(out))
    assert main(["runs", str(out / "surf")]) == 2  # printed "0 committed runs", exit 0
    err = capsys.readouterr().err
    assert "this is the directory of job 'surf', not a results location" in err
    assert f"give the location above it: {str(out)!r} (with job 'surf')" in err
    with pytest.raises(UserError, match="this is the directory of job 'surf'"):
        load_runs(str(out / "surf"))  # returned an empty frame
    assert main(["runs", run_dir.uri]) == 2
    assert "this is one committed run (of job 'surf')" in capsys.readouterr().err
    assert main(["runs", str(out), "--job", "surf"]) == 0
    assert "1 committed run" in capsys.readouterr().out


def test_the_site_shows_a_value_that_became_or_stopped_being_nan(tmp_path, capsys) -> None:
    job_runs = [_write(tmp_path / f"d{i}.parquet", i, one_class=i == 1) for i in range(3)]
    for data in job_runs:  # roc_auc defined, then NaN (one class), then defined again
        code, err = _run(
            _job(tmp_path, data, [{"name": "roc_auc", "priority": "primary"}], slices=[{"column": "g"}]), capsys
        )
        assert code in (0, 3), err
    assert main(["site", str(tmp_path / "out"), "-o", str(tmp_path / "site")]) == 0
    capsys.readouterr()
    runs = list_runs(str(tmp_path / "out"))
    pages = {p.name: p.read_text() for p in (tmp_path / "site").rglob("*.html")}
    job_page = next(text for name, text in pages.items() if "runs" not in name and "surf" in name)
    assert "+NaN" not in job_page and "NaN" not in pages["index.html"].replace("was NaN", "")  # "+NaN" read as better
    assert "was NaN" in pages["index.html"]  # the latest run: defined again, no difference and no test
    assert "outside interval" not in pages["index.html"]
    # the heatmap: the night whose value became NaN is marked as compare marks it
    cells = re.findall(r'<td class="num regressed">▼ NaN</td>', job_page)
    assert len(cells) == 3, job_page  # overall and both slices: every row of that night is of one class
    assert runs[1].run_id in job_page


def _one_class_run(tmp_path: Path, capsys) -> str:
    data = _write(tmp_path / "d1.parquet", 1, one_class=True)
    code, err = _run(_job(tmp_path, data, ["roc_auc", "accuracy"], slices=[{"column": "g"}]), capsys)
    assert code == 0, err
    return str(tmp_path / "out" / "surf" / "latest")


def test_the_slices_figure_of_a_metric_undefined_everywhere_is_a_user_error(tmp_path, capsys) -> None:
    run = load_run(_one_class_run(tmp_path, capsys))
    with pytest.raises(UserError, match="metric 'roc_auc' is undefined \\(NaN\\) at every point"):
        plots.slices_figure(run, "roc_auc")  # a bare ValueError
    with pytest.raises(UserError, match="metric 'roc_aux' not found \\(did you mean 'roc_auc'"):
        plots.slices_figure(run, "roc_aux")
    assert len(plots.slices_figure(run, "accuracy").axes) == 1


def test_one_long_slice_value_leaves_the_other_labels_whole(tmp_path, capsys) -> None:
    long = "x" * 300
    data = _write(tmp_path / "d0.parquet", 0, group=long)
    assert _run(_job(tmp_path, data, ["accuracy"], slices=[{"column": "g"}]), capsys)[0] == 0
    run = load_run(str(tmp_path / "out" / "surf" / "latest"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied": every label clipped
        fig = plots.slices_figure(run, "accuracy")
        plots.png_bytes(fig)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "g=short" in labels and "overall" in labels
    (cut,) = [label for label in labels if label.startswith("g=x")]
    assert len(cut) == plots.SLICE_LABEL_CHARACTERS and "…" in cut and cut.endswith("x" * 16)


def test_the_reports_comparison_names_the_metrics_only_one_run_has(tmp_path, capsys) -> None:
    data = _write(tmp_path / "d0.parquet", 0)
    assert _run(_job(tmp_path, data, ["accuracy", "log_loss", "brier_score"]), capsys)[0] == 0
    (base,) = list_runs(str(tmp_path / "out"))
    assert _run(_job(tmp_path, data, ["accuracy"]), capsys)[0] == 0
    page = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "out" / "surf" / "latest"), "-o", str(page), "--baseline", base.uri]) == 0
    text = page.read_text()
    assert "not compared: " in text and "log_loss" in text.split("not compared:", 1)[1]
    assert "brier_score" in text.split("not compared:", 1)[1]
    assert "only in the baseline" in text


@pytest.mark.parametrize("name", ["roc_auc.eror_bound", "roc_auc[2]"])
def test_a_tolerance_name_the_gate_would_not_find_is_refused_before_any_row_is_read(tmp_path, capsys, name) -> None:
    # the spec cannot tell `roc_auc.eror_bound` from a part of roc_auc; the gate refused it once the job had run
    # (exit 2 after reading every row: the night lost). The baseline run says which parts there are.
    data = _write(tmp_path / "d0.parquet", 0)
    assert _run(_job(tmp_path, data, ["roc_auc", "accuracy"]), capsys)[0] == 0
    job = _job(tmp_path, data, ["roc_auc", "accuracy"], baseline={"run": "latest", "tolerance": {name: 0.1}})
    assert main(["validate", str(job)]) == 0  # (a part of a key: only the runs know)
    capsys.readouterr()
    (tmp_path / "d0.parquet").write_bytes(b"not parquet")  # a row read would fail otherwise
    code, err = _run(job, capsys)
    assert code == 2, err
    assert f"nor this job's metrics have: metric {name!r} not found" in err and "Nothing was read." in err
    assert "roc_auc.error_bound" in err  # (the names there are)
    assert len(list_runs(str(tmp_path / "out"))) == 1


def test_a_metrics_parts_are_known_only_once_computed_when_the_baseline_lacks_the_metric(tmp_path, capsys) -> None:
    data = _write(tmp_path / "d0.parquet", 0)
    assert _run(_job(tmp_path, data, ["accuracy"]), capsys)[0] == 0
    tolerance = {"roc_auc.error_bound": 1.0, "accuracy": 1.0}  # roc_auc added tonight: its parts are not checked
    code, err = _run(
        _job(tmp_path, data, ["roc_auc", "accuracy"], baseline={"run": "latest", "tolerance": tolerance}), capsys
    )
    assert code == 0, err  # (the gate finds it in tonight's run)
    assert load_run(str(tmp_path / "out" / "surf" / "latest")).metadata["baseline"]["tolerance"] == tolerance


def test_a_key_of_a_metric_with_parameters_and_no_as_is_its_name_and_parameters(tmp_path, capsys) -> None:
    data = _write(tmp_path / "d0.parquet", 0)
    assert (
        _run(_job(tmp_path, data, [{"expected_calibration_error": {"n_bins": 10}}, {"name": "accuracy"}]), capsys)[0]
        == 0
    )
    run = load_run(str(tmp_path / "out" / "surf" / "latest"))
    assert declared_keys(run) == {"expected_calibration_error(n_bins=10)", "accuracy"}
    assert main(["show", str(tmp_path / "out" / "surf" / "latest"), "--metric", "expected_calibration_error"]) == 2
    assert "the ones there are: accuracy, expected_calibration_error(n_bins=10)" in capsys.readouterr().err


def test_cut_labels_that_would_read_alike_keep_a_digest() -> None:
    a = "query=how do I reset my password on the mobile app? answer briefly"
    b = a.replace("mobile", "desktop")
    cut = plots.short_labels([a, b, "g=short"])
    assert cut[0] != cut[1] and cut[2] == "g=short"
    assert all(len(label) <= plots.SLICE_LABEL_CHARACTERS and label.endswith("answer briefly") for label in cut[:2])


def test_an_unknown_name_suggests_a_spelling_or_the_keys_a_job_renamed_it_to():
    """A typo gets its nearest spelling; a metric a job renamed with ``as:`` (``f1_score`` as ``f1_macro``, ...) gets
    the keys that begin with its first word, which a spelling match would miss (``brier_score`` was suggested)."""
    keys = ["accuracy", "brier_score", "f1_macro", "f1_per_class", "f1_weighted", "roc_auc"]
    assert "(did you mean 'roc_auc'?)" in unknown_message("metric", "roc_acu", keys)
    found = unknown_message("metric", "f1_score", keys)
    assert "(did you mean 'f1_macro', 'f1_per_class' or 'f1_weighted'?)" in found and "brier" not in found.split(";")[0]
    assert "(did you mean 'f1_macro' or 'f1_weighted'?)" in unknown_message("metric", "f1", ["f1_macro", "f1_weighted"])
    assert unknown_message("metric", "zzz", keys).startswith("metric 'zzz' not found; the ones there are: accuracy")
    assert unknown_message("metric", "", keys).startswith("metric '' not found; the ones")  # (no name: no guess)
