"""A small convolutional image encoder in JAX: features for FID / KID and class logits for the Inception Score.

Checkpoint layout (files fetched through a :data:`~evaluators.backbones.base.Reader`; the pipeline's reads
any fsspec URL). ``weights`` is either a directory holding ``model.safetensors`` (or ``model.npz``) and,
optionally, ``config.json``, or the weights file itself (safetensors or npz). The config is the directory's
``config.json`` when there is one, else the one embedded in the weights file: the safetensors header
metadata key ``config`` or the npz entry ``config`` (a JSON string)::

    {"architecture": "evalpipe-cnn", "image_size": 32, "channels": [32, 64, 64], "kernel_size": 3,
     "num_classes": 10, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}

Tensors, in PyTorch layout (float32): ``conv{i}.weight`` ``[out, in, k, k]``, ``conv{i}.bias`` ``[out]`` for
each entry of ``channels``, ``fc.weight`` ``[num_classes, channels[-1]]`` and ``fc.bias`` ``[num_classes]``.

Forward pass, on images ``[B, S, S, 3]`` (``S = image_size``) scaled to ``[0, 1]`` and normalised as
``(x - mean) / std`` per RGB channel: every conv layer is a ``k x k`` convolution (stride 1, zero padding
``k // 2``) plus bias and ReLU, followed by a ``2 x 2`` max pool (stride 2) except after the last layer.
Features are the global average over the last layer's positions, ``[B, D]`` with ``D = channels[-1]``
(as Inception-v3's pool features for FID); logits are ``features @ fc.weight.T + fc.bias``, ``[B, K]``.

Images come as encoded PNG/JPEG bytes (decoded with Pillow, converted to RGB) or as rows of ``s*s*3`` pixel
values (row-major height x width x RGB; integers in ``[0, 255]`` or floats in ``[0, 1]``). Images of another
size are resized to ``S x S`` with ``jax.image.resize`` (bilinear, antialiased when shrinking). Batches are
padded to ``batch_size`` rows, so the compiled function sees one shape per input image size.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from evaluators.backbones.base import BackboneSpec, Reader
from evaluators.lazyjax import jax, jnp
from evaluators.task import BadRows, flagged_rows

Params = dict[str, Any]
WEIGHT_FILES = ("model.safetensors", "model.npz")
_KEY_MULTIPLIER_SEED = 0x5EED_CAFE
"""Offset of the pixel-row hash's multipliers, ``splitmix64(j + offset) | 1`` for 64-bit word ``j``
(part of the row-key definition: changing it changes which rows KID keeps)."""


@dataclass(frozen=True)
class CnnConfig:
    """Architecture of a :class:`ImageEncoder` checkpoint (see the module docstring)."""

    image_size: int
    channels: tuple[int, ...]
    kernel_size: int = 3
    num_classes: int = 10
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.image_size < 2 ** (len(self.channels) - 1):
            raise ValueError(f"image_size {self.image_size} is too small for {len(self.channels)} pooled layers")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive widths, got {list(self.channels)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std must hold three values (RGB), std positive")

    @property
    def feature_dim(self) -> int:
        """Width ``D`` of the feature vector (the last conv layer's channels)."""
        return self.channels[-1]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CnnConfig:
        if data.get("architecture", "evalpipe-cnn") != "evalpipe-cnn":
            raise ValueError(f"unsupported architecture {data.get('architecture')!r} (expected 'evalpipe-cnn')")
        return cls(
            int(data["image_size"]),
            tuple(int(c) for c in data["channels"]),
            int(data.get("kernel_size", 3)),
            int(data.get("num_classes", 10)),
            tuple(float(v) for v in data.get("mean", (0.5, 0.5, 0.5))),
            tuple(float(v) for v in data.get("std", (0.5, 0.5, 0.5))),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "architecture": "evalpipe-cnn",
            "image_size": self.image_size,
            "channels": list(self.channels),
            "kernel_size": self.kernel_size,
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
        }


# --- checkpoint files --------------------------------------------------------


def _is_npz(payload: bytes) -> bool:
    return payload[:4] == b"PK\x03\x04"  # a zip archive; safetensors starts with its header length


def read_weights(read: Reader) -> tuple[str, bytes]:
    """``(name, bytes)`` of the weights file: ``model.safetensors`` or ``model.npz`` when ``weights`` is a
    directory, else the ``weights`` file itself (name ``""``)."""
    for name in WEIGHT_FILES:
        try:
            return name, read(name)
        except (FileNotFoundError, NotADirectoryError):
            continue
    try:
        return "", read("")
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(
            f"backbone weights: neither a weights file nor a directory with {' or '.join(WEIGHT_FILES)}"
        ) from None


def safetensors_metadata(payload: bytes) -> dict[str, str]:
    """The ``__metadata__`` string map of a safetensors file's JSON header (empty when absent)."""
    (size,) = struct.unpack("<Q", payload[:8])
    header = json.loads(payload[8 : 8 + size])
    return dict(header.get("__metadata__") or {})


def read_tensors(read: Reader) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(config as parsed JSON, tensors by name)`` of a checkpoint, its files fetched through ``read``.

    The config is ``config.json`` of the weights directory when there is one, else the one embedded in
    the weights file (safetensors header metadata ``config``, or npz entry ``config``). Tensors keep the
    file's names, shapes and dtypes.
    """
    name, payload = read_weights(read)
    if _is_npz(payload):
        with np.load(io.BytesIO(payload), allow_pickle=False) as data:
            tensors = {k: np.asarray(data[k]) for k in data.files}
        embedded = str(tensors.pop("config")) if "config" in tensors else None
    else:
        from safetensors.numpy import load

        tensors = dict(load(payload))
        embedded = safetensors_metadata(payload).get("config")
    text = None
    if name:  # a directory: its config.json, when present, comes first
        with contextlib.suppress(FileNotFoundError):
            text = read("config.json")
    if text is None and embedded is None:
        raise FileNotFoundError("backbone weights: no config.json in the directory and no config in the weights file")
    return json.loads(text if text is not None else embedded), tensors


def write_checkpoint(directory: str, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> str:
    """Write a checkpoint :func:`read_tensors` reads: ``config.json`` and ``model.safetensors`` (with the
    config also embedded as header metadata) into local ``directory``; returns the directory."""
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    text = json.dumps(config, indent=1)
    with open(os.path.join(directory, "config.json"), "w") as handle:
        handle.write(text + "\n")
    save_file(dict(tensors), os.path.join(directory, "model.safetensors"), metadata={"config": text})
    return directory


def read_checkpoint(read: Reader) -> tuple[CnnConfig, dict[str, np.ndarray]]:
    """``(config, tensors by name)`` of a checkpoint, its files fetched through ``read`` (see :func:`read_tensors`)."""
    config, tensors = read_tensors(read)
    return CnnConfig.from_json(config), tensors


def load_params(tensors: Mapping[str, np.ndarray], config: CnnConfig) -> Params:
    """PyTorch-layout tensors -> a pytree of float32 arrays: conv kernels ``HWIO``, the head ``[D, K]``."""

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in tensors:
            raise ValueError(f"checkpoint has no tensor {name!r}")
        value = np.asarray(tensors[name], np.float32)
        if value.shape != shape:
            raise ValueError(f"checkpoint tensor {name!r} has shape {value.shape}, expected {shape}")
        return value

    k = config.kernel_size
    convs = []
    previous = 3
    for i, width in enumerate(config.channels):
        w = get(f"conv{i}.weight", (width, previous, k, k))
        convs.append({"w": np.ascontiguousarray(w.transpose(2, 3, 1, 0)), "b": get(f"conv{i}.bias", (width,))})
        previous = width
    head = get("fc.weight", (config.num_classes, config.feature_dim))
    return {"convs": convs, "fc": {"w": np.ascontiguousarray(head.T), "b": get("fc.bias", (config.num_classes,))}}


# --- pure functions ----------------------------------------------------------


def to_unit_range(images: jax.Array) -> jax.Array:
    """Pixels -> float32 in ``[0, 1]``: integer images are divided by 255, float images kept as they are."""
    if jnp.issubdtype(images.dtype, jnp.integer):
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def resize(images: jax.Array, size: int, *, antialias: bool = True) -> jax.Array:
    """``[B, h, w, C]`` float -> ``[B, size, size, C]`` by bilinear interpolation (``jax.image.resize``; half-pixel
    centres, as PyTorch's ``interpolate(..., align_corners=False)``), antialiased when shrinking unless
    ``antialias`` is false. Images already ``size x size`` are returned as they are."""
    if images.shape[1:3] == (size, size):
        return images
    shape = (images.shape[0], size, size, images.shape[3])
    return jax.image.resize(images, shape, method="bilinear", antialias=antialias)


def preprocess(images: jax.Array, *, config: CnnConfig) -> jax.Array:
    """``[B, h, w, 3]`` float32 in ``[0, 1]`` -> ``[B, S, S, 3]`` resized (bilinear) and normalised."""
    images = resize(images, config.image_size)
    mean = jnp.asarray(config.mean, jnp.float32)
    std = jnp.asarray(config.std, jnp.float32)
    return (images - mean) / std


def forward(params: Params, x: jax.Array, *, config: CnnConfig, dtype: str = "float32") -> tuple[jax.Array, jax.Array]:
    """Features ``[B, D]`` and logits ``[B, K]`` (float32) of preprocessed images ``x`` ``[B, S, S, 3]``.

    ``dtype`` is the compute dtype of the convolutions and the head (accumulation in float32); float32
    runs at full precision on every device.
    """
    compute = jnp.dtype(dtype)
    precision = jax.lax.Precision.HIGHEST if compute == jnp.float32 else jax.lax.Precision.DEFAULT
    pad = config.kernel_size // 2
    last = len(params["convs"]) - 1
    for i, layer in enumerate(params["convs"]):
        x = jax.lax.conv_general_dilated(
            x.astype(compute),
            layer["w"].astype(compute),
            window_strides=(1, 1),
            padding=((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=precision,
            preferred_element_type=jnp.float32,
        )
        x = jax.nn.relu(x + layer["b"])
        if i < last:
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    features = jnp.mean(x, axis=(1, 2))
    head = params["fc"]
    logits = jnp.matmul(
        features.astype(compute), head["w"].astype(compute), precision=precision, preferred_element_type=jnp.float32
    )
    return features, logits + head["b"]


def encode_images(
    params: Params, images: jax.Array, *, config: CnnConfig, dtype: str = "float32"
) -> tuple[jax.Array, jax.Array]:
    """Raw pixels ``[B, h, w, 3]`` (uint8, or float in ``[0, 1]``) -> features ``[B, D]`` and logits ``[B, K]``."""
    return forward(params, preprocess(to_unit_range(images), config=config), config=config, dtype=dtype)


# --- host-side decoding and row keys ----------------------------------------


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "decoding encoded image bytes (PNG/JPEG) needs Pillow: `pip install pillow`; or store images as "
            "fixed_size_list<uint8>[S*S*3] pixel columns"
        ) from None
    return Image


class UndecodableImage(ValueError):
    """Encoded image bytes that Pillow cannot decode (the message names the row of the batch)."""


def _unreadable() -> tuple[type[BaseException], ...]:
    """What Pillow raises for bytes it cannot read as an image: ``UnidentifiedImageError`` (an ``OSError``), a
    damaged stream, and a header that claims more pixels than Pillow opens (``DecompressionBombError``)."""
    return (OSError, ValueError, SyntaxError, _pillow().DecompressionBombError)


def readable_image(payload: bytes) -> bool:
    """Whether Pillow reads ``payload`` as an image: its header, and the file's own checks where the format has
    them (a PNG's chunk checksums and end: a truncated PNG fails), without decoding the pixels."""
    try:
        _pillow().open(io.BytesIO(payload)).verify()
    except _unreadable():
        return False
    return True


WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
"""Pillow's modes of 16-bit grey levels (a 16-bit greyscale PNG; ``I`` too where the file is a PNG)."""


def decode(payload: bytes) -> np.ndarray:
    """One encoded image (PNG, JPEG, any format Pillow reads) -> RGB pixels ``[h, w, 3]`` uint8. 16-bit grey levels
    are scaled to 8 bits (``round(v / 257)``, as a 16-bit RGB image is; Pillow's own conversion clips them at 255);
    grey levels of other widths (32-bit integers, floats) are refused (``ValueError``): their range is unknown."""
    image = _pillow().open(io.BytesIO(payload))
    if image.mode in WIDE_GREY_MODES or (image.mode == "I" and image.format == "PNG"):
        levels = np.asarray(image, np.int64)
        if levels.size and (levels.min() < 0 or levels.max() > 0xFFFF):
            raise ValueError("16-bit grey levels outside 0-65535")
        grey = np.round(levels / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode in ("I", "F"):
        raise ValueError(
            f"grey levels of mode {image.mode} ({'32-bit integers' if image.mode == 'I' else 'floating point'}) have "
            "no known range; write 8- or 16-bit images"
        )
    return np.asarray(image.convert("RGB"), np.uint8)


def pixel_rows(values: np.ndarray) -> np.ndarray:
    """``[n, s*s*3]`` pixel rows -> ``[n, s, s, 3]`` images: uint8 (integer input) or float32 in ``[0, 1]``."""
    values = np.asarray(values)
    n, width = values.shape
    side = int(np.sqrt(width / 3))
    if side < 1 or 3 * side * side != width:
        raise ValueError(f"{width} pixel values per row is not s*s*3 for a square RGB image")
    if np.issubdtype(values.dtype, np.floating):
        images = values.astype(np.float32, copy=False)
    else:
        images = np.clip(values, 0, 255).astype(np.uint8, copy=False)
    return images.reshape(n, side, side, 3)


def image_groups(column: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """A column of images -> ``(row indices [m], images [m, h, w, 3])`` per distinct image shape.

    An object column holds encoded bytes (decoded one by one); a 2-D numeric column holds pixel rows.
    """
    column = np.asarray(column) if not isinstance(column, np.ndarray) else column
    if column.dtype != object:
        return [(np.arange(len(column)), pixel_rows(column))]
    decoded = []
    for i, value in enumerate(column):
        try:
            decoded.append(decode(bytes(value)))
        except _unreadable() as exc:  # (a truncated or damaged image past its header)
            raise UndecodableImage(f"row {i} of the batch holds image bytes Pillow cannot decode ({exc})") from None
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(decoded):
        by_shape.setdefault(image.shape, []).append(i)
    return [(np.asarray(rows), np.stack([decoded[i] for i in rows])) for _, rows in sorted(by_shape.items())]


def _splitmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def row_hashes(column: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash of each row's stored value, uint64 ``[n]``.

    Encoded images: BLAKE2b (8-byte digest, little-endian) of the bytes. Pixel rows: a multilinear hash
    of the row's bytes (little-endian 64-bit words, zero-padded; multipliers ``splitmix64(j + offset) | 1``;
    arithmetic mod 2^64), xor the byte count, finished by splitmix64. Depends only on the row's stored
    value (bytes and dtype), never on batching or position.
    """
    column = np.asarray(column) if not isinstance(column, np.ndarray) else column
    if column.dtype == object:
        return np.fromiter(
            (int.from_bytes(hashlib.blake2b(bytes(v), digest_size=8).digest(), "little") for v in column),
            np.uint64,
            len(column),
        )
    raw = np.ascontiguousarray(column).reshape(len(column), -1).view(np.uint8)
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((len(raw), pad), np.uint8)], axis=1)
    words = np.ascontiguousarray(raw).view("<u8")
    with np.errstate(over="ignore"):
        position = np.arange(words.shape[1], dtype=np.uint64) + np.uint64(_KEY_MULTIPLIER_SEED)
        multipliers = _splitmix64(position) | np.uint64(1)
        total = (words * multipliers).sum(axis=1, dtype=np.uint64)
        return _splitmix64(total ^ np.uint64(raw.shape[1]))


def split_keys(hashes: np.ndarray) -> np.ndarray:
    """uint64 ``[n]`` -> int32 ``[n, 2]`` (high word, low word): survives the int32 cast of integer columns."""
    hashes = np.asarray(hashes, np.uint64)
    high = (hashes >> np.uint64(32)).astype(np.uint32).view(np.int32)
    low = (hashes & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)
    return np.stack([high, low], axis=1)


def join_keys(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`split_keys`: int32 ``[n, 2]`` -> uint64 ``[n]``."""
    keys = np.asarray(keys).astype(np.int32, copy=False)
    high = keys[:, 0].view(np.uint32).astype(np.uint64)
    low = keys[:, 1].view(np.uint32).astype(np.uint64)
    return (high << np.uint64(32)) | low


# --- the loaded backbone -----------------------------------------------------


class ImageEncoder:
    """A loaded CNN image encoder: frozen parameters and one compiled function per input image shape.

    Other image architectures subclass it, overriding :meth:`load` and :meth:`encode_function` (their
    config has ``feature_dim`` and ``num_classes`` too); decoding, batching and padding stay here.
    """

    def bad_rows(self, columns: Mapping[str, Any]) -> list[BadRows]:
        """Rows of encoded image bytes (``predictions`` / ``targets``) whose header Pillow does not read: bad rows
        of their column, checked with the rows' other problems (a user backbone may read other bytes)."""
        out: list[BadRows] = []
        for role in ("predictions", "targets"):
            values = columns.get(role)
            if isinstance(values, np.ndarray) and values.dtype == object:
                unread = np.fromiter(
                    (isinstance(v, bytes | bytearray | memoryview) and not readable_image(bytes(v)) for v in values),
                    bool,
                    count=len(values),
                )
                out += flagged_rows(role, "whose bytes are no image Pillow reads (PNG, JPEG, ...)", unread, len(values))
        return out

    def __init__(self, spec: BackboneSpec, config: CnnConfig, params: Params) -> None:
        self.spec = spec
        self.config = config
        self.params = jax.device_put(params)
        self._encode = jax.jit(self.encode_function())

    def encode_function(self) -> Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]:
        """``(params, raw pixels [B, h, w, 3]) -> (features [B, D], logits [B, K])`` float32, jit-compiled once
        per input shape (``B`` is always ``batch_size``)."""
        return partial(encode_images, config=self.config, dtype=self.spec.dtype)

    @property
    def dimension(self) -> int:
        """Feature width ``D``."""
        return self.config.feature_dim

    @property
    def num_classes(self) -> int:
        """Number of logits ``K``."""
        return self.config.num_classes

    @classmethod
    def load(cls, spec: BackboneSpec, read: Reader) -> ImageEncoder:
        """Read the config and weights of ``spec.weights`` (a directory or a weights file) through ``read``."""
        config, tensors = read_checkpoint(read)
        return cls(spec, config, load_params(tensors, config))

    def encode(self, column: np.ndarray | Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Features ``[n, D]`` and logits ``[n, K]`` (float32) of a column of images (bytes or pixel rows)."""
        column = column if isinstance(column, np.ndarray) else np.asarray(list(column), dtype=object)
        n = len(column)
        features = np.zeros((n, self.dimension), np.float32)
        logits = np.zeros((n, self.num_classes), np.float32)
        step = self.spec.batch_size
        for rows, images in image_groups(column) if n else []:
            for start in range(0, len(rows), step):
                part = images[start : start + step]
                count = len(part)
                if count < step:
                    part = np.concatenate([part, np.zeros((step - count, *part.shape[1:]), part.dtype)])
                f, z = self._encode(self.params, part)
                features[rows[start : start + count]] = np.asarray(f)[:count]
                logits[rows[start : start + count]] = np.asarray(z)[:count]
        return features, logits

    def extract(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Features of a batch of an ``image`` task: ``predictions`` are generated images, ``targets`` real ones
        (either may be absent: then so are its side's features).

        Returns ``candidate`` / ``reference`` features ``[n, D]`` float32, ``candidate_logits`` ``[n, K]``
        float32, and ``candidate_key`` / ``reference_key`` ``[n, 2]`` int32: each row's 64-bit hash
        (:func:`row_hashes`, split by :func:`split_keys`) that picks KID's deterministic subset.
        """
        out: dict[str, np.ndarray] = {}
        if "predictions" in columns:  # a reference job reads real images only, a job against a stored
            out["candidate"], out["candidate_logits"] = self.encode(columns["predictions"])  # reference generated ones
            out["candidate_key"] = split_keys(row_hashes(columns["predictions"]))
        if "targets" in columns:
            out["reference"], _ = self.encode(columns["targets"])
            out["reference_key"] = split_keys(row_hashes(columns["targets"]))
        return out
