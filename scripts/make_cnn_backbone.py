"""Write a small deterministic CNN image backbone (random weights from a seed) for tests and the example job.

python scripts/make_cnn_backbone.py models/cnn-32 --seed 0

The directory gets ``config.json`` and ``model.safetensors`` (whose header metadata also carries the config, so
the file alone is a complete checkpoint): 3 conv layers (3 -> 32 -> 64 -> 64 channels, 3 x 3 kernels), 64
features, 10 classes, 32 x 32 RGB input normalised to [-1, 1]. Weights are random from the seed; the head's bias
centres each class logit over seeded synthetic images, so the classes are used evenly. See
:mod:`evaluators.backbones.cnn`.
"""

from __future__ import annotations

import argparse

import numpy as np

from evaluators.backbones.cnn import CnnConfig, encode_images, load_params, write_checkpoint

DEFAULT_CONFIG = CnnConfig(image_size=32, channels=(32, 64, 64), kernel_size=3, num_classes=10)


def random_tensors(config: CnnConfig, seed: int) -> dict[str, np.ndarray]:
    """He-normal conv kernels with small positive biases, a head scaled to logits of O(1) (bias set later).

    Tensors in PyTorch layout, float32.
    """
    rng = np.random.default_rng(seed)
    k = config.kernel_size
    tensors: dict[str, np.ndarray] = {}
    previous = 3
    for i, width in enumerate(config.channels):
        fan_in = previous * k * k
        tensors[f"conv{i}.weight"] = rng.normal(0.0, np.sqrt(2.0 / fan_in), (width, previous, k, k)).astype(np.float32)
        tensors[f"conv{i}.bias"] = rng.uniform(0.0, 0.1, width).astype(np.float32)
        previous = width
    d = config.feature_dim
    tensors["fc.weight"] = rng.normal(0.0, 4.0 / np.sqrt(d), (config.num_classes, d)).astype(np.float32)
    tensors["fc.bias"] = np.zeros(config.num_classes, np.float32)
    return tensors


def calibrate_head(tensors: dict[str, np.ndarray], config: CnnConfig, seed: int, rows: int = 512) -> None:
    """Set ``fc.bias`` so that every class's logit averages 0 over seeded synthetic images (balanced classes)."""
    from pipelines.synthetic import synthetic_images

    params = load_params(tensors, config)
    images = synthetic_images(np.random.default_rng(seed + 1), rows, config.image_size)
    features, _ = encode_images(params, images, config=config)
    tensors["fc.bias"] = -(np.asarray(features, np.float64).mean(axis=0) @ tensors["fc.weight"].T.astype(np.float64))
    tensors["fc.bias"] = tensors["fc.bias"].astype(np.float32)


def write_backbone(directory: str, seed: int = 0, config: CnnConfig = DEFAULT_CONFIG) -> str:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``; returns the directory."""
    tensors = random_tensors(config, seed)
    calibrate_head(tensors, config, seed)
    return write_checkpoint(directory, config.to_json(), tensors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_backbone(args.directory, args.seed)
    print(f"wrote a CNN backbone (seed {args.seed}) to {args.directory}")


if __name__ == "__main__":
    main()
