"""A backbone's checkpoint files, read through fsspec (local paths, ``s3://``, ``gs://``...)."""

from __future__ import annotations

import fsspec

from evaluators.backbones import Reader


def fsspec_reader(root: str) -> Reader:
    """Checkpoint files under ``root`` (any fsspec URL; ``""``: ``root`` itself)."""

    def read(name: str) -> bytes:
        with fsspec.open(f"{root.rstrip('/')}/{name}" if name else root, "rb") as handle:
            return handle.read()

    return read
