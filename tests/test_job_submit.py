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

from pipelines.storage import COMMIT_MARKER, read_run
from pipelines.synthetic import concatenated, write_shards

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the cluster's processes in /proc"),
]

HOST = "127.0.0.1"
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
    token = secrets.token_hex(32)
    env = _ray_env(token)
    temp_dir = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    dashboard_port = _free_port()
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
        f"--dashboard-agent-listen-port={_free_port()}",
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
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"the Ray dashboard did not come up in {START_TIMEOUT_S} s:\n{log.read_text()}")
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


def test_ray_job_submit_end_to_end(tmp_path: Path, ray_head: Head) -> None:
    job, paths, output = _write_job(tmp_path)
    submission_id = f"evalpipe-test-{secrets.token_hex(4)}"
    entrypoint = [sys.executable, "-m", "pipelines", "run", str(job), "--quiet"]
    submit = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            f"--address={ray_head.address}",
            f"--submission-id={submission_id}",
            "--no-wait",
            "--",
            *map(shlex.quote, entrypoint),
        ],
        env=ray_head.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submit.returncode == 0, f"ray job submit failed:\n{submit.stdout}\n{submit.stderr}"
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
