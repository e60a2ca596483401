"""Reading runs back when values, names or files are not what a reader assumes: a slice whose value became
undefined, names that only one run has, damaged manifests and statistics files, glob characters in job names, and
the flags that take numbers. Each case is a real run (local runner) and real files; errors are exit 2 with one
paragraph naming the file, key or flag, and nothing on stdout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.errors import UserError
from pipelines.results import compare_all, list_runs, load_run, load_runs, load_statistics, trend
from pipelines.significance import compare_runs
from pipelines.storage import COMMIT_MARKER, read_run
from tests.conftest import write_job

ROWS = 2_000
SMALL = 200  # rows of slice g=k


def _data(path: Path, seed: int, *, all_positive_k: bool, third_group: bool) -> str:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, ROWS)
    group = np.where(np.arange(ROWS) < SMALL, "k", "m").astype(object)
    if all_positive_k:
        label[:SMALL] = 1  # slice g=k left with one class: its ROC-AUC is undefined (NaN)
    if third_group:
        group[SMALL : 2 * SMALL] = "c"
    score = np.clip(0.3 * label + 0.7 * rng.random(ROWS), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"score": score, "label": label, "g": group.astype(str)}), path)
    return str(path)


def _spec(name: str, data: str, output: Path, metrics: list[str]) -> dict:
    return {
        "name": name,
        "data": {"path": data, "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": metrics,
        "slices": [{"column": "g"}],
        "confidence": {"method": "bootstrap", "replicates": 20, "seed": 1, "samples": True},
        "execution": {"runner": "local"},
        "output": {"uri": str(output)},
    }


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _newest(job_dir: Path) -> str:
    return sorted(p for p in job_dir.iterdir() if "T" in p.name)[-1].as_posix()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Job ``nanjob`` twice: the baseline with brier_score, the current run without it, its slice g=k all
    positive (ROC-AUC NaN) and a new slice g=c; and one run of job ``otherjob``."""
    tmp = tmp_path_factory.mktemp("audit")
    output = tmp / "results"
    first = _data(tmp / "n1" / "a.parquet", 6, all_positive_k=False, third_group=False)
    second = _data(tmp / "n2" / "a.parquet", 7, all_positive_k=True, third_group=True)
    uris = {}
    for key, name, data, metrics in (
        ("baseline", "nanjob", first, ["roc_auc", "accuracy", "brier_score"]),
        ("current", "nanjob", second, ["roc_auc", "accuracy"]),
        ("other", "otherjob", first, ["roc_auc", "accuracy"]),
    ):
        job = write_job(tmp / f"{key}.yaml", _spec(name, data, output, metrics))
        assert main(["run", str(job), "--quiet"]) == 0, key
        uris[key] = _newest(output / name)
    return {"tmp": tmp, "output": output, **uris}


def _copy_run(uri: str, results: Path, job: str) -> Path:
    target = results / job / uri.rsplit("/", 1)[-1]
    shutil.copytree(uri, target)
    return target


def _set_manifest(run_dir: Path, change) -> None:
    manifest = json.loads((run_dir / COMMIT_MARKER).read_text())
    change(manifest)
    (run_dir / COMMIT_MARKER).write_text(json.dumps(manifest))


def _garble(path: Path) -> None:
    """Change the file's bytes, not its size (the manifest still lists the size found)."""
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), 7):
        data[i] = (data[i] * 31 + 7) % 256
    path.write_bytes(bytes(data))


# --- F4: trend of a slice point ---------------------------------------------------------------------------------


def test_trend_of_a_slice_point_returns_its_tags(runs) -> None:
    from pipelines.results import _tags

    series = trend(str(runs["output"]), "nanjob", "accuracy", point="g=k")
    assert series.tags == {"g": "k"} and len(series.points) == 2
    assert trend(str(runs["output"]), "nanjob", "accuracy").tags == {}
    frame = load_runs(str(runs["output"]), job="nanjob")
    assert {_tags(t)["g"] for t in frame.filter(pl.col("point") == "g=k")["tags"]} == {"k"}


