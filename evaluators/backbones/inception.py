"""InceptionV3 in JAX: 2048-d pool features for FID / KID and class logits for the Inception Score.

Two variants of the network, named by the config's ``variant``:

* ``"fid"``: the TensorFlow Inception graph (``inception-2015-12-05``) that standard FID, KID and IS are defined
  with, as ported by pytorch-fid (``pt_inception-2015-12-05-*.pth``) and torch-fidelity: 1008 classes, the
  ``Mixed_5b..5d`` / ``Mixed_6b..6e`` / ``Mixed_7b`` blocks average-pool their pool branch without counting the
  zero padding (``count_include_pad=False``), and ``Mixed_7c`` max-pools it (3 x 3, stride 1, padding 1).
* ``"torchvision"``: torchvision's ``Inception3`` (1000 classes; every pool branch of ``Mixed_5b..7c`` is an
  average pool that counts the padding), optionally with its ``transform_input`` step.

Checkpoint layout (files fetched through a :data:`~evaluators.backbones.base.Reader`, found as for
:mod:`evaluators.backbones.cnn`): ``weights`` is a directory holding ``model.safetensors`` (or ``model.npz``)
and, optionally, ``config.json``, or the weights file itself; the config is the directory's ``config.json``
when there is one, else the one embedded in the weights file. ``scripts/convert_inception_weights.py`` writes
both from a PyTorch ``.pth`` state dict. The config, with the defaults of the ``fid`` variant::

    {"architecture": "inception-v3", "variant": "fid", "num_classes": 1008, "image_size": 299,
     "resize": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "transform_input": false,
     "logits_bias": false}

Fields left out take the defaults of the named variant (``torchvision``: 1000 classes, ``resize``
``"bilinear-antialias"``, ImageNet ``mean`` ``[0.485, 0.456, 0.406]`` / ``std`` ``[0.229, 0.224, 0.225]``,
``transform_input`` true, ``logits_bias`` true).

Tensors: torchvision's ``state_dict`` names and shapes (float32 or float16/bfloat16, read as float32) for every
conv layer ``L`` (``Conv2d_1a_3x3`` ... ``Mixed_7c.branch_pool``, see :func:`conv_shapes`): ``L.conv.weight``
``[out, in, kh, kw]`` and ``L.bn.weight`` / ``L.bn.bias`` / ``L.bn.running_mean`` / ``L.bn.running_var``
``[out]``; the head ``fc.weight`` ``[K, 2048]`` and ``fc.bias`` ``[K]``. Other tensors (``AuxLogits.*``,
``num_batches_tracked``) are ignored. Each batch norm (eps ``0.001``) is folded into its convolution at load
time, in float64.

Pipeline, on raw pixels ``[B, h, w, 3]`` (uint8 in ``[0, 255]``, or float in ``[0, 1]``; decoded and padded to
``batch_size`` rows as for the CNN backbone):

1. scale to ``[0, 1]`` float32 and resize to ``S x S`` (``S = image_size``, 299 for the published weights;
   images already that size are kept as they are) with ``resize``: ``"bilinear"`` (half-pixel centres, no
   antialiasing: PyTorch's ``interpolate(mode="bilinear", align_corners=False)``, as pytorch-fid does),
   ``"bilinear-antialias"`` (the same, antialiased when shrinking, as torchvision's ``Resize``) or
   ``"tf1-bilinear"`` (TensorFlow 1.x ``resize_bilinear`` without half-pixel centres, as the original TF FID
   code and torch-fidelity do);
2. normalise per RGB channel, ``(x - mean) / std``: the ``fid`` default maps ``[0, 1]`` to ``[-1, 1]``
   (pytorch-fid's ``2 x - 1``); ``mean = std = 128 / 255`` gives TensorFlow's ``(pixel - 128) / 128``;
3. with ``transform_input``, torchvision's re-normalisation from ImageNet statistics to ``[-1, 1]``
   (``x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5`` with the ImageNet ``mean_c`` / ``std_c``), as its
   pretrained weights expect;
4. the network, in eval mode: features are the global average of ``Mixed_7c`` ``[B, 2048]``, logits
   ``features @ fc.weight.T`` ``[B, K]``, plus ``fc.bias`` when ``logits_bias`` is true. The original Inception
   Score code, torch-fidelity and torchmetrics compute the score from the logits without the bias, hence the
   ``fid`` default.

Features and logits are float32; ``dtype`` (``BackboneSpec.dtype``) is the compute dtype of the convolutions
and the head, with float32 accumulation and float32 activations between layers. ``image_size`` may be as
small as 75 (the smallest input the network takes), which keeps tests fast; FID needs 299.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from evaluators.backbones.base import BackboneSpec, Reader
from evaluators.backbones.cnn import ImageEncoder, Params, read_tensors, resize, to_unit_range
from evaluators.lazyjax import jax, jnp

ARCHITECTURE = "inception-v3"
VARIANTS = ("fid", "torchvision")
RESIZE_METHODS = ("bilinear", "bilinear-antialias", "tf1-bilinear")
FEATURE_DIM = 2048
MIN_IMAGE_SIZE = 75
BN_EPS = 0.001
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class InceptionConfig:
    """Variant and input pipeline of an InceptionV3 checkpoint (see the module docstring)."""

    variant: str = "fid"
    num_classes: int = 1008
    image_size: int = 299
    resize: str = "bilinear"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    transform_input: bool = False
    logits_bias: bool = False

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"inception variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        if self.image_size < MIN_IMAGE_SIZE:
            raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE} for InceptionV3, got {self.image_size}")
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_METHODS)}, got {self.resize!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std must hold three values (RGB), std positive")

    @property
    def feature_dim(self) -> int:
        """Width of the pool features, 2048."""
        return FEATURE_DIM

    @classmethod
    def preset(cls, variant: str, **fields: Any) -> InceptionConfig:
        """The defaults of ``variant`` (``"fid"`` or ``"torchvision"``), with ``fields`` overriding them."""
        if variant == "torchvision":
            base = cls(
                "torchvision", 1000, 299, "bilinear-antialias", IMAGENET_MEAN, IMAGENET_STD, True, logits_bias=True
            )
        else:
            base = cls(variant)
        return replace(base, **fields)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InceptionConfig:
        if data.get("architecture") != ARCHITECTURE:
            raise ValueError(f"unsupported architecture {data.get('architecture')!r} (expected {ARCHITECTURE!r})")
        fields: dict[str, Any] = {}
        for name, kind in (("num_classes", int), ("image_size", int), ("resize", str)):
            if name in data:
                fields[name] = kind(data[name])
        for name in ("mean", "std"):
            if name in data:
                fields[name] = tuple(float(v) for v in data[name])
        for name in ("transform_input", "logits_bias"):
            if name in data:
                if not isinstance(data[name], bool):
                    raise ValueError(f"config {name!r} must be true or false, got {data[name]!r}")
                fields[name] = data[name]
        return cls.preset(str(data.get("variant", "fid")), **fields)

    def to_json(self) -> dict[str, Any]:
        return {
            "architecture": ARCHITECTURE,
            "variant": self.variant,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "transform_input": self.transform_input,
            "logits_bias": self.logits_bias,
        }


# --- architecture ------------------------------------------------------------


def conv_shapes() -> dict[str, tuple[int, int, int, int]]:
    """Every conv layer of InceptionV3 (torchvision's names, in forward order) -> its kernel ``[out, in, kh, kw]``.

    The same for both variants (they differ in pooling only); the auxiliary classifier is not part of it.
    """
    shapes: dict[str, tuple[int, int, int, int]] = {}

    def conv(name: str, cin: int, cout: int, kh: int, kw: int | None = None) -> None:
        shapes[name] = (cout, cin, kh, kh if kw is None else kw)

    conv("Conv2d_1a_3x3", 3, 32, 3)
    conv("Conv2d_2a_3x3", 32, 32, 3)
    conv("Conv2d_2b_3x3", 32, 64, 3)
    conv("Conv2d_3b_1x1", 64, 80, 1)
    conv("Conv2d_4a_3x3", 80, 192, 3)
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        conv(f"{name}.branch1x1", cin, 64, 1)
        conv(f"{name}.branch5x5_1", cin, 48, 1)
        conv(f"{name}.branch5x5_2", 48, 64, 5)
        conv(f"{name}.branch3x3dbl_1", cin, 64, 1)
        conv(f"{name}.branch3x3dbl_2", 64, 96, 3)
        conv(f"{name}.branch3x3dbl_3", 96, 96, 3)
        conv(f"{name}.branch_pool", cin, pool, 1)
    conv("Mixed_6a.branch3x3", 288, 384, 3)
    conv("Mixed_6a.branch3x3dbl_1", 288, 64, 1)
    conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3)
    conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        conv(f"{name}.branch1x1", 768, 192, 1)
        conv(f"{name}.branch7x7_1", 768, c7, 1)
        conv(f"{name}.branch7x7_2", c7, c7, 1, 7)
        conv(f"{name}.branch7x7_3", c7, 192, 7, 1)
        conv(f"{name}.branch7x7dbl_1", 768, c7, 1)
        conv(f"{name}.branch7x7dbl_2", c7, c7, 7, 1)
        conv(f"{name}.branch7x7dbl_3", c7, c7, 1, 7)
        conv(f"{name}.branch7x7dbl_4", c7, c7, 7, 1)
        conv(f"{name}.branch7x7dbl_5", c7, 192, 1, 7)
        conv(f"{name}.branch_pool", 768, 192, 1)
    conv("Mixed_7a.branch3x3_1", 768, 192, 1)
    conv("Mixed_7a.branch3x3_2", 192, 320, 3)
    conv("Mixed_7a.branch7x7x3_1", 768, 192, 1)
    conv("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7)
    conv("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1)
    conv("Mixed_7a.branch7x7x3_4", 192, 192, 3)
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        conv(f"{name}.branch1x1", cin, 320, 1)
        conv(f"{name}.branch3x3_1", cin, 384, 1)
        conv(f"{name}.branch3x3_2a", 384, 384, 1, 3)
        conv(f"{name}.branch3x3_2b", 384, 384, 3, 1)
        conv(f"{name}.branch3x3dbl_1", cin, 448, 1)
        conv(f"{name}.branch3x3dbl_2", 448, 384, 3)
        conv(f"{name}.branch3x3dbl_3a", 384, 384, 1, 3)
        conv(f"{name}.branch3x3dbl_3b", 384, 384, 3, 1)
        conv(f"{name}.branch_pool", cin, 192, 1)
    return shapes


def tensor_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a checkpoint must hold (torchvision's ``state_dict`` names)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, kernel in conv_shapes().items():
        shapes[f"{name}.conv.weight"] = kernel
        for part in BN_TENSORS:
            shapes[f"{name}.bn.{part}"] = (kernel[0],)
    shapes["fc.weight"] = (num_classes, FEATURE_DIM)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def checkpoint_tensors(tensors: Mapping[str, Any], num_classes: int) -> dict[str, np.ndarray]:
    """The tensors of :func:`tensor_shapes` from a state dict, as float32 arrays; raises ``ValueError`` naming a
    missing tensor or a wrong shape. Other entries (``AuxLogits.*``, ``num_batches_tracked``) are dropped."""
    out = {}
    for name, shape in tensor_shapes(num_classes).items():
        if name not in tensors:
            raise ValueError(f"checkpoint has no tensor {name!r}")
        value = np.ascontiguousarray(tensors[name], np.float32)
        if value.shape != shape:
            raise ValueError(f"checkpoint tensor {name!r} has shape {value.shape}, expected {shape}")
        out[name] = value
    return out


def load_params(tensors: Mapping[str, np.ndarray], config: InceptionConfig) -> Params:
    """State-dict tensors -> ``{layer: {"w": HWIO kernel, "b": [out]}, "fc": {"w": [2048, K], "b": [K]}}``, float32.

    Each batch norm is folded into its (bias-free) convolution in float64: ``w * g / sqrt(v + eps)`` and
    ``beta - m * g / sqrt(v + eps)``.
    """
    tensors = checkpoint_tensors(tensors, config.num_classes)
    params: Params = {}
    for name in conv_shapes():
        bn = {part: tensors[f"{name}.bn.{part}"].astype(np.float64) for part in BN_TENSORS}
        scale = bn["weight"] / np.sqrt(bn["running_var"] + BN_EPS)
        kernel = tensors[f"{name}.conv.weight"].astype(np.float64) * scale[:, None, None, None]
        params[name] = {
            "w": np.ascontiguousarray(kernel.transpose(2, 3, 1, 0), np.float32),
            "b": (bn["bias"] - bn["running_mean"] * scale).astype(np.float32),
        }
    params["fc"] = {"w": np.ascontiguousarray(tensors["fc.weight"].T), "b": tensors["fc.bias"]}
    return params


def random_tensors(config: InceptionConfig, seed: int) -> dict[str, np.ndarray]:
    """A seeded random checkpoint (float32, state-dict names) for tests and parity checks, never for metrics.

    He-normal conv kernels and batch-norm statistics that keep activations of order one through the network;
    a head giving logits of order one.
    """
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for name, (cout, cin, kh, kw) in conv_shapes().items():
        fan_in = cin * kh * kw
        tensors[f"{name}.conv.weight"] = rng.normal(0.0, np.sqrt(2.0 / fan_in), (cout, cin, kh, kw)).astype(np.float32)
        tensors[f"{name}.bn.weight"] = rng.uniform(0.6, 1.4, cout).astype(np.float32)
        tensors[f"{name}.bn.bias"] = rng.normal(0.0, 0.2, cout).astype(np.float32)
        tensors[f"{name}.bn.running_mean"] = rng.normal(0.0, 0.2, cout).astype(np.float32)
        tensors[f"{name}.bn.running_var"] = rng.uniform(0.5, 2.0, cout).astype(np.float32)
    k = config.num_classes
    tensors["fc.weight"] = rng.normal(0.0, 2.0 / np.sqrt(FEATURE_DIM), (k, FEATURE_DIM)).astype(np.float32)
    tensors["fc.bias"] = rng.normal(0.0, 0.5, k).astype(np.float32)
    return tensors


# --- pure functions ----------------------------------------------------------


def _tf1_resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``[out, in]`` float32 weights of TensorFlow 1.x bilinear resizing along one axis: output ``i`` reads
    ``i * in / out`` (no half-pixel centres), clamped at the last input."""
    source = np.arange(size_out, dtype=np.float32) * np.float32(size_in / size_out)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    frac = source - low.astype(np.float32)
    matrix = np.zeros((size_out, size_in), np.float32)
    np.add.at(matrix, (np.arange(size_out), low), 1.0 - frac)
    np.add.at(matrix, (np.arange(size_out), high), frac)
    return matrix


def preprocess(images: jax.Array, *, config: InceptionConfig) -> jax.Array:
    """``[B, h, w, 3]`` float32 in ``[0, 1]`` -> ``[B, S, S, 3]`` resized (``config.resize``) and normalised."""
    size = config.image_size
    if config.resize == "tf1-bilinear":
        if images.shape[1:3] != (size, size):
            rows = jnp.asarray(_tf1_resize_matrix(images.shape[1], size))
            cols = jnp.asarray(_tf1_resize_matrix(images.shape[2], size))
            hp = jax.lax.Precision.HIGHEST
            images = jnp.einsum("ih,bhwc->biwc", rows, images, precision=hp)
            images = jnp.einsum("jw,biwc->bijc", cols, images, precision=hp)
    else:
        images = resize(images, size, antialias=config.resize == "bilinear-antialias")
    mean = jnp.asarray(config.mean, jnp.float32)
    std = jnp.asarray(config.std, jnp.float32)
    return (images - mean) / std


def _max_pool(x: jax.Array, stride: int, pad: int = 0) -> jax.Array:
    padding = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), padding)


