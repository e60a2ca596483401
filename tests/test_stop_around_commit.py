"""Signals at the edges of a commit, delivered by the process to itself at a chosen step (so that each case is
deterministic): a SIGTERM while the statistics archive is written stops the run (exit 143, one line), where the
archive's own cleanup raised over it (exit 1, a traceback); ``evalpipe merge`` handles SIGTERM and Ctrl-C around its
commit as ``evalpipe run`` does (it had no handler: a SIGTERM left an uncommitted run's files, a Ctrl-C after the
commit said nothing was committed); once a committed run is reported, both signals are ignored to the exit, as
the interpreter's shutdown would otherwise give them their default action."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.results import list_runs
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parent.parent

SIGNAL_AT = textwrap.dedent(
    """
    import os, signal, sys, traceback, zipfile
    import pipelines.storage as storage
    step, sig, argv = sys.argv[1], getattr(signal, sys.argv[2]), sys.argv[3:]
    if step == "archive":  # as the first member of statistics.npz opens
        opened = zipfile._get_compressor
        def _get_compressor(*a, **k):
            if any(f.name == "npz_bytes" for f in traceback.extract_stack()):
                os.kill(os.getpid(), sig)
            return opened(*a, **k)
        zipfile._get_compressor = _get_compressor
    else:  # just before or just after the manifest is created
        create = storage.create_exclusive
        def create_exclusive(fs, path, data):
            manifest = path.endswith("_COMMITTED")
            if manifest and step == "before":
                os.kill(os.getpid(), sig)
            create(fs, path, data)
            if manifest and step == "after":
                os.kill(os.getpid(), sig)
        storage.create_exclusive = create_exclusive
    from pipelines.cli import main
    sys.argv = ["evalpipe", *argv]
    sys.exit(main())
    """
)


def _jobs(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    jobs = []
    for i, part in enumerate("ab"):
        y = rng.integers(0, 2, 300)
        p = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
        table = pa.table({"row_id": np.arange(300 * i, 300 * (i + 1)), "label": y, "score": p})
        pq.write_table(table, tmp_path / f"{part}.parquet")
        spec = {
            "name": f"j{part}",
            "data": {
                "path": str(tmp_path / f"{part}.parquet"),
                "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"},
            },
            "task": "binary",
            "metrics": ["accuracy"],
            "execution": {"runner": "local"},
            "output": {"uri": str(tmp_path / "out")},
        }
        jobs.append(write_job(tmp_path / f"{part}.yaml", spec))
    return jobs


def _signal_at(tmp_path: Path, step: str, sig: str, *argv: str) -> subprocess.CompletedProcess:
    script = tmp_path / "signal_at.py"
    script.write_text(SIGNAL_AT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(script), step, sig, *argv], capture_output=True, text=True, env=env, timeout=300
    )


def _run_dirs(tmp_path: Path, job: str) -> list[str]:
    root = tmp_path / "out" / job
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("_")) if root.exists() else []


def test_a_sigterm_as_the_statistics_archive_is_written_stops_the_run(tmp_path):
    job, _ = _jobs(tmp_path)
    done = _signal_at(tmp_path, "archive", "SIGTERM", "run", str(job), "--quiet")
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr and "stopped (SIGTERM); nothing was committed" in done.stderr, done.stderr
    assert '"status": "stopped"' in done.stdout
    assert _run_dirs(tmp_path, "ja") == []


def _merge_args(tmp_path: Path, name: str) -> list[str]:
    return ["merge", str(tmp_path / "out" / "ja" / "latest"), str(tmp_path / "out" / "jb" / "latest"), "--name", name]


def _run_both(tmp_path: Path) -> None:
    for job in _jobs(tmp_path):
        done = subprocess.run(
            [sys.executable, "-m", "pipelines", "run", str(job), "--quiet"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=300,
        )
        assert done.returncode == 0, done.stderr


def test_merge_handles_signals_around_its_commit_as_run_does(tmp_path):
    _run_both(tmp_path)
    before = _signal_at(tmp_path, "before", "SIGTERM", *_merge_args(tmp_path, "m1"))
    assert before.returncode == 143, before.stderr  # (was killed by the signal, leaving the run's files)
    assert before.stderr.strip() == "evalpipe: stopped (SIGTERM); nothing was committed"
    assert _run_dirs(tmp_path, "m1") == [] and list_runs(str(tmp_path / "out"), "m1") == []

    after = _signal_at(tmp_path, "after", "SIGINT", *_merge_args(tmp_path, "m2"))
    assert after.returncode == 0, after.stderr  # (was 130, "nothing was committed", with the run committed)
    (committed,) = list_runs(str(tmp_path / "out"), "m2")
    assert f"Ctrl-C received after run {tmp_path / 'out' / 'm2' / committed.run_id} committed" in after.stderr
    assert "nothing was committed" not in after.stderr

    late = _signal_at(tmp_path, "after", "SIGTERM", *_merge_args(tmp_path, "m3"))
    assert late.returncode == 0 and "SIGTERM received after run" in late.stderr, late.stderr
    assert len(list_runs(str(tmp_path / "out"), "m3")) == 1


def test_after_a_committed_run_is_reported_signals_are_ignored_to_the_exit(tmp_path):
    job, _ = _jobs(tmp_path)
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            f"""
            import signal, sys
            from pipelines.cli import main
            sys.argv = ["evalpipe", "run", {str(job)!r}, "--quiet"]
            code = main()
            print("ignored", [signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGTERM, signal.SIGINT)])
            signal.raise_signal(signal.SIGTERM)  # (as one during the interpreter's shutdown: nothing happens)
            sys.exit(code)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(probe)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "ignored [True, True]" in done.stdout, done.stdout
