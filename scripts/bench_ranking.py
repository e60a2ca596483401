"""``python scripts/bench.py ranking``: the sparse ranking state (ROC-AUC, average precision).

Figures, each against a baseline measured in the same invocation:

* ``reduce``: merging ``--units`` (10,000) unit states of the binned ranking statistic in plan order
  (:class:`~pipelines.unit_result.OrderedMerger`), the states cycling through ``--distinct-units`` (16) distinct
  real units of ``--unit-rows`` continuous scores, each as a Ray actor ships it (its window form,
  :mod:`evaluators.ranking_window`; the time to make it is reported per unit, as it is spent on the actors);
  baselines: the same merge of the stored states (pooled, as the local runner merges them and as actors shipped
  them before the window form), and of the dense histograms (their working form, as runs stored them before the
  sparse form). Goal: under 1 s.
* ``slices``: a job of the binary metrics plus average precision on ``--slice-rows`` (1M) rows with a
  slice column of ``--slice-values`` (1,000) values, each job in a fresh process (compilation counted);
  baseline: the same job without slices. Goals: at most 10x the wall time, at most 1.5 GB peak RSS. Both the job's
  own wall time (``wall_ratio``) and the whole process's, imports included (``process_wall_ratio``), are reported.
* ``multiclass``: the multiclass suite (``--multiclass-rows`` x ``--classes``, the binary suite's metrics,
  macro) on the local runner against the raw read of its columns, both in fresh pinned processes, taking turns;
  evalpipe finds its update in the persistent compilation cache (filled by a run before), as a nightly job does,
  and one run that compiles it is reported apart (``evalpipe (compile)``). Goal: at most 2x.
* ``wide``: the stored state per unit of a ``--wide-classes`` (1,000) class task on ``--wide-rows``
  rows at the default precision, and the time of its update. Goal: at most 64 MB.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

DISTINCT_UNITS = 16


def _unit_columns(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    from scipy.special import expit

    y = (rng.random(rows) < 0.2).astype(np.int8)
    score = expit(rng.normal(size=rows) + 1.5 * y - 1.0).astype(np.float32)
    return {"predictions": score, "targets": y}


def reduce_figures(units: int, unit_rows: int, distinct: int = DISTINCT_UNITS) -> dict[str, Any]:
    """Merges of ``units`` unit states of the default ROC-AUC statistic: as Ray actors ship them, stored, and as
    dense histograms."""
    from evaluators import catalog
    from evaluators.accumulate import Accumulator
    from evaluators.ranking_cells import collapse_cells
    from evaluators.task import Task
    from pipelines.unit_result import OVERALL, OrderedMerger, Partial

    metric = catalog.build("roc_auc", Task("binary"))
    stat = metric.statistic
    acc = Accumulator([stat])
    rng = np.random.default_rng(0)
    sparse = [acc.update(acc.zero(), _unit_columns(rng, unit_rows))[0] for _ in range(distinct)]
    start = time.perf_counter()
    shipped = [stat.transported(s) for s in sparse]
    transport_s = (time.perf_counter() - start) / distinct
    dense = [stat.working(s) for s in sparse]

    class _Dense:  # the pre-sparse merge: leaf-wise sums and extremes of the whole grid
        statistics = acc.statistics
        order_free = ()  # the dense float histograms merge pairwise in plan order

        @staticmethod
        def merge(a: tuple, b: tuple, skip: tuple = ()) -> tuple:
            from evaluators.statistic import merge_with_extremes

            return (merge_with_extremes(a[0], b[0]),)

    out: dict[str, Any] = {"units": units, "unit_rows": unit_rows, "distinct_units": distinct}
    forms = (("shipped", shipped, acc), ("stored", sparse, acc), ("dense", dense, _Dense()))
    for name, states, accumulator in forms:
        merger = OrderedMerger(accumulator)  # type: ignore[arg-type]
        start = time.perf_counter()
        for i in range(units):
            merger.add(i, Partial({OVERALL: (states[i % distinct],)}, {}, {OVERALL: unit_rows}))
        merged = merger.result().states[OVERALL][0]
        merge_s = time.perf_counter() - start
        start = time.perf_counter()
        value = metric.compute(stat.stored(merged))[""]
        if name == "stored":  # the dense histograms hold one cell per bin: the value of the collapsed state
            out["binned_roc_auc"] = metric.compute(collapse_cells(merged))[""]
        sizes = [s.nbytes if hasattr(s, "nbytes") else sum(np.asarray(v).nbytes for v in s.values()) for s in states]
        out[name] = {
            "form": type(states[0]).__name__,
            "merge_s": merge_s,
            "metrics_s": time.perf_counter() - start,
            "state_bytes_per_unit": int(np.mean(sizes)),
            "roc_auc": value,
        }
    out["shipped"]["transport_ms_per_unit"] = transport_s * 1e3
    out["speed_up_vs_stored"] = out["stored"]["merge_s"] / out["shipped"]["merge_s"]
    out["speed_up_vs_dense"] = out["dense"]["merge_s"] / out["shipped"]["merge_s"]
    out["goal_s"] = 1.0
    return out


def _write_sliced_data(directory: Path, rows: int, values: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    columns = _unit_columns(rng, rows)
    group = np.char.add("g", rng.integers(0, values, rows).astype(str))
    table = pa.table({"score": columns["predictions"], "label": columns["targets"], "group": group})
    half = rows // 2
    pq.write_table(table.slice(0, half), directory / "part-0.parquet")
    pq.write_table(table.slice(half), directory / "part-1.parquet")


def slices_figures(rows: int, values: int, repeats: int) -> dict[str, Any]:
    from bench_jobs import measure_job, median
    from bench_suites import BINARY_METRICS

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        _write_sliced_data(data, rows, values)
        common = textwrap.dedent(
            f"""
            data: {{path: {data}, columns: {{predictions: score, targets: label}}}}
            task: binary
            metrics: [{BINARY_METRICS}, average_precision]
            execution: {{runner: local}}
            output: {{uri: {work / "out"}}}
            """
        )
        jobs = {
            "plain": f"name: plain\n{common}",
            "sliced": f"name: sliced\n{common}slices: [{{column: group, max_slices: {values}}}]\n",
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in jobs}
        for _ in range(repeats):
            for name, job in jobs.items():
                runs[name].append(measure_job(job, work, name))
    table = {name: median(r) for name, r in runs.items()}
    figures = _ratio({"rows": rows, "slice_values": values}, table, "sliced", "plain", 10.0)
    return {**figures, "goal_peak_rss_mb": 1536.0}


def _ratio(sizes: dict[str, int], table: dict[str, Any], measured: str, baseline: str, goal: float) -> dict[str, Any]:
    """Figures of one comparison: the sizes, the table, and the measured-to-baseline wall-time ratio with its goal;
    and the whole processes' ratio where both were timed as processes (not ``--inline``)."""
    ratio = table[measured]["wall_s"] / table[baseline]["wall_s"]
    out = {**sizes, "table": table, "wall_ratio": ratio, "goal_wall_ratio": goal}
    if "process_wall_s" in table[measured] and "process_wall_s" in table[baseline]:
        out["process_wall_ratio"] = table[measured]["process_wall_s"] / table[baseline]["process_wall_s"]
    return out


