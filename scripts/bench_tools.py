"""What each tool does in a benchmark, in a process of its own: the raw read, scikit-learn, torchmetrics and
evalpipe on a suite's files; :func:`measure` runs one and reports its wall time and peak RSS."""

from __future__ import annotations

import inspect
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_suites import SEGMENTATION_IGNORE, Suite, suite_from


def read_arrays(suite: Suite) -> dict[str, np.ndarray]:
    """The raw-read baseline: only the needed columns, Parquet -> Arrow -> numpy (lists -> ``[n, width]``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(suite.columns.values())
    table = pa.concat_tables([pq.read_table(p, columns=columns) for p in suite.paths()])
    return {role: numpy_column(table.column(name)) for role, name in suite.columns.items()}


def numpy_column(column: object) -> np.ndarray:
    """A pyarrow column as numpy: fixed-size binary (raw 8-bit pixels) and fixed-size lists as ``[n, k]``."""
    import pyarrow as pa

    column = column.combine_chunks()
    if pa.types.is_fixed_size_binary(column.type):  # raw 8-bit pixels
        width = column.type.byte_width
        return np.frombuffer(column.buffers()[1], np.uint8, count=len(column) * width).reshape(len(column), width)
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
    return column.to_numpy()


def _ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """L1 calibration error over equal-width bins, confidences of exactly 1 in one more bin (as torchmetrics and
    evalpipe)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    index = np.where(confidence >= 1.0, n_bins, index)
    count = np.bincount(index, minlength=n_bins + 1)
    gap = np.abs(
        np.bincount(index, weights=correct, minlength=n_bins + 1)
        - np.bincount(index, weights=confidence, minlength=n_bins + 1)
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


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB: ``VmHWM`` (the high-water mark of its own address space, new at ``exec``);
    ``ru_maxrss`` also counts the RSS a forked child inherits from its parent (a bench process of 1 GB read as 1 GB
    for every child it started). ``ru_maxrss`` where there is no ``/proc``."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


PEAK_RSS_CODE = inspect.getsource(peak_rss_mb)
"""The source of :func:`peak_rss_mb`, for the measuring code a fresh process runs (``python -c``)."""


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
    columns = {role: numpy_column(table.column(name)) for role, name in suite.columns.items()}
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


def measure(task: dict[str, object]) -> dict[str, object]:
    """One measurement, in this process: ``task["tool"]`` on ``task["suite"]``; wall time of the work itself
    (after imports), peak resident memory, and the metric values."""
    suite = suite_from(task["suite"])
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
    result["peak_rss_mb"] = peak_rss_mb()
    return result
