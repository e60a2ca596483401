"""Reference statistics computed once: a reference job stores the real side, later jobs name it.

FID / KID against a stored reference equal a paired run's on the same rows; with precomputed feature
columns of different sizes they equal SciPy's ``sqrtm`` Fréchet distance and the written-out KID; bad
references and impossible side combinations are refused with one paragraph.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import spec as spec_module
from pipelines.errors import DataError, SpecError
from pipelines.execute import run_job
from pipelines.results import load_statistics
from pipelines.synthetic import write_shards
from tests.conftest import write_job
from tests.test_image_metrics import backbone_dir, numpy_kid, scipy_frechet  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]


def _load(tmp_path: Path, name: str, spec: dict) -> spec_module.JobSpec:
    (tmp_path / name).mkdir(parents=True, exist_ok=True)
    return spec_module.load(str(write_job(tmp_path / name / "job.yaml", {"name": name, **spec})))


def _run(tmp_path: Path, name: str, spec: dict):
    return run_job(_load(tmp_path, name, spec), show_progress=False)


def _overall(run) -> dict[str, float]:
    return {k: m.value for k, m in run.point("overall").metrics.items()}


# --- images through the backbone: paired run vs stored reference --------------------------------------


@pytest.fixture(scope="module")
def image_runs(tmp_path_factory, request) -> dict:
    """A paired image run, a reference run of the same real images, and a run of the same generated images
    against that reference (all local, 200 rows in 4 shards)."""
    weights = request.getfixturevalue("backbone_dir")  # scripts/make_cnn_backbone.py's, seed 0
    tmp = tmp_path_factory.mktemp("image-runs")
    data = tmp / "shards"
    write_shards(str(data), "image", 200, 4, seed=3, row_group_rows=25)
    common = {
        "task": "image",
        "backbone": {"kind": "cnn", "weights": str(weights), "batch_size": 32},
        "metrics": ["fid", {"name": "kid", "subset_size": 80, "as": "kid"}],
        "execution": {"runner": "local", "unit_rows": 50},
        "output": {"uri": str(tmp / "out")},
    }
    paired = _run(
        tmp,
        "paired",
        {"data": {"path": str(data), "columns": {"predictions": "generated", "targets": "real"}}, **common},
    )
    ref = _run(tmp, "real-ref", {"data": {"path": str(data), "columns": {"targets": "real"}}, **common})
    against = _run(
        tmp,
        "against-ref",
        {"data": {"path": str(data), "columns": {"predictions": "generated"}}, "reference": ref.uri, **common},
    )
    return {"tmp": tmp, "data": data, "common": common, "paired": paired, "ref": ref, "against": against}


@pytest.mark.slow
def test_fid_and_kid_against_a_stored_reference_equal_the_paired_run(image_runs):
    paired, ref, against = image_runs["paired"], image_runs["ref"], image_runs["against"]
    assert set(_overall(ref.run)) == {"rows"}  # a reference run stores statistics, no values
    values, expected = _overall(against.run), _overall(paired.run)
    assert np.isfinite(expected["fid"]) and expected["fid"] > 0
    assert values["fid"] == pytest.approx(expected["fid"], rel=1e-12)
    assert values["kid"] == pytest.approx(expected["kid"], rel=1e-12)
    assert against.run.metadata["reference"] == {"run": ref.uri, "run_id": ref.run.id, "rows": 200}
    # the committed statistics hold both sides: the stored state gives the run's value back
    stored = load_statistics(against.uri)
    state = stored.state("fid")
    assert np.asarray(state["count"]).tolist() == [200.0, 200.0]
    assert stored.metric("fid").compute(state)[""] == values["fid"]


@pytest.mark.slow
def test_bad_references_are_refused_naming_the_reference(image_runs):
    tmp, data, common = image_runs["tmp"], image_runs["data"], image_runs["common"]
    predictions = {"path": str(data), "columns": {"predictions": "generated"}}

    def refused(name: str, reference: str, **changes) -> str:
        spec = _load(tmp, name, {"data": predictions, "reference": reference, **{**common, **changes}})
        with pytest.raises(SpecError) as info:
            run_job(spec, show_progress=False)
        text = str(info.value)
        assert "\n" not in text and f"{name}/job.yaml: reference" in text
        return text

    assert "no evalpipe run here" in refused("missing", str(tmp / "out" / "real-ref" / "nope"))
    assert "is not a reference run" in refused("not-ref", image_runs["paired"].uri)
    # the same weights elsewhere: the same features, so the same values (refused by their path before)
    copy = tmp / "copied-cnn"
    shutil.copytree(common["backbone"]["weights"], copy, dirs_exist_ok=True)
    copied = {**common["backbone"], "weights": str(copy)}
    again = _run(
        tmp, "copied-weights", {"data": predictions, "reference": image_runs["ref"].uri, **common, "backbone": copied}
    )
    assert _overall(again.run) == _overall(image_runs["against"].run)
    assert "not comparable" in refused("other-dtype", image_runs["ref"].uri, backbone={**copied, "dtype": "bfloat16"})
    # weights rewritten where the reference's were read: other features under the same path (accepted before: FID
    # of seed-1 features against seed-0 ones)
    swap = tmp / "swapped-cnn"
    shutil.copytree(common["backbone"]["weights"], swap, dirs_exist_ok=True)
    swapped = {**common["backbone"], "weights": str(swap)}
    real = {"path": str(data), "columns": {"targets": "real"}}
    swapped_ref = _run(tmp, "swapped-ref", {"data": real, **common, "backbone": swapped})
    assert len(swapped_ref.run.metadata["backbone"]["weights_digest"]) == 64
    script, env = str(ROOT / "scripts" / "make_cnn_backbone.py"), {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, script, str(swap), "--seed", "1"], check=True, cwd=ROOT, env=env, capture_output=True
    )
    assert "now hold other content" in refused("swapped", swapped_ref.uri, backbone=swapped)
    wider = ["fid", {"name": "kid", "subset_size": 50, "as": "kid"}]
    assert "subset size" in refused("other-subset", image_runs["ref"].uri, metrics=wider)


# --- precomputed features, unpaired sides of different sizes --------------------------------------------


def _feature_files(directory: Path, column: str, values: np.ndarray, shards: int) -> None:
    directory.mkdir(parents=True)
    for i, part in enumerate(np.array_split(values, shards)):
        table = pa.table({column: pa.array(list(part), pa.list_(pa.float64()))})
        pq.write_table(table, directory / f"part-{i}.parquet", row_group_size=70)


@pytest.mark.parametrize(
    ("task", "metrics"),
    [
        ("image", ["fid", {"name": "kid", "subset_size": 1000, "as": "kid"}]),
        ("text", ["frechet_embedding_distance"]),
    ],
)
def test_unpaired_feature_columns_of_different_sizes_equal_scipy(tmp_path, task, metrics):
    rng = np.random.default_rng(5)
    dim = 6
    real = rng.normal(size=(500, dim)) @ rng.normal(size=(dim, dim))
    generated = 0.8 * rng.normal(size=(400, dim)) @ rng.normal(size=(dim, dim)) + 0.3
    _feature_files(tmp_path / "real", "real_f", real, 3)
    _feature_files(tmp_path / "gen", "gen_f", generated, 2)
    metrics = [
        {**m, "dimension": dim} if isinstance(m, dict) else {"name": m, "dimension": dim, "as": m} for m in metrics
    ]
    common = {
        "task": task,
        "metrics": metrics,
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    ref = _run(
        tmp_path, "ref", {"data": {"path": str(tmp_path / "real"), "columns": {"targets_features": "real_f"}}, **common}
    )
    assert ref.run.point("overall").metrics["rows"].value == 500
    gen = {"path": str(tmp_path / "gen"), "columns": {"predictions_features": "gen_f"}}
    latest = ref.uri.rsplit("/", 1)[0] + "/latest"  # the reference job's newest run
    outcome = _run(tmp_path, "gen", {"data": gen, "reference": latest, **common})
    assert outcome.run.metadata["reference"]["run"] == ref.uri
    values = _overall(outcome.run)
    assert values["rows"] == 400
    fid_key = "fid" if task == "image" else "frechet_embedding_distance"
    assert values[fid_key] == pytest.approx(scipy_frechet(generated, real), rel=1e-6)
    if task == "image":  # all rows kept: the subset is every row, as float32 features
        expected = numpy_kid(
            generated.astype(np.float32).astype(np.float64), real.astype(np.float32).astype(np.float64)
        )
        assert values["kid"] == pytest.approx(expected, rel=1e-6)
    # a metric whose dimension is not the reference's, or not the columns' width: refused, naming which
    wide = {**common, "metrics": [{**m, "dimension": dim + 2} for m in metrics]}
    with pytest.raises(SpecError, match=r"dimension=8\), and .* stored FeatureMoments\(dimension=6\)"):
        _run(tmp_path, "wide", {"data": gen, **wide, "reference": ref.uri})
    both = {"path": str(tmp_path / "gen"), "columns": {"predictions_features": "gen_f", "targets_features": "gen_f"}}
    with pytest.raises(DataError, match=r"column 'gen_f' \(data.columns.predictions_features\) holds vectors of 6"):
        _run(tmp_path, "wide-paired", {"data": both, **wide})
    if task == "image":  # a metric the reference job did not compute
        real = {"path": str(tmp_path / "real"), "columns": {"targets_features": "real_f"}}
        fid_only = _run(tmp_path, "fid-ref", {"data": real, **{**common, "metrics": metrics[:1]}})
        with pytest.raises(SpecError, match=r"no reference statistics for metric 'kid' \(kid\); its metrics: fid"):
            _run(tmp_path, "kid-job", {"data": gen, **common, "reference": fid_only.uri})


# --- side combinations refused at load time ---------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"columns": {"predictions": "p"}}, "nothing to compare them with"),
        ({"columns": {"predictions_features": "p", "targets": "t"}, "reference": "out/x/y"}, "comes from one of"),
        ({"columns": {"weights": "w"}, "reference": "out/x/y"}, "evaluates predictions"),
        ({"columns": {"predictions_features": "p", "targets_features": "t"}, "backbone": True}, "no backbone runs"),
        ({"columns": {"targets": "t"}, "metrics": ["inception_score"]}, "reads candidate_logits, which"),
        ({"columns": {"predictions": "p", "targets": "t"}, "task": "binary", "reference": "x"}, "not a binary task"),
        (
            {"columns": {"predictions": "p", "targets": "t", "targets_features": "f"}, "task": "binary"},
            "image and text",
        ),
        (
            {
                "columns": {"predictions_features": "p"},
                "task": "text",
                "reference": "r",
                "metrics": ["embedding_similarity"],
            },
            "row by row",
        ),
    ],
)
def test_impossible_sides_are_refused_at_load_time(tmp_path, changes, message):
    task = changes.get("task", "image")
    spec = {
        "data": {"path": str(tmp_path), "columns": changes["columns"]},
        "task": task,
        "metrics": changes.get("metrics", ["fid"] if task == "image" else ["accuracy"]),
        "output": {"uri": str(tmp_path / "out")},
    }
    if changes.get("backbone"):
        spec["backbone"] = {"kind": "cnn", "weights": str(tmp_path)}
    if "reference" in changes:
        spec["reference"] = changes["reference"]
    with pytest.raises(SpecError, match=message) as info:
        _load(tmp_path, "job", spec)
    assert "\n" not in str(info.value)


def test_cli_exit_2_for_a_missing_reference(tmp_path):
    data = tmp_path / "gen"
    _feature_files(data, "gen_f", np.random.default_rng(0).normal(size=(20, 4)), 1)
    spec = {
        "name": "gen",
        "data": {"path": str(data), "columns": {"predictions_features": "gen_f"}},
        "task": "image",
        "metrics": [{"name": "fid", "dimension": 4}],
        "reference": str(tmp_path / "out" / "ref" / "none"),
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    job = write_job(tmp_path / "job.yaml", spec)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in ("validate", "run"):
        done = subprocess.run(
            [sys.executable, "-m", "pipelines", command, str(job)], capture_output=True, text=True, env=env
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and "reference" in done.stderr and "no evalpipe run here" in done.stderr
    assert not (tmp_path / "out" / "gen").exists() or not any((tmp_path / "out" / "gen").glob("*/_COMMITTED"))


@pytest.mark.parametrize("unit_rows", [None, 6])
def test_feature_rows_of_another_width_in_another_file_exit_2_in_one_unit_or_two(tmp_path, unit_rows):
    """Two small files share a work unit: their columns are joined before the width check, where 3 features in one
    and 4 in the other was NumPy's concatenation error (exit 1); one unit per file was already refused."""
    (tmp_path / "data").mkdir()
    for i, width in enumerate((3, 4)):
        rows = [[float(k + j) for j in range(width)] for k in range(6)]
        table = pa.table({"g": pa.array(rows, pa.list_(pa.float64())), "r": pa.array(rows, pa.list_(pa.float64()))})
        pq.write_table(table, tmp_path / "data" / f"p{i}.parquet")
    spec = {
        "name": "widths",
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions_features": "g", "targets_features": "r"}},
        "task": "image",
        "metrics": [{"name": "fid", "dimension": 3}],
        "execution": {"runner": "local", **({"unit_rows": unit_rows} if unit_rows else {})},
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(DataError, match=r"column '[gr]' \(data\.columns\.(predictions|targets)_features\)") as caught:
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False)
    assert "p1.parquet" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("_COMMITTED"))


