"""The nightly deployment files: configs/nightly.yaml renders its date-partitioned input path and validates;
three nights of it commit runs whose trend scripts/trend.ipynb reads back exactly; scripts/nightly.cron and
configs/rayjob.yaml run that same spec, with credentials only from files and Kubernetes secrets."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import struct
import subprocess
from pathlib import Path

import pytest
import yaml
from sklearn import metrics as skm

from pipelines import cli
from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.results import list_runs, load_run, merge_runs
from pipelines.synthetic import concatenated, write_shards

ROOT = Path(__file__).resolve().parent.parent
NIGHTLY = ROOT / "configs" / "nightly.yaml"
RAYJOB = ROOT / "configs" / "rayjob.yaml"
CRON = ROOT / "scripts" / "nightly.cron"
NOTEBOOK = ROOT / "scripts" / "trend.ipynb"

JOB = "churn-nightly"
NIGHTS = ("2026-11-18", "2026-11-19", "2026-11-20")
ROWS = 4_000
SHARDS = 2
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _nightly(preds: Path, results: Path, *extra: str, runner: str | None = None) -> spec_module.JobSpec:
    assignments = [f"vars.root={preds}", f"vars.results={results}", *extra]
    return spec_module.load(str(NIGHTLY), {"set": assignments, "runner": runner})


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Three committed runs of configs/nightly.yaml, one per night, each reading its own date partition."""
    base = tmp_path_factory.mktemp("nightly")
    preds, results = base / "preds", base / "results"
    runs = []
    for seed, day in enumerate(NIGHTS, start=1):
        partition = preds / f"{dt.date.fromisoformat(day):%Y/%m/%d}"
        paths = write_shards(str(partition), "binary", ROWS, SHARDS, seed=seed)
        job = _nightly(
            preds, results, f"vars.DATE={day}", f"commit={COMMIT}", "confidence.replicates=20", runner="local"
        )
        outcome = run_job(job, show_progress=False)
        runs.append((day, partition, paths, outcome))
    return results, runs


def test_each_night_reads_its_own_date_partition(nights):
    results, runs = nights
    listed = list_runs(str(results), JOB)
    assert [r.run_id for r in listed] == [outcome.run.id for _, _, _, outcome in runs]
    aucs = []
    for day, partition, paths, outcome in runs:
        run = load_run(outcome.uri)
        spec = run.metadata["spec"]
        assert spec["vars"]["DATE"] == day
        assert spec["data"]["path"] == f"{partition}/*.parquet"
        assert sorted(i["path"] for i in run.metadata["inputs"]) == sorted(paths)
        assert run.metadata["rows"] == ROWS
        assert run.commit == COMMIT
        overall = run.point("overall").metrics
        assert overall["rows"].value == ROWS
        data = concatenated(paths, ["score", "label"])
        exact = skm.roc_auc_score(data["label"], data["score"])
        assert abs(overall["roc_auc"].value - exact) <= overall["roc_auc.error_bound"].value
        assert overall["accuracy"].value == pytest.approx(((data["score"] > 0.5) == data["label"]).mean(), abs=1e-12)
        assert overall["roc_auc"].lower < overall["roc_auc"].value < overall["roc_auc"].upper
        assert {p.name for p in run.points} >= {"overall", "country=US", "device=web"}
        aucs.append(overall["roc_auc"].value)
    assert len(set(aucs)) == len(NIGHTS)


def test_each_night_commits_a_seven_day_window_run_merged_from_the_nights_so_far(nights):
    results, runs = nights
    windows = list_runs(str(results), f"{JOB}-7d")
    assert len(windows) == len(NIGHTS)
    for count, (info, (_, _, _, outcome)) in enumerate(zip(windows, runs, strict=True), start=1):
        assert outcome.window is not None and outcome.window.uri == info.uri
        window = load_run(info.uri)
        sources = [source["uri"] for source in window.metadata["merged_from"]]
        assert sources == [o.uri for _, _, _, o in runs[:count]]
        assert window.metadata["window"] == {"job": JOB, "runs": None, "days": 7, "skipped": []}
        assert window.point("overall").metrics["rows"].value == count * ROWS
    last = load_run(windows[-1].uri)
    paths = [p for _, _, night_paths, _ in runs for p in night_paths]
    assert sorted(i["path"] for i in last.metadata["inputs"]) == sorted(paths)
    data = concatenated(paths, ["score", "label"])
    overall = last.point("overall").metrics
    assert overall["accuracy"].value == pytest.approx(((data["score"] > 0.5) == data["label"]).mean(), abs=1e-12)
    exact = skm.roc_auc_score(data["label"], data["score"])
    assert abs(overall["roc_auc"].value - exact) <= overall["roc_auc.error_bound"].value
    assert overall["roc_auc"].lower < overall["roc_auc"].value < overall["roc_auc"].upper
    again = merge_runs([o.uri for _, _, _, o in runs], "again", output=str(results))
    assert [(p.name, m) for p in again.run.points for m in p.metrics.items()] == [
        (p.name, m) for p in last.points for m in p.metrics.items()
    ]


