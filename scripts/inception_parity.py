"""Compare the JAX InceptionV3 (:mod:`evaluators.backbones.inception`) with PyTorch implementations on the same
seeded random weights and the same seeded images, and print the largest differences.

PYTHONPATH=. python scripts/inception_parity.py [--batch 4] [--seed 0]

References, each used when it imports (none is an evalpipe dependency; torch and torchvision are needed):

* ``torchvision``: torchvision's ``inception_v3(weights=None, aux_logits=False, init_weights=False,
  transform_input=True)`` in eval mode, fed pixels resized with ``interpolate(antialias=True)`` and normalised
  with the ImageNet statistics; against the ``torchvision`` variant.
* ``pytorch-fid``: its ``InceptionV3([3])`` (features) and ``fid_inception_v3()`` (logits): torchvision's model
  with the ``FIDInceptionA/C/E_1/E_2`` blocks, the weights handed to it instead of downloaded; against the ``fid``
  variant (bilinear resize, ``2 x - 1``, logits with ``fc.bias``).
* ``torch-fidelity``: its ``FeatureExtractorInceptionV3`` (an implementation of its own, TF 1.x resize,
  ``(x - 128) / 128``), the weights read from a temporary ``.pth``; against the ``fid`` variant with TF
  preprocessing (logits without ``fc.bias`` = its ``logits_unbiased``).

Images: uniform noise and smooth synthetic images, ``--batch`` of each at 299 x 299 (no resize), 64 x 64 (upsized)
and 360 x 360 (downsized), uint8. Each reference runs in float32 and float64; the JAX port in float32 and
bfloat16. Differences: max |a - b| and that divided by max |reference|.

PyPI's torchvision wheels are CUDA builds; with a CPU-only torch their compiled ops do not load and ``import
torchvision`` stops at ``operator torchvision::nms does not exist``. This script then declares the two op
schemas that torchvision's Python code registers fake kernels for (``nms``, ``qnms``; never called here) with
``torch.library`` and imports it again: the model code is pure Python and needs no compiled op.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from evaluators.backbones.inception import InceptionConfig, encode_images, load_params, random_tensors
from pipelines.synthetic import synthetic_images

SIZES = (299, 64, 360)
_TORCHVISION_OPS: list[Any] = []  # keeps the torch.library fragment alive


def import_torchvision() -> Any:
    """``torchvision``, declaring its compiled ops' schemas first when its compiled library does not load."""
    import torch

    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_OPS.append(library)
        import torchvision

        print(f"torchvision {torchvision.__version__}: compiled ops did not load; declared nms/qnms schemas")
    return torchvision


