"""Multiclass logits: the compiled softmax's last bits depended on where a row sat in a batch, so rows of equal
logits fell into cells of their own, and ROC-AUC and average precision moved by 1e-5 with the work unit size or the
batches a collection was fed (while ``.error_bound`` said 1e-13). Their probabilities are now NumPy's softmax,
the same bits for a row wherever it is: every split gives one value, scikit-learn's on SciPy's softmax."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import softmax
from sklearn.metrics import average_precision_score, roc_auc_score

from evaluators.stateful import MetricCollection
from pipelines import spec as spec_module
from pipelines.execute import run_job
from tests.conftest import write_job


def _rows(seed: int, n: int, classes: int):
    rng = np.random.default_rng(seed)
    logits = np.round(rng.normal(size=(n, classes)) * 9) / 3  # (thirds: many rows of equal logits)
    return logits, rng.integers(0, classes, n)


def _sklearn(logits, y, classes):
    p = softmax(logits, axis=1)
    auc = np.mean([roc_auc_score(y == c, p[:, c]) for c in range(classes)])
    ap = np.mean([average_precision_score(y == c, p[:, c]) for c in range(classes)])
    return auc, ap


@pytest.mark.parametrize(("seed", "classes"), [(71, 2), (5, 3)])
def test_collections_fed_any_batches_agree_with_sklearn(seed, classes):
    logits, y = _rows(seed, 6000, classes)
    values = []
    for parts in (1, 3, 7):
        collection = MetricCollection(
            ["roc_auc", "average_precision"], task="multiclass", num_classes=classes, prediction="logits"
        )
        for rows in np.array_split(np.arange(len(y)), parts):
            collection.update(predictions=logits[rows], targets=y[rows])
        found = collection.compute()
        values.append((found["roc_auc"], found["average_precision"]))
    assert values[0] == values[1] == values[2]
    assert values[0] == pytest.approx(_sklearn(logits, y, classes), abs=1e-12)


def test_a_job_gives_one_value_whatever_the_unit_size(tmp_path):
    logits, y = _rows(71, 6000, 2)
    (tmp_path / "data").mkdir()
    table = pa.table({"pred": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel()), 2), "label": y})
    pq.write_table(table, tmp_path / "data" / "part-0.parquet", row_group_size=1000)
    found = []
    for unit_rows in (1_000_000, 2000):
        spec = {
            "name": f"u{unit_rows}",
            "data": {"path": str(tmp_path / "data"), "columns": {"predictions": "pred", "targets": "label"}},
            "task": {"kind": "multiclass", "num_classes": 2, "prediction": "logits"},
            "metrics": ["roc_auc", "average_precision"],
            "execution": {"runner": "local", "unit_rows": unit_rows},
            "output": {"uri": str(tmp_path / "out")},
        }
        run = run_job(spec_module.load(str(write_job(tmp_path / f"{unit_rows}.yaml", spec))), show_progress=False).run
        metrics = run.point("overall").metrics
        found.append((metrics["roc_auc"].value, metrics["average_precision"].value))
    assert found[0] == found[1]
    assert found[0] == pytest.approx(_sklearn(logits, y, 2), abs=1e-12)
