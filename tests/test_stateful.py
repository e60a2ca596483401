"""Stateful metrics (``update`` / ``compute`` / ``reset`` / ``merge``) and calibrax's ``FrozenBackboneMetric``.

References: scikit-learn on all rows at once; FID from SciPy on the backbone's features of all images; the
calibrax seed's own ``FrozenBackboneMetric`` subclass, run as written there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from sklearn import metrics as skm

from evaluators.backbones import BackboneSpec, load_backbone
from evaluators.stateful import BackboneMetric, FrozenBackboneMetric, MetricCollection
from pipelines.synthetic import synthetic_images

ROOT = Path(__file__).resolve().parents[1]


def _binary(rng, n):
    y = (rng.random(n) < 0.4).astype(np.int64)
    p = np.clip(0.4 + 0.3 * (y - 0.4) + rng.normal(0, 0.2, n), 0, 1)
    return p, y


def test_batches_accumulate_to_sklearns_values_on_all_rows():
    rng = np.random.default_rng(0)
    p, y = _binary(rng, 3000)
    w = rng.uniform(0.1, 2.0, 3000)
    metrics = MetricCollection(["accuracy", {"name": "f1_score", "as": "f1"}, "log_loss", "confusion_matrix"])
    for start in range(0, 3000, 700):
        metrics.update(
            predictions=p[start : start + 700], targets=y[start : start + 700], weights=w[start : start + 700]
        )
    values = metrics.compute()
    hard = (p > 0.5).astype(int)
    assert metrics.rows == 3000
    assert values["accuracy"] == pytest.approx(skm.accuracy_score(y, hard, sample_weight=w), rel=1e-12)
    assert values["f1"] == pytest.approx(skm.f1_score(y, hard, sample_weight=w), rel=1e-12)
    assert values["log_loss"] == pytest.approx(skm.log_loss(y, p, sample_weight=w), rel=1e-9)
    cm = skm.confusion_matrix(y, hard, sample_weight=w)
    np.testing.assert_allclose(values["confusion_matrix"], cm, rtol=1e-12)


def test_merge_of_two_collections_equals_one_over_all_rows_and_reset_forgets():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (1000, 4))
    y = rng.integers(0, 4, 1000)
    entries = [{"name": "f1_score", "average": "macro"}, "accuracy"]
    a = MetricCollection(entries, "multiclass", num_classes=4, prediction="logits")
    b = MetricCollection(entries, "multiclass", num_classes=4, prediction="logits")
    whole = MetricCollection(entries, "multiclass", num_classes=4, prediction="logits")
    a.update(predictions=logits[:300], targets=y[:300])
    b.update(predictions=logits[300:], targets=y[300:])
    whole.update(predictions=logits, targets=y)
    a.merge(b)
    assert a.compute() == whole.compute()
    assert a.compute()["f1_score(average=macro)"] == pytest.approx(
        skm.f1_score(y, logits.argmax(axis=1), average="macro"), rel=1e-12
    )
    a.reset()
    a.update(predictions=logits[:10], targets=y[:10])
    assert a.rows == 10
    assert a.compute()["accuracy"] == pytest.approx(skm.accuracy_score(y[:10], logits[:10].argmax(axis=1)))
    with pytest.raises(ValueError, match="same metrics and task"):
        a.merge(MetricCollection(["accuracy"], "multiclass", num_classes=4, prediction="logits"))


def test_a_backbone_metric_without_a_backbone_is_refused():
    with pytest.raises(ValueError, match="fid read backbone features: pass backbone="):
        MetricCollection(["fid"], "image")


def test_calibrax_seed_subclass_runs_as_written():
    """The example of calibrax's ``FrozenBackboneMetric`` docstring, verbatim but for the import."""

    class MyMetric(FrozenBackboneMetric):
        def __init__(self):
            super().__init__(name="my_metric")
            self._values = []

        def reset(self):
            self._values = []

        def _extract_features(self, **kwargs):
            return kwargs["data"]

        def _accumulate(self, features):
            self._values.append(float(features.mean()))

        def _compute_from_accumulated(self):
            return {"my_metric": sum(self._values) / len(self._values)}

    metric = MyMetric()
    metric.update(data=np.array([1.0, 2.0, 3.0]))
    metric.update(data=np.array([5.0]))
    assert metric.name == "my_metric"
    assert metric.compute() == {"my_metric": 3.5}
    metric.reset()
    metric.update(data=np.array([4.0]))
    assert metric.compute() == {"my_metric": 4.0}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    out = tmp_path_factory.mktemp("cnn")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(ROOT / "scripts" / "make_cnn_backbone.py")
    subprocess.run(
        [sys.executable, script, str(out), "--seed", "0"], check=True, cwd=ROOT, env=env, capture_output=True
    )
    return load_backbone(BackboneSpec("cnn", str(out), batch_size=32))


def test_backbone_metric_accumulates_fid_equal_to_scipy_on_all_features(cnn):
    rng = np.random.default_rng(5)
    real = synthetic_images(rng, 96, 32).reshape(96, -1)  # pixel rows [n, S*S*3], as a Parquet column holds them
    fake = synthetic_images(rng, 96, 32).reshape(96, -1)
    fid = BackboneMetric("fid", cnn, "image")
    for start in range(0, 96, 40):
        fid.update(predictions=fake[start : start + 40], targets=real[start : start + 40])
    features = cnn.extract({"predictions": fake, "targets": real})
    x, y = np.asarray(features["candidate"], np.float64), np.asarray(features["reference"], np.float64)
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_x @ cov_y).real
    expected = ((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2 * covmean)
    assert fid.compute()["fid"] == pytest.approx(expected, rel=1e-6)
    fid.reset()
    with pytest.raises(KeyError):
        fid.update(targets=real[:4])
