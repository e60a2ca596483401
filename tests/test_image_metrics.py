"""Image metrics: the CNN backbone in JAX against a PyTorch re-implementation on the same weights, FID from
merged moments against SciPy, KID's deterministic subset and value against direct NumPy, the Inception Score
against SciPy's entropy, and the image job end to end (local runner and two Ray actors) against references
computed here from the decoded images."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.linalg
import scipy.special
import scipy.stats

from evaluators import catalog
from evaluators.accumulate import Accumulator
from evaluators.backbones import BackboneSpec, load_backbone, local_reader
from evaluators.backbones.cnn import encode_images, load_params, read_checkpoint, row_hashes, split_keys
from evaluators.image import KernelSubset, fid, inception_score, kid
from evaluators.task import Task, check_batch
from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.reading import expected_type, to_numpy
from pipelines.synthetic import image_table, synthetic_images, write_shards
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parents[1]
IMAGE = Task("image")


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory) -> Path:
    """The backbone made by scripts/make_cnn_backbone.py (seed 0)."""
    out = tmp_path_factory.mktemp("cnn")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = str(ROOT / "scripts" / "make_cnn_backbone.py")
    subprocess.run(
        [sys.executable, script, str(out), "--seed", "0"], check=True, cwd=ROOT, env=env, capture_output=True
    )
    return out


@pytest.fixture(scope="module")
def encoder(backbone_dir):
    return load_backbone(BackboneSpec("cnn", str(backbone_dir), batch_size=32))


def image_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """The image columns as the pipeline reads them: bytes (object arrays) or pixel rows ``[n, S*S*3]``."""
    return {
        "predictions": to_numpy(table.column("generated"), where="generated"),
        "targets": to_numpy(table.column("real"), where="real"),
    }


@pytest.fixture(scope="module")
def features(encoder) -> dict[str, np.ndarray]:
    """Backbone features of 600 synthetic (generated, real) PNG pairs."""
    return encoder.extract(image_columns(image_table(np.random.default_rng(11), 600)))


def sharded_state(stat, columns: dict[str, np.ndarray], parts: int, rng: np.random.Generator):
    """Update one state per contiguous shard of a random permutation of the rows, merge them in shuffled order."""
    acc = Accumulator([stat])
    n = len(next(iter(columns.values())))
    order = rng.permutation(n)
    cuts = np.sort(rng.choice(np.arange(1, n), parts - 1, replace=False)) if parts > 1 else np.array([], int)
    states = [acc.update(acc.zero(), {k: v[rows] for k, v in columns.items()})[0] for rows in np.split(order, cuts)]
    rng.shuffle(states)
    merged = states[0]
    for state in states[1:]:
        merged = stat.merge(merged, state)
    return merged


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(c1 @ c2).real
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(c1 + c2 - 2 * root))


def numpy_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a . b / d + 1)^3, written out with off-diagonal masks."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    m, n = len(x), len(y)
    return float(kxx[~np.eye(m, dtype=bool)].mean() + kyy[~np.eye(n, dtype=bool)].mean() - 2 * kxy.mean())


def scipy_inception_score(logits: np.ndarray, weights: np.ndarray | None = None) -> float:
    p = scipy.special.softmax(logits.astype(np.float64), axis=1)
    marginal = np.average(p, axis=0, weights=weights)
    kl = scipy.stats.entropy(p.T, marginal[:, None])
    return float(np.exp(np.average(kl, weights=weights)))


def blake_key(payload: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little")


# --- the backbone ---------------------------------------------------------------


def torch_encode(tensors: dict[str, np.ndarray], images: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The same network with torch.nn.functional in float64: antialiased bilinear resize, conv, ReLU, max pool."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x = torch.from_numpy(images.astype(np.float64) / 255.0).permute(0, 3, 1, 2)
    if x.shape[-1] != size:
        x = functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = (x - 0.5) / 0.5
    layers = sum(1 for k in tensors if k.endswith(".weight") and k.startswith("conv"))
    for i in range(layers):
        w = torch.from_numpy(tensors[f"conv{i}.weight"].astype(np.float64))
        b = torch.from_numpy(tensors[f"conv{i}.bias"].astype(np.float64))
        x = torch.relu(functional.conv2d(x, w, b, padding=w.shape[-1] // 2))
        if i < layers - 1:
            x = functional.max_pool2d(x, 2)
    feats = x.mean(dim=(2, 3))
    logits = functional.linear(
        feats,
        torch.from_numpy(tensors["fc.weight"].astype(np.float64)),
        torch.from_numpy(tensors["fc.bias"].astype(np.float64)),
    )
    return feats.numpy(), logits.numpy()


@pytest.mark.parametrize("side", [32, 48, 20])
def test_cnn_forward_equals_torch_reimplementation(backbone_dir, side):
    config, tensors = read_checkpoint(local_reader(str(backbone_dir)))
    images = synthetic_images(np.random.default_rng(side), 24, side)
    ours_f, ours_z = (np.asarray(a) for a in encode_images(load_params(tensors, config), images, config=config))
    ref_f, ref_z = torch_encode(tensors, images, config.image_size)
    assert ours_f.shape == (24, 64) and ours_z.shape == (24, 10)
    np.testing.assert_allclose(ours_f, ref_f, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours_z, ref_z, rtol=0, atol=1e-5)


def test_extract_png_and_pixel_columns_agree_and_checkpoint_forms_load_alike(backbone_dir, encoder, tmp_path):
    png = image_columns(image_table(np.random.default_rng(4), 50, encoding="png"))
    pixels = image_columns(image_table(np.random.default_rng(4), 50, encoding="pixels"))
    assert pixels["predictions"].shape == (50, 32 * 32 * 3) and pixels["predictions"].dtype == np.uint8
    a, b = encoder.extract(png), encoder.extract(pixels)
    for name in ("candidate", "reference", "candidate_logits"):
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6)
    # keys: BLAKE2b of the stored bytes, split in (high, low) int32 words
    expected = np.array([blake_key(v) for v in png["predictions"]], np.uint64)
    np.testing.assert_array_equal(a["candidate_key"], split_keys(expected))
    pixel_keys = row_hashes(pixels["targets"])
    assert len(np.unique(pixel_keys)) == 50
    np.testing.assert_array_equal(row_hashes(pixels["targets"][5:9]), pixel_keys[5:9])  # a row's key alone
    # the safetensors file alone (config in its header) and an npz with a config entry give the same features
    config, tensors = read_checkpoint(local_reader(str(backbone_dir)))
    single = load_backbone(BackboneSpec("cnn", str(backbone_dir / "model.safetensors"), batch_size=8))
    np.savez(tmp_path / "weights.npz", config=np.array(json.dumps(config.to_json())), **tensors)
    from_npz = load_backbone(BackboneSpec("cnn", str(tmp_path / "weights.npz"), batch_size=16))
    for other in (single, from_npz):
        np.testing.assert_allclose(other.extract(png)["candidate"], a["candidate"], rtol=0, atol=1e-6)


# --- statistics -----------------------------------------------------------------


@pytest.mark.parametrize("parts", [1, 3, 17])
def test_fid_from_merged_moments_equals_scipy(features, parts):
    metric = fid(IMAGE, dimension=64)
    columns = {k: features[k] for k in ("candidate", "reference")}
    merged = sharded_state(metric.statistic, columns, parts, np.random.default_rng(parts))
    ours = metric.compute(merged)[""]
    reference = scipy_frechet(features["candidate"], features["reference"])
    assert ours == pytest.approx(reference, rel=1e-6)
    assert reference > 0.01


@pytest.mark.parametrize(("n", "d"), [(2, 4), (3, 16), (5, 8), (20, 20)])
def test_fid_of_fewer_rows_than_features_equals_hand_derived_values(n, d):
    """Singular covariances (n <= d): identical sets are at distance 0 and ``y = 2 x + c`` at
    ``|mean(x) + c|^2 + tr C`` (``C_y = 4 C``, so ``tr (C C_y)^1/2 = 2 tr C``), to 1e-12 of the trace. Before,
    the square roots of the noise eigenvalues gave -5.7e-7 for identical 3 x 16 sets (scipy's sqrtm: -4e-7)."""
    rng = np.random.default_rng(n * 100 + d)
    x = rng.normal(size=(n, d))
    shift = rng.normal(size=d)
    metric = fid(IMAGE, dimension=d)
    acc = Accumulator([metric.statistic])
    trace = float(np.trace(np.cov(x, rowvar=False)))
    for y, expected in ((x.copy(), 0.0), (2 * x + shift, float(np.sum((x.mean(0) + shift) ** 2)) + trace)):
        (state,) = acc.update(acc.zero(), {"candidate": x, "reference": y, "weights": np.ones(n)})
        assert abs(metric.compute(state)[""] - expected) <= 1e-12 * max(trace, 1.0)
    y = rng.normal(0.3, 1.2, size=(n, d))
    (state,) = acc.update(acc.zero(), {"candidate": x, "reference": y, "weights": np.ones(n)})
    assert metric.compute(state)[""] == pytest.approx(scipy_frechet(x, y), rel=1e-6)


def test_kid_with_all_rows_kept_equals_numpy(features):
    metric = kid(IMAGE, dimension=64, subset_size=1000)
    merged = sharded_state(metric.statistic, dict(features), 5, np.random.default_rng(0))
    assert len(merged["candidate"]["key"]) == len(merged["reference"]["key"]) == 600
    ours = metric.compute(merged)[""]
    assert ours == pytest.approx(numpy_kid(features["candidate"], features["reference"]), rel=1e-9, abs=1e-12)
    # fewer than 2 rows on a side: NaN
    acc = Accumulator([metric.statistic])
    one = acc.update(acc.zero(), {k: v[:1] for k, v in features.items()})[0]
    assert np.isnan(metric.compute(one)[""])


def full_keys(keys: np.ndarray) -> np.ndarray:
    """int32 ``[n, 2]`` (high, low) -> uint64 ``[n]``."""
    keys = keys.astype(np.int64)
    return ((keys[:, 0] & 0xFFFFFFFF) << 32 | (keys[:, 1] & 0xFFFFFFFF)).astype(np.uint64)


def smallest_rows(keys: np.ndarray, feats: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` smallest rows by key, then by features (lexicographic): KID's documented order."""
    return np.lexsort((*feats.T[::-1], keys))[:count]


def test_kid_subset_is_the_same_for_every_sharding_and_order(features):
    subset = 50
    columns = dict(features)
    small = np.argsort(full_keys(columns["candidate_key"]))[:60]
    # exact duplicates among the kept rows, and key collisions with different features around the cut
    columns = {k: np.concatenate([v, v[small[:10]], v[small[45:55]]]) for k, v in columns.items()}
    columns["candidate"][-10:] += np.float32(0.5)
    stat = KernelSubset(64, subset)
    metric = kid(IMAGE, subset_size=subset)
    shardings = [1, 2, 7, 31, len(columns["candidate"])]
    states = [sharded_state(stat, columns, parts, np.random.default_rng(seed)) for seed, parts in enumerate(shardings)]
    first = states[0]
    for state in states[1:]:
        for side in ("candidate", "reference"):
            for name in ("key", "features", "weight"):
                np.testing.assert_array_equal(state[side][name], first[side][name])
        assert metric.compute(state)[""] == metric.compute(first)[""]
    # the kept rows are those with the smallest keys; the value is the direct one on them
    picked = {}
    for side in ("candidate", "reference"):
        keys = full_keys(columns[f"{side}_key"])
        rows = smallest_rows(keys, columns[side], subset)
        np.testing.assert_array_equal(keys[rows], first[side]["key"])
        np.testing.assert_array_equal(columns[side][rows], first[side]["features"])
        picked[side] = columns[side][rows]
    assert len(np.unique(first["candidate"]["key"])) < subset  # duplicates and collisions were kept
    assert metric.compute(first)[""] == pytest.approx(numpy_kid(picked["candidate"], picked["reference"]), rel=1e-9)


def test_inception_score_equals_scipy_entropy(features):
    metric = inception_score(IMAGE, classes=10)
    logits = features["candidate_logits"]
    merged = sharded_state(metric.statistic, {"candidate_logits": logits}, 7, np.random.default_rng(2))
    assert metric.compute(merged)[""] == pytest.approx(scipy_inception_score(logits), rel=1e-10)
    # sharp random logits, with row weights
    rng = np.random.default_rng(3)
    sharp = rng.normal(0, 6, (500, 10))
    weights = rng.uniform(0, 2, 500)
    merged = sharded_state(metric.statistic, {"candidate_logits": sharp, "weights": weights}, 4, rng)
    ours = metric.compute(merged)[""]
    assert ours == pytest.approx(scipy_inception_score(sharp, weights), rel=1e-10)
    assert 3 < ours < 10


def test_image_metrics_need_an_image_task_and_checks_name_the_bad_rows():
    with pytest.raises(ValueError, match="image"):
        catalog.build("fid", Task("binary"))
    with pytest.raises(ValueError, match="subset_size"):
        catalog.build("kid", IMAGE, {"subset_size": 1})
    ok = expected_type("predictions", IMAGE)[1]
    assert ok(pa.binary()) and ok(pa.list_(pa.uint8(), 3072)) and ok(pa.list_(pa.float32()))
    assert not ok(pa.string()) and not ok(pa.float32())
    pixels = np.zeros((4, 12), np.int64)
    pixels[1, 3] = 300
    assert check_batch(IMAGE, {"predictions": pixels, "targets": pixels.clip(0, 255)}) == [
        "predictions: 1 row with pixel values outside [0, 255]"
    ]
    floats = np.full((3, 10), 0.5)
    problems = check_batch(IMAGE, {"predictions": floats, "targets": np.array([b"x", b"", b"y"], dtype=object)})
    assert problems == [
        "predictions: 10 pixel values per row is not S*S*3 for a square RGB image",
        "targets: 1 row whose value is not non-empty encoded image bytes",
    ]


# --- end to end -------------------------------------------------------------------


def _job(tmp_path: Path, data: Path, weights: Path, runner: str):
    spec = {
        "name": "images",
        "data": {"path": str(data), "columns": {"predictions": "generated", "targets": "real", "row_id": "row_id"}},
        "task": "image",
        "backbone": {"kind": "cnn", "weights": str(weights), "batch_size": 32},
        "metrics": ["fid", {"name": "kid", "subset_size": 100, "as": "kid"}, "inception_score"],
        "execution": {"runner": runner, "actors": 2, "unit_rows": 60},
        "output": {"uri": str(tmp_path / "out")},
    }
    (tmp_path / runner).mkdir(parents=True, exist_ok=True)
    return spec_module.load(str(write_job(tmp_path / runner / "job.yaml", spec)))


def _values(run) -> dict[str, float]:
    return {k: m.value for k, m in run.point("overall").metrics.items()}


@pytest.fixture(scope="module")
def image_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("images") / "shards"
    write_shards(str(data), "image", 300, 5, seed=7, row_group_rows=30)
    return data


@pytest.fixture(scope="module")
def local_values(tmp_path_factory, image_data, backbone_dir) -> dict[str, float]:
    tmp = tmp_path_factory.mktemp("local")
    return _values(run_job(_job(tmp, image_data, backbone_dir, "local"), show_progress=False).run)


def test_image_job_equals_references_from_decoded_images(local_values, image_data, encoder):
    from PIL import Image

    table = pq.read_table(image_data)
    stored = image_columns(table)
    decoded = {
        role: np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in column]).reshape(len(column), -1)
        for role, column in stored.items()
    }
    found = encoder.extract(decoded)
    assert local_values["fid"] == pytest.approx(scipy_frechet(found["candidate"], found["reference"]), rel=1e-6)
    assert local_values["inception_score"] == pytest.approx(scipy_inception_score(found["candidate_logits"]), rel=1e-6)
    picked = {}
    for role, side in (("predictions", "candidate"), ("targets", "reference")):
        keys = np.array([blake_key(b) for b in stored[role]], np.uint64)
        picked[side] = found[side][np.argsort(keys)[:100]]
    assert local_values["kid"] == pytest.approx(numpy_kid(picked["candidate"], picked["reference"]), rel=1e-5)


@pytest.mark.slow
@pytest.mark.ray
def test_image_job_on_two_ray_actors_equals_local(tmp_path, ray_cluster, local_values, image_data, backbone_dir):
    run = run_job(_job(tmp_path, image_data, backbone_dir, "ray"), show_progress=False).run
    assert _values(run) == pytest.approx(local_values, rel=1e-9, abs=1e-12)
    loads = run.metadata["backbone"]["loads_per_worker"]
    assert len(loads) == 2 and set(loads.values()) == {1}
    assert run.metadata["units"] >= 5


def test_kid_of_float64_features_with_a_large_offset_equals_exact_arithmetic():
    """float64 feature columns of 1e4 + x (x of order 1) were kept as float32 (a unit in the last place of 1e4 is
    1e-3): KID was 6.6e-5 off, and at 1e6 + 1e-3 x every row rounded to one vector (KID 0). Kept in float64, KID equals
    the unbiased MMD^2 in exact rational arithmetic of the same float64 inputs to 1e-6 relative."""
    from fractions import Fraction

    rng = np.random.default_rng(4)
    n, d = 12, 3
    x = 1e4 + rng.normal(size=(n, d))
    y = 1e4 + rng.normal(0.3, 1.2, size=(n, d))
    metric = kid(IMAGE, dimension=d, subset_size=100)
    keys = {
        f"{side}_key": np.stack([np.arange(n), np.arange(n)], 1).astype(np.int32) for side in ("candidate", "reference")
    }
    acc = Accumulator([metric.statistic])
    (state,) = acc.update(acc.zero(), {"candidate": x, "reference": y, **keys, "weights": np.ones(n)})
    assert state["candidate"]["features"].dtype == np.float64

    def kernel(a, b):
        return (sum(Fraction(u) * Fraction(v) for u, v in zip(a, b, strict=True)) / d + 1) ** 3

    def within(rows):
        return sum(kernel(rows[i], rows[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))

    cross = sum(kernel(a, b) for a in x for b in y) / (n * n)
    exact = float(within(x) + within(y) - 2 * cross)
    assert exact > 0
    assert metric.compute(state)[""] == pytest.approx(exact, rel=1e-6)