def test_tags_read_in_either_of_polars_shapes() -> None:
    """polars 2 reads Arrow's map<string, string> as a dict, polars 1 as a list of {key, value} structs."""
    from pipelines.results import _tags

    as_list = pl.DataFrame(
        {"tags": [[{"key": "g", "value": "k"}, {"key": "h", "value": "1"}], []]},
        schema={"tags": pl.List(pl.Struct({"key": pl.String, "value": pl.String}))},
    )
    assert [_tags(t) for t in as_list["tags"].to_list()] == [{"g": "k", "h": "1"}, {}]
    assert _tags({"g": "k"}) == {"g": "k"} and _tags(None) == {}


# --- F5: compare never passes a change it did not look at -------------------------------------------------------


def test_a_value_that_became_nan_regresses_and_one_that_became_defined_is_listed(runs, capsys) -> None:
    base, cur = runs["baseline"], runs["current"]
    code, out, err = _cli(["compare", base, cur, "--point", "g=k", "--metric", "roc_auc"], capsys)
    assert code == 3, (out, err)
    assert "now NaN" in out and "REGRESSED" in out and "1 metrics compared, 1 regressed" in out
    code, out, err = _cli(["compare", cur, base, "--point", "g=k", "--metric", "roc_auc", "--all"], capsys)
    assert code == 0 and "was NaN" in out and "1 metrics compared, 0 regressed" in out, (out, err)
    (became_nan,) = compare_all(base, cur, metrics=["roc_auc"], points=["g=k"])
    assert became_nan.regressed and np.isnan(became_nan.current) and np.isnan(became_nan.worse_by)
    (became_defined,) = compare_all(cur, base, metrics=["roc_auc"], points=["g=k"])
    assert not became_defined.regressed and np.isfinite(became_defined.current)


def test_a_run_whose_slice_value_became_nan_against_its_baseline_exits_3_and_commits(runs, tmp_path, capsys) -> None:
    output = tmp_path / "results"
    first = _copy_run(runs["baseline"], output, "nanjob")
    spec = _spec("nanjob", _data(tmp_path / "d" / "a.parquet", 7, all_positive_k=True, third_group=False), output, [])
    job = write_job(tmp_path / "gate.yaml", {**spec, "metrics": ["roc_auc", "accuracy"], "baseline": "latest"})
    code, out, err = _cli(["run", str(job), "--quiet"], capsys)
    assert code == 3, (out, err)
    assert "REGRESSED g=k roc_auc: " in out and " -> nan" in out
    run = read_run(_newest(output / "nanjob"))
    assert run.id != first.name and run.metadata["baseline"]["found"] == first.name
    (became_nan,) = [r for r in run.metadata["baseline"]["regressions"] if r["point_name"] == "g=k"]
    assert became_nan["metric"] == "roc_auc" and became_nan["current_value"] is None
    assert became_nan["delta_pct"] is None


def test_a_name_that_one_run_lacks_is_exit_2_naming_the_side(runs, capsys) -> None:
    base, cur = runs["baseline"], runs["current"]
    code, out, err = _cli(["compare", base, cur, "--metric", "brier_score"], capsys)
    assert code == 2 and out == "" and "Traceback" not in err, (out, err)
    assert "'brier_score' is only in the baseline" in err and cur.rsplit("/", 1)[-1] in err
    code, out, err = _cli(["compare", base, cur, "--point", "g=c"], capsys)
    assert code == 2 and out == "" and "'g=c' is only in the current run" in err, (out, err)
    with pytest.raises(UserError, match="only in the baseline"):
        compare_all(base, cur, metrics=["brier_score"])


