"""The output as a faulty environment gives it: a misspelt bucket, an output under a file, a full disk, an S3
endpoint that freezes (SIGSTOP) or dies at the commit, SIGTERM at chosen points, claims and run directories left
by killed runs. Everything runs through the CLI against a moto S3 server in its own process on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3fs

from pipelines.results import list_runs
from pipelines.synthetic import write_shards
from tests.conftest import add_file_column, text_function_job, write_job

ROOT = Path(__file__).resolve().parent.parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "evalpipe-test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoProcess:
    """``python -m moto.server`` on a free loopback port, in a process of its own (to freeze or kill)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            assert self.proc.poll() is None and time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.1)
        self.fs = s3fs.S3FileSystem(endpoint_url=self.endpoint, key=CREDENTIALS["AWS_ACCESS_KEY_ID"], secret="test")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def moto() -> Iterator[MotoProcess]:
    server = MotoProcess()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("shards")
    write_shards(str(directory), "binary", 3_000, 3, seed=5, row_group_rows=500)
    return directory


def _spec(shards: Path, uri: str, name: str = "faults", endpoint: str | None = None, **output) -> dict:
    out: dict = {"uri": uri, **output}
    if endpoint:
        out["storage_options"] = {"endpoint_url": endpoint}
    return {
        "name": name,
        "data": {"path": str(shards), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy", "roc_auc"],
        "execution": {"runner": "local", "unit_rows": 1_000},
        "output": out,
    }


def _popen(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, **CREDENTIALS, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _cli(*args: str, timeout: float = 240) -> tuple[int, str, str]:
    proc = _popen(*args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _one_paragraph(err: str) -> None:
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_a_missing_output_bucket_is_refused_unless_the_spec_creates_it(tmp_path, moto, shards):
    moto.fs.mkdir("results")
    job = write_job(tmp_path / "typo.yaml", _spec(shards, "s3://evlas/evals", endpoint=moto.endpoint))
    for command in ("validate", "run"):
        code, _, err = _cli(command, str(job))
        assert code == 2, err
        _one_paragraph(err)
        assert "bucket 'evlas' does not exist" in err and "output.create: true" in err
    assert moto.fs.ls("", refresh=True) == ["results"]  # no bucket was created
    create = write_job(tmp_path / "create.yaml", _spec(shards, "s3://evlas/evals", endpoint=moto.endpoint, create=True))
    code, _, err = _cli("run", str(create), "--quiet")
    assert code == 0, err
    assert sorted(moto.fs.ls("", refresh=True)) == ["evlas", "results"]
    (run,) = list_runs("s3://evlas/evals", storage_options={"endpoint_url": moto.endpoint, **_keys()})
    assert run.job == "faults"


def _keys() -> dict[str, str]:
    return {"key": CREDENTIALS["AWS_ACCESS_KEY_ID"], "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}


def test_an_output_that_cannot_be_written_is_found_before_computing(tmp_path, shards):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    job = write_job(tmp_path / "under-file.yaml", _spec(shards, str(blocker / "evals")))
    for command in ("validate", "run"):
        started = time.monotonic()
        code, _, err = _cli(command, str(job))
        assert code == 2, err
        _one_paragraph(err)
        assert f"output.uri '{blocker / 'evals'}': cannot write runs there" in err
        assert time.monotonic() - started < 60
    assert blocker.read_text() == "not a directory"


def test_runs_of_one_job_probing_a_fresh_output_at_once_all_pass_and_leave_no_marker(tmp_path):
    """Nightly jobs started together probe the same fresh ``{output}/{job}``: one run removing the directory
    it created must not fail another run's marker, and no marker file is left behind."""
    from concurrent.futures import ThreadPoolExecutor

    from pipelines.outputprobe import probe_output
    from pipelines.spec import OutputSpec

    output = OutputSpec(uri=str(tmp_path / "out"))
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: probe_output(output, "nightly"), range(400)))
    assert outcomes == [None] * 400
    assert [path for path in tmp_path.rglob("*") if not path.is_dir()] == []


SITE = '''
import os
import time

import fsspec
from fsspec.implementations.local import LocalFileSystem


def hold(step):
    """Write ``{HOLD}.{step}``, then wait while the file ``{HOLD}`` exists (at most 60 s)."""
    held = os.environ["EVALPIPE_TEST_HOLD"]
    with open(held + "." + step, "w"):
        pass
    deadline = time.monotonic() + 60
    while os.path.exists(held) and time.monotonic() < deadline:
        time.sleep(0.05)


class SlowClearFileSystem(LocalFileSystem):
    """Local files under ``slowclear://``; removing a checkpoint directory is held (step ``clearing``)."""

    protocol = ("slowclear",)

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("slowclear://"))

    def rm(self, path, recursive=False, maxdepth=None):
        if "_checkpoints" in str(path):
            hold("clearing")
        return super().rm(path, recursive=recursive, maxdepth=maxdepth)


class SlowCommitFileSystem(LocalFileSystem):
    """Local files under ``slowcommit://``; creating a ``_COMMITTED`` manifest is held (step ``committing``)."""

    protocol = ("slowcommit",)

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(str(path).removeprefix("slowcommit://"))

    def _open(self, path, mode="rb", **kwargs):
        if str(path).endswith("_COMMITTED") and mode[0] in "wx":
            hold("committing")
        return super()._open(path, mode, **kwargs)


fsspec.register_implementation("slowclear", SlowClearFileSystem, clobber=True)
fsspec.register_implementation("slowcommit", SlowCommitFileSystem, clobber=True)
'''


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _held_driver(tmp_path: Path, spec: dict, step: str) -> tuple[subprocess.Popen, Path]:
    """Start ``spec`` (its output under ``slowclear://`` or ``slowcommit://``) and wait until it is held at
    ``step``; returns the driver and the hold file (remove it to let the driver go on)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITE)
    hold = tmp_path / "hold"
    hold.write_text("hold")
    marker = Path(f"{hold}.{step}")
    marker.unlink(missing_ok=True)
    job = write_job(tmp_path / "held.yaml", spec)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}", "EVALPIPE_TEST_HOLD": str(hold)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "run", str(job), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(marker, proc)
    return proc, hold


@pytest.mark.parametrize(("sig", "said"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")])
def test_a_stop_just_after_the_commit_reports_the_committed_run_and_clears_its_checkpoints(tmp_path, shards, sig, said):
    """SIGTERM or Ctrl-C once the manifest exists: exit 0 with the committed run (Ctrl-C there ended the process by
    the signal, as if the job had been stopped)."""
    out = tmp_path / "out"
    proc, hold = _held_driver(tmp_path, _spec(shards, f"slowclear://{out}", name="late"), "clearing")
    # committed; now removing its checkpoints
    (run,) = list_runs(str(out), "late")
    proc.send_signal(sig)
    time.sleep(0.5)  # the signal is handled while the removal waits
    hold.unlink()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"{said} received after run slowclear://{out}/late/{run.run_id} committed" in stderr
    assert "nothing was committed" not in stderr
    assert f"run: slowclear://{out}/late/{run.run_id}" in stdout
    assert not (out / "late" / "_checkpoints").exists() or not any((out / "late" / "_checkpoints").iterdir())


def _stop_at_commit(tmp_path: Path, spec: dict, sig: int) -> subprocess.CompletedProcess:
    """Run ``spec`` with its output through ``slowcommit://``; send ``sig`` once every file and the claim are
    written and the manifest is about to be."""
    spec = {**spec, "output": {**spec["output"], "uri": "slowcommit://" + spec["output"]["uri"]}}
    proc, hold = _held_driver(tmp_path, spec, "committing")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    hold.unlink()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_the_last_unit_to_finish_is_not_checkpointed_when_it_was_quick(tmp_path, shards):
    """Stopped at the commit, a run leaves checkpoints of every unit but the last to finish (its unit took far
    less than ``LAST_UNIT_CHECKPOINT_S``); the same job again reuses those and computes that one unit."""
    from pipelines import spec as spec_module
    from pipelines.execute import run_job

    out = tmp_path / "out"
    spec = _spec(shards, str(out), name="lastunit")
    stopped = _stop_at_commit(tmp_path, spec, signal.SIGTERM)  # (the writer thread finishes its writes on exit)
    assert stopped.returncode == 143, stopped.stderr
    assert len(list((out / "lastunit" / "_checkpoints").glob("*/*.npz"))) == 2  # of 3 units
    run = run_job(spec_module.load(str(write_job(tmp_path / "again.yaml", spec))), show_progress=False).run
    assert run.metadata["resumed_units"] == [0, 1]
    assert run.metadata["attempts"] == 1  # unit 2 alone was computed


@pytest.mark.slow
def test_a_refuse_claim_left_by_a_killed_run_is_taken_over_and_listed(tmp_path, shards):
    out = tmp_path / "out"
    spec = _spec(shards, str(out), name="once", on_existing="refuse")
    claims = out / "once" / "_instances"

    # SIGTERM between the claim and the manifest: the run's files and its claim are removed
    stopped = _stop_at_commit(tmp_path, spec, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr
    assert list(claims.iterdir()) == []
    assert [p.name for p in (out / "once").iterdir() if not p.name.startswith("_")] == []

    # SIGKILL there: the claim and the uncommitted run directory stay; two minutes later no run stands behind it
    killed = _stop_at_commit(tmp_path, spec, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    (claim,) = claims.iterdir()
    held = json.loads(claim.read_text())
    (run_dir,) = [p for p in (out / "once").iterdir() if not p.name.startswith("_")]
    assert run_dir.name == held["run_id"] and not (run_dir / "_COMMITTED").exists()
    past = dt.datetime.fromisoformat(held["claimed_at"]) - dt.timedelta(minutes=3)
    claim.write_text(json.dumps({**held, "claimed_at": past.isoformat()}))
    code, listed, err = _cli("checkpoints", str(out))
    assert code == 0, err
    kinds = {line.split()[0]: line.split()[-1] for line in listed.splitlines()[2:4]}
    assert kinds == {"run": str(run_dir), "claim": str(claim)}, listed
    assert "2 uncommitted run directories and stale refuse-claims" in listed

    # the next run takes the stale claim over and commits; a run after it is refused by the committed run
    job = write_job(tmp_path / "job.yaml", spec)
    code, _, err = _cli("run", str(job), "--quiet")
    assert code == 0, err
    (run,) = list_runs(str(out), "once")
    code, _, err = _cli("run", str(job), "--quiet")
    assert code == 2 and "already has a committed run for these inputs" in err, err

    # `checkpoints --delete` removes what the killed run left (the superseded claim and its run directory)
    code, listed, err = _cli("checkpoints", str(out), "--delete", "--older-than", "0")
    assert code == 0 and "removed 2 of them" in listed, (listed, err)
    assert not run_dir.exists() and not claim.exists()
    assert [r.run_id for r in list_runs(str(out), "once")] == [run.run_id]
    code, listed, _ = _cli("checkpoints", str(out))
    assert "uncommitted" not in listed


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 16 KiB tmpfs (needs the right to mount: root in a container that allows it)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_at_the_end_removes_what_the_run_wrote_and_says_so(tmp_path, small_disk, shards):
    spec = _spec(shards, str(small_disk / "evals"), name="full")
    spec["metrics"] = ["accuracy", "roc_auc", "average_precision"]  # 2.5 MB per checkpoint, 30 kB of statistics
    job = write_job(tmp_path / "job.yaml", spec)
    code, _, err = _cli("run", str(job), "--quiet")
    assert code == 1, err
    _one_paragraph(err)
    assert "no space left on the device (ENOSPC)" in err and "were removed" in err
    left = [p for p in small_disk.rglob("*") if p.is_file()]
    # the disk is as empty as before the run, but for the run's outcome record (a few hundred bytes), which tells
    # a scheduler that the run failed and why
    outcomes = [p for p in left if p.parent.parent.name == "_outcomes"]
    assert left == outcomes and len(outcomes) == 1, left
    record = json.loads(outcomes[0].read_text())
    assert record["status"] == "failed" and record["exit_code"] == 1 and "ENOSPC" in record["error"], record


@pytest.fixture
def drivers() -> Iterator[list[subprocess.Popen]]:
    """Driver processes a test started: killed if still running when it ends."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def _start_held_run(
    tmp_path: Path, moto: MotoProcess, name: str, drivers: list[subprocess.Popen]
) -> tuple[subprocess.Popen, Path]:
    """A text job whose output is on ``moto``, started and held inside its last unit once units 0 and 1 are
    checkpointed on the server; returns the driver and the hold file (remove it to let the job finish)."""
    moto.fs.mkdir("results")
    data = tmp_path / "text"
    hold = tmp_path / "hold"
    hold.write_text("hold")
    paths = write_shards(str(data), "text", 600, 3, seed=4, row_group_rows=100)
    add_file_column(paths, "hold", ["", "", str(hold)])
    execution = {"runner": "local", "unit_rows": 200}
    output = {"uri": "s3://results/evals", "storage_options": {"endpoint_url": moto.endpoint}}
    spec = text_function_job(name, str(data), output, execution, "hold_while", "hold")
    proc = _popen("run", str(write_job(tmp_path / f"{name}.yaml", spec)), "--quiet")
    drivers.append(proc)
    deadline = time.monotonic() + 120
    while len(moto.fs.glob(f"results/evals/{name}/_checkpoints/*/*.npz", refresh=True)) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoints were written"
        time.sleep(0.2)
    return proc, hold


@pytest.mark.slow
def test_sigterm_with_the_s3_endpoint_frozen_at_the_commit_ends_the_driver_within_its_grace(tmp_path, moto, drivers):
    from pipelines.stopping import STOP_GRACE_S

    proc, hold = _start_held_run(tmp_path, moto, "frozen", drivers)
    moto.proc.send_signal(signal.SIGSTOP)
    hold.unlink()  # the last unit finishes; the commit meets a server that accepts connections and never answers
    time.sleep(3)
    assert proc.poll() is None
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=STOP_GRACE_S + 30)
    assert time.monotonic() - stopped_at < STOP_GRACE_S + 10, err
    assert proc.returncode == 143, err
    _one_paragraph(err)
    assert "stopped (SIGTERM)" in err
    moto.proc.send_signal(signal.SIGCONT)
    assert list_runs("s3://results/evals", "frozen", storage_options={"endpoint_url": moto.endpoint, **_keys()}) == []


