"""``runner: beam``: the example jobs on Apache Beam's DirectRunner (in process and with 2 worker processes)
give records identical, bit for bit, to the local and Ray runners; the CombineFn merges like the driver;
each Beam worker builds its evaluator and loads its backbone once; spec and command-line options.

The tests that run Beam skip where apache_beam is not installed (it pins pyarrow<26: see the README)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines import spec as spec_module
from pipelines.cli import main as cli_main
from pipelines.errors import DataError, SpecError, UserError
from pipelines.execute import check_dataset, run_job
from pipelines.quantiles import resolve_quantiles
from pipelines.synthetic import binary_table, write_shards
from pipelines.unit_result import OrderedMerger, Partial
from pipelines.worker import UnitEvaluator
from tests.conftest import image_job_spec, write_job

# Beam starts its worker processes with subprocess (fork, then exec at once), which JAX warns about.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
ROOT = Path(__file__).resolve().parents[1]
SLICES = [
    {"column": "country"},
    {"columns": ["country", "device"], "min_count": 300},
    {"name": "us_or_de", "filter": {"country": {"in": ["US", "DE"]}}},
    {"column": "device", "max_slices": 2},
    {"column": "score", "quantiles": 4},
]
CONFIDENCE = {"replicates": 20, "level": 0.9, "seed": 3, "buckets": 16}
SLICED = {
    "slices": SLICES,
    "confidence": CONFIDENCE,
    # configs/binary.yaml's metrics, fewer: replicate values of each metric on every slice take a while
    "metrics": [{"name": "roc_auc", "priority": "primary"}, "accuracy", "f1_score", "log_loss"],
}
MULTI_PROCESS = {"direct_running_mode": "multi_processing", "direct_num_workers": 2}


@pytest.fixture(scope="module")
def beam():
    return pytest.importorskip("apache_beam")


@pytest.fixture(scope="module")
def binary_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("beam-binary")
    write_shards(str(root), "binary", 12_000, 5, seed=7, row_group_rows=500)
    return root


@pytest.fixture(scope="module")
def multiclass_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("beam-multiclass")
    write_shards(str(root), "multiclass", 6_000, 4, seed=5, num_classes=10, row_group_rows=500)
    return root


def example_job(tmp_path: Path, config: str, data: Path, runner: str, tag: str = "", **changes) -> Path:
    """``configs/{config}.yaml`` on ``data``, with ``changes`` to its top-level keys and ``execution``."""
    spec = yaml.safe_load((ROOT / "configs" / f"{config}.yaml").read_text())
    spec["data"]["path"] = str(data)
    execution = {"runner": runner, "unit_rows": 1_500, **changes.pop("execution", {})}
    spec["execution"] = execution
    spec.update(changes)
    directory = tmp_path / f"{runner}{tag}"
    directory.mkdir(parents=True, exist_ok=True)
    spec["output"] = {"uri": str(directory / "out")}
    return write_job(directory / "job.yaml", spec)


def run(path: Path, overrides: dict | None = None):
    return run_job(spec_module.load(str(path), overrides), show_progress=False)


def assert_identical(a, b) -> None:
    """Same points (values, intervals, samples), same slice reports, same committed statistics, bit for bit."""
    assert json.dumps([p.to_dict() for p in a.run.points]) == json.dumps([p.to_dict() for p in b.run.points])
    for key in ("rows", "units", "dropped_slices", "below_min_count"):
        assert a.run.metadata.get(key) == b.run.metadata.get(key), key
    with np.load(Path(a.uri) / "statistics.npz") as x, np.load(Path(b.uri) / "statistics.npz") as y:
        assert x.files == y.files
        for name in x.files:
            assert x[name].dtype == y[name].dtype and x[name].tobytes() == y[name].tobytes(), name
    assert (Path(a.uri) / "statistics.json").read_text() == (Path(b.uri) / "statistics.json").read_text()


# --- spec and command line (no Beam needed) -------------------------------------------------------------


def _load(tmp_path: Path, execution: dict, overrides: dict | None = None):
    spec = {
        "name": "opts",
        "data": {"path": str(tmp_path / "none"), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "execution": execution,
        "output": {"uri": str(tmp_path / "out")},
    }
    return spec_module.load(str(write_job(tmp_path / "opts.yaml", spec)), overrides)


def test_beam_options_from_the_spec_and_the_command_line(tmp_path):
    execution = {
        "runner": "beam",
        "beam": {
            "runner": "direct",
            "direct_num_workers": 2,
            "direct_running_mode": "multi_processing",
            "temp_location": "gs://bucket/tmp",
            "options": {"experiments": ["a", "b"], "save_main_session": True, "streaming": False, "job_name": "x"},
        },
    }
    beam_spec = _load(tmp_path, execution).execution.beam
    assert beam_spec.runner == "DirectRunner" and beam_spec.combine == "driver"
    assert beam_spec.pipeline_args() == [
        "--runner=DirectRunner",
        "--temp_location=gs://bucket/tmp",
        "--direct_num_workers=2",
        "--direct_running_mode=multi_processing",
        "--experiments=a",
        "--experiments=b",
        "--save_main_session",
        "--job_name=x",
    ]
    flags = ["--runner=DataflowRunner", "--project", "p1", "--temp_location=gs://other/tmp"]
    beam_spec = _load(tmp_path, execution, {"beam_args": flags}).execution.beam
    assert beam_spec.pipeline_args()[-4:] == flags
    assert beam_spec.option("runner") == "DataflowRunner"
    assert beam_spec.option("project") == "p1"
    assert beam_spec.option("temp_location") == "gs://other/tmp"
    assert _load(tmp_path, {"runner": "local"}).execution.beam.pipeline_args() == ["--runner=DirectRunner"]
    example = spec_module.load(str(ROOT / "configs" / "beam.yaml")).execution
    assert example.runner == "beam" and dict(example.beam.options)["direct_num_workers"] == 2


@pytest.mark.parametrize(
    ("execution", "overrides", "expected"),
    [
        ({"runner": "beam", "beam": {"direct_num_worker": 2}}, None, "did you mean 'direct_num_workers'"),
        ({"runner": "beam", "beam": {"runner": "DirectRuner"}}, None, "did you mean 'DirectRunner'"),
        ({"runner": "beam", "beam": {"direct_running_mode": "multiprocessing"}}, None, "multi_processing"),
        (
            {"runner": "beam", "beam": {"runner": "DataflowRunner", "direct_num_workers": 2}},
            None,
            "direct_num_workers applies to the DirectRunner only",
        ),
        ({"runner": "beam", "beam": {"num_workers": 0}}, None, "execution.beam.num_workers"),
        ({"runner": "beam", "beam": {"options": {"project": "p"}}}, None, "set execution.beam.project instead"),
        ({"runner": "beam", "beam": {"options": {"--flink_master": "h:1"}}}, None, "flink_master for --flink_master"),
        ({"runner": "beam", "beam": {"options": {"x": {"a": 1}}}}, None, "execution.beam.options.x"),
        ({"runner": "beam", "beam": {"combine": "beam"}}, None, "set execution.checkpoints: false"),
        ({"runner": "local"}, {"beam_args": ["--project=p"]}, "need execution.runner: beam"),
        ({"runner": "beam"}, {"beam_args": ["project=p"]}, "expected Beam pipeline flags"),
    ],
)
def test_bad_beam_options_are_spec_errors_naming_the_key(tmp_path, execution, overrides, expected):
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, execution, overrides)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_passes_flags_after_double_dash_to_beam_only(tmp_path, capsys):
    job = write_job(
        tmp_path / "job.yaml",
        {
            "name": "cli",
            "data": {"path": str(tmp_path / "none"), "columns": {"predictions": "score", "targets": "label"}},
            "task": "binary",
            "metrics": ["accuracy"],
            "execution": {"runner": "ray"},
            "output": {"uri": str(tmp_path / "out")},
        },
    )
    assert cli_main(["run", str(job), "--runner", "local", "--", "--project=p"]) == 2
    assert "need execution.runner: beam" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["show", str(tmp_path), "--", "--project=p"])


def test_beam_runner_without_apache_beam_is_a_user_error(tmp_path, binary_data, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "apache_beam", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "pipelines.runners.beam", raising=False)
    with pytest.raises(UserError) as caught:
        run(example_job(tmp_path, "binary", binary_data, "beam"))
    assert "pip install 'evalpipe[beam]'" in str(caught.value)


# --- the CombineFn ---------------------------------------------------------------------------------------


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(la, lb, strict=True)
    )


def assert_same_partial(a: Partial, b: Partial) -> None:
    assert list(a.states) == list(b.states) and list(a.bucket_states) == list(b.bucket_states)
    assert a.rows == b.rows and list(a.rows) == list(b.rows)
    for key in a.states:
        assert _leaves_equal(a.states[key], b.states[key]), key
    for key in a.bucket_states:
        assert _leaves_equal(a.bucket_states[key], b.bucket_states[key]), key


def test_combine_fn_merges_like_the_driver_in_any_order(tmp_path, beam):
    from pipelines.runners.beam import OrderedPartialCombineFn

    data = tmp_path / "data"
    data.mkdir()
    table = binary_table(np.random.default_rng(3), 6_500)
    pq.write_table(table, data / "part.parquet", row_group_size=500)  # 13 units: not a power of two
    job = example_job(tmp_path, "binary", data, "local", **SLICED)
    spec = spec_module.load(str(job), {"set": ["execution.unit_rows=500"]})
    plan = check_dataset(spec)
    spec, _ = resolve_quantiles(spec, plan.files)
    evaluator = UnitEvaluator(spec)
    partials = [(u.index, evaluator.process(u).partial) for u in plan.units]
    assert len(partials) == 13
    driver = OrderedMerger(evaluator.accumulator, evaluator.replicate_accumulator)
    for index, partial in partials:
        driver.add(index, partial)
    expected = driver.result()

    fn = OrderedPartialCombineFn(spec, len(partials))
    rng = random.Random(0)
    for _ in range(3):
        shuffled = [*partials, rng.choice(partials)]  # one unit twice, as from a retried bundle
        rng.shuffle(shuffled)
        cuts = sorted(rng.sample(range(1, len(shuffled)), 4))
        accumulators = []
        for lo, hi in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
            acc = fn.create_accumulator()
            for element in shuffled[lo:hi]:
                acc = fn.add_input(acc, element)
            accumulators.append(acc)
        while len(accumulators) > 1:  # merge random groups until one is left
            rng.shuffle(accumulators)
            k = rng.randint(2, len(accumulators))
            accumulators = [fn.merge_accumulators(iter(accumulators[:k])), *accumulators[k:]]
        assert_same_partial(fn.extract_output(accumulators[0]), expected)


# --- jobs on the DirectRunner ----------------------------------------------------------------------------


def test_sliced_bootstrap_job_in_process_equals_local(tmp_path, binary_data, beam):
    local = run(example_job(tmp_path, "binary", binary_data, "local", **SLICED))
    outcome = run(example_job(tmp_path, "binary", binary_data, "beam", **SLICED))
    assert local.run.metadata["units"] >= 8
    assert len(local.run.points) > 10 and local.run.point("overall").metrics["roc_auc"].lower is not None
    assert outcome.run.environment["runner"] == "beam"
    assert outcome.run.environment["cluster"]["beam_runner"] == "DirectRunner"
    assert_identical(outcome, local)


def test_multiclass_job_on_two_worker_processes_merged_in_beam_equals_local(tmp_path, multiclass_data, beam):
    local = run(example_job(tmp_path, "multiclass", multiclass_data, "local"))
    execution = {"checkpoints": False, "beam": {**MULTI_PROCESS, "combine": "beam"}}
    outcome = run(example_job(tmp_path, "multiclass", multiclass_data, "beam", execution=execution))
    assert_identical(outcome, local)
    cluster = outcome.run.environment["cluster"]
    assert cluster["direct_running_mode"] == "multi_processing" and cluster["direct_num_workers"] == 2
    # one evaluator per worker process, whatever the number of units
    assert outcome.run.metadata["units"] >= 4
    assert 1 <= outcome.run.environment["workers"] <= 2
    assert cluster["evaluators"] == outcome.run.environment["workers"]


def test_worker_state_is_built_once_per_beam_worker_and_cli_flags_win(tmp_path, binary_data, beam, monkeypatch):
    import pipelines.runners.beam as beam_runner

    built = []

    class Counting(UnitEvaluator):
        def __init__(self, spec):
            built.append(spec.name)
            super().__init__(spec)

    monkeypatch.setattr(beam_runner, "UnitEvaluator", Counting)
    # The YAML asks for two worker processes; the flags after `--` run it in this process, on one worker.
    job = example_job(tmp_path, "binary", binary_data, "beam", execution={"beam": MULTI_PROCESS})
    flags = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    assert cli_main(["run", str(job), "--quiet", "--", *flags]) == 0
    (run_dir,) = [p for p in (tmp_path / "beam" / "out" / "churn-binary").iterdir() if not p.name.startswith("_")]
    recorded = json.loads((run_dir / "run.json").read_text())
    assert recorded["metadata"]["units"] >= 8
    assert recorded["environment"]["cluster"]["direct_running_mode"] == "in_memory"
    assert built == ["churn-binary"]
    assert recorded["environment"]["cluster"]["evaluators"] == 1

    # a misspelt flag is an error before anything runs, not a flag Beam drops
    assert cli_main(["run", str(job), "--quiet", "--", "--direct_num_worker=1"]) == 2


def test_backbone_is_loaded_once_per_beam_worker(tmp_path, beam):
    pytest.importorskip("safetensors")
    pytest.importorskip("PIL")
    import os
    import subprocess
    import sys

    weights = tmp_path / "cnn"
    script = str(ROOT / "scripts" / "make_cnn_backbone.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, script, str(weights)], check=True, cwd=ROOT, env=env, capture_output=True)
    data = tmp_path / "images"
    write_shards(str(data), "image", 160, 4, seed=7, row_group_rows=20)
    backbone = {"kind": "cnn", "weights": str(weights), "batch_size": 32}
    execution = {"runner": "beam", "unit_rows": 20, "beam": MULTI_PROCESS}
    spec = image_job_spec("images", data, backbone, ["fid", "inception_score"], execution, tmp_path / "out")
    beam_run = run(write_job(tmp_path / "beam.yaml", spec)).run
    local_run = run(write_job(tmp_path / "beam.yaml", spec), {"runner": "local"}).run
    assert beam_run.point("overall").to_dict() == local_run.point("overall").to_dict()
    loads = beam_run.metadata["backbone"]["loads_per_worker"]
    assert beam_run.metadata["units"] == 8
    assert 1 <= len(loads) <= 2 and set(loads.values()) == {1}
    assert beam_run.environment["cluster"]["evaluators"] == len(loads)


def test_bad_data_stops_the_pipeline_as_a_data_error(tmp_path, beam):
    data = tmp_path / "bad"
    data.mkdir()
    for i in range(3):
        table = binary_table(np.random.default_rng(i), 1_000)
        if i == 1:
            score = table.column("score").to_numpy().copy()
            score[17] = np.nan
            table = table.set_column(table.schema.get_field_index("score"), "score", pa.array(score))
        pq.write_table(table, data / f"part-{i}.parquet")
    job = example_job(tmp_path, "binary", data, "beam", execution={"unit_rows": 1_000})
    with pytest.raises(DataError) as caught:
        run(job)
    assert "part-1.parquet" in str(caught.value) and "'score'" in str(caught.value)
    assert not (tmp_path / "beam" / "out" / "churn-binary").exists() or not [
        p for p in (tmp_path / "beam" / "out" / "churn-binary").iterdir() if not p.name.startswith("_")
    ]


def test_remote_runner_without_temp_location_is_a_user_error(tmp_path, binary_data, beam):
    job = example_job(tmp_path, "binary", binary_data, "beam", execution={"beam": {"runner": "DataflowRunner"}})
    with pytest.raises(UserError) as caught:
        run(job)
    assert "execution.beam.temp_location" in str(caught.value)


@pytest.mark.ray
def test_sliced_bootstrap_job_on_beam_equals_ray(tmp_path, binary_data, beam, ray_cluster):
    ray_run = run(example_job(tmp_path, "binary", binary_data, "ray", execution={"actors": 2}, **SLICED))
    beam_run = run(example_job(tmp_path, "binary", binary_data, "beam", **SLICED))
    assert ray_run.run.environment["workers"] == 2
    assert_identical(beam_run, ray_run)
