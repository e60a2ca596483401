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
"""


@pytest.fixture
def module(tmp_path, monkeypatch):
    (tmp_path / "own_code.py").write_text(textwrap.dedent(MODULE))
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
        "allow_modules": ["own_code"],
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
