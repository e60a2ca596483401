"""Backbone specs and the registry of backbone kinds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class BackboneSpec:
    """Which frozen backbone a job uses.

    Attributes:
        kind: registry name (``"bert"``: a BERT-family sentence encoder in Hugging Face layout).
        weights: directory URI (any fsspec URL) holding the checkpoint files.
        dtype: compute dtype of the matrix products, ``float32`` or ``bfloat16``.
        batch_size: rows per compiled call; batches are padded to it, so one shape per length bucket.
        max_length: longest token sequence kept (longer texts are truncated, as sentence-transformers does).
    """

    kind: str
    weights: str
    dtype: str = "float32"
    batch_size: int = 64
    max_length: int = 256

    def __post_init__(self) -> None:
        if self.kind not in BACKBONE_KINDS:
            raise ValueError(f"unknown backbone kind {self.kind!r}; known: {', '.join(sorted(BACKBONE_KINDS))}")
        if self.dtype not in DTYPES:
            raise ValueError(f"backbone dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not 1 <= self.batch_size <= 4096:
            raise ValueError(f"backbone batch_size must be from 1 to 4096, got {self.batch_size}")
        if not 8 <= self.max_length <= 4096:
            raise ValueError(f"backbone max_length must be from 8 to 4096, got {self.max_length}")


def _bert(spec: BackboneSpec) -> Any:
    from evaluators.backbones.bert import TextEncoder

    return TextEncoder.load(spec)


BACKBONE_KINDS: dict[str, Callable[[BackboneSpec], Any]] = {"bert": _bert}
"""Backbone kind -> loader (spec -> loaded backbone)."""


def load_backbone(spec: BackboneSpec) -> Any:
    """Load the backbone ``spec`` names (reads its weights once; the result is reused for every batch).

    A loaded backbone has ``extract(columns) -> {feature name: array [n, ...]}``, turning a batch's
    raw ``predictions`` / ``targets`` columns into the features its task's statistics read.
    """
    return BACKBONE_KINDS[spec.kind](spec)
