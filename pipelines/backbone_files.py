"""A backbone's checkpoint files, read through fsspec (local paths, ``s3://``, ``gs://``...)."""

from __future__ import annotations

from typing import Any

import fsspec

from evaluators.backbones import BACKBONE_KINDS, BackboneSpec, Reader, load_backbone
from evaluators.backbones.base import BackboneSettingError
from pipelines.errors import SpecError, is_transient_error


def fsspec_reader(root: str) -> Reader:
    """Checkpoint files under ``root`` (any fsspec URL; ``""``: ``root`` itself)."""

    def read(name: str) -> bytes:
        with fsspec.open(f"{root.rstrip('/')}/{name}" if name else root, "rb") as handle:
            return handle.read()

    return read


def load_job_backbone(spec: BackboneSpec) -> Any:
    """The job's backbone, its files read from ``spec.weights``. A built-in kind's checkpoint that does not load
    (a truncated file, tensors of other shapes than its config says) is a :class:`SpecError` naming
    ``backbone.weights`` (exit 2, not retried); an error reading it that may pass is raised as it is."""
    try:
        return load_backbone(spec, fsspec_reader(spec.weights))
    except BackboneSettingError as exc:
        raise SpecError(f"{exc}.") from None
    except Exception as exc:
        if spec.kind not in BACKBONE_KINDS or is_transient_error(exc):
            raise
        raise SpecError(
            f"backbone.weights {spec.weights!r}: the {spec.kind} checkpoint does not load ({type(exc).__name__}: "
            f"{exc}); check that its files are whole and belong together."
        ) from None