def state_dict(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """NumPy tensors -> a torch state dict with BatchNorm's ``num_batches_tracked`` buffers."""
    import torch

    out: dict[str, Any] = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
    for name in [k for k in tensors if k.endswith(".bn.running_mean")]:
        out[name.replace("running_mean", "num_batches_tracked")] = torch.tensor(0)
    return out


def images(seed: int, batch: int) -> list[np.ndarray]:
    """Per size in :data:`SIZES`: ``batch`` noise images and ``batch`` smooth ones, uint8 ``[2 batch, s, s, 3]``."""
    rng = np.random.default_rng(seed)
    return [
        np.concatenate([rng.integers(0, 256, (batch, s, s, 3), dtype=np.uint8), synthetic_images(rng, batch, s)])
        for s in SIZES
    ]


def jax_outputs(
    tensors: dict[str, np.ndarray], config: InceptionConfig, groups: list[np.ndarray], dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    params = jax.device_put(load_params(tensors, config))
    encode = jax.jit(partial(encode_images, config=config, dtype=dtype))
    outs = [encode(params, g) for g in groups]
    return np.concatenate([np.asarray(f) for f, _ in outs]), np.concatenate([np.asarray(z) for _, z in outs])


def torch_outputs(
    run: Callable[[Any, Any], tuple[Any, Any]], groups: list[np.ndarray], dtype: Any
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.no_grad():
        outs = [run(torch.from_numpy(g).permute(0, 3, 1, 2).contiguous(), dtype) for g in groups]
    return (
        np.concatenate([f.double().numpy() for f, _ in outs]),
        np.concatenate([z.double().numpy() for _, z in outs]),
    )


def report(name: str, ours: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray]) -> None:
    parts = []
    for what, a, b in (("features", ours[0], reference[0]), ("logits", ours[1], reference[1])):
        diff = float(np.max(np.abs(a.astype(np.float64) - b)))
        parts.append(f"{what}: max abs {diff:.2e}, rel {diff / float(np.max(np.abs(b))):.2e}")
    print(f"  {name:<44} {'; '.join(parts)}")


def compare(
    title: str,
    tensors: dict[str, np.ndarray],
    config: InceptionConfig,
    groups: list[np.ndarray],
    run: Callable[[Any, Any], tuple[Any, Any]],
) -> None:
    import torch

    print(f"{title}  [config: {config.to_json()}]")
    ref32, ref64 = torch_outputs(run, groups, torch.float32), torch_outputs(run, groups, torch.float64)
    print(
        f"  {len(ref64[0])} images; reference features |max| {np.max(np.abs(ref64[0])):.3g}, "
        f"std {np.std(ref64[0]):.3g}; logits |max| {np.max(np.abs(ref64[1])):.3g}, std {np.std(ref64[1]):.3g}"
    )
    ours32 = jax_outputs(tensors, config, groups, "float32")
    ours16 = jax_outputs(tensors, config, groups, "bfloat16")
    report("jax float32 vs reference float32", ours32, ref32)
    report("jax float32 vs reference float64", ours32, ref64)
    report("reference float32 vs reference float64", ref32, ref64)
    report("jax bfloat16 vs reference float64", ours16, ref64)


def torchvision_reference(tensors: dict[str, np.ndarray], torchvision: Any) -> Callable[[Any, Any], tuple[Any, Any]]:
    import torch
    import torch.nn.functional as F

    model = torchvision.models.inception_v3(
        weights=None, aux_logits=False, init_weights=False, transform_input=True, num_classes=1000
    ).eval()
    model.load_state_dict(state_dict(tensors))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pooled: list[Any] = []
    model.avgpool.register_forward_hook(lambda _m, _i, out: pooled.append(out.flatten(1)))

    def run(pixels: Any, dtype: Any) -> tuple[Any, Any]:
        net = model.to(dtype)
        x = pixels.to(dtype) / 255
        if x.shape[-1] != 299:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        x = (x - mean.to(dtype)) / std.to(dtype)
        pooled.clear()
        logits = net(x)
        return pooled[0], logits

    return run


def pytorch_fid_reference(tensors: dict[str, np.ndarray]) -> Callable[[Any, Any], tuple[Any, Any]]:
    import torch.nn.functional as F
    from pytorch_fid import inception as pfi

    pfi.load_state_dict_from_url = lambda *_a, **_k: state_dict(tensors)
    features_net = pfi.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    logits_net = pfi.fid_inception_v3().eval()

    def run(pixels: Any, dtype: Any) -> tuple[Any, Any]:
        x = pixels.to(dtype) / 255
        features = features_net.to(dtype)(x)[0].flatten(1)
        resized = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return features, logits_net.to(dtype)(2 * resized - 1)

    return run


def torch_fidelity_reference(tensors: dict[str, np.ndarray], folder: Path) -> Callable[[Any, Any], tuple[Any, Any]]:
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = folder / "fidelity.pth"
    torch.save(state_dict(tensors), path)
    net = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
    )
    # its "float64" internal dtype option gives float32 (torch-fidelity 0.4.0): convert a copy by hand
    double = copy.deepcopy(net).to(torch.float64)
    double.feature_extractor_internal_dtype = torch.float64
    nets = {torch.float32: net, torch.float64: double}

    def run(pixels: Any, dtype: Any) -> tuple[Any, Any]:
        return nets[dtype](pixels)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4, help="images of each kind (noise, smooth) per size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.manual_seed(args.seed)
    torchvision = import_torchvision()
    groups = images(args.seed + 1, args.batch)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, jax {jax.__version__}")

    config = InceptionConfig.preset("torchvision")
    tensors = random_tensors(config, args.seed)
    compare("torchvision Inception3", tensors, config, groups, torchvision_reference(tensors, torchvision))

    fid_tensors = random_tensors(InceptionConfig.preset("fid"), args.seed + 2)
    try:
        run = pytorch_fid_reference(fid_tensors)
    except ImportError as exc:
        print(f"pytorch-fid: not importable ({exc}); skipped")
    else:
        compare("pytorch-fid FID Inception", fid_tensors, InceptionConfig.preset("fid", logits_bias=True), groups, run)

    tf = 128 / 255
    tf_config = InceptionConfig.preset("fid", resize="tf1-bilinear", mean=(tf,) * 3, std=(tf,) * 3)
    with tempfile.TemporaryDirectory() as folder:
        try:
            run = torch_fidelity_reference(fid_tensors, Path(folder))
        except ImportError as exc:
            print(f"torch-fidelity: not importable ({exc}); skipped")
        else:
            compare("torch-fidelity FeatureExtractorInceptionV3", fid_tensors, tf_config, groups, run)


if __name__ == "__main__":
    main()