def test_metrics_and_points_of_one_run_only_are_named(runs, capsys) -> None:
    code, out, err = _cli(["compare", runs["baseline"], runs["current"]], capsys)
    assert code == 3, (out, err)  # (g=k's ROC-AUC became undefined)
    (line,) = [x for x in out.splitlines() if x.startswith("not compared: metric brier_score, only in the baseline")]
    assert sorted(line.split("(at ", 1)[1].rstrip(")").split(", ")) == ["g=k", "g=m", "overall"]
    assert "not compared: point g=c, only in the current run" in out


@pytest.mark.parametrize("alpha", ["0", "-1", "nan", "1", "7", "inf"])
def test_alpha_must_be_between_0_and_1(runs, capsys, alpha) -> None:
    code, out, err = _cli(["compare", runs["baseline"], runs["current"], f"--alpha={alpha}"], capsys)
    assert code == 2 and out == "" and "--alpha" in err and "between 0 and 1" in err, (out, err)
    with pytest.raises(UserError, match="alpha"):
        compare_all(runs["baseline"], runs["current"], alpha=float(alpha))


# --- F7: show --format json --------------------------------------------------------------------------------------


def test_show_json_writes_null_for_undefined_values(runs, capsys) -> None:
    argv = ["show", runs["current"], "--point", "g=k", "--metric", "roc_auc", "--format", "json"]
    code, out, err = _cli(argv, capsys)
    assert code == 0, err

    def refuse(constant: str) -> None:
        raise AssertionError(f"invalid JSON constant {constant}")

    record = json.loads(out, parse_constant=refuse)
    assert record["metrics"][0]["metric"] == "roc_auc" and record["metrics"][0]["value"] is None


# --- F8: damaged manifests ---------------------------------------------------------------------------------------


def test_a_run_with_a_damaged_manifest_is_skipped_by_listings_and_refused_by_name(runs, tmp_path, capsys) -> None:
    results = tmp_path / "results"
    good = _copy_run(runs["baseline"], results, "nanjob")
    damaged = {
        "yesterday": lambda m: m.update(timestamp="yesterday"),
        "nojob": lambda m: m.pop("job"),
        "notimestamp": lambda m: m.pop("timestamp"),
    }
    for job, change in damaged.items():
        _set_manifest(_copy_run(runs["current"], results, job), change)
    code, out, err = _cli(["runs", str(results)], capsys)
    assert code == 0 and "1 committed run\n" in out and "Traceback" not in err, (out, err)
    assert [r.uri for r in list_runs(str(results))] == [good.as_posix()]
    assert set(load_runs(str(results))["run_id"]) == {good.name}
    assert len(trend(str(results), "nanjob", "accuracy").points) == 1
    code, out, err = _cli(["site", str(results), "-o", str(tmp_path / "site"), "--no-reports"], capsys)
    assert code == 0, (out, err)
    code, out, err = _cli(["show", str(_newest(results / "yesterday"))], capsys)
    assert code == 2 and out == "" and COMMIT_MARKER in err and "'timestamp' 'yesterday'" in err, (out, err)
    code, out, err = _cli(["checkpoints", str(results)], capsys)
    assert code == 0 and "3 uncommitted run directories" in out, (out, err)