def _avg_pool(x: jax.Array, *, count_include_pad: bool) -> jax.Array:
    """3 x 3 average pool, stride 1, zero padding 1: divided by 9, or by the count of real pixels in the window."""
    padding = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), padding)
    if count_include_pad:
        return total / 9.0
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    return total / jax.lax.reduce_window(ones, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), padding)


def forward(
    params: Params, x: jax.Array, *, config: InceptionConfig, dtype: str = "float32"
) -> tuple[jax.Array, jax.Array]:
    """Features ``[B, 2048]`` and logits ``[B, K]`` (float32) of preprocessed images ``x`` ``[B, S, S, 3]``.

    ``dtype`` is the compute dtype of the convolutions and the head (accumulation in float32); float32 runs
    at full precision on every device.
    """
    compute = jnp.dtype(dtype)
    precision = jax.lax.Precision.HIGHEST if compute == jnp.float32 else jax.lax.Precision.DEFAULT
    fid = config.variant == "fid"

    def conv(name: str, x: jax.Array, stride: int = 1, same: bool = True) -> jax.Array:
        """Conv (+ folded batch norm) and ReLU; ``same``: zero padding ``k // 2`` per axis, else none."""
        layer = params[name]
        kh, kw = layer["w"].shape[:2]
        padding = ((kh // 2, kh // 2), (kw // 2, kw // 2)) if same else ((0, 0), (0, 0))
        y = jax.lax.conv_general_dilated(
            x.astype(compute),
            layer["w"].astype(compute),
            window_strides=(stride, stride),
            padding=padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=precision,
            preferred_element_type=jnp.float32,
        )
        return jax.nn.relu(y + layer["b"])

    def chain(x: jax.Array, block: str, *names: str) -> jax.Array:
        for name in names:
            x = conv(f"{block}.{name}", x)
        return x

    def cat(*branches: jax.Array) -> jax.Array:
        return jnp.concatenate(branches, axis=-1)

    def block_a(block: str, x: jax.Array) -> jax.Array:
        pool = conv(f"{block}.branch_pool", _avg_pool(x, count_include_pad=not fid))
        return cat(
            conv(f"{block}.branch1x1", x),
            chain(x, block, "branch5x5_1", "branch5x5_2"),
            chain(x, block, "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
            pool,
        )

    def block_b(block: str, x: jax.Array) -> jax.Array:
        double = chain(x, block, "branch3x3dbl_1", "branch3x3dbl_2")
        return cat(
            conv(f"{block}.branch3x3", x, 2, same=False),
            conv(f"{block}.branch3x3dbl_3", double, 2, same=False),
            _max_pool(x, 2),
        )

    def block_c(block: str, x: jax.Array) -> jax.Array:
        pool = conv(f"{block}.branch_pool", _avg_pool(x, count_include_pad=not fid))
        return cat(
            conv(f"{block}.branch1x1", x),
            chain(x, block, "branch7x7_1", "branch7x7_2", "branch7x7_3"),
            chain(x, block, *(f"branch7x7dbl_{i}" for i in range(1, 6))),
            pool,
        )

    def block_d(block: str, x: jax.Array) -> jax.Array:
        seven = chain(x, block, "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3")
        return cat(
            conv(f"{block}.branch3x3_2", conv(f"{block}.branch3x3_1", x), 2, same=False),
            conv(f"{block}.branch7x7x3_4", seven, 2, same=False),
            _max_pool(x, 2),
        )

    def block_e(block: str, x: jax.Array, *, max_pool: bool) -> jax.Array:
        three = conv(f"{block}.branch3x3_1", x)
        double = chain(x, block, "branch3x3dbl_1", "branch3x3dbl_2")
        pooled = _max_pool(x, 1, 1) if max_pool else _avg_pool(x, count_include_pad=not fid)
        return cat(
            conv(f"{block}.branch1x1", x),
            conv(f"{block}.branch3x3_2a", three),
            conv(f"{block}.branch3x3_2b", three),
            conv(f"{block}.branch3x3dbl_3a", double),
            conv(f"{block}.branch3x3dbl_3b", double),
            conv(f"{block}.branch_pool", pooled),
        )

    if config.transform_input:
        scale = jnp.asarray(IMAGENET_STD, jnp.float32) / 0.5
        shift = (jnp.asarray(IMAGENET_MEAN, jnp.float32) - 0.5) / 0.5
        x = x * scale + shift
    x = conv("Conv2d_1a_3x3", x, 2, same=False)
    x = conv("Conv2d_2a_3x3", x, same=False)
    x = conv("Conv2d_2b_3x3", x)
    x = _max_pool(x, 2)
    x = conv("Conv2d_3b_1x1", x)
    x = conv("Conv2d_4a_3x3", x, same=False)
    x = _max_pool(x, 2)
    for block in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = block_a(block, x)
    x = block_b("Mixed_6a", x)
    for block in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = block_c(block, x)
    x = block_d("Mixed_7a", x)
    x = block_e("Mixed_7b", x, max_pool=False)
    x = block_e("Mixed_7c", x, max_pool=fid)
    features = jnp.mean(x, axis=(1, 2))
    head = params["fc"]
    logits = jnp.matmul(
        features.astype(compute), head["w"].astype(compute), precision=precision, preferred_element_type=jnp.float32
    )
    if config.logits_bias:
        logits = logits + head["b"]
    return features, logits


def encode_images(
    params: Params, images: jax.Array, *, config: InceptionConfig, dtype: str = "float32"
) -> tuple[jax.Array, jax.Array]:
    """Raw pixels ``[B, h, w, 3]`` (uint8, or float in ``[0, 1]``) -> features ``[B, 2048]`` and logits ``[B, K]``."""
    return forward(params, preprocess(to_unit_range(images), config=config), config=config, dtype=dtype)


# --- the loaded backbone -----------------------------------------------------


class InceptionEncoder(ImageEncoder):
    """A loaded InceptionV3: frozen parameters and one compiled function per input image shape.

    ``extract(columns)`` gives what :class:`~evaluators.backbones.cnn.ImageEncoder` gives (``candidate`` /
    ``reference`` features ``[n, 2048]``, ``candidate_logits`` ``[n, K]``, row keys), so the image metrics
    take ``dimension: 2048`` and ``classes: K`` (1008 for the ``fid`` variant, 1000 for ``torchvision``).
    """

    config: InceptionConfig  # type: ignore[assignment]

    def encode_function(self) -> Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]:
        return partial(encode_images, config=self.config, dtype=self.spec.dtype)

    @classmethod
    def load(cls, spec: BackboneSpec, read: Reader) -> InceptionEncoder:
        """Read the config and weights of ``spec.weights`` (a directory or a weights file) through ``read``."""
        data, tensors = read_tensors(read)
        config = InceptionConfig.from_json(data)
        return cls(spec, config, load_params(tensors, config))  # type: ignore[arg-type]
