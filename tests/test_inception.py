"""InceptionV3 backbone: the JAX forward against a PyTorch implementation written here with torch.nn.functional
(batch norm unfolded; float64, float32 for the 299 x 299 case), on the same seeded random weights, for both
variants; the resize modes against PyTorch's interpolate and TensorFlow 1.x's formula; the .pth converter round
trip; an image job with ``kind: inception`` end to end on the local runner against references computed here;
torchvision's own model when torchvision imports."""

from __future__ import annotations

import json
import sys
from functools import partial
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import numpy as np
import pyarrow.parquet as pq
import pytest

from evaluators.backbones import BackboneSpec, load_backbone, local_reader
from evaluators.backbones.cnn import read_tensors, split_keys
from evaluators.backbones.inception import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InceptionConfig,
    conv_shapes,
    encode_images,
    load_params,
    preprocess,
    random_tensors,
)
from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.synthetic import synthetic_images, write_shards
from tests.conftest import image_job_spec, write_job
from tests.test_image_metrics import blake_key, image_columns, numpy_kid, scipy_inception_score

ROOT = Path(__file__).resolve().parents[1]
CONVERTER = ROOT / "scripts" / "convert_inception_weights.py"


@pytest.fixture(scope="module")
def fid_tensors() -> dict[str, np.ndarray]:
    return random_tensors(InceptionConfig.preset("fid"), seed=3)


@pytest.fixture(scope="module")
def torchvision_tensors() -> dict[str, np.ndarray]:
    return random_tensors(InceptionConfig.preset("torchvision"), seed=4)