# --- F9: damaged statistics and metrics files --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["statistics.npz", "statistics.json"])
def test_report_and_merge_of_a_damaged_statistics_file_are_exit_2_naming_it(runs, tmp_path, capsys, name) -> None:
    run_dir = _copy_run(runs["baseline"], tmp_path / "results", "nanjob")
    _garble(run_dir / name)
    code, out, err = _cli(["report", str(run_dir), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and f"{run_dir.as_posix()}/{name}" in err and "Traceback" not in err, (out, err)
    assert not (tmp_path / "r.html").exists()
    code, out, err = _cli(["merge", str(run_dir), "--name", "m", "--output", str(tmp_path / "merged")], capsys)
    assert code == 2 and f"{run_dir.as_posix()}/{name}" in err and "Traceback" not in err, (out, err)
    assert not (tmp_path / "merged").exists()
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        load_statistics(str(run_dir))


def test_merge_of_a_run_without_its_recorded_spec_is_exit_2_naming_run_json(runs, tmp_path, capsys) -> None:
    run_dir = _copy_run(runs["baseline"], tmp_path / "results", "nanjob")
    record = json.loads((run_dir / "run.json").read_text())
    del record["metadata"]["spec"]
    payload = json.dumps(record).encode()
    (run_dir / "run.json").write_bytes(payload)
    _set_manifest(run_dir, lambda m: m["files"].update({"run.json": len(payload)}))
    code, out, err = _cli(["merge", str(run_dir), "--name", "m", "--output", str(tmp_path / "merged")], capsys)
    assert code == 2 and f"{run_dir.as_posix()}/run.json: metadata.spec is missing" in err, (out, err)
    with pytest.raises(UserError, match=r"metadata\.spec"):
        load_statistics(str(run_dir))
    code, out, err = _cli(["report", str(run_dir), "-o", str(tmp_path / "r.html")], capsys)
    assert code == 0 and (tmp_path / "r.html").exists(), err  # the metrics, without curves


def test_load_runs_and_trend_of_a_damaged_metrics_file_name_it(runs, tmp_path) -> None:
    results = tmp_path / "results"
    _copy_run(runs["baseline"], results, "nanjob")
    run_dir = _copy_run(runs["current"], results, "nanjob")
    _garble(run_dir / "metrics.parquet")
    named = f"{run_dir.as_posix()}/metrics.parquet"
    for lazy in (False, True):
        with pytest.raises(UserError, match=named):
            load_runs(str(results), lazy=lazy)
    with pytest.raises(UserError, match=named):
        trend(str(results), "nanjob", "accuracy")


# --- F11: job names and run paths are taken literally ------------------------------------------------------------


def test_glob_characters_in_job_names_and_paths_match_themselves(runs, tmp_path, capsys) -> None:
    results = tmp_path / "res[1]"
    _copy_run(runs["baseline"], results, "aj")
    _copy_run(runs["current"], results, "aj-merged")
    code, out, err = _cli(["runs", str(results), "--job", "aj*"], capsys)
    assert code == 2 and out == "" and "job 'aj*' not found" in err, (out, err)
    code, out, err = _cli(["runs", str(results), "--job", "aj"], capsys)
    assert code == 0 and "1 committed run\n" in out, (out, err)
    with pytest.raises(UserError, match="'aj\\*' not found"):
        trend(str(results), "aj*", "accuracy")
    assert len(trend(str(results), "aj", "accuracy").points) == 1
    code, out, err = _cli(["show", f"{results}/aj?merged/latest"], capsys)
    assert code == 2 and out == "" and "'aj?merged' not found" in err, (out, err)
    assert load_run(f"{results}/aj-merged/latest").id == runs["current"].rsplit("/", 1)[-1]


# --- F12: checkpoints --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hours", ["nan", "inf", "-1"])
def test_checkpoints_older_than_must_be_a_finite_number_of_hours(runs, capsys, hours) -> None:
    code, out, err = _cli(["checkpoints", str(runs["output"]), "--delete", f"--older-than={hours}"], capsys)
    assert code == 2 and out == "" and "--older-than" in err and "Traceback" not in err, (out, err)


def test_checkpoints_refuse_what_runs_refuses(runs, tmp_path, capsys) -> None:
    output = str(runs["output"])
    for argv, named in (
        ([str(tmp_path / "missing"), "--delete"], "no such results location"),
        ([f"{runs['baseline']}/run.json", "--delete"], "a file, not a results location"),
        ([output, "--job", "nanjbo", "--delete"], "job 'nanjbo' not found (did you mean 'nanjob'?)"),
    ):
        code, out, err = _cli(["checkpoints", *argv], capsys)
        assert code == 2 and out == "" and named in err, (argv, out, err)
    code, out, err = _cli(["checkpoints", output, "--job", "nanjob"], capsys)
    assert code == 0 and "0 checkpoint directories" in out, (out, err)


# --- F14 ---------------------------------------------------------------------------------------------------------


def test_show_of_an_unknown_metric_writes_nothing_to_stdout(runs, capsys) -> None:
    code, out, err = _cli(["show", runs["baseline"], "--metric", "roc_auk"], capsys)
    assert code == 2 and out == "" and "did you mean 'roc_auc'" in err, (out, err)


def test_report_with_a_baseline_of_another_job_takes_force(runs, tmp_path, capsys) -> None:
    argv = ["report", runs["baseline"], "-o", str(tmp_path / "r.html"), "--baseline", runs["other"]]
    code, out, err = _cli(argv, capsys)
    assert code == 2 and "--force" in err and not (tmp_path / "r.html").exists(), (out, err)
    code, out, err = _cli([*argv, "--force"], capsys)
    assert code == 0 and 'id="comparison"' in (tmp_path / "r.html").read_text(), (out, err)


def test_compare_runs_of_an_unknown_metric_or_point_is_a_user_error(runs) -> None:
    base, cur = read_run(runs["baseline"]), read_run(runs["current"])
    with pytest.raises(UserError, match="metric 'roc_auk' not found \\(did you mean 'roc_auc'\\?\\)"):
        compare_runs(base, cur, "roc_auk")
    with pytest.raises(UserError, match="has no point 'overal' \\(did you mean 'overall'\\?\\)"):
        compare_runs(base, cur, "roc_auc", "overal")
    with pytest.raises(KeyError):  # (still the KeyError a mapping raises)
        base.point("overall").metrics["roc_auk"]


def test_a_regression_from_a_baseline_of_0_commits_with_no_percentage(tmp_path, capsys) -> None:
    """A lower-is-better metric at exactly 0 in the baseline (perfect predictions: Brier 0) and above 0 now: the
    change has no percentage, which run.json records as null (inf is not JSON): the run commits, exit 3."""
    label = np.array([0, 1] * 500)
    for k, score in enumerate((label.astype(float), np.where(np.arange(1000) < 10, 0.5, label))):
        data = tmp_path / f"d{k}" / "part.parquet"
        data.parent.mkdir()
        pq.write_table(pa.table({"score": score, "label": label}), data)
        spec = _spec("zero-base", str(data), tmp_path / "out", ["brier_score", "accuracy"])
        del spec["slices"], spec["confidence"]
        if k:
            spec["baseline"] = {"run": "latest", "tolerance": 0}
        code, _, _ = _cli(["run", str(write_job(tmp_path / f"job{k}.yaml", spec)), "--quiet"], capsys)
        assert code == (3 if k else 0)
    record = json.loads((Path(_newest(tmp_path / "out" / "zero-base")) / "run.json").read_text())
    regressions = {r["metric"]: r for r in record["metadata"]["baseline"]["regressions"]}
    assert regressions["brier_score"]["baseline_value"] == 0.0 and regressions["brier_score"]["delta_pct"] is None
    assert regressions["brier_score"]["current_value"] == pytest.approx(10 * 0.25 / 1000)
    assert regressions["accuracy"]["delta_pct"] == pytest.approx(-0.5)


def test_trend_of_a_point_that_reports_only_its_rows_says_so(tmp_path) -> None:
    """A slice below its min_count reports only its row count: trend() returned an empty series without a word."""
    from pipelines.results import trend

    data = _data(tmp_path / "d" / "a.parquet", 3, all_positive_k=False, third_group=False)
    spec = _spec("small", data, tmp_path / "out", ["accuracy"])
    spec["slices"] = [{"column": "g", "min_count": SMALL + 1}]  # (g=k has SMALL rows)
    del spec["confidence"]
    assert main(["run", str(write_job(tmp_path / "job.yaml", spec)), "--quiet"]) == 0
    assert len(trend(str(tmp_path / "out"), "small", "accuracy", "g=m").points) == 1
    with pytest.raises(UserError, match="point 'g=k' reports only its row count in these runs"):
        trend(str(tmp_path / "out"), "small", "accuracy", "g=k")
