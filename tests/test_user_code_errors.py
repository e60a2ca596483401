"""User code that fails where no layer named it was an internal error (exit 1, a traceback): a user statistic's
``merge`` or ``finalize`` raising, a ``finalize`` returning text, a user backbone raising or returning fewer
feature rows than the batch (that one committed a value over the wrong rows, exit 0), and a function reading a
column the files lack (``validate`` said valid). Each is now exit 2 with one paragraph naming what to fix."""

from __future__ import annotations

import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from tests.conftest import write_job

MODULE = """
from dataclasses import dataclass

import hashlib
import os
import signal
import time
import jax.numpy as jnp
import numpy as np

from evaluators.statistic import Statistic


@dataclass(frozen=True)
class Rate(Statistic):
    def zero(self):
        return (np.zeros(()), np.zeros(()))

    def update(self, s, b):
        w = b["weights"]
        return (s[0] + jnp.sum(w * (b["predictions"] > 0.5)), s[1] + jnp.sum(w))

    def finalize(self, s):
        return {"": float(s[0] / s[1])}


@dataclass(frozen=True)
class MergeRaises(Rate):
    def merge(self, a, b):
        raise RuntimeError("merge boom")


@dataclass(frozen=True)
class FinalizeRaises(Rate):
    def finalize(self, s):
        raise RuntimeError("finalize boom")


@dataclass(frozen=True)
class FinalizeText(Rate):
    def finalize(self, s):
        return {"": "hello"}


def embed(texts):
    return np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], np.uint16) / 65535.0 for t in texts])


class Short:
    dimension = 4

    @classmethod
    def load(cls, spec, read):
        return cls()

    def extract(self, columns):
        return {"candidate": embed(columns["predictions"])[:-1], "reference": embed(columns["targets"])}


class Raises(Short):
    def extract(self, columns):
        raise RuntimeError("extract boom")


def score(samples, prompts, outputs):
    return {"n": [1.0] * len(samples)}


def stopped(samples, prompts, outputs):
    os.kill(os.getpid(), signal.SIGTERM)  # (as `ray job stop` while the function runs)
    time.sleep(5)
    return {"n": [1.0] * len(samples)}


class StoppedBackbone(Short):
    def extract(self, columns):
        stopped([], [], [])


class WithExtras(Short):
    def extract(self, columns):
        out = {"candidate": embed(columns["predictions"]), "reference": embed(columns["targets"])}
        return {**out, "aux": np.zeros(7), "norm": np.float64(1.0)}  # (features no statistic reads)
"""

PACKAGE = {
    "__init__.py": "",
    "base.py": "from own_code import Rate\n\n\nclass Base(Rate):\n    def merge(self, a, b):\n"
    "        raise RuntimeError('merge boom')\n",
    "stats.py": "from own_pkg.base import Base\n\n\nclass InheritedMergeRaises(Base):\n    pass\n",
}
"""A package whose statistic inherits its (raising) merge from another of its modules."""


@pytest.fixture
def module(tmp_path, monkeypatch):
    (tmp_path / "own_code.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "own_pkg").mkdir()
    for name, text in PACKAGE.items():
        (tmp_path / "own_pkg" / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    words = np.array(["a", "bb", "ccc", "dddd"])
    for i in range(2):
        texts = [" ".join(rng.choice(words, 3)) for _ in range(100)]
        table = pa.table({"s": rng.random(100), "y": rng.integers(0, 2, 100), "c": texts, "r": texts[::-1]})
        pq.write_table(table, tmp_path / "data" / f"p{i}.parquet")
    return tmp_path


def _run(tmp_path, capsys, command="run", **fields):
    spec = {
        "name": "own",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "s", "targets": "y"}},
        "task": "binary",
        "allow_modules": ["own_code", "own_pkg"],
        "execution": {"runner": "local", "unit_rows": 100},
        "output": {"uri": str(tmp_path / "out")},
        **fields,
    }
    code = main([command, str(write_job(tmp_path / "job.yaml", spec)), *(["--quiet"] if command == "run" else [])])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(
    ("cls", "needle"),
    [
        ("MergeRaises", "the job's own code raised RuntimeError in own_code, line "),
        ("FinalizeRaises", "the job's own code raised RuntimeError in own_code, line "),
        ("FinalizeText", "own_code.FinalizeText.finalize returned dict"),
    ],
)
def test_a_user_statistic_failing_in_merge_or_finalize_exits_2(module, capsys, cls, needle):
    code, err = _run(module, capsys, metrics=[{"statistic": f"own_code.{cls}", "as": "st"}])
    assert code == 2 and needle in err and err.count("\n") == 1, err
    assert not list((module / "out").rglob("_COMMITTED"))


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("Short", "gave 99 rows of 'candidate' for a batch of 100"),
        ("Raises", "extract raised RuntimeError: extract boom"),
    ],
)
def test_a_user_backbone_failing_or_short_of_rows_exits_2(module, capsys, kind, needle):
    code, err = _run(
        module,
        capsys,
        data={"path": str(module / "data"), "columns": {"predictions": "c", "targets": "r"}},
        task="text",
        metrics=["embedding_similarity"],
        backbone={"kind": f"own_code.{kind}"},
    )
    assert code == 2 and needle in err, err
    assert not list((module / "out").rglob("_COMMITTED"))


def test_a_function_reading_a_missing_column_is_refused_by_validate_and_run(module, capsys):
    function = {"function": "own_code.score", "outputs": ["n"], "columns": {"samples": "c", "outputs": "nope"}}
    for command in ("validate", "run"):
        code, err = _run(module, capsys, command, functions=[function], metrics=["accuracy"])
        assert code == 2 and "column 'nope' (functions[0].columns.outputs) is missing" in err, err


def test_an_inherited_merge_from_another_module_of_the_users_code_exits_2(module, capsys):
    code, err = _run(module, capsys, metrics=[{"statistic": "own_pkg.stats.InheritedMergeRaises", "as": "st"}])
    assert code == 2 and "the job's own code raised RuntimeError in own_pkg.base" in err, err


def test_a_sigterm_inside_a_function_or_a_backbone_stops_the_run(module, capsys):
    """``Stopped`` raised as user code runs was reported as the code's own failure (exit 2)."""
    function = {"function": "own_code.stopped", "outputs": ["n"], "columns": {"samples": "c"}}
    code, err = _run(module, capsys, functions=[function], metrics=["accuracy"])
    assert code == 143 and "stopped (SIGTERM); nothing was committed" in err, err
    text = {"path": str(module / "data"), "columns": {"predictions": "c", "targets": "r"}}
    backbone = {"kind": "own_code.StoppedBackbone"}
    code, err = _run(module, capsys, data=text, task="text", metrics=["embedding_similarity"], backbone=backbone)
    assert code == 143 and "stopped (SIGTERM)" in err, err


def test_features_no_statistic_reads_are_not_checked(module, capsys):
    text = {"path": str(module / "data"), "columns": {"predictions": "c", "targets": "r"}}
    backbone = {"kind": "own_code.WithExtras"}
    code, err = _run(module, capsys, data=text, task="text", metrics=["embedding_similarity"], backbone=backbone)
    assert code == 0, err