def multiclass_figures(
    rows: int, classes: int, repeats: int, runner: Any, data_dir: Path | None = None
) -> dict[str, Any]:
    from bench_harness import summary
    from bench_suites import multiclass_suite, suite_payload

    suite = multiclass_suite(rows, classes, data_dir)
    payload = suite_payload(suite)
    with tempfile.TemporaryDirectory() as tmp:
        job = suite.job(Path(tmp) / "out")
        task = {"tool": "evalpipe", "suite": payload, "job": job}
        compiling = runner(task)  # (no persistent cache: the update compiled in the process, as on a first run)
        runner(task, cached=True)  # fills the cache that a nightly run finds
        read, evalpipe = [], []
        for _ in range(repeats):  # (alternating, so that a slower spell of the machine weighs on both)
            read.append(runner({"tool": "read", "suite": payload}))
            evalpipe.append(runner(task, cached=True))
    table = {"raw read": summary(read, rows), "evalpipe": summary(evalpipe, rows)}
    table["evalpipe (compile)"] = summary([compiling], rows)
    return _ratio({"rows": rows, "classes": classes}, table, "evalpipe", "raw read", 2.0)


def wide_figures(rows: int, classes: int) -> dict[str, Any]:
    """Stored state of one unit of ``rows`` rows of a ``classes``-class task at the default precision, and the time
    of its updates (the rows are drawn before each update, outside the timing)."""
    from evaluators import catalog
    from evaluators.accumulate import Accumulator
    from evaluators.ranking import bin_count
    from evaluators.task import Task

    rng = np.random.default_rng(2)
    stat = catalog.build("roc_auc", Task("multiclass", classes)).statistic
    acc = Accumulator([stat])
    state = acc.zero()
    seconds = 0.0
    step = 4096  # the rows of one folded batch of float32 rows this wide (16 MB)
    for first in range(0, rows, step):
        n = min(step, rows - first)
        probs = rng.dirichlet(np.ones(classes), n).astype(np.float32)
        targets = rng.integers(0, classes, n)
        start = time.perf_counter()
        state = acc.update(state, {"predictions": probs, "targets": targets}, to_host=False)
        seconds += time.perf_counter() - start
    start = time.perf_counter()
    (stored,) = acc.to_host(state)
    seconds += time.perf_counter() - start
    size = sum(np.asarray(v).nbytes for v in stored.values())
    return {
        "rows": rows,
        "classes": classes,
        "precision_bits": stat.precision_bits,
        "state_mb": size / 2**20,
        "cells": len(stored["keys"]),
        "update_s": seconds,
        "dense_grid_mb": classes * bin_count(stat.precision_bits) * 48 / 2**20,
        "goal_mb": 64.0,
    }


def bench_ranking(args: argparse.Namespace, runner: Any) -> dict[str, Any]:
    parts = args.parts.split(",")
    out: dict[str, Any] = {"suite": "ranking"}
    if "reduce" in parts:
        out["reduce"] = reduce_figures(args.units, args.unit_rows, args.distinct_units)
    if "wide" in parts:
        out["wide"] = wide_figures(args.wide_rows, args.wide_classes)
    if "slices" in parts:
        out["slices"] = slices_figures(args.slice_rows, args.slice_values, args.repeats)
    if "multiclass" in parts:
        data_dir = Path(args.data_dir) if args.data_dir else None
        out["multiclass"] = multiclass_figures(args.multiclass_rows, args.classes, args.repeats, runner, data_dir)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", default="reduce,wide,slices,multiclass")
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--unit-rows", type=int, default=500_000)
    parser.add_argument("--distinct-units", type=int, default=DISTINCT_UNITS)
    parser.add_argument("--slice-rows", type=int, default=1_000_000)
    parser.add_argument("--slice-values", type=int, default=1000)
    parser.add_argument("--multiclass-rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--wide-rows", type=int, default=100_000)
    parser.add_argument("--wide-classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--inline", action="store_true")