def sample_images(rng: np.random.Generator, rows: int, side: int) -> np.ndarray:
    """Half uniform noise, half smooth synthetic images: uint8 ``[rows, side, side, 3]``."""
    noise = rng.integers(0, 256, (rows - rows // 2, side, side, 3), dtype=np.uint8)
    return np.concatenate([noise, synthetic_images(rng, rows // 2, side)])


# --- a PyTorch reference -----------------------------------------------------------


def torch_preprocess(images: np.ndarray, config: InceptionConfig) -> Any:
    """uint8 ``[B, h, w, 3]`` -> float64 ``[B, 3, S, S]``: PyTorch's bilinear interpolate, then (x - mean) / std."""
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(images.astype(np.float64) / 255.0).permute(0, 3, 1, 2)
    size = config.image_size
    if x.shape[-2:] != (size, size):
        antialias = config.resize == "bilinear-antialias"
        x = torch.nn.functional.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=antialias)
    mean = torch.tensor(config.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float64).view(1, 3, 1, 1)
    return (x - mean) / std


def torch_inception(
    tensors: dict[str, np.ndarray], x: Any, config: InceptionConfig, dtype: str = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """InceptionV3 in eval mode with torch.nn.functional in ``dtype``, following torchvision's ``Inception3`` (and
    pytorch-fid's FIDInceptionA/C/E_1/E_2 for the ``fid`` variant) on preprocessed images ``x`` ``[B, 3, S, S]``.
    Returns features ``[B, 2048]`` and logits ``[B, K]`` (with ``fc.bias`` when ``config.logits_bias``), float64."""
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    t = {k: torch.from_numpy(v.astype(dtype)) for k, v in tensors.items()}
    x = x.to(getattr(torch, dtype))
    fid = config.variant == "fid"

    def basic(name: str, x: Any, stride: int = 1, padding: Any = 0) -> Any:
        y = fn.conv2d(x, t[f"{name}.conv.weight"], stride=stride, padding=padding)
        bn = [t[f"{name}.bn.{part}"] for part in ("running_mean", "running_var", "weight", "bias")]
        return fn.relu(fn.batch_norm(y, *bn, training=False, eps=0.001))

    def avg(x: Any) -> Any:
        return fn.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=not fid)

    def block_a(n: str, x: Any) -> Any:
        b5 = basic(f"{n}.branch5x5_2", basic(f"{n}.branch5x5_1", x), padding=2)
        b3 = basic(f"{n}.branch3x3dbl_2", basic(f"{n}.branch3x3dbl_1", x), padding=1)
        b3 = basic(f"{n}.branch3x3dbl_3", b3, padding=1)
        return torch.cat([basic(f"{n}.branch1x1", x), b5, b3, basic(f"{n}.branch_pool", avg(x))], 1)

    def block_b(n: str, x: Any) -> Any:
        b3 = basic(f"{n}.branch3x3dbl_2", basic(f"{n}.branch3x3dbl_1", x), padding=1)
        b3 = basic(f"{n}.branch3x3dbl_3", b3, stride=2)
        return torch.cat([basic(f"{n}.branch3x3", x, stride=2), b3, fn.max_pool2d(x, 3, stride=2)], 1)

    def block_c(n: str, x: Any) -> Any:
        b7 = basic(f"{n}.branch7x7_1", x)
        b7 = basic(f"{n}.branch7x7_3", basic(f"{n}.branch7x7_2", b7, padding=(0, 3)), padding=(3, 0))
        d = basic(f"{n}.branch7x7dbl_1", x)
        for i, pad in ((2, (3, 0)), (3, (0, 3)), (4, (3, 0)), (5, (0, 3))):
            d = basic(f"{n}.branch7x7dbl_{i}", d, padding=pad)
        return torch.cat([basic(f"{n}.branch1x1", x), b7, d, basic(f"{n}.branch_pool", avg(x))], 1)

    def block_d(n: str, x: Any) -> Any:
        b3 = basic(f"{n}.branch3x3_2", basic(f"{n}.branch3x3_1", x), stride=2)
        b7 = basic(f"{n}.branch7x7x3_2", basic(f"{n}.branch7x7x3_1", x), padding=(0, 3))
        b7 = basic(f"{n}.branch7x7x3_4", basic(f"{n}.branch7x7x3_3", b7, padding=(3, 0)), stride=2)
        return torch.cat([b3, b7, fn.max_pool2d(x, 3, stride=2)], 1)

    def block_e(n: str, x: Any, last: bool) -> Any:
        b3 = basic(f"{n}.branch3x3_1", x)
        b3 = torch.cat(
            [basic(f"{n}.branch3x3_2a", b3, padding=(0, 1)), basic(f"{n}.branch3x3_2b", b3, padding=(1, 0))], 1
        )
        d = basic(f"{n}.branch3x3dbl_2", basic(f"{n}.branch3x3dbl_1", x), padding=1)
        d = torch.cat(
            [basic(f"{n}.branch3x3dbl_3a", d, padding=(0, 1)), basic(f"{n}.branch3x3dbl_3b", d, padding=(1, 0))], 1
        )
        pool = fn.max_pool2d(x, 3, stride=1, padding=1) if fid and last else avg(x)
        return torch.cat([basic(f"{n}.branch1x1", x), b3, d, basic(f"{n}.branch_pool", pool)], 1)

    if config.transform_input:  # torchvision's Inception3._transform_input
        channels = [x[:, c : c + 1] * (IMAGENET_STD[c] / 0.5) + (IMAGENET_MEAN[c] - 0.5) / 0.5 for c in range(3)]
        x = torch.cat(channels, 1)
    x = basic("Conv2d_2a_3x3", basic("Conv2d_1a_3x3", x, stride=2))
    x = fn.max_pool2d(basic("Conv2d_2b_3x3", x, padding=1), 3, stride=2)
    x = fn.max_pool2d(basic("Conv2d_4a_3x3", basic("Conv2d_3b_1x1", x)), 3, stride=2)
    for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = block_a(n, x)
    x = block_b("Mixed_6a", x)
    for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = block_c(n, x)
    x = block_e("Mixed_7c", block_e("Mixed_7b", block_d("Mixed_7a", x), last=False), last=True)
    features = fn.adaptive_avg_pool2d(x, 1).flatten(1)
    logits = fn.linear(features, t["fc.weight"], t["fc.bias"] if config.logits_bias else None)
    return features.double().numpy(), logits.double().numpy()


def assert_close(ours: Any, reference: np.ndarray, rel: float) -> None:
    """``max |ours - reference| <= rel * max |reference|``, on outputs that are not degenerate."""
    scale = float(np.max(np.abs(reference)))
    assert np.std(reference) > 0.05 * scale > 0
    np.testing.assert_allclose(np.asarray(ours, np.float64), reference, rtol=0, atol=rel * scale)


# --- the network ------------------------------------------------------------------


def jax_encode(
    tensors: dict[str, np.ndarray], images: np.ndarray, config: InceptionConfig, dtype: str = "float32"
) -> tuple[np.ndarray, np.ndarray]:
    """Features and logits of the compiled :func:`encode_images` on the checkpoint ``tensors``."""
    encode = jax.jit(partial(encode_images, config=config, dtype=dtype))
    features, logits = encode(load_params(tensors, config), images)
    return np.asarray(features), np.asarray(logits)


@pytest.mark.parametrize(
    ("variant", "side", "size", "reference_dtype"),
    [
        ("fid", 299, 299, "float32"),  # the published input size, no resize; a float32 reference keeps it quick
        ("torchvision", 120, 160, "float64"),  # resized (antialiased bilinear) to a smaller network input
    ],
)
def test_forward_equals_torch_reference(variant, side, size, reference_dtype, fid_tensors, torchvision_tensors):
    tensors = fid_tensors if variant == "fid" else torchvision_tensors
    config = InceptionConfig.preset(variant, image_size=size)
    images = sample_images(np.random.default_rng(side), 2, side)
    features, logits = jax_encode(tensors, images, config)
    ref_features, ref_logits = torch_inception(tensors, torch_preprocess(images, config), config, reference_dtype)
    assert features.shape == (2, 2048) and features.dtype == np.float32
    assert logits.shape == (2, 1008 if variant == "fid" else 1000) and logits.dtype == np.float32
    assert_close(features, ref_features, 1e-5)
    assert_close(logits, ref_logits, 1e-5)
    if variant == "fid":  # the Inception Score's logits: no fc.bias
        np.testing.assert_allclose(ref_logits, ref_features @ tensors["fc.weight"].T.astype(np.float64), atol=1e-4)


@pytest.fixture(scope="module")
def smallest_input(fid_tensors) -> tuple[InceptionConfig, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """75 x 75 inputs (the smallest), logits with ``fc.bias``: config, images and the float64 reference."""
    config = InceptionConfig.preset("fid", image_size=75, logits_bias=True)
    images = sample_images(np.random.default_rng(5), 2, 75)
    return config, images, torch_inception(fid_tensors, torch_preprocess(images, config), config)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_logits_bias_compute_dtypes_and_the_smallest_input(fid_tensors, smallest_input, dtype):
    config, images, (ref_features, ref_logits) = smallest_input
    features, logits = jax_encode(fid_tensors, images, config, dtype)
    assert features.dtype == logits.dtype == np.float32
    rel = 1e-5 if dtype == "float32" else 3e-2
    assert_close(features, ref_features, rel)
    assert_close(logits, ref_logits, rel)
    with pytest.raises(ValueError, match="at least 75"):
        InceptionConfig.preset("fid", image_size=74)


def test_torchvision_inception3_when_it_imports(torchvision_tensors):
    """torchvision's own Inception3 on the same weights (skipped where torchvision does not import)."""
    torch = pytest.importorskip("torch")
    try:
        import torchvision
    except Exception as exc:  # not installed, or compiled ops that do not load against this torch
        pytest.skip(f"torchvision does not import: {exc}")
    config = InceptionConfig.preset("torchvision")
    model = torchvision.models.inception_v3(
        weights=None, aux_logits=False, init_weights=False, transform_input=True, num_classes=1000
    )
    model.load_state_dict({k: torch.from_numpy(v) for k, v in torchvision_tensors.items()}, strict=False)
    images = sample_images(np.random.default_rng(8), 2, 299)
    with torch.no_grad():
        ref = model.eval().double()(torch_preprocess(images, config)).numpy()
    _, logits = jax_encode(torchvision_tensors, images, config)
    assert_close(logits, ref, 1e-5)


# --- preprocessing ----------------------------------------------------------------


def tf1_resize(images: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow 1.x ``resize_bilinear`` (``align_corners=False``, no half-pixel centres), written out: output
    pixel ``i`` reads input position ``i * in / out``, between ``floor`` and ``floor + 1`` (clamped)."""

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.arange(size) * (n / size)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, n - 1), source - low

    y0, y1, dy = axis(images.shape[1])
    x0, x1, dx = axis(images.shape[2])
    dx, dy = dx[None, None, :, None], dy[None, :, None, None]
    top = images[:, y0][:, :, x0] * (1 - dx) + images[:, y0][:, :, x1] * dx
    bottom = images[:, y1][:, :, x0] * (1 - dx) + images[:, y1][:, :, x1] * dx
    return top * (1 - dy) + bottom * dy


@pytest.mark.parametrize("resize", ["bilinear", "bilinear-antialias", "tf1-bilinear"])
@pytest.mark.parametrize("shape", [(40, 40), (150, 150), (50, 90)])
def test_resize_modes_equal_their_references(resize, shape):
    config = InceptionConfig.preset("fid", image_size=75, resize=resize)
    images = np.random.default_rng(shape[1]).integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    ours = np.asarray(preprocess(images.astype(np.float32) / 255, config=config))
    if resize == "tf1-bilinear":
        reference = (tf1_resize(images.astype(np.float64) / 255, 75) - 0.5) / 0.5
    else:
        reference = torch_preprocess(images, config).permute(0, 2, 3, 1).numpy()
    assert ours.shape == (2, 75, 75, 3)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-5)


# --- checkpoints and the converter ------------------------------------------------


def torch_state_dict(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """A state dict as torchvision's models save it: plus ``num_batches_tracked`` and an auxiliary head."""
    torch = pytest.importorskip("torch")
    out: dict[str, Any] = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    for name in conv_shapes():
        out[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    out["AuxLogits.fc.weight"] = torch.zeros(out["fc.weight"].shape[0], 768)
    return out


def converter() -> ModuleType:
    spec = spec_from_file_location("convert_inception_weights", CONVERTER)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fid_backbone(tmp_path_factory, fid_tensors) -> Path:
    """The FID variant converted from a .pth by the command line (run in this process), with 75 x 75 inputs."""
    torch = pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("inception")
    source, out = folder / "pt_inception.pth", folder / "fid"
    torch.save(torch_state_dict(fid_tensors), source)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [str(CONVERTER), str(source), str(out), "--image-size", "75"])
        converter().main()
    return out


def test_converter_round_trips_both_variants(fid_backbone, fid_tensors, torchvision_tensors, tmp_path):
    torch = pytest.importorskip("torch")
    data, tensors = read_tensors(local_reader(str(fid_backbone)))
    assert data == InceptionConfig.preset("fid", image_size=75).to_json()
    assert tensors.keys() == fid_tensors.keys()  # no AuxLogits, no num_batches_tracked
    for name, value in fid_tensors.items():
        np.testing.assert_array_equal(tensors[name], value)
    # torchvision's state dict (1000 classes, saved from DataParallel), told apart by its head's width
    wrapped = {f"module.{k}": v for k, v in torch_state_dict(torchvision_tensors).items()}
    torch.save({"state_dict": wrapped}, tmp_path / "tv.pth")
    config = converter().convert(str(tmp_path / "tv.pth"), str(tmp_path / "tv"))
    assert config == InceptionConfig.preset("torchvision")
    _, tensors = read_tensors(local_reader(str(tmp_path / "tv" / "model.safetensors")))  # config in the header
    assert all(np.array_equal(tensors[k], v) for k, v in torchvision_tensors.items())
    # TF preprocessing, as torch-fidelity
    tf = converter().convert(str(tmp_path / "tv.pth"), str(tmp_path / "tf"), "fid", tf_preprocessing=True)
    assert (tf.variant, tf.num_classes, tf.resize, tf.transform_input) == ("fid", 1000, "tf1-bilinear", False)
    assert tf.mean == tf.std == (128 / 255,) * 3
    loaded = load_backbone(BackboneSpec("inception", str(tmp_path / "tf"), batch_size=4))
    assert loaded.config == tf and (loaded.dimension, loaded.num_classes) == (2048, 1000)


def test_bad_checkpoints_are_refused(fid_backbone, fid_tensors, tmp_path):
    from safetensors.numpy import save_file

    config = InceptionConfig.preset("fid")
    broken = {k: v for k, v in fid_tensors.items() if k != "Mixed_6c.branch7x7_2.bn.running_var"}
    with pytest.raises(ValueError, match=r"no tensor 'Mixed_6c\.branch7x7_2\.bn\.running_var'"):
        load_params(broken, config)
    with pytest.raises(ValueError, match=r"'fc.weight' has shape \(1008, 2048\), expected \(1000, 2048\)"):
        load_params(fid_tensors, InceptionConfig.preset("torchvision"))
    with pytest.raises(ValueError, match="unsupported architecture"):
        load_backbone(BackboneSpec("cnn", str(fid_backbone)))
    save_file({"x": np.zeros(1, np.float32)}, str(tmp_path / "w.safetensors"), metadata={"config": json.dumps({})})
    with pytest.raises(ValueError, match="expected 'inception-v3'"):
        load_backbone(BackboneSpec("inception", str(tmp_path / "w.safetensors")))
    with pytest.raises(ValueError, match="variant"):
        InceptionConfig.from_json({"architecture": "inception-v3", "variant": "keras"})


# --- an image job end to end --------------------------------------------------------


def low_rank_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance of two samples ``[n, d]`` with ``n < d``, through ``n x n`` matrices: with centred data
    ``A``, ``B`` the covariances are ``A^T A / (n - 1)``, ``B^T B / (m - 1)``, and ``tr((C1 C2)^1/2)`` is the sum of
    the singular values of ``A B^T`` divided by ``sqrt((n - 1)(m - 1))``."""
    a = x.astype(np.float64) - x.mean(0)
    b = y.astype(np.float64) - y.mean(0)
    n, m = len(a) - 1, len(b) - 1
    trace_root = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(n * m)
    diff = x.mean(0, dtype=np.float64) - y.mean(0, dtype=np.float64)
    return float(diff @ diff + np.sum(a * a) / n + np.sum(b * b) / m - 2 * trace_root)


@pytest.mark.slow
def test_image_job_with_inception_backbone_equals_references(tmp_path, fid_backbone):
    data = tmp_path / "shards"
    write_shards(str(data), "image", 48, 3, seed=9, row_group_rows=16)
    metrics = [
        {"name": "fid", "dimension": 2048, "as": "fid"},
        {"name": "kid", "dimension": 2048, "subset_size": 40, "as": "kid"},
        {"name": "inception_score", "classes": 1008, "as": "inception_score"},
    ]
    backbone = {"kind": "inception", "weights": str(fid_backbone), "batch_size": 16}
    execution = {"runner": "local", "unit_rows": 16}
    spec = image_job_spec("images-inception", data, backbone, metrics, execution, tmp_path / "out")
    job = spec_module.load(str(write_job(tmp_path / "job.yaml", spec)))
    assert job.backbone == BackboneSpec("inception", str(fid_backbone), batch_size=16)
    run = run_job(job, show_progress=False).run
    values = {k: m.value for k, m in run.point("overall").metrics.items()}
    # references from the encoder applied to all rows at once (a different batching and padding)
    stored = image_columns(pq.read_table(data))
    found = load_backbone(BackboneSpec("inception", str(fid_backbone), batch_size=24)).extract(stored)
    assert values["fid"] == pytest.approx(low_rank_frechet(found["candidate"], found["reference"]), rel=1e-4)
    assert values["inception_score"] == pytest.approx(scipy_inception_score(found["candidate_logits"]), rel=1e-5)
    picked = {}
    for role, side in (("predictions", "candidate"), ("targets", "reference")):
        keys = np.array([blake_key(b) for b in stored[role]], np.uint64)
        np.testing.assert_array_equal(found[f"{side}_key"], split_keys(keys))
        picked[side] = found[side][np.argsort(keys)[:40]]
    assert values["kid"] == pytest.approx(numpy_kid(picked["candidate"], picked["reference"]), rel=1e-4)
    assert values["fid"] > 0 and values["inception_score"] > 1
    assert set(run.metadata["backbone"]["loads_per_worker"].values()) == {1}
