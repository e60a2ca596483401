"""Task input adapters: every task has one, the pipeline reads through them without task branches, and their
conversions give the statistics' batches (checked against hand-built values)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluators.adapters import ADAPTERS, InputError, Ragged, adapter_for, roles_problem
from evaluators.adapters.detection import STATISTIC_NAMES
from evaluators.detection import InstanceMasks
from evaluators.task import Task, TaskKind
from pipelines import spec as spec_module
from pipelines.errors import DataError
from pipelines.execute import run_job
from pipelines.reading import column_type, expected_type, ragged
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parent.parent


def test_every_task_kind_has_an_adapter():
    assert set(ADAPTERS) == set(TaskKind)


@pytest.mark.parametrize("module", ["worker.py", "reading.py", "execute.py"])
def test_reader_and_worker_have_no_task_branches(module):
    tree = ast.parse((ROOT / "pipelines" / module).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "TaskKind" not in names | imported
    assert not {m for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for m in [n.module or ""]} & {
        "evaluators.detection",
        "evaluators.segmentation",
    }


def test_column_type_describes_arrow_types():
    assert column_type(pa.large_list(pa.float32())).list_of("floating")
    assert column_type(pa.list_(pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.string())]))).value.fields == (
        "size",
        "counts",
    )
    assert column_type(pa.binary(4)).kind == "fixed_binary"
    assert column_type(pa.large_string()).is_string
    assert column_type(pa.date32()).kind == column_type(pa.timestamp("ms")).kind == "temporal"
    assert column_type(pa.null()).kind == column_type(pa.decimal128(5, 2)).kind == "other"
    assert column_type(pa.list_(pa.float32(), 4)).width == 4 and column_type(pa.list_(pa.float32())).width is None


@pytest.mark.parametrize(
    ("task", "role", "accepted", "refused"),
    [
        (Task(TaskKind.MULTICLASS, 3), "predictions", pa.list_(pa.float32(), 3), pa.float32()),
        (Task(TaskKind.MULTICLASS, 3, prediction="labels"), "predictions", pa.int64(), pa.list_(pa.float32())),
        (Task(TaskKind.MULTILABEL, 3), "targets", pa.list_(pa.bool_()), pa.int8()),
        # a fixed length other than the task's classes: the footer tells, before any row is read
        (Task(TaskKind.MULTICLASS, 4), "predictions", pa.list_(pa.float64(), 4), pa.list_(pa.float64(), 5)),
        (Task(TaskKind.MULTILABEL, 3), "predictions", pa.large_list(pa.float32()), pa.list_(pa.float32(), 2)),
        (Task(TaskKind.MULTILABEL, 3), "targets", pa.list_(pa.int8(), 3), pa.list_(pa.int8(), 4)),
        (Task(TaskKind.REGRESSION), "targets", pa.float64(), pa.string()),
        (Task(TaskKind.TEXT), "predictions", pa.large_string(), pa.binary()),
        (Task(TaskKind.IMAGE), "targets", pa.binary(), pa.string()),
        (Task(TaskKind.SEGMENTATION, 3), "predictions", pa.binary(16), pa.list_(pa.string())),
        (Task(TaskKind.DETECTION), "masks", pa.list_(pa.binary()), pa.list_(pa.float64())),
        (Task(TaskKind.DETECTION), "scores", pa.list_(pa.float64()), pa.float64()),
        (Task(TaskKind.DETECTION), "image_id", pa.int64(), pa.list_(pa.int64())),
        (Task(TaskKind.RANKING), "query_id", pa.string(), pa.float64()),
        (Task(TaskKind.BINARY), "sensitive", pa.int32(), pa.float32()),
        (Task(TaskKind.IMAGE), "predictions_features", pa.list_(pa.float32()), pa.list_(pa.string())),
    ],
)
def test_column_kinds(task, role, accepted, refused):
    description, ok = expected_type(role, task)
    assert description and ok(accepted) and not ok(refused)


def test_roles_problem_names_needed_and_foreign_roles():
    assert roles_problem(Task(TaskKind.DETECTION), {"predictions", "targets", "labels"}).startswith(
        "a detection task needs columns for scores, target_labels ("
    )
    ranking = "a ranking task needs `query_id`"
    assert roles_problem(Task(TaskKind.RANKING), {"predictions", "targets"}).startswith(ranking)
    assert roles_problem(Task(TaskKind.BINARY), {"predictions", "targets", "query_id"}).startswith(ranking)
    assert roles_problem(Task(TaskKind.RANKING), {"predictions", "targets", "query_id"}) is None


def test_detection_adapter_decodes_boxes_and_masks():
    adapter = adapter_for(Task(TaskKind.DETECTION))
    roles = {"predictions": "boxes", "scores": "s", "labels": "l", "targets": "gt", "target_labels": "gl"}
    assert adapter.ragged_roles([*roles, "weights", "image_id"]) == frozenset(roles)
    boxes = pa.chunked_array([pa.array([[[1, 2, 3, 4], [5, 6, 7, 8]], []], pa.list_(pa.list_(pa.float64())))])
    read = ragged(boxes, where="f row group 0, column 'boxes'")
    assert isinstance(read, Ragged) and len(read) == 2
    rle = {"size": [2, 2], "counts": [1, 2, 1]}  # column-major runs: background 1, foreground 2, background 1
    masks = Ragged(
        [[rle], []],
        column_type(pa.list_(pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.list_(pa.int64()))]))),
    )
    out = adapter.decode({"predictions": read, "targets": masks}, roles, "f row group 0", 0)
    np.testing.assert_array_equal(out["predictions"][0], [1, 2, 3, 4, 5, 6, 7, 8])
    assert out["predictions"][0].dtype == np.float64 and out["predictions"][1].shape == (0,)
    assert isinstance(out["targets"][0], InstanceMasks) and out["targets"][0].size == (2, 2)
    batch = adapter.batch({r: out.get(r, out["predictions"]) for r in roles}, roles, "f row group 0")
    assert set(batch) == {STATISTIC_NAMES[r] for r in roles} | {"pred_masks", "gt_masks"}


def test_detection_adapter_names_file_column_and_row_of_a_bad_mask():
    adapter = adapter_for(Task(TaskKind.DETECTION))
    bad = Ragged([[], [b"not a png"]], column_type(pa.list_(pa.binary())))
    with pytest.raises(InputError, match=r"^f row group 3, column 'm', row 1: .*single-channel PNG"):
        adapter.decode({"masks": bad}, {"masks": "m"}, "f row group 3", 0)
    wrong = Ragged([[{"a": 1}]], column_type(pa.list_(pa.struct([("a", pa.int64())]))))
    with pytest.raises(InputError, match="the masks are structs with fields a; expected COCO RLE"):
        adapter.decode({"masks": wrong}, {"masks": "m"}, "f row group 3", 0)


def test_segmentation_adapter_expands_images_into_pixel_rows_with_their_buckets():
    adapter = adapter_for(Task(TaskKind.SEGMENTATION, 3))
    preds = np.empty(2, object)
    targets = np.empty(2, object)
    preds[0], targets[0] = np.zeros((2, 3), np.uint8), np.ones((2, 3), np.uint8)
    preds[1], targets[1] = np.full((1, 2), 2, np.uint8), np.full((1, 2), 2, np.uint8)
    rows, bucket = adapter.expand({"predictions": preds, "targets": targets}, np.array([7, 9]))
    width = rows["targets"].shape[1]
    # every row lies inside one image and carries that image's bucket
    assert bucket.tolist() == [7] * -(-6 // width) + [9] * -(-2 // width)
    assert rows["targets"].shape[0] == len(bucket)
    np.testing.assert_array_equal(rows["weights"], np.ones(len(bucket)))
    with pytest.raises(InputError, match=r"column 'p' \(data.columns.predictions\), row 5 of the file"):
        adapter.decode(
            {"predictions": np.array([b"x"], object), "targets": targets[:1]},
            {"predictions": "p", "targets": "t"},
            "f",
            5,
        )


def test_a_query_split_inside_a_file_is_refused_naming_its_column(tmp_path):
    (tmp_path / "data").mkdir()
    table = pa.table(
        {
            "score": [0.9, 0.1, 0.5, 0.7],
            "rel": [1, 0, 0, 1],
            "qid": ["a", "b", "a", "b"],  # query a's rows are not one contiguous run
        }
    )
    pq.write_table(table, tmp_path / "data" / "part-0.parquet")
    job = {
        "name": "split-query",
        "data": {
            "path": f"{tmp_path}/data/*.parquet",
            "columns": {"predictions": "score", "targets": "rel", "query_id": "qid"},
        },
        "task": "ranking",
        "metrics": ["ndcg"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(
        DataError, match=r"^work unit 0 \(.*part-0.parquet\): column 'qid' \(data.columns.query_id\): .*contiguous"
    ):
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False)
