"""Whole-process costs: compiles that stay constant as slices and replicates grow, imports a command
does not need, and the persistent compilation cache's settings."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import jax
import jax.monitoring
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from evaluators import lazyjax
from evaluators.lazyjax import jnp as deferred_jnp
from pipelines import compile_cache
from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.storage import METRICS_FILE, METRICS_SCHEMA, read_run
from pipelines.synthetic import binary_table
from tests._data import torch_edges
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parent.parent
RUN_PATH = (
    "import pipelines.execute, pipelines.runners.local, pipelines.worker, evaluators.catalog, "
    "evaluators.accumulate, evaluators.functional"
)
"""The modules a run and the functional API import: none of them imports JAX until an update needs it."""
JAX_MODULES = {"jax", "jaxlib", "ml_dtypes"}
COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "traces",
    "/jax/core/compile/backend_compile_duration": "executables",
    "/jax/compilation_cache/cache_retrieval_time_sec": "executables",  # a compile the persistent cache saved
}
SLICES = {
    "one": [{"column": "country"}],
    "three": [{"column": "country"}, {"column": "device"}, {"columns": ["country", "device"], "min_count": 50}],
}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("compiles")
    table = binary_table(np.random.default_rng(5), 6_000)
    for i in range(3):
        pq.write_table(table.slice(2_000 * i, 2_000), root / f"part-{i}.parquet", row_group_size=700)
    return root, table


@pytest.fixture
def compile_counter(monkeypatch):
    """``{"traces": n, "executables": n}`` seen while the test runs: every trace, and every executable
    compiled or loaded from a persistent cache (whether or not an earlier test in this process enabled one)."""
    counts = dict.fromkeys(COMPILE_EVENTS.values(), 0)

    def listen(event: str, _seconds: float, **_: object) -> None:
        if event in COMPILE_EVENTS:
            counts[COMPILE_EVENTS[event]] += 1

    monkeypatch.setenv(compile_cache.SETTING, "off")
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def _sliced_job(tmp_path: Path, data: Path, slices: str, replicates: int):
    spec = {
        "name": f"compiles-{slices}-{replicates}",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label", "row_id": "row_id"}},
        "task": "binary",
        "metrics": ["accuracy", "f1_score", "roc_auc", "average_precision", "log_loss", "expected_calibration_error"],
        "slices": SLICES[slices],
        "confidence": {"replicates": replicates, "level": 0.9, "seed": 1, "buckets": 16},
        "execution": {"runner": "local", "unit_rows": 2_000},
        "output": {"uri": str(tmp_path / "out")},
    }
    return spec_module.load(str(write_job(tmp_path / f"{spec['name']}.yaml", spec)))


@pytest.mark.slow
def test_compiles_do_not_grow_with_slices_or_replicates(tmp_path, shards, compile_counter):
    data, table = shards
    counts = {}
    # a first job absorbs the one-time compiles of the process (what earlier tests in it left behind differs
    # with the order tests run in); the counted jobs then differ only in slices and replicates
    run_job(_sliced_job(tmp_path, data, "one", 5), show_progress=False)
    for slices, replicates in (("one", 5), ("three", 5), ("one", 40), ("three", 40)):
        jax.clear_caches()
        for event in compile_counter:
            compile_counter[event] = 0
        outcome = run_job(_sliced_job(tmp_path, data, slices, replicates), show_progress=False)
        counts[slices, replicates] = dict(compile_counter)
        overall = next(p for p in outcome.run.points if p.name == "overall").metrics
        labels = table.column("label").to_numpy()
        scores = table.column("score").to_numpy().astype(np.float64)
        assert overall["accuracy"].value == pytest.approx(skm.accuracy_score(labels, scores > 0.5), abs=1e-12)
        assert overall["accuracy"].lower < overall["accuracy"].value < overall["accuracy"].upper
    first = counts["one", 5]
    assert first["executables"] > 0, "the job compiled nothing: the listener saw no compile events"
    assert all(c == first for c in counts.values()), counts


def _run_python(statement: str) -> str:
    """stdout of a fresh interpreter running ``statement``, then printing the names of all modules it imported
    (top-level packages and ``scipy.special``) on the last line."""
    shown = "m.split('.')[0] if not m.startswith('scipy.special') else 'scipy.special'"
    code = f"import sys\n{statement}\nprint(' '.join(sorted({{{shown} for m in sys.modules}})))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=240)
    return out.stdout


def _imported_after(statement: str) -> set[str]:
    return set(_run_python(statement).splitlines()[-1].split())


def test_cli_import_leaves_out_polars_matplotlib_jax_and_ray():
    assert not {"polars", "matplotlib", "jax", "ray"} & _imported_after("import pipelines.cli")


def test_results_import_leaves_out_jax_and_ray():
    assert not {"jax", "ray", "matplotlib"} & _imported_after("import pipelines.results")


def test_compile_cache_directory_settings(tmp_path):
    home = {"HOME": str(tmp_path)}
    assert compile_cache.cache_directory(home) == tmp_path / ".cache" / "evalpipe" / "xla"
    assert (
        compile_cache.cache_directory({**home, "XDG_CACHE_HOME": str(tmp_path / "x")})
        == tmp_path / "x" / "evalpipe" / "xla"
    )
    assert compile_cache.cache_directory({**home, compile_cache.SETTING: str(tmp_path / "c")}) == tmp_path / "c"
    assert compile_cache.cache_directory({**home, compile_cache.SETTING: "off"}) is None
    assert compile_cache.cache_directory({**home, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "j")}) is None


def test_run_path_import_leaves_out_polars_matplotlib_and_ray():
    assert not {"polars", "matplotlib", "ray"} & _imported_after("import pipelines.execute, pipelines.runners.local")


def test_run_path_import_leaves_out_jax():
    assert not JAX_MODULES & _imported_after(RUN_PATH)


def test_first_update_imports_jax_with_the_compile_cache_and_compile_listener_on(tmp_path, monkeypatch):
    """The settings that wait for JAX (the persistent cache, the compile-time listener) apply from its import,
    before the first compile: the cache directory gets the update's executables, and its compile time counts.
    (A regression statistic: classification statistics fold a small call's rows on the host, without JAX.)"""
    rng = np.random.default_rng(11)
    targets, scores = rng.integers(0, 2, 500), rng.random(500)
    np.save(tmp_path / "targets.npy", targets)
    np.save(tmp_path / "scores.npy", scores)
    monkeypatch.setenv(compile_cache.SETTING, str(tmp_path / "xla"))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    statement = f"""
import json
import numpy as np
{RUN_PATH}
from pipelines import compile_cache, timing
compile_cache.enable_on_import()
timing.watch_compiles()
before = sorted(m for m in sys.modules if m.split(".")[0] in {sorted(JAX_MODULES)})
value = evaluators.functional.mse(np.load({str(tmp_path / "scores.npy")!r}), np.load({str(tmp_path / "targets.npy")!r}))
import jax
seen = {{"before": before, "value": float(value), "cache": jax.config.jax_compilation_cache_dir}}
print(json.dumps({{**seen, "compile_seconds": timing.compile_seconds()}}))
"""
    lines = _run_python(statement).splitlines()
    seen = json.loads(lines[-2])
    assert seen["before"] == [] and set(lines[-1].split()) >= JAX_MODULES
    assert seen["value"] == pytest.approx(skm.mean_squared_error(targets, scores), rel=1e-12)
    assert seen["cache"] == str(tmp_path / "xla") and any((tmp_path / "xla").iterdir())
    assert seen["compile_seconds"] > 0


def test_deferred_jax_pickles_by_reference_and_traces():
    """A function holding the stand-in (pickled by value, as Ray ships a statistic's closures) gets the same
    stand-in back; under ``jax.jit`` and ``enable_x64`` it is the module."""
    from ray import cloudpickle

    assert pickle.loads(pickle.dumps(lazyjax.jnp)) is lazyjax.jnp
    shipped = cloudpickle.loads(cloudpickle.dumps(lambda x: deferred_jnp.sum(x * x, dtype=deferred_jnp.float64)))
    x = np.arange(5.0)
    with lazyjax.jax.enable_x64(True):
        assert float(lazyjax.jax.jit(shipped)(x)) == 30.0
        assert lazyjax.jnp.asarray(x).dtype == np.float64


def test_local_run_of_a_binary_job_leaves_out_unused_libraries(tmp_path, shards):
    """A whole ``evalpipe run`` of a small binary job on the local runner: no polars (reading results back), no
    scipy.special (logit predictions only), no matplotlib or Ray, and no JAX (its rows fold on the host); and its
    table is the run's."""
    data, table = shards
    job = {
        "name": "imports",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy", "log_loss", "demographic_parity_difference"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    job["data"]["columns"]["sensitive"] = "country"
    path = write_job(tmp_path / "imports.yaml", job)
    command = f"from pipelines.cli import main; main(['run', {str(path)!r}, '--runner', 'local', '--quiet'])"
    stdout = _run_python(command)
    lines = stdout.splitlines()
    imported = set(lines[-1].split())
    assert not {"polars", "matplotlib", "ray"} & imported
    assert "scipy.special" not in imported and not JAX_MODULES & imported
    accuracy = next(line.split() for line in lines if line.startswith("overall") and " accuracy " in f" {line} ")
    labels, scores = table.column("label").to_numpy(), table.column("score").to_numpy()
    assert float(accuracy[2]) == pytest.approx(skm.accuracy_score(labels, scores > 0.5), rel=1e-5)


@pytest.mark.skipif(lazyjax.accelerator_possible(), reason="JAX may use an accelerator here: compiled past HOST_ROWS")
def test_a_binary_job_past_the_host_rows_folds_every_row_without_jax_on_a_cpu(tmp_path):
    """400,000 rows, past the 262,144 a worker folds on the host before switching to the compiled update: every
    statistic of the binary suite folds as fast with NumPy, so with no accelerator the whole job imports no JAX;
    the values are scikit-learn's (ROC-AUC binned: within its bound)."""
    rng = np.random.default_rng(8)
    table = binary_table(rng, 400_000)
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=100_000)
    names = ["accuracy", "f1_score", "log_loss", "brier_score", "roc_auc", "expected_calibration_error"]
    job = {
        "name": "no-jax",
        "data": {"path": str(tmp_path), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": names,
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    path = write_job(tmp_path / "no-jax.yaml", job)
    stdout = _run_python(f"from pipelines.cli import main; main(['run', {str(path)!r}, '--quiet'])")
    assert not JAX_MODULES & set(stdout.splitlines()[-1].split())
    (run_dir,) = (tmp_path / "out" / "no-jax").glob("2*")
    (overall,) = (p for p in read_run(str(run_dir)).points if p.name == "overall")
    values = {name: metric.value for name, metric in overall.metrics.items()}
    labels, scores = table.column("label").to_numpy(), table.column("score").to_numpy()
    assert values["accuracy"] == pytest.approx(skm.accuracy_score(labels, scores > 0.5), rel=1e-12)
    # scikit-learn on the float64 scores: on float32 ones it clips log loss at float32's epsilon and squares in float32
    scores = scores.astype(np.float64)
    assert values["log_loss"] == pytest.approx(skm.log_loss(labels, scores), rel=1e-12)
    assert values["brier_score"] == pytest.approx(skm.brier_score_loss(labels, scores), rel=1e-12)
    assert abs(values["roc_auc"] - skm.roc_auc_score(labels, scores)) <= values["roc_auc.error_bound"]
    # torchmetrics' binary calibration error: 15 bins by a search of the edges, a confidence of exactly 1 on its own
    edges = torch_edges(15, table.column("score").to_numpy().dtype)  # (the column's dtype)
    bins = np.where(scores >= 1, 15, np.clip(np.searchsorted(edges, scores, "right") - 1, 0, 14))
    count, confidence, accuracy = (np.bincount(bins, w, 16) for w in (None, scores, labels.astype(np.float64)))
    gaps = np.abs(accuracy - confidence)[count > 0] / count[count > 0]
    expected_ece = float(np.sum(gaps * count[count > 0]) / count.sum())
    assert values["expected_calibration_error"] == pytest.approx(expected_ece, rel=1e-9)


def test_an_installed_accelerator_plugin_keeps_the_compiled_update_unless_jax_platforms_is_cpu():
    """Found without importing JAX: a module of an accelerator's plugin (here any importable one stands for it)
    means JAX may run on a device, and a binary job takes the compiled update past the first rows; ``JAX_PLATFORMS=cpu``
    says it will not."""
    statement = """
import os
from evaluators import catalog, lazyjax
from evaluators.accumulate import ALL_ROWS, HOST_ROWS, Accumulator
from evaluators.task import Task
stats = [catalog.build(name, Task("binary")).statistic for name in ("accuracy", "roc_auc", "log_loss")]
os.environ.pop("JAX_PLATFORMS", None)
lazyjax.ACCELERATOR_MODULES = ("no_plugin_of_this_name",)  # (as on a machine without one, wherever this runs)
seen = [lazyjax.accelerator_possible(), Accumulator(stats)._host_rows_left == ALL_ROWS]
lazyjax.ACCELERATOR_MODULES = ("json",)
seen += [lazyjax.accelerator_possible(), Accumulator(stats)._host_rows_left == HOST_ROWS]
os.environ["JAX_PLATFORMS"] = "cpu"
seen += [lazyjax.accelerator_possible(), Accumulator(stats)._host_rows_left == ALL_ROWS]
print(seen)
"""
    lines = _run_python(statement).splitlines()
    assert lines[-2] == "[False, True, True, True, False, True]"
    assert not JAX_MODULES & set(lines[-1].split())


@pytest.mark.parametrize(
    ("flags", "platforms", "expected"),
    [
        (None, None, "--xla_gpu_deterministic_ops=true"),
        (
            "--xla_cpu_multi_thread_eigen=false",
            None,
            "--xla_cpu_multi_thread_eigen=false --xla_gpu_deterministic_ops=true",
        ),
        ("--xla_gpu_deterministic_ops=false", None, "--xla_gpu_deterministic_ops=false"),
        ("--xla_gpu_exclude_nondeterministic_ops=true", None, "--xla_gpu_exclude_nondeterministic_ops=true"),
        (None, "cpu", None),
    ],
)
@pytest.mark.parametrize("imported_first", [False, True], ids=["stand-in-first", "jax-imported-first"])
def test_where_a_gpu_is_possible_xla_scatters_deterministically_unless_the_flags_say_otherwise(
    flags, platforms, expected, imported_first
):
    """Before JAX's first backend starts (an installed plugin stands in for a GPU; JAX itself may be imported), the
    stand-in adds XLA's deterministic flag to ``XLA_FLAGS``, keeping the flags already set; flags that name
    determinism and ``JAX_PLATFORMS=cpu`` are left alone. JAX starts with the flag (XLA would abort on an unknown
    one) and computes."""
    statement = f"""
import os
for name, value in (("XLA_FLAGS", {flags!r}), ("JAX_PLATFORMS", {platforms!r})):
    os.environ.pop(name, None)
    if value is not None:
        os.environ[name] = value
if {imported_first!r}:
    import jax.numpy
from evaluators import lazyjax
lazyjax.ACCELERATOR_MODULES = ("json",)
print(int(lazyjax.jnp.arange(4).sum()), os.environ.get("XLA_FLAGS"))
"""
    assert _run_python(statement).splitlines()[-2] == f"6 {expected}"


def test_actors_sharing_a_gpu_take_their_share_of_its_memory():
    """Half a GPU: half of JAX's 75%; a whole GPU, none, or memory settings of the operator's own: nothing set."""
    environ: dict[str, str] = {}
    assert lazyjax.share_gpu_memory(0.5, environ) == "0.375"
    assert environ == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.375"}
    assert lazyjax.share_gpu_memory(0.25, {}) == "0.1875"
    for gpus, settings in ((1.0, {}), (2.0, {}), (0.0, {}), (0.5, {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"})):
        environ = dict(settings)
        assert lazyjax.share_gpu_memory(gpus, environ) is None
        assert environ == settings


def test_run_json_timings_cover_the_whole_process(tmp_path, shards):
    data, _ = shards
    job = _sliced_job(tmp_path, data, "one", 5)
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{compile_cache.SETTING: "off"})
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    subprocess.run(
        [sys.executable, "-m", "pipelines", "run", job.source, "--runner", "local"],
        env=env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    (run_file,) = (tmp_path / "out").glob("*/*/run.json")
    timings = json.loads(run_file.read_text())["metadata"]["timings"]
    phases = ("import", "plan", "startup", "compute", "reduce", "commit")
    assert all(timings[f"{p}_seconds"] >= 0 for p in phases), timings
    # the phases follow one another: together no longer than the process (clock ticks of 10 ms)
    assert sum(timings[f"{p}_seconds"] for p in phases) <= timings["process_seconds"] + 0.05, timings
    assert timings["import_seconds"] > 0 and timings["process_cpu_seconds"] > 0
    # a fresh process without the persistent cache compiles its updates while computing
    assert 0 < timings["compile_seconds"] <= timings["compute_seconds"] + timings["reduce_seconds"], timings


def test_a_window_run_records_the_process_up_to_its_own_commit(tmp_path, shards):
    """A nightly job commits its run, then the window run merged from the recent runs: the window run's timings
    carry the merge, its commit and the whole process up to that commit, later than the job's run did."""
    data, _ = shards
    spec = {
        "name": "windowed",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy", "roc_auc"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
        "window": {"runs": 2},
    }
    job = write_job(tmp_path / "windowed.yaml", spec)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for part in range(2):  # (two nights: each its own rows, as a window merges only runs over other files)
        path = data / f"part-{part}.parquet"
        subprocess.run(
            [sys.executable, "-m", "pipelines", "run", str(job), "--runner", "local", "--set", f"data.path={path}"],
            env=env,
            capture_output=True,
            check=True,
            timeout=300,
        )
    runs = [json.loads(f.read_text()) for f in (tmp_path / "out" / "windowed").glob("*/run.json")]
    run = max(runs, key=lambda r: r["timestamp"])["metadata"]["timings"]  # the second process's own run
    windows = [json.loads(f.read_text()) for f in (tmp_path / "out" / "windowed-2runs").glob("*/run.json")]
    window = max(windows, key=lambda r: r["timestamp"])["metadata"]  # (the first process committed one of 1 run)
    timings = window["timings"]
    assert len(window["merged_from"]) == 2 and timings["merge_seconds"] > 0, window
    assert timings["commit_seconds"] >= 0
    # the same process, later: its age covers the job's run, then the merge (clock ticks of 10 ms)
    assert timings["process_seconds"] >= run["process_seconds"] + timings["merge_seconds"] - 0.02, (run, timings)
    assert timings["process_cpu_seconds"] > run["process_cpu_seconds"], (run, timings)


def test_top_class_is_numpys_argmax_with_ties_and_negative_scores():
    from evaluators.task import Task, top_class

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2_000, 17)).astype(np.float32)
    logits[::3, 4] = logits[::3].max(axis=1)  # ties: the first of the tied classes wins
    logits[::3, 9] = logits[::3, 4]
    logits[::7] = -1.5  # all classes tied
    with jax.enable_x64(True):  # as inside the compiled updates
        best, label = top_class(Task("multiclass", 17, "logits"), jax.numpy.asarray(logits))
    np.testing.assert_array_equal(np.asarray(label), logits.argmax(axis=1))
    np.testing.assert_array_equal(np.asarray(best), logits.max(axis=1).astype(np.float64))


def _bench_modules():
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_process
    import bench_suites
    import bench_tools

    return bench_suites, bench_tools, bench_process


def test_numpy_one_pass_baseline_computes_the_metrics_sklearn_does(tmp_path):
    bench_suites, bench_tools, bench_process = _bench_modules()
    suite = bench_suites.binary_suite(6_000, tmp_path, shard_rows=2_000)
    ours = bench_process.numpy_one_pass(suite)
    reference = bench_tools.sklearn_values(suite, bench_tools.read_arrays(suite))
    for key, want in reference.items():
        # ROC-AUC from a linear 65,536-bin histogram; the rest exact up to summation order
        assert ours[key] == pytest.approx(want, abs=1e-4 if key == "roc_auc" else 1e-9), key


@pytest.mark.slow
def test_process_benchmark_runs_whole_processes_and_checks_values(tmp_path, capsys):
    _, _, bench_process = _bench_modules()
    import bench

    out = tmp_path / "process.json"
    args = ["--rows", "6000", "--shard-rows", "2000", "--small-rows", "1000", "--repeats", "1"]
    bench.main(["process", *args, "--data-dir", str(tmp_path), "--json", str(out)])
    results = json.loads(out.read_text())["results"]
    assert [r["rows"] for r in results] == [6000, 1000]
    for result in results:
        assert result["values_match_sklearn"]["ok"]
        assert set(result["table"]) == set(bench_process.TOOLS)
        assert all(row["wall_s"] > 0 and row["cpu_s"] > 0 for row in result["table"].values())
    assert capsys.readouterr().out.count("| evalpipe run (warm cache) |") == 2


def test_resample_with_extremes_is_the_per_replicate_definition():
    from evaluators.statistic import resample_with_extremes

    rng = np.random.default_rng(8)
    groups, replicates = 12, 9
    stacked = {
        "counts": rng.integers(0, 5, (groups, 2, 30)).astype(np.float64),
        "lo": rng.normal(size=(groups, 30)),  # tracked extremes: differ by bucket
        "hi": np.full((groups, 30), np.inf),  # untracked: the same in every bucket
    }
    weights = rng.poisson(1.0, (replicates, groups)).astype(np.float64)
    weights[0] = 0.0  # a replicate that uses no bucket
    got = resample_with_extremes(stacked, weights)
    for b, state in enumerate(got):
        used = weights[b] > 0
        np.testing.assert_allclose(state["counts"], np.einsum("g,gij->ij", weights[b], stacked["counts"]))
        lo = stacked["lo"][used].min(axis=0) if used.any() else np.full(30, np.inf)
        hi = stacked["hi"][used].max(axis=0) if used.any() else np.full(30, -np.inf)
        np.testing.assert_array_equal(state["lo"], lo)
        np.testing.assert_array_equal(state["hi"], hi)


def test_digamma_difference_is_the_finite_harmonic_sum():
    from evaluators.ranking import digamma_difference

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(1e-3, 5, 200), rng.uniform(1, 1e6, 200), [1.0, 9.999, 10.0]])
    p = rng.integers(0, 150, len(x)).astype(np.float64)
    # psi(x + p) - psi(x) = sum_{k < p} 1 / (x + k) for integer p
    exact = np.array([math.fsum(1.0 / (xi + k) for k in range(int(pi))) for xi, pi in zip(x, p, strict=True)])
    np.testing.assert_allclose(digamma_difference(x, p), exact, rtol=1e-13, atol=1e-300)


def test_local_run_of_a_binary_job_imports_no_pandas_and_stores_its_records(tmp_path, shards):
    """A whole ``evalpipe run`` of a binary job sliced by a string column, on the local runner, never imports
    pandas (pyarrow imports it for ``pa.array``/``pa.table``/``to_numpy`` where it is installed); its
    ``metrics.parquet`` holds the run's records, written as pyarrow's own conversion writes them."""
    data, table = shards
    job = {
        "name": "no-pandas",
        "data": {"path": str(data), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy", "log_loss"],
        "slices": [{"column": "country"}],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    path = write_job(tmp_path / "no-pandas.yaml", job)
    command = f"from pipelines.cli import main; main(['run', {str(path)!r}, '--runner', 'local', '--quiet'])"
    assert "pandas" not in _imported_after(command)

    (run_dir,) = (tmp_path / "out" / "no-pandas").iterdir()
    run = read_run(str(run_dir))
    overall = next(p for p in run.points if p.name == "overall").metrics
    labels, scores = table.column("label").to_numpy(), table.column("score").to_numpy().astype(np.float64)
    assert overall["accuracy"].value == pytest.approx(skm.accuracy_score(labels, scores > 0.5), abs=1e-12)
    assert overall["log_loss"].value == pytest.approx(skm.log_loss(labels, scores), rel=1e-9)
    assert len(run.points) == 1 + len(set(table.column("country").to_pylist()))

    stored = pq.read_table(run_dir / METRICS_FILE)
    assert stored.schema == METRICS_SCHEMA
    records = [
        {
            "run_id": run.id,
            "timestamp": run.timestamp,
            "job": "no-pandas",
            "commit": run.commit,
            "point": point.name,
            "tags": list(point.tags.items()),
            "metric": name,
            "value": metric.value,
            "lower": metric.lower,
            "upper": metric.upper,
            "direction": str(run.metric_defs[name].direction),
        }
        for point in run.points
        for name, metric in point.metrics.items()
    ]
    assert stored.equals(pa.Table.from_pylist(records, schema=METRICS_SCHEMA))


def test_library_versions_are_importlib_metadatas():
    from importlib import metadata

    from pipelines.execute import LIBRARIES, installed_version, library_versions

    versions = library_versions()
    for name in LIBRARIES:
        try:
            want = metadata.version(name)
        except metadata.PackageNotFoundError:
            assert name not in versions
            continue
        assert installed_version(name) == versions[name] == want, name
    with pytest.raises(metadata.PackageNotFoundError):
        installed_version("evalpipe-no-such-package")


def test_git_revision_is_gits_commit_and_branch(tmp_path, shards):
    from pipelines.execute import git_revision

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True).stdout

    job = {
        "name": "revision",
        "data": {"path": str(shards[0]), "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
        "output": {"uri": str(tmp_path / "out")},
    }
    spec = spec_module.load(str(write_job(tmp_path / "job.yaml", job)))
    with pytest.MonkeyPatch.context() as patch:
        for name in ("EVALPIPE_COMMIT", "GIT_DIR", "GIT_WORK_TREE"):  # the checkout of the job file, not another
            patch.delenv(name, raising=False)
        git("init", "-q", "-b", "nightly-x")
        assert git_revision(spec) == (None, None)  # no commit yet
        git("-c", "user.name=e", "-c", "user.email=e@example.com", "commit", "-q", "--allow-empty", "-m", "first")
        assert git_revision(spec) == (git("rev-parse", "HEAD").strip(), "nightly-x")
        git("checkout", "-q", "--detach")
        assert git_revision(spec) == (git("rev-parse", "HEAD").strip(), "HEAD")
