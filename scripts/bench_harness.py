"""Running the measurements in fresh, pinned processes (:class:`Runner`) and the suites' benchmarks: evalpipe
against the tools users would otherwise run (binary, multiclass, segmentation), the Ray runner, the ordered
reduce and the memory of the local runner."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_suites import (
    CACHE_VARIABLES,
    ONE_CORE_XLA_FLAGS,
    RAY_NODE_IP,
    ROOT,
    SEGMENTATION_IGNORE,
    THREAD_VARIABLES,
    Suite,
    suite_payload,
)
from bench_tools import measure


@dataclass
class Runner:
    """Runs each measurement in a fresh Python process (``inline``: in this one, for tests), pinned to
    ``cpus`` with single-threaded XLA and BLAS, with or without a persistent compilation cache."""

    cpus: tuple[int, ...] | None = (0,)
    inline: bool = False
    cache_dir: Path | None = None

    def env(self, cached: bool) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS=ONE_CORE_XLA_FLAGS)
        if self.cpus is not None and len(self.cpus) == 1:
            env.update({name: "1" for name in THREAD_VARIABLES})
        env.setdefault("EVALPIPE_RAY_NODE_IP", RAY_NODE_IP)
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        if cached and self.cache_dir is not None:
            env.update(CACHE_VARIABLES, JAX_COMPILATION_CACHE_DIR=str(self.cache_dir))
        else:  # (a run that compiles: not evalpipe's own per-user cache either, which an earlier run may have filled)
            env["EVALPIPE_COMPILE_CACHE"] = "off"
        return env

    def __call__(self, task: dict[str, object], *, cached: bool = False, cpus: tuple[int, ...] | None = ()) -> dict:
        cpus = self.cpus if cpus == () else cpus
        if self.inline:
            return measure(task)
        env = self.env(cached)
        # evalpipe's process sets its allocator first thing, as `evalpipe run` does (pipelines.host_memory)
        allocator = "from pipelines.host_memory import keep_freed_memory\nkeep_freed_memory()\n"
        code = (
            "import json, os, sys\n"
            f"cpus = {list(cpus) if cpus else None!r}\n"
            "if cpus: os.sched_setaffinity(0, cpus)\n"
            f"sys.path.insert(0, {str(ROOT / 'scripts')!r})\n"
            f"{allocator if task['tool'] == 'evalpipe' else ''}"
            "import bench_tools\n"
            "print('\\n' + json.dumps(bench_tools.measure(json.loads(sys.argv[1]))))\n"
        )
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(task)], env=env, capture_output=True, text=True, check=False
        )
        process_wall = time.perf_counter() - start  # (the whole process: interpreter, imports, the work, exit)
        if done.returncode != 0:
            raise SystemExit(f"{task['tool']} on {task['suite']['name']} failed:\n{done.stderr[-4000:]}")
        return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_wall_s": process_wall}


def compare_values(
    suite: Suite, ours: dict[str, float], reference: dict[str, float], tolerance: float = 1e-9
) -> dict[str, object]:
    """evalpipe's values against scikit-learn's: each within ``tolerance`` (relative, at least absolute),
    plus the error bound evalpipe reports for a binned ranking metric."""
    rows = {}
    for key in suite.keys:
        got, want = float(ours[key]), float(reference[key])
        bound = float(ours.get(f"{key}.error_bound", 0.0))
        diff = abs(got - want)
        allowed = tolerance * max(1.0, abs(want)) + bound
        rows[key] = {"evalpipe": got, "sklearn": want, "diff": diff, "allowed": allowed, "ok": diff <= allowed}
    return {"ok": all(r["ok"] for r in rows.values()), "metrics": rows}


TOOLS = ("read", "sklearn", "torchmetrics", "evalpipe (compile)", "evalpipe")
"""Rows of a suite's table; ``evalpipe (compile)`` compiles its update in the process, ``evalpipe`` finds it
in the persistent compilation cache (as every run after the first on a machine does)."""


def bench_suite(suite: Suite, runner: Runner, repeats: int, thresholds: int | None = None) -> dict[str, object]:
    """Every tool on ``suite``, ``repeats`` times, interleaved (drift in machine load hits all alike)."""
    payload = suite_payload(suite)
    with tempfile.TemporaryDirectory() as tmp:
        job = suite.job(Path(tmp) / "out")
        tasks = {
            "read": {"tool": "read", "suite": payload},
            "sklearn": {"tool": "sklearn", "suite": payload},
            "torchmetrics": {"tool": "torchmetrics", "suite": payload, "thresholds": thresholds},
            "evalpipe (compile)": {"tool": "evalpipe", "suite": payload, "job": job},
            "evalpipe": {"tool": "evalpipe", "suite": payload, "job": job},
        }
        if not runner.inline:
            runner(tasks["evalpipe"], cached=True)  # fills the compilation cache
        runs: dict[str, list[dict]] = {name: [] for name in tasks}
        for _ in range(repeats):
            for name, task in tasks.items():
                runs[name].append(runner(task, cached=name == "evalpipe"))
    table = {name: summary(results, suite.rows) for name, results in runs.items()}
    check = compare_values(suite, runs["evalpipe"][-1]["values"], runs["sklearn"][-1]["values"])
    torch_check = compare_values(suite, runs["torchmetrics"][-1]["values"], runs["sklearn"][-1]["values"], 1e-4)
    _add_ratios(table)
    return {
        "suite": suite.name,
        "rows": suite.rows,
        "data": _describe(suite),
        "table": table,
        "values_match_sklearn": check,
        "torchmetrics_match_sklearn": torch_check["ok"],
    }


def summary(results: list[dict], rows: int) -> dict[str, float]:
    """Median wall time and peak RSS of repeated measurements over ``rows`` rows, and the rows per second."""
    wall = statistics.median(r["wall_s"] for r in results)
    out = {
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
        "runs": len(results),
    }
    for key in ("read_s", "startup_s", "compute_s", "cluster_start_s", "process_wall_s"):
        if key in results[0]:
            out[key] = statistics.median(r[key] for r in results)
    return out


def _add_ratios(table: dict[str, dict[str, float]]) -> None:
    base, read = table.get("sklearn"), table.get("read")
    for row in table.values():
        if base:
            row["speedup_vs_sklearn"] = base["wall_s"] / row["wall_s"]
        if read:
            row["time_vs_read"] = row["wall_s"] / read["wall_s"]
            row["rss_vs_read"] = row["peak_rss_mb"] / read["peak_rss_mb"]


def _describe(suite: Suite) -> str:
    files = len(suite.paths())
    if suite.name == "binary":
        return f"{suite.rows:,} binary predictions (float32 score, int8 label) in {files} Parquet shards"
    if suite.name == "multiclass":
        return f"{suite.rows:,} rows of {suite.classes}-class float32 probabilities in {files} Parquet shards"
    return (
        f"{suite.rows:,} masks of {suite.size}x{suite.size} pixels, {suite.classes} classes + ignore "
        f"{SEGMENTATION_IGNORE} (one byte per pixel, fixed_size_binary) in {files} Parquet shards"
    )


def bench_ray(suite: Suite, runner: Runner, repeats: int) -> dict[str, object]:
    """The Ray runner with 1 and 2 actors (one CPU each) on a fresh local cluster per run; cluster start-up,
    actor start-up and the job's rows/s without either."""
    payload = suite_payload(suite)
    ray_runner = Runner(cpus=None, cache_dir=runner.cache_dir, inline=runner.inline)
    with tempfile.TemporaryDirectory() as tmp:
        tasks = {
            f"ray, {k} actor{'s' if k > 1 else ''}": {
                "tool": "evalpipe",
                "suite": payload,
                "job": suite.job(Path(tmp) / "out", runner="ray", actors=k),
                "cluster": True,
            }
            for k in (1, 2)
        }
        local = {"tool": "evalpipe", "suite": payload, "job": suite.job(Path(tmp) / "out")}
        runner(local, cached=True)  # fills the compilation cache
        runs: dict[str, list[dict]] = {name: [] for name in tasks}
        for _ in range(repeats):
            for name, task in tasks.items():
                runs[name].append(ray_runner(task, cached=True))
    table = {}
    for name, results in runs.items():
        row = summary(results, suite.rows)
        job = statistics.median(r["wall_s"] - r["startup_s"] for r in results)
        row.update(job_s=job, rows_per_s=suite.rows / job)
        row["actor_cores"] = statistics.median(r["worker_cpu_s"] / r["compute_s"] for r in results)
        table[name] = row
    one, two = table["ray, 1 actor"], table["ray, 2 actors"]
    return {
        "suite": f"{suite.name} (ray)",
        "rows": suite.rows,
        "data": _describe(suite),
        "table": table,
        "scaling_2_vs_1": two["rows_per_s"] / one["rows_per_s"],
        "goal_scaling": 1.7,
    }