def test_kid_of_float32_and_float64_feature_files_does_not_depend_on_the_units(tmp_path):
    """One file stores the features as float32, another as float64: a unit holding both joins them as float64, so
    the rows' keys (KID's subset) were hashed from float64 there and from float32 in a unit of the float32 file
    alone: KID 0.404 or 0.358 by `unit_rows`. Keys now hash the float64 vector whatever the file stores."""
    from evaluators.backbones.cnn import row_hashes

    rng = np.random.default_rng(4)
    n, d, subset = 600, 12, 200
    generated = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 0.1
    real = rng.normal(size=(n, d))
    generated[:300], real[:300] = generated[:300].astype(np.float32), real[:300].astype(np.float32)
    (tmp_path / "data").mkdir()
    for name, rows, kind in (("a", slice(0, 300), pa.float32()), ("b", slice(300, n), pa.float64())):
        columns = {c: pa.array(list(v[rows]), pa.list_(kind)) for c, v in (("g", generated), ("r", real))}
        pq.write_table(pa.table(columns), tmp_path / "data" / f"{name}.parquet")
    values = []
    for unit_rows in (None, 100):
        spec = {
            "data": {"path": str(tmp_path / "data"), "columns": {"predictions_features": "g", "targets_features": "r"}},
            "task": "image",
            "metrics": [{"name": "kid", "dimension": d, "subset_size": subset, "as": "kid"}],
            "execution": {"runner": "local", **({"unit_rows": unit_rows} if unit_rows else {})},
            "output": {"uri": str(tmp_path / "out")},
        }
        values.append(_overall(_run(tmp_path, f"kid{unit_rows or 0}", spec).run)["kid"])

    def chosen(x):  # the subset_size rows of lowest hash of the float64 vectors, kept as float64
        return x[np.argsort(row_hashes(x), kind="stable")[:subset]]

    assert values[0] == values[1] == pytest.approx(numpy_kid(chosen(generated), chosen(real)), rel=1e-9)


