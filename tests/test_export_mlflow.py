"""``evalpipe export RUN --to mlflow``: a real run into a local MLflow file store, read back with MLflow's client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import spec as spec_module
from pipelines.cli import main
from pipelines.execute import run_job
from pipelines.export_mlflow import INSTALL_HINT, mlflow_name
from pipelines.synthetic import write_shards
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A local binary run with a sliced, bootstrapped metric set (intervals on every value)."""
    tmp = tmp_path_factory.mktemp("export")
    data = tmp / "data"
    write_shards(str(data), "binary", 3000, 3, seed=4, row_group_rows=500)
    spec = {
        "name": "churn-export",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy", "roc_auc", "confusion_matrix", {"name": "f1_score", "as": "f1"}],
        "slices": [{"column": "country"}],
        "confidence": {"replicates": 20, "buckets": 16},
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp / "out")},
    }
    return run_job(spec_module.load(str(write_job(tmp / "job.yaml", spec))), show_progress=False)


@pytest.fixture
def file_store(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    return f"file:{tmp_path / 'mlruns'}"


@pytest.mark.slow
def test_export_reads_back_through_mlflows_client(committed, file_store, capsys):
    mlflow_tracking = pytest.importorskip("mlflow.tracking")  # imported here: MLflow takes seconds to import
    run, uri = committed.run, committed.uri
    assert main(["export", uri, "--to", "mlflow", "--tracking-uri", file_store]) == 0
    printed = capsys.readouterr().out
    client = mlflow_tracking.MlflowClient(tracking_uri=file_store)
    experiment = client.get_experiment_by_name("churn-export")
    (exported,) = client.search_runs([experiment.experiment_id])
    assert exported.info.run_id in printed and exported.info.status == "FINISHED"
    assert exported.data.tags["evalpipe.run_id"] == run.id and exported.data.tags["evalpipe.run_uri"] == uri
    metrics = exported.data.metrics
    expected: dict[str, float] = {}
    intervals = 0
    for point in run.points:
        prefix = "" if point.name == "overall" else point.name.replace("=", "-") + "/"
        for key, metric in point.metrics.items():
            name = prefix + key.replace("[", ".").replace("]", "").replace(",", ".")
            expected[name] = metric.value
            if metric.lower is not None:
                expected[name + "_lower"], expected[name + "_upper"] = metric.lower, metric.upper
                intervals += 1
    assert intervals > 10 and len(run.points) > 2
    assert metrics == pytest.approx(expected, rel=0, abs=0)
    assert "confusion_matrix.1.0" in metrics
    assert any(k.startswith("country-") and k.endswith("/roc_auc_upper") for k in metrics)
    params = exported.data.params
    assert params["task"] == "binary" and params["metrics.3.name"] == "f1_score" and params["metrics.3.as"] == "f1"
    assert params["confidence.replicates"] == "20" and params["slices.0.column"] == "country"
    artifacts = {f.path for f in client.list_artifacts(exported.info.run_id)}
    assert artifacts == {"report.html", "run.json"}
    local = client.download_artifacts(exported.info.run_id, "report.html", str(Path(file_store[5:]).parent))
    assert "churn-export" in Path(local).read_text()
    # a second export of the same run finds it instead of creating another
    assert main(["export", uri, "--to", "mlflow", "--tracking-uri", file_store]) == 0
    assert "already in" in capsys.readouterr().out
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_mlflow_names_are_safe_and_keep_vectors_apart():
    assert mlflow_name("confusion_matrix[0,1]") == "confusion_matrix.0.1"
    assert mlflow_name("country=de/f1_score(average=macro)") == "country-de/f1_score_average-macro_"
    assert mlflow_name("a//../b") == "a/b"


def test_export_without_mlflow_prints_the_install_hint_and_exits_2(committed, tmp_path):
    shadow = tmp_path / "shadow" / "mlflow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named mlflow')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "export", committed.uri, "--to", "mlflow"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"evalpipe: error: {INSTALL_HINT}"


def _sliced_run(tmp_path, values: list[str]) -> str:
    """The uri of a committed local run of 600 rows with slice column ``tag`` cycling through ``values``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(6)
    data = tmp_path / "data"
    data.mkdir()
    label = rng.integers(0, 2, 600)
    table = pa.table({"score": rng.random(600), "label": label, "tag": [values[i % len(values)] for i in range(600)]})
    pq.write_table(table, data / "part.parquet")
    spec = {
        "name": "long-tags",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy", "roc_auc"],
        "slices": [{"column": "tag"}],
        "confidence": {"replicates": 10, "buckets": 8},
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    return run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False).uri


def test_names_beyond_mlflows_limit_are_cut_and_kept_apart():
    long = "country-" + "x" * 300 + "/roc_auc"
    assert len(mlflow_name(long)) == 250 and len(mlflow_name(long + ".error_bound")) == 250
    assert mlflow_name(long) != mlflow_name(long + ".error_bound")
    assert mlflow_name(long) == mlflow_name(long)  # the same name each time
    assert mlflow_name("y" * 250) == "y" * 250  # at the limit: as it is


@pytest.mark.slow
def test_slice_values_of_300_characters_export_every_entry(tmp_path, file_store):
    mlflow_tracking = pytest.importorskip("mlflow.tracking")
    values = ["v" * 299 + "a", "v" * 299 + "b"]  # the same first 299 characters
    uri = _sliced_run(tmp_path, values)
    assert main(["export", uri, "--to", "mlflow", "--tracking-uri", file_store]) == 0
    client = mlflow_tracking.MlflowClient(tracking_uri=file_store)
    (exported,) = client.search_runs([client.get_experiment_by_name("long-tags").experiment_id])
    assert exported.info.status == "FINISHED"
    from pipelines.results import load_run

    run = load_run(uri)
    expected = sum(1 + 2 * (m.lower is not None) for p in run.points for m in p.metrics.values())
    names = exported.data.metrics
    assert len(names) == expected and all(len(name) <= 250 for name in names)
    for value in values:
        point = run.point(f"tag={value}")
        entry = mlflow_name(f"tag={value}/roc_auc.error_bound")
        assert names[entry] == point.metrics["roc_auc.error_bound"].value


@pytest.mark.slow
def test_entries_whose_names_collide_are_refused_before_a_run_is_created(tmp_path, file_store, capsys):
    mlflow_tracking = pytest.importorskip("mlflow.tracking")
    uri = _sliced_run(tmp_path, ["a?b", "a!b"])  # both `tag-a_b` in MLflow
    assert main(["export", uri, "--to", "mlflow", "--tracking-uri", file_store]) == 2
    assert "is taken by another entry of the run" in capsys.readouterr().err
    client = mlflow_tracking.MlflowClient(tracking_uri=file_store)
    experiment = client.get_experiment_by_name("long-tags")
    assert experiment is None or not client.search_runs([experiment.experiment_id])