def test_trend_notebook_reads_back_the_runs(nights, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    for kernel_side in ("ipykernel", "matplotlib"):
        pytest.importorskip(kernel_side)
    results, runs = nights
    figure = tmp_path / "trend.png"
    monkeypatch.setenv("EVALPIPE_RESULTS", str(results))
    monkeypatch.setenv("EVALPIPE_JOB", JOB)
    monkeypatch.setenv("EVALPIPE_FIGURE", str(figure))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": ROOT}})
    client.execute()

    cells = {c.id: c for c in nb.cells}
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []

    def text(cell_id: str) -> str:
        return "".join(o.get("text", "") for o in cells[cell_id].outputs if o.output_type == "stream")

    run_ids = [outcome.run.id for _, _, _, outcome in runs]
    listing = text("runs").splitlines()
    assert [line.split()[0] for line in listing] == run_ids
    pivot_html = "".join(o.data.get("text/html", "") for o in cells["pivot"].outputs if o.output_type == "display_data")
    assert all(run_id in pivot_html for run_id in run_ids)

    series = json.loads(text("json"))
    assert set(series) == {"roc_auc", "accuracy"}
    for metric, points in series.items():
        assert [p["run_id"] for p in points] == run_ids
        for point, (_, _, _, outcome) in zip(points, runs, strict=True):
            stored = load_run(outcome.uri).point("overall").metrics[metric]
            assert (point["value"], point["lower"], point["upper"]) == (stored.value, stored.lower, stored.upper)
            assert stored.lower is not None and stored.upper is not None

    assert text("save").strip() == f"saved {figure}"
    png = figure.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (9 * 120, round(2.6 * len(series) * 120))  # figsize at dpi 120


def test_nightly_spec_renders_todays_partition_and_validates(tmp_path, capsys):
    preds, results = tmp_path / "preds", tmp_path / "results"
    before = _utc_today()
    job = _nightly(preds, results)
    after = _utc_today()
    assert job.data.paths[0] in {f"{preds}/{day:%Y/%m/%d}/*.parquet" for day in (before, after)}
    assert len(job.data.paths) == 1
    assert job.output.uri == str(results)
    assert job.name == JOB
    assert job.execution.runner == "ray"
    assert job.data.columns.row_id == "row_id"
    assert [s.name for s in job.slices] == ["country", "device", "countryxdevice"]
    assert job.confidence is not None
    assert (job.confidence.replicates, job.confidence.level, job.confidence.seed) == (100, 0.95, 0)
    keys = {m.key: m for m in job.metrics}
    assert keys["roc_auc"].priority == "primary"
    assert keys["ece"].name == "expected_calibration_error" and keys["ece"].params == {"n_bins": 15}
    assert {"accuracy", "average_precision", "log_loss", "brier_score"} <= set(keys)

    defaults = spec_module.load(str(NIGHTLY))
    assert defaults.data.paths[0].startswith("s3://ml-preds/churn/")
    assert defaults.output.uri == "s3://ml-evals"

    # `evalpipe validate` lists today's partition and reads every footer.
    for day in {before, after}:
        write_shards(str(preds / f"{day:%Y/%m/%d}"), "binary", ROWS, SHARDS, seed=7)
    argv = ["validate", str(NIGHTLY), "--set", f"vars.root={preds}", "--set", f"vars.results={results}"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"valid. 9 metrics on a binary task; {SHARDS} files, {ROWS} rows" in out
    assert not results.exists()  # validate computes and writes nothing


def test_unquoted_date_override_is_recordable(tmp_path):
    """`--set vars.DATE=2026-11-20` stays the string it looks like, so the recorded spec is JSON."""
    job = _nightly(tmp_path, tmp_path, "vars.DATE=2026-11-20")
    assert job.data.paths[0] == f"{tmp_path}/2026/11/20/*.parquet"
    assert json.loads(json.dumps(job.recorded, allow_nan=False))["vars"]["DATE"] == "2026-11-20"


def _containers(doc: dict) -> list[dict]:
    """Every container of every pod template in a manifest (any nesting)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    found.extend(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return found


def test_rayjob_manifest():
    docs = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds.count("RayJob") == 1 and kinds.count("CronJob") == 1
    rayjob = next(d for d in docs if d["kind"] == "RayJob")
    assert rayjob["apiVersion"] == "ray.io/v1"
    spec = rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0

    # The entrypoint is a valid evalpipe command line over configs/nightly.yaml.
    entrypoint = shlex.split(spec["entrypoint"])
    assert entrypoint[:5] == ["python", "-m", "pipelines", "run", "configs/nightly.yaml"]
    args = cli.build_parser().parse_args(entrypoint[3:])
    job = spec_module.load(str(ROOT / args.job), {"set": args.set or []})
    assert job.name == JOB

    # A CPU job on CPU pods: no container asks for a GPU, no actor for one.
    cluster = spec["rayClusterSpec"]
    assert job.execution.num_gpus == 0
    assert "nvidia.com/gpu" not in json.dumps(cluster)
    workers = [c for g in cluster["workerGroupSpecs"] for c in g["template"]["spec"]["containers"]]
    assert workers and all(float(c["resources"]["limits"]["cpu"]) >= 1 for c in workers)
    # the same buckets as the cron entry, and a baseline gate
    assert (job.data.paths, job.output.uri) == _cron_job_locations()
    assert job.baseline is not None and job.baseline.run == "latest"

    # Credentials only from Kubernetes secrets: no literal value for any secret-like variable, on any container.
    secret_envs = []
    for doc in docs:
        for container in _containers(doc):
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env, env["name"]
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] and ref["key"]
                    secret_envs.append(env["name"])
                else:
                    assert not re.search(r"AKIA[0-9A-Z]{16}|[A-Za-z0-9/+=]{40}", str(env.get("value", "")))
    # head and GPU workers both read the bucket
    assert secret_envs.count("AWS_ACCESS_KEY_ID") == 2 and secret_envs.count("AWS_SECRET_ACCESS_KEY") == 2

    # The CronJob creates exactly the RayJob document of this file, from the ConfigMap it mounts.
    cron = next(d for d in docs if d["kind"] == "CronJob")
    assert len(cron["spec"]["schedule"].split()) == 5
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert command[:4] == ["/bin/kubectl", "create", "-f", "/manifests/rayjob.yaml"]
    key, value = command[command.index("-l") + 1].split("=")
    assert [d["kind"] for d in docs if d["metadata"].get("labels", {}).get(key) == value] == ["RayJob"]
    assert rayjob["metadata"]["generateName"] and "name" not in rayjob["metadata"]
    assert pod["volumes"][0]["configMap"]["name"] == "evalpipe-nightly-rayjob"


def _cron_job_locations() -> tuple[tuple[str, ...], str]:
    """The nightly job's input paths and output URI as the cron entry sets them."""
    command = next(line for line in CRON.read_text().splitlines() if re.match(r"^[0-9*]", line))
    submit = shlex.split(command.replace("\\%", "%").split(" >> ")[0].split(" && ", 1)[1])
    args = cli.build_parser().parse_args(submit[submit.index("--") + 4 :])
    job = spec_module.load(str(ROOT / args.job), {"set": args.set or []})
    return tuple(job.data.paths), job.output.uri


def test_cron_entry_submits_the_nightly_job():
    lines = [line for line in CRON.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    variables = dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))
    entries = [line for line in lines if not re.match(r"^[A-Z_]+=", line)]
    assert variables["RAY_AUTH_MODE"] == "token"
    assert len(entries) == 1
    fields = entries[0].split(None, 5)
    schedule, command = fields[:5], fields[5]
    assert all(re.fullmatch(r"[0-9*/,-]+", f) for f in schedule), schedule
    assert int(schedule[0]) in range(60) and int(schedule[1]) in range(24)

    assert re.search(r"(?<!\\)%", command) is None  # cron turns a bare % into a newline
    assert re.search(r'RAY_AUTH_TOKEN="\$\(cat "?[^)]+\)"', command)  # the token comes from a file
    assert re.search(r">> ?\S+\.log 2>&1$", command)
    shell = command.replace("\\%", "%")
    syntax = subprocess.run(["bash", "-n", "-c", shell], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr

    submit = shlex.split(shell.split(" >> ")[0].split(" && ", 1)[1])
    ray = submit.index("ray")
    assert submit[ray : ray + 3] == ["ray", "job", "submit"]
    assert submit[submit.index("--address") + 1].startswith("http")
    assert submit[submit.index("--working-dir") + 1] == "."
    entrypoint = submit[submit.index("--") + 1 :]
    assert entrypoint[:5] == ["python", "-m", "pipelines", "run", "configs/nightly.yaml"]
    args = cli.build_parser().parse_args(entrypoint[3:])
    job = spec_module.load(str(ROOT / args.job), {"set": args.set or []})
    assert job.data.paths[0].startswith("s3://") and job.output.uri.startswith("s3://")
    # a same-day rerun gets another submission id; the commit is read at submission (Ray leaves out .git)
    submission_id = submit[submit.index("--submission-id") + 1]
    assert "%H" in submission_id and "%d" in submission_id
    assert args.commit == "$(git rev-parse HEAD)"
    assert job.baseline is not None  # the gate the outcome reports
