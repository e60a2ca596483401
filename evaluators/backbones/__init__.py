"""Frozen feature extractors (backbones): loaded once per worker, applied by a jit-compiled pure function.

A backbone is described by a :class:`BackboneSpec` (``kind``, ``weights`` URI, ``dtype``,
``batch_size``); :func:`load_backbone` builds it from the registry of kinds, reading its files
through a :data:`Reader` (the pipeline's reads any fsspec URL).
Parameters are plain arrays that no function differentiates: the backbone is frozen.
"""

from __future__ import annotations

from evaluators.backbones.base import BACKBONE_KINDS, BackboneSpec, Reader, load_backbone, local_reader

__all__ = ["BACKBONE_KINDS", "BackboneSpec", "Reader", "load_backbone", "local_reader"]
