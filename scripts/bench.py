"""Benchmarks, reported as ratios against a baseline measured in the same invocation.

    python scripts/bench.py slices [--rows 10000000] [--replicates 100] [--repeats 2]
    python scripts/bench.py backbone [--rows 4096] [--batch-size 64] [--repeats 3]
    python scripts/bench.py detection [--images 2000] [--repeats 3]
    python scripts/bench.py all [--repeats 3]        # binary, multiclass, segmentation, ray, reduce, memory
    python scripts/bench.py binary [--rows 10000000] [--thresholds 10000]
    python scripts/bench.py multiclass [--multiclass-rows 1000000] [--classes 100]
    python scripts/bench.py segmentation [--images 2000] [--size 256] [--segmentation-classes 21]
    python scripts/bench.py ray | reduce [--units 10000] | memory [--shards 2]
    python scripts/bench.py rowgroup [--rows 20000000] [--budget-mb 64] [--repeats 3]
    python scripts/bench.py ranking [--parts reduce,wide,slices,multiclass]   # see scripts/bench_ranking.py
    python scripts/bench.py families [--parts ranking,fairness,text]   # see scripts/bench_families.py
    python scripts/bench.py fused [--rows 4000000] [--repeats 7] [--cpu 0]   # see scripts/bench_fused.py
    python scripts/bench.py process [--rows 10000000] [--shard-rows 500000] [--small-rows 2000] [--repeats 3] [--cpu 0]

``process``: whole processes as a user times them, imports included (see ``scripts/bench_process.py``):
``evalpipe run`` with a cold and a warm compilation cache against a NumPy one-pass process and a
scikit-learn process, pinned to one core, alternating; fails if evalpipe's values differ from scikit-learn's.
A second table does the same on a small job (``--small-rows`` rows in one shard; 0 skips it): the fixed cost.

``slices``: binary predictions, the 11 binary catalogue metrics. Baseline: the plain job
(overall only). Measured: the same job with 8 slices (5 countries, 3 devices) plus the overall
slice and a ``B``-replicate bootstrap interval on every metric of every slice. Each job runs in a
fresh Python process (so compilation is counted, as in a real nightly run); the figure is the
median wall time of the job itself (planning, reading, updates, reduction, commit) and the
process's peak resident memory.

``backbone``: text pairs scored with the MiniLM encoder (embedding similarity, BERTScore, Fréchet).
Baseline: the bare jitted backbone (load, then ``pair_features`` on the same rows and batch size) in
a fresh process. Measured: the local-runner job on the same rows. The figure is the pipeline's
overhead over the bare backbone (goal: at most 15%), on whatever JAX device the machine has.

``binary``, ``multiclass``, ``segmentation``: evalpipe against what a user would run instead, on
the same files: the raw read (pyarrow, only the needed columns, into numpy), scikit-learn on the
concatenated arrays, torchmetrics (CPU; exact AUROC unless ``--thresholds``). Each tool runs in a
fresh process pinned to one core with single-threaded XLA and BLAS; its figure is the median wall
time after imports (reading included) and the process's peak RSS, also as ratios to scikit-learn
and to the raw read. evalpipe runs the local runner twice: compiling its update in the process, and
finding it in a persistent compilation cache (``JAX_COMPILATION_CACHE_DIR``), as every later run on
a machine does. The run fails if evalpipe's values differ from scikit-learn's (beyond 1e-9, plus the
error bound a binned ranking metric reports).

``ray``: the binary set on the Ray runner with 1 and 2 actors (one CPU each) on a fresh 2-CPU local
cluster; cluster and actor start-up are reported, and left out of the rows/s. ``reduce``: merging
10,000 unit results of the binary suite in plan order and computing the metrics, in all and per
statistic. ``memory``: the local runner's peak RSS on 2 shards and on 20 of the same size.
``rowgroup``: one file written as a single row group, evaluated with the default memory budget (the
row group decoded whole) and with ``--budget-mb`` (read in slices): peak RSS and wall time, and their
ratios.

Data is generated once (seeded) under ``bench-data/`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench_harness import Runner, bench_memory, bench_ray, bench_reduce, bench_suite
from bench_jobs import bench_backbone, bench_detection, bench_rowgroup, bench_slices
from bench_report import machine, markdown
from bench_suites import ROOT, binary_suite, multiclass_suite, segmentation_suite


def bench_whole_processes(args: argparse.Namespace) -> None:
    import bench_process

    suites = [binary_suite(args.rows, _data_dir(args), args.shard_rows)]
    if args.small_rows:  # the fixed cost of a process: a small job, one shard
        suites.append(binary_suite(args.small_rows, _data_dir(args), args.small_rows))
    results = [bench_process.bench_process(suite, args.repeats, args.cpu) for suite in suites]
    info = machine()
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=2))
    print("\n\n".join(bench_process.markdown(result, info) for result in results))
    for result in results:
        if not result["values_match_sklearn"]["ok"]:
            print(json.dumps(result["values_match_sklearn"], indent=2), file=sys.stderr)
            raise SystemExit("evalpipe's values differ from scikit-learn's")


def _runner(args: argparse.Namespace) -> Runner:
    cache = Path(args.data_dir or ROOT / "bench-data") / ".xla-cache"
    return Runner(cpus=(args.cpu,), inline=args.inline, cache_dir=cache)


def _data_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.data_dir) if args.data_dir else None


def run_benchmarks(args: argparse.Namespace) -> list[dict[str, object]]:
    runner = _runner(args)
    which = (
        ("binary", "multiclass", "segmentation", "ray", "reduce", "memory")
        if args.benchmark == "all"
        else (args.benchmark,)
    )
    results = []
    binary = None
    if {"binary", "ray", "reduce", "memory"} & set(which):
        binary = binary_suite(args.rows, _data_dir(args), args.shard_rows)
    for name in which:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        if name == "binary":
            results.append(bench_suite(binary, runner, args.repeats, args.thresholds))
        elif name == "multiclass":
            suite = multiclass_suite(args.multiclass_rows, args.classes, _data_dir(args))
            results.append(bench_suite(suite, runner, args.repeats, args.thresholds))
        elif name == "segmentation":
            suite = segmentation_suite(args.images, args.size, args.segmentation_classes, _data_dir(args))
            results.append(bench_suite(suite, runner, args.repeats, args.thresholds))
        elif name == "ray":
            results.append(bench_ray(binary, runner, args.repeats))
        elif name == "reduce":
            results.append(bench_reduce(binary, runner, args.units))
        elif name == "memory":
            results.append(bench_memory(binary, runner, args.repeats, args.shards))
    return results


def _add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=10_000_000, help="binary rows")
    parser.add_argument("--shard-rows", type=int, default=500_000, help="binary rows per shard")
    parser.add_argument("--multiclass-rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100, help="multiclass classes")
    parser.add_argument("--images", type=int, default=2000, help="segmentation masks")
    parser.add_argument("--size", type=int, default=256, help="segmentation mask side")
    parser.add_argument("--segmentation-classes", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=3, help="runs per tool; the table shows the median")
    parser.add_argument(
        "--thresholds", type=int, default=None, help="torchmetrics AUROC bins (default: exact; 10000 takes minutes)"
    )
    parser.add_argument("--units", type=int, default=10_000, help="reduce: unit states to merge")
    parser.add_argument("--shards", type=int, default=2, help="memory: shards of the small run (10x in the large)")
    parser.add_argument("--cpu", type=int, default=0, help="the core single-core runs are pinned to")
    parser.add_argument("--data-dir", default=None, help="where generated data lives (default: bench-data/)")
    parser.add_argument("--inline", action="store_true", help="run every tool in this process (for tests)")
    parser.add_argument("--json", default=None, help="also write the results as JSON to this file")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    slices = sub.add_parser("slices", help="8 slices + B bootstrap replicates vs the plain job")
    slices.add_argument("--rows", type=int, default=10_000_000)
    slices.add_argument("--replicates", type=int, default=100)
    slices.add_argument("--repeats", type=int, default=2)
    backbone = sub.add_parser("backbone", help="text metrics through the pipeline vs the bare jitted backbone")
    backbone.add_argument("--rows", type=int, default=4096)
    backbone.add_argument("--batch-size", type=int, default=64)
    backbone.add_argument("--repeats", type=int, default=3)
    detection = sub.add_parser("detection", help="COCO box mAP: evalpipe vs pycocotools vs torchmetrics")
    detection.add_argument("--images", type=int, default=2000)
    detection.add_argument("--repeats", type=int, default=3)
    rowgroup = sub.add_parser("rowgroup", help="one oversized row group: whole vs read within a memory budget")
    rowgroup.add_argument("--rows", type=int, default=20_000_000)
    rowgroup.add_argument("--budget-mb", type=float, default=64)
    rowgroup.add_argument("--repeats", type=int, default=3)
    process = sub.add_parser("process", help="whole processes: evalpipe run vs NumPy one-pass vs scikit-learn")
    process.add_argument("--rows", type=int, default=10_000_000)
    process.add_argument("--shard-rows", type=int, default=500_000)
    process.add_argument("--small-rows", type=int, default=2_000, help="rows of the small job (0: none)")
    process.add_argument("--repeats", type=int, default=3)
    process.add_argument("--cpu", type=int, default=0, help="the core every process is pinned to")
    process.add_argument("--data-dir", default=None, help="where generated data lives (default: bench-data/)")
    process.add_argument("--json", default=None, help="also write the results as JSON to this file")
    helps = {
        "binary": "10M binary predictions, 11 metrics: evalpipe vs raw read, scikit-learn, torchmetrics",
        "multiclass": "1M rows x 100 classes, 11 metrics: evalpipe vs raw read, scikit-learn, torchmetrics",
        "segmentation": "2,000 masks of 256 x 256, 21 classes: evalpipe vs raw read, scikit-learn, torchmetrics",
        "ray": "the binary set on the Ray runner with 1 and 2 actors (cluster start-up reported apart)",
        "reduce": "merging 10,000 unit states of the binary suite and computing its metrics",
        "memory": "peak RSS of the local runner on 2 shards and on 20",
        "all": "all of the above but slices/backbone/detection, and one table",
    }
    for name, text in helps.items():
        _add_suite_arguments(sub.add_parser(name, help=text))
    import bench_ranking

    bench_ranking.add_arguments(sub.add_parser("ranking", help="the sparse ranking state: reduce, slices, classes"))
    import bench_families

    bench_families.add_arguments(sub.add_parser("families", help="ranking, fairness, corpus text vs references"))
    import bench_fused

    bench_fused.add_arguments(sub.add_parser("fused", help="the fused compiled update vs the sum of its parts"))
    args = parser.parse_args(argv)
    if args.benchmark == "fused":
        from bench_suites import ONE_CORE_XLA_FLAGS, THREAD_VARIABLES

        os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"), XLA_FLAGS=ONE_CORE_XLA_FLAGS)
        print(json.dumps(bench_fused.bench_fused(args), indent=2))
        return
    if args.benchmark == "ranking":
        print(json.dumps(bench_ranking.bench_ranking(args, _runner(args)), indent=2))
        return
    if args.benchmark == "families":
        print(json.dumps(bench_families.bench_families(args), indent=2))
        return
    single = {
        "slices": bench_slices,
        "backbone": bench_backbone,
        "detection": bench_detection,
        "rowgroup": bench_rowgroup,
    }
    if args.benchmark == "process":
        bench_whole_processes(args)
        return
    if args.benchmark in single:
        result = single[args.benchmark](args)
        print(json.dumps(result, indent=2))
        return
    results = run_benchmarks(args)
    info = machine()
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=2))
    print(markdown(results, info))
    failed = [r["suite"] for r in results if "values_match_sklearn" in r and not r["values_match_sklearn"]["ok"]]
    if failed:
        for r in results:
            if r["suite"] in failed:
                print(json.dumps(r["values_match_sklearn"], indent=2), file=sys.stderr)
        raise SystemExit(f"evalpipe's values differ from scikit-learn's on: {', '.join(failed)}")


if __name__ == "__main__":
    main()
