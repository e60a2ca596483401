"""Object storage for real: jobs read and write s3:// on a loopback S3 server (moto) through s3fs; only committed
runs are visible; concurrent runs never clobber each other; reruns are refused when configured; baselines and
`evalpipe runs/compare` exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from pipelines import spec as spec_module
from pipelines.cli import main as cli_main
from pipelines.errors import UserError
from pipelines.execute import check_dataset, run_job
from pipelines.results import compare, compare_all, list_runs, load_run, load_runs, trend
from pipelines.storage import COMMIT_MARKER
from pipelines.synthetic import binary_table, write_shards
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-value-that-must-not-leak"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3 endpoint on 127.0.0.1 with a bucket of prediction shards."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its buckets per process, not per server: start from none even when another module of this
    # process (one that imports this fixture) had a server before
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    no_proxy.open(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
    env = {"AWS_ACCESS_KEY_ID": "evalpipe-test", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    fs.mkdir("predictions")
    fs.mkdir("results")
    local = tmp_path_factory.mktemp("shards")
    write_shards(str(local), "binary", 30_000, 3, seed=4, row_group_rows=5_000)
    for path in sorted(local.glob("*.parquet")):
        fs.put(str(path), f"predictions/2026-11-22/{path.name}")
    yield {"endpoint": endpoint, "fs": fs, "env": env, "local": local}
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _spec(tmp_path: Path, s3, name="nightly", **extra) -> dict:
    options = {"endpoint_url": s3["endpoint"]}
    spec = {
        "name": name,
        "data": {
            "path": "s3://predictions/2026-11-22/*.parquet",
            "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"},
            "storage_options": options,
        },
        "task": "binary",
        "metrics": ["accuracy", "f1_score", {"name": "roc_auc", "as": "auc"}, "log_loss"],
        "slices": [{"column": "country"}],
        "execution": {"runner": "local", "unit_rows": 10_000},
        "output": {"uri": "s3://results/evals", "storage_options": options},
    }
    spec.update(extra)
    return spec


def _load(tmp_path: Path, spec: dict, file="job.yaml"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return spec_module.load(str(write_job(tmp_path / file, spec)))


def _options(s3) -> dict:
    return {"endpoint_url": s3["endpoint"]}


def test_job_reads_and_writes_s3_and_only_committed_runs_are_listed(tmp_path, s3):
    outcome = run_job(_load(tmp_path, _spec(tmp_path, s3, name="s3-job")), show_progress=False)
    assert outcome.uri.startswith("s3://results/evals/s3-job/")
    # the values are those of the same rows read locally
    table = pq.read_table(s3["local"])
    y = table.column("label").to_numpy()
    p = table.column("score").to_numpy()
    run = load_run(outcome.uri, _options(s3))
    assert run.point("overall").metrics["accuracy"].value == pytest.approx(np.mean((p > 0.5) == y), abs=1e-15)
    fs: s3fs.S3FileSystem = s3["fs"]
    # an uncommitted copy (a driver that died before its manifest) and a run whose listed file is gone
    run_path = outcome.uri.removeprefix("s3://")
    for suffix, drop in (("-nomanifest", COMMIT_MARKER), ("-truncated", "metrics.parquet")):
        copy = run_path + suffix
        for name in fs.ls(run_path):
            base = name.rsplit("/", 1)[-1]
            if base != drop:
                fs.copy(name, f"{copy}/{base}")
    listed = list_runs("s3://results/evals", storage_options=_options(s3))
    assert [r.run_id for r in listed] == [run.id]
    frame = load_runs("s3://results/evals", job="s3-job", storage_options=_options(s3))
    assert frame["run_id"].unique().to_list() == [run.id]
    overall = frame.filter((frame["point"] == "overall") & (frame["metric"] == "auc"))
    assert overall["value"].to_list() == [run.point("overall").metrics["auc"].value]
    assert set(frame["point"].unique().to_list()) == {p.name for p in run.points}
    # credentials never land in records: the secret is in the environment only
    for name in fs.find(run_path):
        assert SECRET.encode() not in fs.cat(name)


def test_storage_options_secrets_are_redacted_in_the_run(tmp_path, s3):
    spec = _spec(tmp_path, s3, name="keyed")
    for section in ("data", "output"):
        spec[section]["storage_options"].update({"key": "evalpipe-test", "secret": SECRET})
    outcome = run_job(_load(tmp_path, spec), show_progress=False)
    fs: s3fs.S3FileSystem = s3["fs"]
    for name in fs.find(outcome.uri.removeprefix("s3://")):
        assert SECRET.encode() not in fs.cat(name), name
    recorded = load_run(outcome.uri, _options(s3)).metadata["spec"]
    assert recorded["output"]["storage_options"]["secret"] == "<redacted>"


def _cli(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines", *args],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_two_concurrent_runs_both_commit_and_nothing_is_overwritten(tmp_path, s3):
    job = write_job(tmp_path / "job.yaml", _spec(tmp_path, s3, name="concurrent"))
    procs = [_cli(["run", str(job), "--quiet"], s3["env"]) for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    runs = list_runs("s3://results/evals", job="concurrent", storage_options=_options(s3))
    assert len(runs) == 2 and runs[0].run_id != runs[1].run_id
    first, second = (load_run(r.uri, _options(s3)) for r in runs)
    assert first.point("overall").metrics["auc"].value == second.point("overall").metrics["auc"].value
    for r in runs:  # each manifest still lists exactly its own run's files, with the sizes found
        manifest = json.loads(s3["fs"].cat(f"{r.uri.removeprefix('s3://')}/{COMMIT_MARKER}"))
        assert manifest["run_id"] == r.run_id


def test_a_driver_killed_before_commit_leaves_no_visible_run(tmp_path, s3):
    local = tmp_path / "big"
    write_shards(str(local), "binary", 2_000_000, 8, seed=2)  # about 30 s of work: killed well before the end
    spec = _spec(tmp_path, s3, name="killed")
    spec["data"] = {"path": str(local), "columns": {"predictions": "score", "targets": "label"}}
    spec["execution"]["unit_rows"] = 20_000
    spec["confidence"] = {"replicates": 200}
    job = write_job(tmp_path / "killed.yaml", spec)
    proc = _cli(["run", str(job)], s3["env"], start_new_session=True)
    time.sleep(5)
    assert proc.poll() is None, "the job finished before it could be killed; make it larger"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert list_runs("s3://results/evals", job="killed", storage_options=_options(s3)) == []


@pytest.mark.slow
def test_rerun_for_the_same_inputs_is_refused_when_configured(tmp_path, s3):
    spec = _spec(tmp_path, s3, name="once")
    spec["output"]["on_existing"] = "refuse"
    first = run_job(_load(tmp_path, spec), show_progress=False)
    with pytest.raises(UserError, match="already has a committed run for these inputs"):
        run_job(_load(tmp_path, spec, "again.yaml"), show_progress=False)
    # two concurrent refusing runs of another night: exactly one commits, the other exits 2
    spec["name"] = "once-concurrent"
    job = write_job(tmp_path / "race.yaml", spec)
    procs = [_cli(["run", str(job), "--quiet"], s3["env"]) for _ in range(2)]
    for p in procs:
        p.communicate(timeout=240)
    assert sorted(p.returncode for p in procs) == [0, 2]
    assert len(list_runs("s3://results/evals", job="once-concurrent", storage_options=_options(s3))) == 1
    # the default policy adds a new run
    spec["name"] = "once"
    spec["output"]["on_existing"] = "new"
    again = run_job(_load(tmp_path, spec, "new.yaml"), show_progress=False)
    assert again.run.id != first.run.id
    assert len(list_runs("s3://results/evals", job="once", storage_options=_options(s3))) == 2


def _write_local(directory: Path, seed: int, noise: float, rows: int = 20_000) -> Path:
    table = binary_table(np.random.default_rng(seed), rows)
    if noise:
        rng = np.random.default_rng(seed + 100)
        score = table.column("score").to_numpy().astype(np.float64)
        flipped = np.where(rng.random(rows) < noise, 1.0 - score, score).astype(np.float32)
        table = table.set_column(table.schema.get_field_index("score"), "score", [flipped])
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / "part-0.parquet")
    return directory


def _local_job(tmp_path: Path, data: Path, name: str, **extra) -> dict:
    spec = {
        "name": name,
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"}},
        "task": "binary",
        "metrics": ["accuracy", {"name": "roc_auc", "as": "auc"}, "log_loss"],
        "confidence": {"replicates": 100, "samples": True},
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "results")},
    }
    spec.update(extra)
    return spec


def test_compare_flags_a_planted_regression_and_not_an_equal_run(tmp_path, capsys):
    good = _write_local(tmp_path / "good", 1, 0.0)
    bad = _write_local(tmp_path / "bad", 1, 0.08)  # the same rows, 8% of scores flipped
    base = run_job(_load(tmp_path, _local_job(tmp_path, good, "gate"), "a.yaml"), show_progress=False)
    same = run_job(_load(tmp_path, _local_job(tmp_path, good, "gate"), "b.yaml"), show_progress=False)
    worse = run_job(_load(tmp_path, _local_job(tmp_path, bad, "gate"), "c.yaml"), show_progress=False)
    assert compare(base.uri, same.uri) == []
    regressions = compare(base.uri, worse.uri, tolerance=0.001)
    assert {r.metric for r in regressions} == {"accuracy", "auc", "log_loss"}
    auc = next(r for r in regressions if r.metric == "auc")
    assert auc.baseline_value == base.run.point("overall").metrics["auc"].value
    assert auc.current_value == worse.run.point("overall").metrics["auc"].value
    assert auc.delta_pct == pytest.approx(100 * (auc.current_value - auc.baseline_value) / auc.baseline_value)
    # log loss is lower-is-better: it regressed because it went up
    comparisons = {c.metric: c for c in compare_all(base.uri, worse.uri)}
    assert comparisons["log_loss"].current > comparisons["log_loss"].baseline
    assert comparisons["auc"].significance is not None and comparisons["auc"].significance.p_value < 0.05
    # a tolerance larger than the drop lets it pass
    drop = base.run.point("overall").metrics["accuracy"].value - worse.run.point("overall").metrics["accuracy"].value
    assert "accuracy" not in {r.metric for r in compare(base.uri, worse.uri, tolerance={"accuracy": drop + 1e-9})}
    # the CLI: exit 0 for the equal run, 3 for the regression, 2 for a path without a run
    assert cli_main(["compare", base.uri, same.uri]) == 0
    assert cli_main(["compare", base.uri, worse.uri, "--tolerance", "0.001"]) == 3
    assert "REGRESSED" in capsys.readouterr().out
    assert cli_main(["compare", base.uri, str(tmp_path / "nothing")]) == 2
    assert "no evalpipe run here" in capsys.readouterr().err
    assert cli_main(["runs", str(tmp_path / "results"), "--job", "gate"]) == 0
    listing = capsys.readouterr().out
    assert all(r.run.id in listing for r in (base, same, worse)) and "3 committed runs" in listing
    # local results scan lazily, with the same rows as the eager read
    eager = load_runs(str(tmp_path / "results"), job="gate")
    lazy = load_runs(str(tmp_path / "results"), job="gate", lazy=True)
    assert lazy.collect().equals(eager) and eager.height == 3 * len(base.run.point("overall").metrics)
    series = trend(str(tmp_path / "results"), "gate", "auc")
    assert [p.run_id for p in series.points] == [base.run.id, same.run.id, worse.run.id]
    assert [p.value for p in series.points] == [
        r.run.point("overall").metrics["auc"].value for r in (base, same, worse)
    ]


def test_baseline_latest_compares_with_the_previous_run(tmp_path, capsys):
    good = _write_local(tmp_path / "good", 2, 0.0)
    bad = _write_local(tmp_path / "bad", 2, 0.1)
    spec = _local_job(tmp_path, good, "gated", baseline={"run": "latest", "tolerance": 0.001})
    first = run_job(_load(tmp_path, spec, "1.yaml"), show_progress=False)
    assert first.run.metadata["baseline"]["found"] is None and first.regressions == ()
    spec["data"]["path"] = str(bad)
    job = write_job(tmp_path / "2.yaml", spec)
    assert cli_main(["run", str(job), "--quiet"]) == 3
    out = capsys.readouterr().out
    assert f"baseline: {first.run.id}" in out and "REGRESSED overall auc" in out
    latest = list_runs(str(tmp_path / "results"), job="gated")[-1]
    recorded = load_run(latest.uri).metadata["baseline"]
    assert recorded["found"] == first.run.id
    assert {r["metric"] for r in recorded["regressions"]} == {"accuracy", "auc", "log_loss"}


def test_exclusive_create_holds_on_s3(s3):
    """The commit primitive: a conditional PUT (If-None-Match: *) that refuses to replace an object."""
    from pipelines.storage import create_exclusive

    fs: s3fs.S3FileSystem = s3["fs"]
    create_exclusive(fs, "results/exclusive/marker", b"first")
    with pytest.raises(FileExistsError):
        create_exclusive(fs, "results/exclusive/marker", b"second")
    assert fs.cat("results/exclusive/marker") == b"first"


def test_missing_credentials_are_a_user_error(tmp_path, s3):
    """No credentials anywhere: exit 2 with one paragraph naming data.path, not a traceback."""
    job = write_job(tmp_path / "job.yaml", _spec(tmp_path, s3, name="nocreds"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",  # no instance-metadata lookup: loopback only
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "validate", str(job)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert "data.path 's3://predictions/2026-11-22/*.parquet'" in done.stderr and "credentials" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_storage_option_the_filesystem_does_not_take_is_a_spec_error(tmp_path, s3):
    """s3fs passes unknown options to its session when it first lists: a TypeError there was a traceback."""
    spec = _spec(tmp_path, s3, name="badoption")
    spec["data"]["storage_options"] = {**_options(s3), "bogus_option": 1}
    with pytest.raises(spec_module.SpecError, match=r"data\.storage_options: the filesystem of .* 'bogus_option'"):
        check_dataset(_load(tmp_path, spec))


class _Interrupted(Exception):
    """Raised in the main thread by SIGUSR1, as SIGTERM (``ray job stop``) or Ctrl-C would be."""


def test_a_write_interrupted_mid_upload_aborts_the_multipart_upload_and_commits_nothing(tmp_path, s3):
    import threading

    from pipelines.storage import run_location, write_run

    options = {**_options(s3), "default_block_size": 5 * 2**20}
    outcome = run_job(_load(tmp_path, _spec(tmp_path, s3, name="interrupted")), show_progress=False)
    job_dir = "results/evals/interrupted-write"
    location = run_location("s3://results/evals", "interrupted-write", outcome.run.id, options)
    payload = np.random.default_rng(0).bytes(40 * 2**20)  # 8 parts of 5 MiB
    fs = s3["fs"]

    def interrupt_when_uploading() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if fs.list_multipart_uploads("results"):
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
                return
            time.sleep(0.005)

    def raise_interrupted(signum, frame):
        raise _Interrupted()

    previous = signal.signal(signal.SIGUSR1, raise_interrupted)
    watcher = threading.Thread(target=interrupt_when_uploading, daemon=True)
    watcher.start()
    try:
        with pytest.raises(_Interrupted):
            write_run(location, outcome.run, "interrupted-write", (), {}, extra_files={"big.bin": payload})
            time.sleep(10)  # a signal that comes late still lands inside this block
    finally:
        signal.signal(signal.SIGUSR1, previous)
        watcher.join(timeout=60)
    fs.invalidate_cache()
    assert fs.list_multipart_uploads("results") == []  # aborted, not dangling
    assert not fs.exists(job_dir) or fs.find(job_dir) == []  # the run's files were removed
    assert list_runs("s3://results/evals", job="interrupted-write", storage_options=_options(s3)) == []


def test_leftover_checkpoints_are_listed_and_removed_on_s3(s3):
    from pipelines.checkpoints import list_leftover_checkpoints, remove_checkpoints

    fs, options = s3["fs"], {"endpoint_url": s3["endpoint"]}
    directory = "results/leftovers/stopped/_checkpoints/runkey-fingerprint"
    fs.pipe({f"{directory}/unit-a.npz": b"x" * 1000, f"{directory}/unit-b.npz": b"y" * 234})
    before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    (found,) = list_leftover_checkpoints("s3://results/leftovers", storage_options=options)
    assert (found.job, found.uri, found.units, found.bytes) == ("stopped", f"s3://{directory}", 2, 1234)
    assert before < found.last_written < dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert list_leftover_checkpoints("s3://results/leftovers", job="other", storage_options=options) == []
    remove_checkpoints(found, options)
    fs.invalidate_cache()
    assert not fs.exists(f"{directory}/unit-a.npz")
    assert list_leftover_checkpoints("s3://results/leftovers", storage_options=options) == []
