"""User backbones by dotted path: allow-listed, loaded once per worker (local and two Ray actors), their features
read by the catalogue's text metrics; values against NumPy on the same features."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.linalg

from pipelines import spec as spec_module
from pipelines.errors import SpecError
from pipelines.execute import run_job
from pipelines.synthetic import write_shards
from tests.conftest import write_job
from tests.user_backbones import letter_counts


def _job(tmp_path, data, runner, *, kind="tests.user_backbones.LetterCounts", allow=("tests.user_backbones",)):
    return {
        "name": f"user-backbone-{runner}",
        "data": {"path": f"{data}/*.parquet", "columns": {"predictions": "candidate", "targets": "reference"}},
        "task": "text",
        "metrics": ["embedding_similarity", {"name": "frechet_embedding_distance", "dimension": 26, "as": "fed"}],
        "backbone": {"kind": kind},
        "allow_modules": list(allow),
        "execution": {"runner": runner, "actors": 2, "unit_rows": 150},
        "output": {"uri": str(tmp_path / "out")},
    }


def _features(paths):
    tables = [pq.read_table(p) for p in paths]
    c = np.concatenate([letter_counts(t.column("candidate").to_pylist()) for t in tables]).astype(np.float64)
    r = np.concatenate([letter_counts(t.column("reference").to_pylist()) for t in tables]).astype(np.float64)
    return c, r


def _frechet(paths):
    c, r = _features(paths)
    # letters that occur in no text have zero variance on both sides: they add nothing to the trace terms
    used = (c.std(0) > 0) | (r.std(0) > 0)
    cov_c, cov_r = np.cov(c[:, used], rowvar=False), np.cov(r[:, used], rowvar=False)
    root = scipy.linalg.sqrtm(cov_c @ cov_r).real
    return float(((c.mean(0) - r.mean(0)) ** 2).sum() + np.trace(cov_c + cov_r - 2 * root))


def _cosine_mean(paths):
    c, r = _features(paths)
    cos = (c * r).sum(1) / np.maximum(np.linalg.norm(c, axis=1) * np.linalg.norm(r, axis=1), 1e-12)
    return float(cos.mean())


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_user_backbone_is_loaded_once_per_worker_and_feeds_the_text_metrics(tmp_path, runner, request):
    if runner == "ray":
        request.getfixturevalue("ray_cluster")
    paths = write_shards(str(tmp_path / "data"), "text", 600, 4, seed=3)
    spec = spec_module.load(str(write_job(tmp_path / "job.yaml", _job(tmp_path, tmp_path / "data", runner))))
    run = run_job(spec, show_progress=False).run
    values = run.point("overall").metrics
    assert values["embedding_similarity"].value == pytest.approx(_cosine_mean(paths), rel=1e-5)
    assert values["fed"].value == pytest.approx(_frechet(paths), rel=1e-6)
    assert run.metadata["units"] >= 2
    loads = run.metadata["backbone"]["loads_per_worker"]
    assert set(loads.values() if isinstance(loads, dict) else loads) == {1}


def test_user_backbones_are_allow_listed_and_checked_when_the_spec_loads(tmp_path):
    write_shards(str(tmp_path / "data"), "text", 20, 1, seed=1)
    cases = [
        ({"allow": ()}, "is not allowed"),
        ({"kind": "tests.user_backbones.Missing"}, "cannot be loaded: AttributeError"),
        ({"kind": "not a path"}, "dotted path of your own backbone class"),
    ]
    for change, message in cases:
        job = _job(tmp_path, tmp_path / "data", "local", **change)
        with pytest.raises(SpecError, match=message):
            spec_module.load(str(write_job(tmp_path / "job.yaml", job)))
    job = _job(tmp_path, tmp_path / "data", "local", kind="tests.user_backbones.not_a_backbone")
    with pytest.raises(Exception, match="without extract"):
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False)
