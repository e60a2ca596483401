"""A user backbone for the tests: letter frequencies as text embeddings (``kind: tests.user_backbones.LetterCounts``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def letter_counts(texts: Any) -> np.ndarray:
    """``[n, 26]`` float32: how often each of a-z occurs in each text (case-folded)."""
    out = np.zeros((len(texts), 26), np.float32)
    for i, text in enumerate(texts):
        codes = np.frombuffer(str(text).lower().encode("ascii", "ignore"), np.uint8).astype(np.int64) - ord("a")
        codes = codes[(codes >= 0) & (codes < 26)]
        out[i] = np.bincount(codes, minlength=26)
    return out


class LetterCounts:
    """Loaded once per worker by ``load(spec, read)``; ``extract`` gives the text metrics' embeddings."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    @classmethod
    def load(cls, spec: Any, read: Any) -> LetterCounts:
        return cls(1.0)

    def extract(self, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {
            "candidate": self.scale * letter_counts(columns["predictions"]),
            "reference": self.scale * letter_counts(columns["targets"]),
        }


def not_a_backbone(spec: Any, read: Any) -> object:
    return object()
