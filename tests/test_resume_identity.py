"""What a resumed run trusts: a unit's checkpoint is reused only when the user code (metric function, statistic
class), the backbone's weight files and the input files are the ones that computed it. Each case fails a run
part-way through the CLI (a user function that raises, or a killed driver), changes one thing, and runs the job
again: the result must equal a clean run of what is on disk now."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluators.accumulate import Accumulator
from pipelines import spec as spec_module
from pipelines.checkpoints import state_fingerprint
from pipelines.results import list_runs
from pipelines.storage import read_run
from pipelines.synthetic import write_shards
from tests.conftest import add_file_column, write_job
from tests.test_faults import _kill_after_checkpoints

ROOT = Path(__file__).resolve().parent.parent

FUNCTION_MODULE = '''
import os

VALUE = {value}


def words(samples, prompts, outputs, flag):
    """{value} per row; raises on rows whose ``flag`` file exists."""
    if flag[0] and os.path.exists(flag[0]):
        raise RuntimeError("flagged")
    return {{"words": [VALUE] * len(outputs)}}
'''

STATISTIC_MODULE = '''
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from evaluators.statistic import Statistic

THRESHOLD = {threshold}


@dataclass(frozen=True)
class AboveRate(Statistic):
    """Fraction of rows whose score is above THRESHOLD."""

    direction = "info"

    def zero(self):
        return (np.zeros((), np.float64), np.zeros((), np.float64))

    def update(self, state, batch):
        rows, above = state
        p = jnp.asarray(batch["predictions"], jnp.float64)
        return rows + p.shape[0], above + jnp.sum(p > THRESHOLD)

    def finalize(self, state):
        rows, above = state
        return {{"": float(above / rows)}}
'''


def _modules(directory: Path, value: float, threshold: float) -> None:
    directory.mkdir(exist_ok=True)
    (directory / "resume_fn.py").write_text(textwrap.dedent(FUNCTION_MODULE.format(value=value)))
    (directory / "resume_stat.py").write_text(textwrap.dedent(STATISTIC_MODULE.format(threshold=threshold)))


def _cli(*args: str, code_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{code_dir}")
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )


def _values(run) -> dict[str, float]:
    return {k: m.value for k, m in run.point("overall").metrics.items()}


def _latest(out: Path, name: str):
    runs = list_runs(str(out), name)
    return read_run(runs[-1].uri)


def _fail_then_rerun(tmp_path: Path, spec: dict, fail, repair, code: tuple[float, float], edit: tuple[float, float]):
    """Run ``spec`` with the user code at ``code`` after ``fail()`` (units 0 and 1 finish, unit 2 fails with
    exit 2), then ``repair()``, put the code at ``edit`` and run again; the rerun's metadata, after checking
    that its values equal a run without checkpoints of the code and data now on disk."""
    code_dir, out = tmp_path / "code", Path(spec["output"]["uri"])
    job = write_job(tmp_path / "job.yaml", spec)
    _modules(code_dir, *code)
    fail()
    before = len(list(out.glob("*/_checkpoints/*/*.npz")))
    failed = _cli("run", str(job), "--quiet", code_dir=code_dir)
    assert failed.returncode == 2, failed.stderr
    assert len(list(out.glob("*/_checkpoints/*/*.npz"))) == before + 2  # units 0 and 1 finished
    repair()
    time.sleep(0.01)  # a fresh mtime on the rewritten modules, as an editor gives
    _modules(code_dir, *edit)
    done = _cli("run", str(job), "--quiet", code_dir=code_dir)
    assert done.returncode == 0, done.stderr
    resumed = _latest(out, spec["name"])
    plain = {
        **spec,
        "execution": {**spec["execution"], "checkpoints": False},
        "output": {"uri": str(tmp_path / "clean")},
    }
    clean = _cli("run", str(write_job(tmp_path / "clean.yaml", plain)), "--quiet", code_dir=code_dir)
    assert clean.returncode == 0, clean.stderr
    assert _values(resumed) == _values(_latest(tmp_path / "clean", spec["name"]))
    return resumed.metadata


def _binary_spec(tmp_path: Path, name: str, **fields) -> dict:
    data = tmp_path / "data"
    return {
        "name": name,
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "execution": {"runner": "local", "unit_rows": 200},
        "output": {"uri": str(tmp_path / "out")},
        **fields,
    }


@pytest.mark.slow
def test_a_fixed_user_function_is_never_resumed_from_the_old_codes_checkpoints(tmp_path):
    flag = tmp_path / "flag"
    paths = write_shards(str(tmp_path / "data"), "binary", 600, 3, seed=7, row_group_rows=100)
    add_file_column(paths, "flag", ["", "", str(flag)])
    function = {"function": "resume_fn.words", "outputs": ["words"], "columns": {"outputs": "score", "flag": "flag"}}
    spec = _binary_spec(tmp_path, "fixme", metrics=[], functions=[function], allow_modules=["resume_fn"])

    def fail():
        flag.write_text("x")

    # the job fails in the function (on file 2); the function is fixed (and returns a new value per row)
    assert _fail_then_rerun(tmp_path, spec, fail, flag.unlink, (1.0, 0.5), (2.0, 0.5))["resumed_units"] == []
    # the same code again: the finished units are reused, as before
    assert _fail_then_rerun(tmp_path, spec, fail, flag.unlink, (2.0, 0.5), (2.0, 0.5))["resumed_units"] == [0, 1]


@pytest.mark.slow
def test_a_statistic_class_edited_in_place_is_never_resumed_from_the_old_codes_checkpoints(tmp_path):
    paths = write_shards(str(tmp_path / "data"), "binary", 600, 3, seed=7, row_group_rows=100)
    good = pq.read_table(paths[2])
    column = good.schema.get_field_index("score")
    scores = good.column(column).to_numpy().copy()
    scores[5] = np.nan
    bad = good.set_column(column, good.schema.field(column), pa.array(scores))
    statistic = {"statistic": "resume_stat.AboveRate", "as": "above"}
    spec = _binary_spec(tmp_path, "edited", metrics=["accuracy", statistic], allow_modules=["resume_stat"])

    def fail():  # a NaN score in file 2: the job stops there with exit 2
        pq.write_table(bad, paths[2], row_group_size=100)

    def repair():
        pq.write_table(good, paths[2], row_group_size=100)

    # same class name and parameters, another threshold inside its update
    assert _fail_then_rerun(tmp_path, spec, fail, repair, (1.0, 0.5), (1.0, 0.25))["resumed_units"] == []
    assert _fail_then_rerun(tmp_path, spec, fail, repair, (1.0, 0.25), (1.0, 0.25))["resumed_units"] == [0, 1]


def test_backbone_weights_replaced_at_the_same_path_change_the_fingerprint(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.npz").write_bytes(b"a" * 64)
    spec = {
        "name": "bb",
        "data": {"path": str(tmp_path), "columns": {"predictions": "generated", "targets": "real"}},
        "task": "image",
        "backbone": {"kind": "cnn", "weights": str(weights)},
        "metrics": ["fid"],
        "output": {"uri": str(tmp_path / "out")},
    }
    job = spec_module.load(str(write_job(tmp_path / "bb.yaml", spec)))
    acc = Accumulator.for_metrics(m for _, m in job.derived_metrics())
    before = state_fingerprint(job, acc)
    assert state_fingerprint(job, acc) == before
    stat = os.stat(weights / "model.npz")
    (weights / "model.npz").write_bytes(b"b" * 64)  # same size, mtime put back
    os.utime(weights / "model.npz", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert state_fingerprint(job, acc) != before


@pytest.mark.slow
def test_a_same_size_rewrite_with_its_mtime_put_back_is_recomputed(tmp_path):
    data = tmp_path / "data"
    hold = tmp_path / "hold"
    paths = write_shards(str(data), "text", 600, 3, seed=4, row_group_rows=100)
    add_file_column(paths, "hold", ["", "", str(hold)])
    plain = {"compression": "none", "use_dictionary": False, "write_statistics": False, "row_group_size": 100}
    for path in paths:  # plain encoding: a rewrite with strings of the same lengths has the same byte size
        pq.write_table(pq.read_table(path), path, **plain)
    spec = {
        "name": "rewritten",
        "data": {"path": str(data), "columns": {"predictions": "candidate", "targets": "reference"}},
        "task": "text",
        "functions": [
            {
                "function": "tests.user_metrics.hold_while",
                "outputs": ["words"],
                "columns": {"outputs": "candidate", "hold": "hold"},
            }
        ],
        "allow_modules": ["tests.user_metrics"],
        "execution": {"runner": "local", "unit_rows": 200},
        "output": {"uri": str(tmp_path / "out")},
    }
    job = write_job(tmp_path / "job.yaml", spec)
    hold.write_text("hold")
    _kill_after_checkpoints(job, tmp_path / "out" / "rewritten" / "_checkpoints", 2)
    hold.unlink()
    # file 0 rewritten in place: one word per output, same byte size, its mtime put back (cp -p, rsync -t, tar x)
    stat = os.stat(paths[0])
    table = pq.read_table(paths[0])
    column = table.schema.get_field_index("candidate")
    joined = [text.replace(" ", "z") for text in table.column(column).to_pylist()]
    table = table.set_column(column, table.schema.field(column), pa.array(joined))
    pq.write_table(table, paths[0], **plain)
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (os.stat(paths[0]).st_size, os.stat(paths[0]).st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    done = _cli("run", str(job), "--quiet", code_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    resumed = _latest(tmp_path / "out", "rewritten")
    assert resumed.metadata["resumed_units"] == [1]
    clean = write_job(
        tmp_path / "clean.yaml",
        {**spec, "execution": {"runner": "local", "checkpoints": False}, "output": {"uri": str(tmp_path / "clean")}},
    )
    assert _cli("run", str(clean), "--quiet", code_dir=tmp_path).returncode == 0
    assert _values(resumed) == _values(_latest(tmp_path / "clean", "rewritten"))
