"""End to end through ``ray job submit``: a Ray head started with ``ray start``, token auth on, the job
submitted with the Jobs CLI, and the committed run checked against scikit-learn.

How the cluster is set up, and why:

* Loopback only. Ray rewrites ``127.0.0.1`` to the machine's outward address, and for any other node IP
  (``127.0.0.2`` included) its GCS, raylet, worker and metrics servers listen on all interfaces. With
  ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray keeps ``127.0.0.1`` (as it does on macOS) and binds every server
  to it; :func:`_listening_addresses` checks that nothing of this cluster listens elsewhere.
* Token auth with a fresh token passed as ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` to ``ray start`` and
  to ``ray job submit``; ``~/.ray/auth_token`` is neither read nor written. The job's driver inherits both
  from the head, so ``pipelines.runners.ray`` connects without further setup.
* Isolated from other Ray clusters of the same pytest session (tests that call ``ray.init``): own temp dir
  (short: unix socket paths are limited to 107 bytes), own ports, no ``RAY_*`` variables inherited, and
  ``ray start --block`` in a new session, stopped with SIGTERM to that process (which stops the cluster's
  processes) rather than ``ray stop``, which would kill every Ray process on the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn import metrics as skm

from pipelines.outcome import OUTCOME_PREFIX, outcome_uri, parse_outcome
from pipelines.storage import COMMIT_MARKER, read_run
from pipelines.synthetic import concatenated, write_shards
from tests.conftest import add_file_column, text_function_job

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the cluster's processes in /proc"),
]

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
JOB_NAME = "submit-binary"
ROWS = 50_000
SHARDS = 11
UNIT_ROWS = 8_000
START_TIMEOUT_S = 60
JOB_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Head:
    address: str  # dashboard (Jobs API) URL
    env: dict[str, str]  # environment for Ray CLI commands against this head
    token: str
    session: int  # session id of every process of the cluster
    log: Path  # output of ``ray start``


def _ray_env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        # fixed by default (44217, 44227): would collide with another local cluster
        AUTOSCALER_METRIC_PORT=str(_free_port()),
        DASHBOARD_METRIC_PORT=str(_free_port()),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    for name in ("NO_PROXY", "no_proxy"):  # the Jobs CLI honours proxy variables
        env[name] = ",".join(filter(None, [env.get(name), HOST]))
    return env


# The Jobs REST API, straight to loopback: no proxy from the environment, no Ray state in this process.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _api(head: Head, path: str, *, method: str = "GET", token: str | None = None) -> dict:
    """JSON from the Jobs API of ``head``, authorised with ``token`` (default: the head's)."""
    request = urllib.request.Request(f"{head.address}{path}", method=method)
    request.add_header("Authorization", f"Bearer {head.token if token is None else token}")
    with _HTTP.open(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to ``ray start --block`` stops the cluster; SIGKILL the whole session if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _session_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _session_pids(proc.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _session_pids(session: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == session:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _listening_addresses(session: int) -> set[tuple[str, int]]:
    """``(ip, port)`` of every TCP socket listened on by a process of ``session`` (Linux /proc)."""
    listening: dict[str, tuple[str, int]] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = b"".join(bytes.fromhex(hex_ip[i : i + 8])[::-1] for i in range(0, len(hex_ip), 8))
            ip = ipaddress.ip_address(raw)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            listening[fields[9]] = (str(ip), int(hex_port, 16))
    found = set()
    for pid in _session_pids(session):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in listening:
                found.add(listening[link[8:-1]])
    return found


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[Head]:
    yield from _start_head(tmp_path)


def _start_head(tmp_path: Path, extra_env: dict[str, str] | None = None) -> Iterator[Head]:
    token = secrets.token_hex(32)
    env = {**_ray_env(token), **(extra_env or {})}
    temp_dir = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    dashboard_port = _free_port()
    agent_port = _free_port()
    log = tmp_path / "ray-start.log"
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={HOST}",
        f"--port={_free_port()}",
        "--include-dashboard=true",
        f"--dashboard-host={HOST}",
        f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={agent_port}",
        f"--ray-client-server-port={_free_port()}",
        "--num-cpus=2",
        "--num-gpus=0",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(f"http://{HOST}:{dashboard_port}", env, token, proc.pid, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}:\n{log.read_text()}")
            try:
                _api(head, "/api/version")
                # jobs are handed to the node's job agent: a busy machine starts it after the dashboard
                socket.create_connection((HOST, agent_port), timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the Ray dashboard or job agent did not come up in {START_TIMEOUT_S} s:\n{log.read_text()}"
                    )
                time.sleep(0.5)
        yield head
    finally:
        _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _write_job(tmp_path: Path) -> tuple[Path, list[str], Path]:
    paths = write_shards(str(tmp_path / "data"), "binary", ROWS, SHARDS, seed=7)
    output = tmp_path / "out"
    spec = {
        "name": JOB_NAME,
        "data": {
            "path": str(tmp_path / "data" / "*.parquet"),
            "columns": {"predictions": "score", "targets": "label"},
        },
        "task": "binary",
        "metrics": ["accuracy", {"name": "roc_auc", "mode": "exact", "as": "roc_auc"}, "f1_score", "log_loss"],
        "execution": {"runner": "ray", "actors": 2, "num_cpus": 1, "unit_rows": UNIT_ROWS},
        "output": {"uri": str(output)},
    }
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(spec, sort_keys=False))
    return job, paths, output


@pytest.mark.slow
def test_ray_job_submit_end_to_end(tmp_path: Path, ray_head: Head) -> None:
    job, paths, output = _write_job(tmp_path)
    submission_id = f"evalpipe-test-{secrets.token_hex(4)}"
    # as the README writes it: this checkout shipped with --working-dir (Ray leaves out `.git`), its commit
    # and branch read on the submitting side
    commit = _git("rev-parse", "HEAD")
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    entrypoint = [sys.executable, "-m", "pipelines", "run", str(job), "--quiet", "--commit", commit, "--branch", branch]
    _submit(ray_head, entrypoint, {}, submission_id, working_dir=REPO)
    # token auth is on: the Jobs API turns away a request with a wrong token
    with pytest.raises(urllib.error.HTTPError) as denied:
        _api(ray_head, f"/api/jobs/{submission_id}", token=secrets.token_hex(32))
    assert denied.value.code == 403

    deadline = time.monotonic() + JOB_TIMEOUT_S
    status = _api(ray_head, f"/api/jobs/{submission_id}")["status"]
    while status not in ("SUCCEEDED", "FAILED", "STOPPED") and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _api(ray_head, f"/api/jobs/{submission_id}")["status"]
    logs = _api(ray_head, f"/api/jobs/{submission_id}/logs")["logs"]
    if status not in ("SUCCEEDED", "FAILED", "STOPPED"):
        _api(ray_head, f"/api/jobs/{submission_id}/stop", method="POST")
    assert status == "SUCCEEDED", f"job {submission_id} is {status} (waited up to {JOB_TIMEOUT_S} s); logs:\n{logs}"

    # every server of this cluster listens on loopback only
    outside = {
        (ip, port) for ip, port in _listening_addresses(ray_head.session) if not ipaddress.ip_address(ip).is_loopback
    }
    assert not outside, f"Ray listens outside loopback: {sorted(outside)}"

    runs = [d for d in (output / JOB_NAME).iterdir() if (d / COMMIT_MARKER).is_file()]
    assert len(runs) == 1, f"expected one committed run under {output / JOB_NAME}, found {runs}"
    uri = str(runs[0])
    assert f"run: {uri}" in logs
    run = read_run(uri)
    assert (run.commit, run.branch) == (commit, branch)
    # the outcome: the last line of the job's log, and a file next to the run
    outcome = parse_outcome(logs)
    assert outcome is not None and logs.rstrip().splitlines()[-1].startswith(OUTCOME_PREFIX)
    assert outcome == {
        "status": "committed",
        "exit_code": 0,
        "job": JOB_NAME,
        "run_id": run.id,
        "run_uri": uri,
        "regressions": [],
        "error": None,
    }
    assert json.loads(Path(outcome_uri(str(output), JOB_NAME, run.id)).read_text()) == outcome

    assert run.environment["runner"] == "ray"
    assert run.environment["workers"] == 2
    assert run.metadata["rows"] == ROWS
    assert run.metadata["units"] >= SHARDS

    (point,) = run.points
    assert point.name == "overall"
    values = {name: m.value for name, m in point.metrics.items()}
    data = concatenated(paths, ["score", "label"])
    y, p = data["label"].astype(np.int64), data["score"].astype(np.float64)
    expected = {
        "accuracy": skm.accuracy_score(y, p > 0.5),
        "roc_auc": skm.roc_auc_score(y, p),
        "f1_score": skm.f1_score(y, p > 0.5),
        "log_loss": skm.log_loss(y, p),
        "rows": float(ROWS),
    }
    assert values.keys() == expected.keys()
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name


# --- ray job stop, secrets ----------------------------------------------------------------------------------

BUCKET = "job-stop-results"
SENTINELS = {
    "head environment": "sentinel-head-env-7f3a9c",
    "runtime env": "sentinel-runtime-env-51d0e2",
    "storage_options": "sentinel-storage-options-b84c11",
}


@pytest.fixture
def s3_server() -> Iterator[tuple[str, object]]:
    """A loopback S3 endpoint (moto) with an empty bucket ``BUCKET``, and an s3fs client for it. moto keeps its
    buckets per process, not per server: the bucket is removed again at the end."""
    import s3fs
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    endpoint = f"http://{HOST}:{port}"
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="evalpipe-test", secret="any")
    fs.mkdir(BUCKET)
    try:
        yield endpoint, fs
    finally:
        with contextlib.suppress(Exception):
            fs.rm(BUCKET, recursive=True)
        server.stop()


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()


def _submit(
    head: Head, entrypoint: list[str], runtime_env: dict, submission_id: str, working_dir: Path | None = None
) -> None:
    submit = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            f"--address={head.address}",
            f"--submission-id={submission_id}",
            *([f"--working-dir={working_dir}"] if working_dir else []),
            *([f"--runtime-env-json={json.dumps(runtime_env)}"] if runtime_env else []),
            "--no-wait",
            "--",
            *map(shlex.quote, entrypoint),
        ],
        env=head.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submit.returncode == 0, f"ray job submit failed:\n{submit.stdout}\n{submit.stderr}"


def _wait_status(head: Head, submission_id: str, timeout: float = JOB_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout
    status = _api(head, f"/api/jobs/{submission_id}")["status"]
    while status not in ("SUCCEEDED", "FAILED", "STOPPED") and time.monotonic() < deadline:
        time.sleep(0.2)
        status = _api(head, f"/api/jobs/{submission_id}")["status"]
    return status


@pytest.fixture
def ray_head_with_secret(tmp_path: Path) -> Iterator[Head]:
    """``ray_head`` whose processes (and so the job's driver) carry a sentinel environment variable."""
    yield from _start_head(tmp_path, {"EVALPIPE_TEST_HEAD_SECRET": SENTINELS["head environment"]})


@pytest.mark.slow
def test_ray_job_stop_commits_nothing_leaves_no_upload_and_no_secret_is_written(
    tmp_path: Path, ray_head_with_secret: Head, s3_server
) -> None:
    head = ray_head_with_secret
    endpoint, fs = s3_server
    hold = tmp_path / "hold"
    hold.write_text("hold")
    paths = write_shards(str(tmp_path / "data"), "text", 800, 4, seed=3, row_group_rows=100)
    add_file_column(paths, "hold", ["", "", "", str(hold)])  # the last file's unit waits while `hold` exists
    options = {"endpoint_url": endpoint, "key": "evalpipe-test", "secret": SENTINELS["storage_options"]}
    execution = {"runner": "ray", "actors": 2, "num_cpus": 1, "unit_rows": 200}
    output = {"uri": f"s3://{BUCKET}/evals", "storage_options": options}
    spec = text_function_job("stoppable", str(tmp_path / "data"), output, execution, "hold_while", "hold")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(spec, sort_keys=False))
    runtime_env = {
        "env_vars": {
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            "EVALPIPE_TEST_RUNTIME_SECRET": SENTINELS["runtime env"],
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    }
    entrypoint = [sys.executable, "-m", "pipelines", "run", str(job), "--quiet"]
    stopped_id = f"evalpipe-stop-{secrets.token_hex(4)}"
    _submit(head, entrypoint, runtime_env, stopped_id)

    # three of the four units finish and are checkpointed; the fourth waits on `hold`
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while len([p for p in fs.find(f"{BUCKET}/evals/stoppable") if p.endswith(".npz")]) < 3:
        status = _api(head, f"/api/jobs/{stopped_id}")["status"]
        logs = _api(head, f"/api/jobs/{stopped_id}/logs")["logs"]
        assert status in ("PENDING", "RUNNING") and time.monotonic() < deadline, f"{status}; logs:\n{logs}"
        time.sleep(0.3)
        fs.invalidate_cache()
    stop = subprocess.run(
        [str(BIN / "ray"), "job", "stop", f"--address={head.address}", stopped_id],
        env=head.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stop.returncode == 0, stop.stderr
    # The held unit never finishes on its own (`hold` still exists), so a STOPPED job with evalpipe's SIGTERM
    # paragraph is the proof that the stop ended it. The wall time of `ray job stop` itself (a Ray client process
    # that imports Ray, then waits for the job) is not bounded here: it was 33 s at load 13. evalpipe's own bound
    # from SIGTERM to exit is tested in test_output_faults.
    status = _wait_status(head, stopped_id, timeout=60)
    logs = _api(head, f"/api/jobs/{stopped_id}/logs")["logs"]
    assert status == "STOPPED" and hold.exists(), (status, logs)
    assert "stopped (SIGTERM); nothing was committed" in logs, logs

    fs.invalidate_cache()
    left = fs.find(BUCKET)
    assert left and all("/_checkpoints/" in p for p in left), left  # only the marked checkpoints remain
    assert fs.list_multipart_uploads(BUCKET) == []

    # the same job again: the finished units are reused, the run commits
    hold.unlink()
    rerun_id = f"evalpipe-rerun-{secrets.token_hex(4)}"
    _submit(head, entrypoint, runtime_env, rerun_id)
    status = _wait_status(head, rerun_id)
    rerun_logs = _api(head, f"/api/jobs/{rerun_id}/logs")["logs"]
    assert status == "SUCCEEDED", rerun_logs
    fs.invalidate_cache()
    (marker,) = [p for p in fs.find(BUCKET) if p.endswith(COMMIT_MARKER)]
    run = read_run(f"s3://{marker.rsplit('/', 1)[0]}", spec["output"]["storage_options"])
    assert run.metadata["resumed_units"] == [0, 1, 2]
    assert run.point("overall").metrics["hold_while.words.count"].value == 800

    # no sentinel in any byte written to the bucket, nor in either job's output
    written = b"".join(fs.cat_file(p) for p in fs.find(BUCKET))
    for where, value in SENTINELS.items():
        assert value.encode() not in written, f"the {where} secret was written to the bucket"
        assert value not in logs and value not in rerun_logs, f"the {where} secret was logged"


@pytest.mark.slow
def test_evalpipe_submit_records_the_commit_and_returns_the_real_exit_code(
    tmp_path: Path, ray_head: Head, monkeypatch, capsys
) -> None:
    """``evalpipe submit`` ships this checkout, passes its commit, and exits with the run's own exit code where
    ``ray job submit`` says FAILED for any failure."""
    from pipelines.cli import main

    for name, value in ray_head.env.items():
        if name.startswith("RAY_") or name.lower() == "no_proxy":
            monkeypatch.setenv(name, value)
    job, paths, output = _write_job(tmp_path)
    address = ["--address", ray_head.address, "--working-dir", str(REPO), "--timeout", str(JOB_TIMEOUT_S)]
    assert main(["submit", str(job), *address]) == 0, capsys.readouterr()
    logs = capsys.readouterr().out
    outcome = parse_outcome(logs)
    assert outcome is not None and outcome["status"] == "committed"
    run = read_run(outcome["run_uri"])
    assert outcome["run_uri"].startswith(str(output / JOB_NAME))
    assert (run.commit, run.branch) == (_git("rev-parse", "HEAD"), _git("rev-parse", "--abbrev-ref", "HEAD"))
    data = concatenated(paths, ["score", "label"])
    expected = skm.accuracy_score(data["label"].astype(np.int64), data["score"] > 0.5)
    assert run.point("overall").metrics["accuracy"].value == pytest.approx(expected, abs=1e-12)

    # a user error in the job: Ray says FAILED, evalpipe submit exits 2 with the one-paragraph error
    assert main(["submit", str(job), *address, "--set", "metrics=[acuracy]"]) == 2
    logs = capsys.readouterr().out
    assert "did you mean 'accuracy'" in logs and parse_outcome(logs)["status"] == "user_error"
