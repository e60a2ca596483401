"""Convert a PyTorch InceptionV3 state dict (``.pth``) into an ``inception`` backbone directory.

python scripts/convert_inception_weights.py pt_inception-2015-12-05-6726825d.pth models/inception-fid
python scripts/convert_inception_weights.py inception_v3_google-0cc3c7bd.pth models/inception-tv

The input is either variant's state dict: the TF-FID Inception of pytorch-fid / torch-fidelity
(``pt_inception-2015-12-05-*.pth``; 1008 classes) or torchvision's ``Inception3`` (``inception_v3_google-*.pth``
or any ``model.state_dict()``; 1000 classes). The variant is told by the head's width (1008: ``fid``, otherwise
``torchvision``) unless ``--variant`` names it. The directory gets ``config.json`` and ``model.safetensors``
(float32 tensors under torchvision's names, without ``AuxLogits.*`` and ``num_batches_tracked``; its header
metadata also carries the config, so the file alone is a complete checkpoint). See
:mod:`evaluators.backbones.inception` for the layout and the config's fields.

Input pipeline written into the config: the variant's defaults (``fid``: pytorch-fid's bilinear resize to 299 and
``2 x - 1``; ``torchvision``: antialiased bilinear resize, ImageNet normalisation and ``transform_input``, as the
pretrained torchvision weights expect). ``--tf-preprocessing`` resizes like TensorFlow 1.x and scales pixels as
``(x - 128) / 128``, as the original TF FID code and torch-fidelity / torchmetrics do.

Needs PyTorch (to read the ``.pth``), NumPy and safetensors; the backbone itself needs no PyTorch.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from evaluators.backbones.cnn import write_checkpoint
from evaluators.backbones.inception import RESIZE_METHODS, VARIANTS, InceptionConfig, checkpoint_tensors

FID_CLASSES = 1008
TF_PIXEL_SCALE = 128 / 255
"""``mean = std = 128 / 255`` turns ``[0, 1]`` pixels into TensorFlow's ``(pixel - 128) / 128``."""


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """The tensors of a ``.pth`` file as float32 NumPy arrays (a bare state dict, or one under ``"state_dict"``;
    a ``"module."`` prefix from ``DataParallel`` is dropped)."""
    import torch

    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: expected a state dict, found {type(loaded).__name__}")
    out = {}
    for name, value in loaded.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            out[name.removeprefix("module.")] = value.detach().to(torch.float32).numpy()
    return out


def make_config(
    tensors: Mapping[str, np.ndarray], variant: str | None = None, *, tf_preprocessing: bool = False, **fields: Any
) -> InceptionConfig:
    """The config for a state dict: the variant (from ``fc.weight``'s rows unless given) and its defaults,
    ``fields`` (non-``None`` values) overriding them."""
    if "fc.weight" not in tensors:
        raise ValueError("state dict has no 'fc.weight': not an InceptionV3 checkpoint")
    classes = int(np.shape(tensors["fc.weight"])[0])
    variant = variant or ("fid" if classes == FID_CLASSES else "torchvision")
    chosen: dict[str, Any] = {"num_classes": classes}
    if tf_preprocessing:
        chosen.update(resize="tf1-bilinear", mean=(TF_PIXEL_SCALE,) * 3, std=(TF_PIXEL_SCALE,) * 3)
        chosen["transform_input"] = False
    chosen.update({k: v for k, v in fields.items() if v is not None})
    return InceptionConfig.preset(variant, **chosen)


def write_backbone(directory: str, tensors: Mapping[str, np.ndarray], config: InceptionConfig) -> str:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` (checked against the architecture)."""
    return write_checkpoint(directory, config.to_json(), checkpoint_tensors(tensors, config.num_classes))


def convert(source: str, directory: str, variant: str | None = None, **options: Any) -> InceptionConfig:
    """Convert the ``.pth`` at ``source`` into an ``inception`` backbone in ``directory``; returns its config.

    ``options``: ``tf_preprocessing`` and any :class:`InceptionConfig` field (``None``: the variant's default).
    """
    tensors = read_state_dict(source)
    config = make_config(tensors, variant, **options)
    write_backbone(directory, tensors, config)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="PyTorch state dict (.pth)")
    parser.add_argument("directory", help="output directory (config.json, model.safetensors)")
    parser.add_argument("--variant", choices=VARIANTS, help="default: fid for 1008 classes, else torchvision")
    parser.add_argument("--tf-preprocessing", action="store_true", help="TF 1.x resize and (x - 128) / 128")
    parser.add_argument("--resize", choices=RESIZE_METHODS, help="override the variant's resize method")
    parser.add_argument("--image-size", type=int, help="network input side (default 299; FID needs 299)")
    parser.add_argument(
        "--transform-input", action=argparse.BooleanOptionalAction, help="torchvision's transform_input step"
    )
    parser.add_argument(
        "--logits-bias", action=argparse.BooleanOptionalAction, help="add fc.bias to the logits (IS: usually not)"
    )
    args = parser.parse_args()
    config = convert(
        args.source,
        args.directory,
        args.variant,
        tf_preprocessing=args.tf_preprocessing,
        resize=args.resize,
        image_size=args.image_size,
        transform_input=args.transform_input,
        logits_bias=args.logits_bias,
    )
    print(f"wrote an inception backbone ({config.variant}, {config.num_classes} classes) to {args.directory}")
    print(json.dumps(config.to_json()))


if __name__ == "__main__":
    main()
