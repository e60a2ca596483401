"""``evalpipe submit``: ``evalpipe run`` on a Ray cluster through Ray's Jobs API, with what ``ray job submit``
leaves out: the checkout's commit and branch (read here, since Ray ships the working directory without
``.git``) and the run's real exit code (``ray job submit`` reports every failure as ``FAILED``), taken from the
outcome line the job logs last."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from pipelines.errors import JobFailed, UserError
from pipelines.outcome import parse_outcome

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
POLL_S = 1.0
AGENT_WAIT_S = 60.0
"""How long a submission is retried while the head answers that no job agent is up yet (a cluster that has
just started, or a busy head): Ray's own answer says to try again later."""
TRANSIENT = "No available agent to submit job"


def git_metadata(directory: str) -> tuple[str | None, str | None]:
    """``(commit, branch)`` of the git checkout holding ``directory``; None where git cannot tell."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", directory, *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    return git("rev-parse", "HEAD"), git("rev-parse", "--abbrev-ref", "HEAD")


def entrypoint(job: str, run_args: Sequence[str], commit: str | None, branch: str | None) -> str:
    """The driver's command line: ``python -m pipelines run JOB ... --quiet --commit C --branch B``."""
    words = ["python", "-m", "pipelines", "run", job, *run_args, "--quiet"]
    words += ["--commit", commit] if commit else []
    words += ["--branch", branch] if branch else []
    return shlex.join(words)


def auth_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Jobs API's ``Authorization`` header under Ray's token auth (``RAY_AUTH_MODE=token``): the token from
    ``RAY_AUTH_TOKEN``, else the file ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``. Passed explicitly, so the
    token of this command's environment is used even when Ray cached another one earlier in the process."""
    env = os.environ if environ is None else environ
    if env.get("RAY_AUTH_MODE") != "token":
        return {}
    token = env.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(env.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        token = path.read_text().strip() if path.is_file() else ""
    return {"Authorization": f"Bearer {token}"} if token else {}


def submit(
    address: str,
    job: str,
    run_args: Sequence[str],
    *,
    working_dir: str | None = ".",
    submission_id: str | None = None,
    timeout_s: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Submit, wait, print the job's log; the run's exit code (from its outcome line).

    Raises:
        UserError: the cluster cannot be reached or refuses the submission.
        JobFailed: the job ended without an outcome line (its driver never ran evalpipe, or was killed), or
            did not end within ``timeout_s``.
    """
    from ray.job_submission import JobSubmissionClient

    commit, branch = git_metadata(working_dir or ".")
    command = entrypoint(job, run_args, commit, branch)
    try:
        client = JobSubmissionClient(address, headers=auth_headers())
        runtime_env = {"working_dir": working_dir} if working_dir else None
        sid = _submit_when_an_agent_is_up(client, command, runtime_env, submission_id)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"--address {address}: the Ray Jobs API refused or could not be reached: {exc}") from None
    out.write(f"submitted {sid}: {command}\n")
    out.flush()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    status = str(client.get_job_status(sid))
    while status.rsplit(".", 1)[-1] not in TERMINAL:
        if deadline is not None and time.monotonic() > deadline:
            raise JobFailed(f"job {sid} did not finish within {timeout_s:g} s (status {status}); it keeps running.")
        time.sleep(POLL_S)
        status = str(client.get_job_status(sid))
    logs = client.get_job_logs(sid)
    out.write(logs if logs.endswith("\n") or not logs else logs + "\n")
    outcome = parse_outcome(logs)
    if outcome is None:
        raise JobFailed(
            f"job {sid} ended {status.rsplit('.', 1)[-1]} without an evalpipe outcome line; see its log above."
        )
    return int(outcome["exit_code"])


def _submit_when_an_agent_is_up(client, command: str, runtime_env: dict | None, submission_id: str | None) -> str:
    """``client.submit_job``, retried for up to ``AGENT_WAIT_S`` seconds while the head has no job agent yet;
    any other refusal, or the same one after the wait, is raised."""
    deadline = time.monotonic() + AGENT_WAIT_S
    pause = 0.5
    while True:
        try:
            return client.submit_job(entrypoint=command, runtime_env=runtime_env, submission_id=submission_id)
        except RuntimeError as exc:
            if TRANSIENT not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
