"""Image metrics as functions: ``(predictions, targets, backbone, **params)`` with generated and real images.

Images are encoded bytes (PNG/JPEG) or ``[n, S*S*3]`` pixel rows; ``backbone`` is a loaded image encoder
(``load_backbone(...)``) or a :class:`BackboneSpec` to load. The functions run the backbone's features
through the same statistics the pipeline merges.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluators.functional._common import backbone_metric
from evaluators.task import TaskKind


def _image_metric(name: str, predictions: Any, targets: Any, backbone: Any, **params: Any) -> dict[str, Any]:
    columns = {"predictions": np.asarray(predictions), "targets": np.asarray(targets)}
    return backbone_metric(name, TaskKind.IMAGE, columns, backbone, params)


def fid(predictions: Any, targets: Any, backbone: Any, *, dimension: int = 64) -> float:
    """Fréchet Inception Distance between the generated and real image feature distributions."""
    return float(_image_metric("fid", predictions, targets, backbone, dimension=dimension)[""])


def kid(predictions: Any, targets: Any, backbone: Any, *, dimension: int = 64, subset_size: int = 1000) -> float:
    """Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel) on the deterministic subset."""
    return float(_image_metric("kid", predictions, targets, backbone, dimension=dimension, subset_size=subset_size)[""])


def inception_score(predictions: Any, targets: Any, backbone: Any, *, classes: int = 10) -> float:
    """Inception Score of the generated images (one split); ``targets`` are read but do not enter it."""
    return float(_image_metric("inception_score", predictions, targets, backbone, classes=classes)[""])
