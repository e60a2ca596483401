"""A spec is not trusted with secrets or code: no resolved ``${env:...}`` value reaches a record, a log line or an
error message, and the operator's module allow-list bounds what a spec may import (never the standard library).
Everything runs through the CLI in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.synthetic import write_shards
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "SENTINEL42-env-value"


def _cli(*args: str, env: dict[str, str] | None = None, pythonpath: str = "") -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "EVALPIPE_ALLOWED_MODULES"}
    environment.update(env or {}, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), pythonpath])))
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("trust")
    write_shards(str(directory), "text", 300, 2, seed=3, row_group_rows=100)
    return directory


def _spec(shards: Path, out: Path, **fields) -> dict:
    spec = {
        "name": "trust",
        "data": {"path": str(shards), "columns": {"predictions": "candidate", "targets": "reference"}},
        "task": "text",
        "functions": [
            {"function": "tests.user_metrics.lengths", "outputs": ["output_words"], "columns": {"outputs": "candidate"}}
        ],
        "allow_modules": ["tests.user_metrics"],
        "execution": {"runner": "local"},
        "output": {"uri": str(out)},
    }
    spec.update(fields)
    return spec


@pytest.mark.slow
def test_env_values_never_reach_records_logs_or_error_messages(tmp_path, data):
    env = {"MY_TOKEN": SENTINEL, "DATA_ROOT": str(data)}
    out = tmp_path / "out"
    spec = _spec(data, out, description="nightly with token ${env:MY_TOKEN}")
    spec["data"]["path"] = "${env:DATA_ROOT}"
    job = write_job(tmp_path / "job.yaml", spec)
    done = _cli("run", str(job), env=env)
    assert done.returncode == 0, done.stderr
    assert SENTINEL not in done.stdout + done.stderr
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in written)
    for path in written:
        assert SENTINEL.encode() not in path.read_bytes(), path
        assert str(data).encode() not in path.read_bytes(), path  # input paths as ${env:DATA_ROOT}/part-...
    (run_json,) = out.rglob("run.json")
    assert "nightly with token ${env:MY_TOKEN}" in run_json.read_text()

    # type, choice and path errors name the placeholder, not its value
    bad = {
        "actors": {"execution": {"runner": "local", "actors": "${env:MY_TOKEN}"}},
        "task": {"task": "${env:MY_TOKEN}"},
        "path": {"data": {"path": "${env:MY_TOKEN}/*.parquet", "columns": {"predictions": "a", "targets": "b"}}},
        "name": {"name": "${env:MY_TOKEN}!"},
    }
    for case, fields in bad.items():
        failed = _cli("validate", str(write_job(tmp_path / f"{case}.yaml", _spec(data, out, **fields))), env=env)
        assert failed.returncode == 2, (case, failed.stderr)
        assert SENTINEL not in failed.stdout + failed.stderr, case
        assert "${env:MY_TOKEN}" in failed.stderr, (case, failed.stderr)
        assert "Traceback" not in failed.stderr


@pytest.mark.slow
def test_a_spec_may_only_narrow_the_operators_allow_list_and_never_reach_the_standard_library(tmp_path, data):
    marker = tmp_path / "called"
    code = tmp_path / "code"
    code.mkdir()
    (code / "trusted_only.py").write_text(
        "from os import system as run\n\n\ndef fine(samples, prompts, outputs):\n"
        "    return {'n': [1.0] * len(outputs)}\n"
    )
    operator = {"EVALPIPE_ALLOWED_MODULES": "trusted_only"}

    def attempt(name: str, function: str, allow: list[str] | None, env: dict[str, str]) -> str:
        fields = {
            "functions": [{"function": function, "outputs": ["n"], "columns": {"samples": "candidate"}}],
            "allow_modules": allow,
        }
        job = write_job(tmp_path / f"{name}.yaml", _spec(data, tmp_path / "out", **fields))
        done = _cli("run", str(job), "--quiet", env=env, pythonpath=str(code))
        assert done.returncode == 2, (name, done.stderr)
        assert "Traceback" not in done.stderr and not marker.exists()
        assert not list((tmp_path / "out").rglob("_COMMITTED"))
        return done.stderr

    # the spec widens the operator's list to os: refused before anything runs
    err = attempt("widen", "os.system", ["os"], operator)
    assert "allow_modules" in err and "'os' is outside EVALPIPE_ALLOWED_MODULES (trusted_only)" in err
    # builtins and the standard library are never allowed, whoever lists them
    assert "standard library" in attempt("eval", "builtins.eval", ["builtins"], {})
    assert "standard library" in attempt("os", "os.system", None, {"EVALPIPE_ALLOWED_MODULES": "os"})
    # nor a standard-library callable re-exported by an allowed module
    assert "standard library" in attempt("reexport", "trusted_only.run", None, operator)
    # the operator's list alone, or narrowed by the spec, still runs the allowed function
    for name, allow in (("operator", None), ("narrowed", ["trusted_only"])):
        function = {"function": "trusted_only.fine", "outputs": ["n"], "columns": {"samples": "candidate"}}
        fields = {"functions": [function], "allow_modules": allow}
        job = write_job(tmp_path / f"{name}.yaml", _spec(data, tmp_path / name, **fields))
        done = _cli("validate", str(job), env=operator, pythonpath=str(code))
        assert done.returncode == 0, (name, done.stderr)


def test_standard_library_callables_are_refused_in_any_wrapper(tmp_path, monkeypatch):
    """``os.system.__call__`` or ``sys.stdout.write`` kept in an allowed module passed the check (a method wrapper
    has no ``__module__``), and the worker called them; what an allowed module defines still passes."""
    from pipelines.functions import import_function

    (tmp_path / "wrapped_only.py").write_text(
        "import functools, os, sys\n\n\nclass Scorer:\n    def __call__(self, samples, prompts, outputs):\n"
        "        return {'n': [1.0] * len(samples)}\n\n    def method(self, samples, prompts, outputs):\n"
        "        return self(samples, prompts, outputs)\n\n\n"
        "scorer = Scorer()\nbound = scorer.method\ncall = os.system.__call__\nwrite = sys.__stdout__.write\n"
        "length = len\nchained = os.system.__call__.__call__\ncached_system = functools.lru_cache(os.system)\n\n\n"
        "@functools.lru_cache\ndef cached(samples, prompts, outputs):\n    return {'n': [1.0]}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("call", "write", "length", "chained", "cached_system"):
        with pytest.raises(PermissionError, match="of the standard library"):
            import_function(f"wrapped_only.{name}", ["wrapped_only"])
    for name in ("Scorer", "scorer", "bound", "cached"):
        assert callable(import_function(f"wrapped_only.{name}", ["wrapped_only"]))
