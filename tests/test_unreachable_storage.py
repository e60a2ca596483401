"""An object store that cannot be reached (nothing listens at the endpoint): the commands that read results, and a
job writing there, end with exit 1 and one paragraph naming what did not answer, where they printed three chained
tracebacks as an internal error (`runs`, `show`, `checkpoints`) or blamed a missing bucket (`run`)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.synthetic import write_shards
from tests.conftest import accuracy_job, write_job

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def nowhere() -> str:
    """An endpoint URL on loopback where nothing listens (a port bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _evalpipe(args: list[str], endpoint: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(Path.home()),
        "AWS_ACCESS_KEY_ID": "evalpipe-test",
        "AWS_SECRET_ACCESS_KEY": "evalpipe-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "command",
    [["runs", "s3://results/evals"], ["show", "s3://results/evals/job/latest"], ["checkpoints", "s3://results/evals"]],
)
def test_reading_results_from_an_unreachable_store_is_one_paragraph_and_exit_1(nowhere, command):
    done = _evalpipe(command, nowhere)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert "could not be reached or did not answer (EndpointConnectionError" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_job_writing_to_an_unreachable_store_names_the_output_not_a_missing_bucket(tmp_path, nowhere):
    write_shards(str(tmp_path / "data"), "binary", 500, 1, seed=2)
    output = {"uri": "s3://results/evals", "storage_options": {"endpoint_url": nowhere}}
    spec = accuracy_job("unreachable", str(tmp_path / "data"), output)
    done = _evalpipe(["run", str(write_job(tmp_path / "job.yaml", spec)), "--quiet"], nowhere)
    assert done.returncode == 1, done.stderr
    assert "output.uri 's3://results/evals'" in done.stderr and "could not be reached" in done.stderr, done.stderr
    assert "does not exist" not in done.stderr and "Traceback" not in done.stderr, done.stderr