def test_an_s3_server_killed_at_the_commit_fails_the_job_with_one_paragraph(tmp_path, moto, drivers):
    proc, hold = _start_held_run(tmp_path, moto, "killed", drivers)
    moto.stop()
    started = time.monotonic()
    hold.unlink()
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err
    _one_paragraph(err)
    assert "evalpipe: job failed: writing run s3://results/evals/killed/" in err and "Nothing was committed" in err
    assert time.monotonic() - started < 150


def test_a_run_directory_with_an_unreadable_manifest_is_listed_and_removed(tmp_path, capsys):
    from pipelines.cli import main

    broken = tmp_path / "out" / "job" / "20261101T000000000Z-abcdef"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text("{}")
    (broken / "_COMMITTED").write_text('{"run_id": "20261101T0000')  # cut short
    two_days_ago = time.time() - 48 * 3600
    for path in broken.iterdir():
        os.utime(path, (two_days_ago, two_days_ago))
    assert main(["checkpoints", str(tmp_path / "out")]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[2].split()[:3] == ["run", "job", "2"] and listed[2].split()[-1] == str(broken)
    assert main(["checkpoints", str(tmp_path / "out"), "--delete"]) == 0
    assert "removed 1 of them" in capsys.readouterr().out
    assert not broken.exists()


def test_checkpoints_delete_leaves_a_results_site_beside_the_runs(tmp_path, capsys):
    """The README's cron line keeps the site under the results root (`site -o {results}/site`): its `jobs/` and
    `runs/` pages were listed as uncommitted runs of a job `site` and deleted. Only directories named as runs are
    runs."""
    from pipelines.cli import main

    out = tmp_path / "out"
    pages = [out / "site" / "jobs" / "churn.html", out / "site" / "runs" / "20261101T000000000Z-abcdef.html"]
    broken = out / "churn" / "20261101T000000000Z-abcdef"
    for path in (*pages, broken / "run.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    two_days_ago = time.time() - 48 * 3600
    for path in out.rglob("*"):
        os.utime(path, (two_days_ago, two_days_ago))
    assert main(["checkpoints", str(out), "--delete"]) == 0
    listed = capsys.readouterr().out
    assert "removed 1 of them" in listed and str(broken) in listed and "site" not in listed, listed
    assert not broken.exists() and all(page.exists() for page in pages)
