"""Text-pair metrics as functions: ``(predictions, targets, backbone)`` with candidate and reference strings.

``backbone`` is a loaded encoder (``load_backbone(...)``), or a :class:`BackboneSpec` to load. The
functions run the backbone's features through the same statistics the pipeline merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evaluators.backbones.bert import idf_weights
from evaluators.functional._common import backbone_metric, text_column
from evaluators.task import TaskKind


def _text_metric(
    name: str, predictions: Sequence[str], targets: Sequence[str], backbone: Any, idf: bool = False
) -> dict[str, Any]:
    columns = {
        "predictions": list(text_column("predictions", predictions)),
        "targets": list(text_column("targets", targets)),
    }
    if not idf:
        return backbone_metric(name, TaskKind.TEXT, columns, backbone)

    def extract(encoder: Any) -> dict[str, Any]:
        weights = idf_weights(encoder.document_frequency(columns["targets"]), len(columns["targets"]))
        return encoder.extract(columns, idf=weights)

    return backbone_metric(name, TaskKind.TEXT, columns, backbone, {"idf": True}, extract)


def embedding_similarity(predictions: Sequence[str], targets: Sequence[str], backbone: Any) -> float:
    """Mean cosine similarity of candidate and reference sentence embeddings."""
    return float(_text_metric("embedding_similarity", predictions, targets, backbone)[""])


def bertscore_precision(predictions: Sequence[str], targets: Sequence[str], backbone: Any, idf: bool = False) -> float:
    """Mean BERTScore precision (greedy matching of last-layer token embeddings); ``idf``: tokens weighted by
    their idf over ``targets`` (torchmetrics' ``BERTScore(idf=True)``)."""
    return float(_text_metric("bertscore_precision", predictions, targets, backbone, idf)[""])


def bertscore_recall(predictions: Sequence[str], targets: Sequence[str], backbone: Any, idf: bool = False) -> float:
    """Mean BERTScore recall."""
    return float(_text_metric("bertscore_recall", predictions, targets, backbone, idf)[""])


def bertscore_f1(predictions: Sequence[str], targets: Sequence[str], backbone: Any, idf: bool = False) -> float:
    """Mean per-pair BERTScore F1."""
    return float(_text_metric("bertscore_f1", predictions, targets, backbone, idf)[""])


def frechet_embedding_distance(predictions: Sequence[str], targets: Sequence[str], backbone: Any) -> float:
    """Fréchet distance between the candidate and reference embedding distributions."""
    return float(_text_metric("frechet_embedding_distance", predictions, targets, backbone)[""])
