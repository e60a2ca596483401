"""JAX imported in a background thread while a worker reads its first rows (:func:`evaluators.lazyjax.
import_in_background`): a job past the host rows gets its values as before, and a process that exits meanwhile waits
for the import. (The settings that wait for the import: ``tests/test_process_speed.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from pipelines.storage import read_run
from pipelines.synthetic import multiclass_table
from tests.conftest import write_job
from tests.test_process_speed import ROOT, _run_python


def test_a_multiclass_job_past_the_host_rows_imports_jax_beside_its_first_read(tmp_path):
    """120,000 rows of 50 classes: past the rows a worker folds on the host (4M entries), so its unit starts JAX's
    import in the background before reading; accuracy and macro ROC-AUC are scikit-learn's (ROC-AUC binned: within
    its bound)."""
    table = multiclass_table(np.random.default_rng(22), 120_000, 50)
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=30_000)
    job = {
        "name": "background-import",
        "data": {"path": str(tmp_path), "columns": {"predictions": "probs", "targets": "label"}},
        "task": {"kind": "multiclass", "num_classes": 50},
        "metrics": ["accuracy", {"name": "roc_auc", "average": "macro", "as": "roc_auc"}],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    path = write_job(tmp_path / "job.yaml", job)
    statement = (
        f"from pipelines.cli import main\nfrom evaluators import lazyjax\nmain(['run', {str(path)!r}, '--quiet'])\n"
        "print([thread.name for thread in lazyjax._background_import])"
    )
    lines = _run_python(statement).splitlines()
    assert lines[-2] == "['evalpipe-import-jax']"
    (run_dir,) = (tmp_path / "out" / "background-import").glob("2*")
    (overall,) = (p for p in read_run(str(run_dir)).points if p.name == "overall")
    probs = np.asarray(table.column("probs").combine_chunks().values).reshape(-1, 50).astype(np.float64)
    labels = table.column("label").to_numpy()
    assert overall.metrics["accuracy"].value == pytest.approx(skm.accuracy_score(labels, probs.argmax(1)), rel=1e-12)
    reference = skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert abs(overall.metrics["roc_auc"].value - reference) <= overall.metrics["roc_auc.error_bound"].value


def test_a_process_that_exits_during_the_background_import_waits_for_it(tmp_path):
    """A user error found in the first rows exits (2) while JAX may still be importing: the process waits for the
    import (its thread is no daemon), since an interpreter shut down in the middle of jaxlib's import aborted (exit
    134, 1 in 12 runs of a 2-row regression job with a NaN target). Python runs ``atexit`` hooks after it has joined
    such threads: the hook sees the import whole."""
    statement = (
        "import atexit\nfrom evaluators import lazyjax\n"
        "atexit.register(lambda: print('imported at exit:', lazyjax.imported(), flush=True))\n"
        "lazyjax.import_in_background()\nsys.exit(2)"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"import sys\n{statement}"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 2 and "imported at exit: True" in done.stdout, (done.returncode, done.stdout, done.stderr)
    pq.write_table(pa.table({"p": [0.2, 1.0], "y": [0.0, float("nan")]}), tmp_path / "x.parquet")
    job = {
        "name": "nan-target",
        "data": {"path": str(tmp_path / "x.parquet"), "columns": {"predictions": "p", "targets": "y"}},
        "task": "regression",
        "metrics": ["mse"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    path = write_job(tmp_path / "job.yaml", job)
    for _ in range(3):  # the job as a user runs it: the error's paragraph and exit 2, never an abort
        done = subprocess.run(
            [sys.executable, "-m", "pipelines", "run", str(path), "--quiet"],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        assert done.returncode == 2 and "1 row with NaN or inf" in done.stderr, (done.returncode, done.stderr)
        assert "terminate called" not in done.stderr
