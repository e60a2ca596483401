"""Whole-process benchmark (``python scripts/bench.py process``): what a user times.

Each tool runs as its own process, started with ``taskset -c CPU`` (one core, single-threaded XLA
and BLAS), and is timed from outside, imports included: wall seconds and CPU seconds (user +
system, from the child's resource usage). Tools, run alternately ``repeats`` times each:

* ``numpy one-pass``: NumPy over the same sufficient statistics (confusion counts at 0.5, sums of
  log loss and squared error, 15 calibration bins, a 65,536-bin score histogram per label), read
  shard by shard in 64Ki-row slices, then the 11 metrics: the floor of a one-pass evaluator;
* ``scikit-learn``: the raw read, concatenated, then scikit-learn's 11 metric functions;
* ``evalpipe run (cold cache)``: ``python -m pipelines run job.yaml --runner local`` with an empty
  compilation cache directory (``EVALPIPE_COMPILE_CACHE``), as a machine's first run;
* ``evalpipe run (warm cache)``: the same with the cache a previous run filled, as every later run.

The "in-process" column is the time after imports as the process itself measured it (for evalpipe,
``run.json``'s ``process_seconds - import_seconds``), which is what the other parts of ``bench.py``
report. The run fails if evalpipe's values differ from scikit-learn's (beyond 1e-9 plus the error
bound a binned ranking metric reports).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_harness import compare_values
from bench_suites import ONE_CORE_XLA_FLAGS, ROOT, THREAD_VARIABLES, Suite, suite_from, suite_payload
from bench_tools import read_arrays, sklearn_values

SLICE_ROWS = 1 << 16
AUC_BINS = 1 << 16
ECE_BINS = 15
TOOLS = ("numpy one-pass", "scikit-learn", "evalpipe run (cold cache)", "evalpipe run (warm cache)")


# --- the baselines, each run as `python bench_process.py TOOL SUITE_JSON` -----------------------------------------


def numpy_one_pass(suite: Suite) -> dict[str, float]:
    """The 11 binary metrics from sufficient statistics gathered in one pass (ROC-AUC from a linear
    65,536-bin histogram: within about 1e-5 of the exact value on these data)."""
    import pyarrow.parquet as pq

    counts = np.zeros(4)  # tn, fp, fn, tp
    sums = np.zeros(2)  # log loss, squared error
    ece = np.zeros((3, ECE_BINS + 1))  # rows, confidence, correct; the last bin: confidences of exactly 1
    hist = np.zeros((2, AUC_BINS))
    columns = [suite.columns["predictions"], suite.columns["targets"]]
    for path in suite.paths():
        table = pq.read_table(path, columns=columns)
        scores = table.column(columns[0]).to_numpy().astype(np.float64)
        labels = table.column(columns[1]).to_numpy().astype(np.int64)
        for start in range(0, len(scores), SLICE_ROWS):
            p, y = scores[start : start + SLICE_ROWS], labels[start : start + SLICE_ROWS]
            counts += np.bincount(2 * y + (p > 0.5), minlength=4)
            clipped = np.clip(p, np.finfo(np.float64).eps, 1 - np.finfo(np.float64).eps)
            sums[0] -= np.sum(np.where(y == 1, np.log(clipped), np.log1p(-clipped)))
            sums[1] += np.sum((p - y) ** 2)
            index = np.where(p >= 1.0, ECE_BINS, np.minimum((p * ECE_BINS).astype(np.int64), ECE_BINS - 1))
            ece[0] += np.bincount(index, minlength=ECE_BINS + 1)
            ece[1] += np.bincount(index, weights=p, minlength=ECE_BINS + 1)
            ece[2] += np.bincount(index, weights=y.astype(np.float64), minlength=ECE_BINS + 1)
            cell = np.minimum((p * AUC_BINS).astype(np.int64), AUC_BINS - 1)
            hist += np.bincount(y * AUC_BINS + cell, minlength=2 * AUC_BINS).reshape(2, AUC_BINS)
    return _from_statistics(counts, sums, ece, hist)


def _from_statistics(counts: np.ndarray, sums: np.ndarray, ece: np.ndarray, hist: np.ndarray) -> dict[str, float]:
    tn, fp, fn, tp = counts
    n = counts.sum()
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    expected = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / n**2
    neg, pos = hist
    below = np.cumsum(neg) - neg
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall),
        "mcc": (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)),
        "kappa": ((tp + tn) / n - expected) / (1 - expected),
        "balanced_accuracy": (recall + tn / (tn + fp)) / 2,
        "roc_auc": float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum())),
        "log_loss": sums[0] / n,
        "brier": sums[1] / n,
        "ece": float(np.abs(ece[2] - ece[1]).sum() / ece[0].sum()),
    }


def tool_main(tool: str, payload: str) -> None:
    """Entry point of a baseline process: prints ``{"values": ..., "in_process_s": ...}`` as JSON."""
    start = time.perf_counter()
    suite = suite_from(json.loads(payload))
    values = numpy_one_pass(suite) if tool == "numpy" else sklearn_values(suite, read_arrays(suite))
    values = {k: float(v) for k, v in values.items()}
    print(json.dumps({"values": values, "in_process_s": time.perf_counter() - start}))


# --- timing whole processes --------------------------------------------------------------------------------------


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_process(command: list[str], env: dict[str, str], cpu: int) -> tuple[float, float, str]:
    """``(wall s, CPU s, stdout)`` of ``command`` pinned to core ``cpu``; exits with its stderr if it fails."""
    pinned = ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") else command
    cpu_before, start = _child_cpu(), time.perf_counter()
    done = subprocess.run(pinned, env=env, capture_output=True, text=True, check=False)
    wall, used = time.perf_counter() - start, _child_cpu() - cpu_before
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{done.stderr[-4000:]}")
    return wall, used, done.stdout


def one_core_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS=ONE_CORE_XLA_FLAGS)
    env.update({name: "1" for name in THREAD_VARIABLES})
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def _evalpipe_run(job: Path, out: Path, env: dict[str, str], cache: Path, cpu: int) -> dict[str, object]:
    shutil.rmtree(out, ignore_errors=True)
    wall, used, _ = run_process(
        [sys.executable, "-m", "pipelines", "run", str(job), "--runner", "local", "--quiet"],
        {**env, "EVALPIPE_COMPILE_CACHE": str(cache)},
        cpu,
    )
    (run_file,) = out.glob("*/*/run.json")
    run = json.loads(run_file.read_text())
    timings = run["metadata"]["timings"]
    overall = next(p for p in run["points"] if p["name"] == "overall")
    values = {k: m["value"] for k, m in overall["metrics"].items()}
    return {
        "wall_s": wall,
        "cpu_s": used,
        "in_process_s": timings["process_seconds"] - timings["import_seconds"],
        "import_s": timings["import_seconds"],
        "compile_s": timings["compile_seconds"],
        "values": values,
    }


def bench_process(suite: Suite, repeats: int, cpu: int) -> dict[str, object]:
    """Every tool ``repeats`` times, alternating; medians, ratios from this one run, the value check."""
    import yaml

    env = one_core_env()
    payload = json.dumps(suite_payload(suite))
    script = str(Path(__file__).resolve())
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in TOOLS}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        job = Path(tmp) / "job.yaml"
        job.write_text(yaml.safe_dump(suite.job(out), sort_keys=False))
        warm = Path(tmp) / "warm-cache"
        _evalpipe_run(job, out, env, warm, cpu)  # fills the warm cache
        for repeat in range(repeats):
            for name in TOOLS:
                if name.startswith("evalpipe"):
                    cache = warm if "warm" in name else Path(tmp) / f"cold-{repeat}"
                    runs[name].append(_evalpipe_run(job, out, env, cache, cpu))
                    continue
                tool = "numpy" if name.startswith("numpy") else "sklearn"
                wall, used, stdout = run_process([sys.executable, script, tool, payload], env, cpu)
                runs[name].append({"wall_s": wall, "cpu_s": used, **json.loads(stdout.strip().splitlines()[-1])})
    table = {name: _medians(results, suite.rows) for name, results in runs.items()}
    for row in table.values():
        row["time_vs_numpy"] = row["wall_s"] / table["numpy one-pass"]["wall_s"]
        row["cpu_vs_numpy"] = row["cpu_s"] / table["numpy one-pass"]["cpu_s"]
        row["speedup_vs_sklearn"] = table["scikit-learn"]["wall_s"] / row["wall_s"]
    reference = runs["scikit-learn"][-1]["values"]
    checks = {name: compare_values(suite, runs[name][-1]["values"], reference) for name in TOOLS[2:]}
    return {
        "suite": "binary (whole processes)",
        "rows": suite.rows,
        "shards": len(suite.paths()),
        "table": table,
        "values_match_sklearn": {"ok": all(c["ok"] for c in checks.values()), "metrics": checks[TOOLS[3]]["metrics"]},
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _medians(results: list[dict[str, object]], rows: int) -> dict[str, float]:
    keys = [k for k, v in results[0].items() if isinstance(v, float)]
    out = {k: statistics.median(float(r[k]) for r in results) for k in keys}
    out.update(rows_per_s=rows / out["wall_s"], runs=len(results))
    return out


def markdown(result: dict[str, object], info: dict[str, str]) -> str:
    lines = [
        f"Measured {info['date']} on {info['cpus']} x {info['cpu_model']}; load average {result['load_average']} "
        f"at the end (the machine was shared); {info['versions']}. {result['rows']:,} binary rows in "
        f"{result['shards']} shards, the 11 binary metrics; every process pinned to one core (taskset), "
        f"XLA_FLAGS={ONE_CORE_XLA_FLAGS}; medians of {result['table'][TOOLS[0]]['runs']} alternating runs.",
        "",
        "| tool | process wall s | process CPU s | rows/s (process) | wall / numpy one-pass | CPU / numpy one-pass "
        "| speed-up vs scikit-learn | in-process s (after imports) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["table"].items():
        lines.append(
            f"| {name} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | {row['rows_per_s']:,.0f} | "
            f"{row['time_vs_numpy']:.2f}x | {row['cpu_vs_numpy']:.2f}x | {row['speedup_vs_sklearn']:.1f}x | {row['in_process_s']:.2f} |"
        )
    check = result["values_match_sklearn"]
    worst = max(check["metrics"].values(), key=lambda r: r["diff"] / max(r["allowed"], 1e-300))
    lines += [
        "",
        f"evalpipe's values match scikit-learn's: {'yes' if check['ok'] else 'NO'} "
        f"(largest difference {worst['diff']:.2e}).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    tool_main(sys.argv[1], sys.argv[2])
