"""Benchmark data sets (seeded, generated once under ``bench-data/``), the metrics each is measured on, and the
process settings every measurement runs under (one core, single-threaded XLA and BLAS)."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY_METRICS = (
    "accuracy, precision, recall, f1_score, matthews_corrcoef, cohen_kappa, balanced_accuracy, "
    "roc_auc, log_loss, brier_score, expected_calibration_error"
)

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


def suite_from(payload: dict[str, object]) -> Suite:
    """The suite a measurement process gets as JSON (:func:`suite_payload`)."""
    return Suite(**{**payload, "directory": Path(str(payload["directory"])), "metrics": tuple(payload["metrics"])})


def suite_payload(suite: Suite) -> dict[str, object]:
    """``suite`` as JSON-ready values, to hand to a measurement process."""
    return {**asdict(suite), "directory": str(suite.directory)}
