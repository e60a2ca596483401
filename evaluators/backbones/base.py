"""Backbone specs and the registry of backbone kinds."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Reader = Callable[[str], bytes]
"""``read(name) -> bytes``: a checkpoint file by its name relative to ``BackboneSpec.weights`` (``""``:
the weights URI itself). Raises ``FileNotFoundError`` for a missing file. The pipeline passes one
that reads through fsspec (``s3://``, ``gs://``...); evaluators itself touches no storage library."""


def local_reader(root: str) -> Reader:
    """A :data:`Reader` over a local directory (or file, for ``name == ""``)."""

    def read(name: str) -> bytes:
        return (Path(root) / name if name else Path(root)).read_bytes()

    return read


DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class BackboneSpec:
    """Which frozen backbone a job uses.

    Attributes:
        kind: registry name (``"bert"``: a BERT-family sentence encoder in Hugging Face layout;
            ``"cnn"``: a small convolutional image encoder, see :mod:`evaluators.backbones.cnn`;
            ``"inception"``: InceptionV3, torchvision's or the TF-FID one, for standard FID / KID / Inception
            Score, see :mod:`evaluators.backbones.inception`); or the dotted path of your own backbone,
            ``package.module.Class`` (see :func:`load_backbone`).
        weights: directory URI (any fsspec URL) holding the checkpoint files (``cnn``, ``inception``: or the
            weights file itself).
        dtype: compute dtype of the matrix products, ``float32`` or ``bfloat16``.
        batch_size: rows per compiled call; batches are padded to it, so one shape per length bucket.
        max_length: longest token sequence kept (longer texts are truncated); text backbones only. None: the
            checkpoint's, as sentence-transformers reads it (``max_seq_length`` of ``sentence_bert_config.json``,
            else 256); a number is kept as given, up to the model's positions (BERTScore's bert-score truncates
            at those, 512 for BERT).
    """

    kind: str
    weights: str
    dtype: str = "float32"
    batch_size: int = 64
    max_length: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in BACKBONE_KINDS and not is_dotted_path(self.kind):
            raise ValueError(
                f"unknown backbone kind {self.kind!r}; known: {', '.join(sorted(BACKBONE_KINDS))}, or the dotted path "
                "of your own backbone class (package.module.Class)"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"backbone dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not 1 <= self.batch_size <= 4096:
            raise ValueError(f"backbone batch_size must be from 1 to 4096, got {self.batch_size}")
        if self.max_length is not None and not 8 <= self.max_length <= 4096:
            raise ValueError(f"backbone max_length must be from 8 to 4096, got {self.max_length}")


def _bert(spec: BackboneSpec, read: Reader) -> Any:
    from evaluators.backbones.bert import TextEncoder

    return TextEncoder.load(spec, read)


def _cnn(spec: BackboneSpec, read: Reader) -> Any:
    from evaluators.backbones.cnn import ImageEncoder

    return ImageEncoder.load(spec, read)


def _inception(spec: BackboneSpec, read: Reader) -> Any:
    from evaluators.backbones.inception import InceptionEncoder

    return InceptionEncoder.load(spec, read)


BACKBONE_KINDS: dict[str, Callable[[BackboneSpec, Reader], Any]] = {"bert": _bert, "cnn": _cnn, "inception": _inception}
"""Backbone kind -> loader ((spec, read) -> loaded backbone)."""


class BackboneSettingError(ValueError):
    """A backbone setting of the job (``backbone.max_length``) that its checkpoint cannot take."""


BACKBONE_INPUTS = {"bert": "text", "cnn": "image", "inception": "image"}
"""Backbone kind -> the task kind whose rows it encodes (a text encoder reads strings, the image encoders images)."""


def is_dotted_path(kind: str) -> bool:
    """Whether a backbone kind names a user backbone (``package.module.Class`` or ``package.module:Class``)."""
    module, _, attribute = kind.partition(":") if ":" in kind else kind.rpartition(".")
    return bool(module) and bool(attribute) and all(part.isidentifier() for part in [*module.split("."), attribute])


def user_backbone_loader(kind: str) -> Callable[[BackboneSpec, Reader], Any]:
    """The loader of a user backbone: the class's ``load(spec, read)`` classmethod, or the callable itself
    (``(spec, read) -> backbone``). The job spec checks the module against the allowed prefixes first."""
    module, _, attribute = kind.partition(":") if ":" in kind else kind.rpartition(".")
    found = getattr(importlib.import_module(module), attribute)
    loader = getattr(found, "load", found)
    if not callable(loader):
        raise TypeError(f"backbone {kind!r} is neither a class with load(spec, read) nor a callable")
    return loader


def load_backbone(spec: BackboneSpec, read: Reader | None = None) -> Any:
    """Load the backbone ``spec`` names (reads its weights once; the result is reused for every batch).

    A loaded backbone has ``extract(columns) -> {feature name: array [n, ...]}``, turning a batch's
    raw ``predictions`` / ``targets`` columns into the features its task's statistics read (text metrics read
    ``candidate`` / ``reference`` embeddings ``[n, D]``; image metrics also ``candidate_logits`` and the rows'
    ``candidate_key`` / ``reference_key``). ``read`` fetches checkpoint files (default: the local filesystem).
    A user backbone (``kind: package.module.Class``) is built by ``Class.load(spec, read)``.
    """
    loader = BACKBONE_KINDS.get(spec.kind) or user_backbone_loader(spec.kind)
    backbone = loader(spec, read or local_reader(spec.weights))
    if not callable(getattr(backbone, "extract", None)):
        raise TypeError(f"backbone {spec.kind!r} loaded an object without extract(columns) -> features")
    return backbone