def test_nan_in_precomputed_features_is_a_bad_row_named_by_its_column(tmp_path):
    """NaN features were refused as "computed from the batch" with advice about the backbone's weights, even with no
    backbone, and could not be left out: they are bad rows of their column, refused or dropped."""
    rng = np.random.default_rng(0)
    generated, real = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    generated[3, 1] = np.nan
    (tmp_path / "data").mkdir()
    columns = {c: pa.array(list(v), pa.list_(pa.float64())) for c, v in (("g", generated), ("r", real))}
    pq.write_table(pa.table(columns), tmp_path / "data" / "p.parquet")
    spec = {
        "data": {"path": str(tmp_path / "data"), "columns": {"predictions_features": "g", "targets_features": "r"}},
        "task": "image",
        "metrics": [{"name": "fid", "dimension": 4, "as": "fid"}],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(DataError, match=r"column 'g' \(data.columns.predictions_features\): 1 row with NaN or inf"):
        _run(tmp_path, "refused", spec)
    dropped = _run(tmp_path, "dropped", {**spec, "data": {**spec["data"], "on_bad_rows": "drop"}}).run
    keep = np.arange(50) != 3
    assert _overall(dropped)["fid"] == pytest.approx(scipy_frechet(generated[keep], real[keep]), rel=1e-9)