def bench_reduce(suite: Suite, runner: Runner, units: int) -> dict[str, object]:
    result = runner({"tool": "reduce", "suite": suite_payload(suite), "units": units})
    return {"suite": f"{suite.name} (reduce)", "goal_s": 1.0, **result}


def bench_memory(suite: Suite, runner: Runner, repeats: int, shards: int) -> dict[str, object]:
    """Peak RSS of the local runner (the worker is the process) on ``shards`` shards and on 10x as many."""
    paths = suite.paths()
    if len(paths) < 10 * shards:
        raise SystemExit(f"memory: {suite.directory} has {len(paths)} shards, fewer than 10 x {shards}")
    payload = suite_payload(suite)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in (shards, 10 * shards):
            job = suite.job(Path(tmp) / "out", paths=paths[:count])
            results = [runner({"tool": "evalpipe", "suite": payload, "job": job}, cached=True) for _ in range(repeats)]
            rows = sum(pq_rows(p) for p in paths[:count])
            out[f"{count} shards"] = {**summary(results, rows), "rows": rows}
    small, large = out[f"{shards} shards"], out[f"{10 * shards} shards"]
    return {
        "suite": f"{suite.name} (memory)",
        "table": out,
        "rss_ratio_10x_shards": large["peak_rss_mb"] / small["peak_rss_mb"],
    }


def pq_rows(path: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
