"""Benchmarks, reported as ratios against a baseline measured in the same invocation.

    python scripts/bench.py slices [--rows 10000000] [--replicates 100] [--repeats 2]

``slices``: binary predictions, the 11 binary catalogue metrics. Baseline: the plain job
(overall only). Measured: the same job with 8 slices (5 countries, 3 devices) plus the overall
slice and a ``B``-replicate bootstrap interval on every metric of every slice. Each job runs in a
fresh Python process (so compilation is counted, as in a real nightly run); the figure is the
median wall time of the job itself (planning, reading, updates, reduction, commit) and the
process's peak resident memory.

Data is generated once (seeded) under ``bench-data/`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY_METRICS = (
    "accuracy, precision, recall, f1_score, matthews_corrcoef, cohen_kappa, balanced_accuracy, "
    "roc_auc, log_loss, brier_score, expected_calibration_error"
)

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pipelines.execute import run_job
    from pipelines.spec import load
    spec = load(sys.argv[1])
    start = time.perf_counter()
    run_job(spec, show_progress=False)
    wall = time.perf_counter() - start
    print(json.dumps({"wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def _binary_data(rows: int) -> Path:
    directory = ROOT / "bench-data" / f"binary-{rows}"
    if not (directory / "_DONE").exists():
        sys.path.insert(0, str(ROOT))
        from pipelines.synthetic import write_shards

        print(f"generating {rows:,} binary rows in {directory} ...", file=sys.stderr)
        write_shards(str(directory), "binary", rows, max(1, rows // 500_000), seed=1)
        (directory / "_DONE").write_text("")
    return directory


def _measure(job_yaml: str, workdir: Path, name: str) -> dict[str, float]:
    path = workdir / f"{name}.yaml"
    path.write_text(job_yaml)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def bench_slices(args: argparse.Namespace) -> dict[str, object]:
    data = _binary_data(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        common = textwrap.dedent(
            f"""
            data: {{path: {data}, columns: {{predictions: score, targets: label, row_id: row_id}}}}
            task: binary
            metrics: [{BINARY_METRICS}]
            execution: {{runner: local}}
            output: {{uri: {work / "out"}}}
            """
        )
        plain = f"name: plain\n{common}"
        sliced = (
            f"name: sliced\n{common}slices: [{{column: country}}, {{column: device}}]\n"
            f"confidence: {{method: bootstrap, replicates: {args.replicates}, level: 0.95}}\n"
        )
        runs: dict[str, list[dict[str, float]]] = {"plain": [], "sliced": []}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits both
            runs["plain"].append(_measure(plain, work, "plain"))
            runs["sliced"].append(_measure(sliced, work, "sliced"))
    base, test = _median(runs["plain"]), _median(runs["sliced"])
    return {
        "benchmark": "slices",
        "rows": args.rows,
        "replicates": args.replicates,
        "slices": "overall + 5 countries + 3 devices",
        "plain": base,
        "sliced": test,
        "wall_ratio": test["wall_s"] / base["wall_s"],
        "memory_ratio": test["peak_rss_mb"] / base["peak_rss_mb"],
        "goal_wall_ratio": 8.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    slices = sub.add_parser("slices", help="8 slices + B bootstrap replicates vs the plain job")
    slices.add_argument("--rows", type=int, default=10_000_000)
    slices.add_argument("--replicates", type=int, default=100)
    slices.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    result = {"slices": bench_slices}[args.benchmark](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
