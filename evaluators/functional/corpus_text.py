"""Corpus text metrics as functions of candidate and reference strings (no backbone).

>>> round(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 6)
100.0
>>> wer(["a b c"], ["a x c d"])
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluators.functional._common import text_column, with_columns
from evaluators.task import Task, TaskKind


def _corpus(name: str, predictions: Sequence[str], targets: Sequence[str], weights: Any, params: dict) -> dict:
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} candidates for {len(targets)} references")
    w = None if weights is None else np.asarray(weights, np.float64)
    if not len(predictions) or (w is not None and not (w > 0).any() and (w >= 0).all()):
        # as a job whose files are all empty or whose weights are all 0 (sacrebleu fails on an empty corpus);
        # negative or NaN weights are left to the row checks
        raise ValueError(f"{name}: no row with a positive weight, the corpus score is undefined")
    columns = {
        "predictions": text_column("predictions", predictions),
        "targets": text_column("targets", targets),
        "weights": w,
    }
    return with_columns(name, Task(TaskKind.TEXT), columns, params)


def bleu(
    predictions: Sequence[str],
    targets: Sequence[str],
    *,
    max_order: int = 4,
    lowercase: bool = False,
    weights: Any = None,
) -> float:
    """Corpus BLEU in [0, 100] (sacrebleu's ``corpus_bleu(predictions, [targets])``)."""
    return float(_corpus("bleu", predictions, targets, weights, {"max_order": max_order, "lowercase": lowercase})[""])


def chrf(
    predictions: Sequence[str], targets: Sequence[str], *, char_order: int = 6, beta: float = 2.0, weights: Any = None
) -> float:
    """Corpus chrF in [0, 100] (sacrebleu's ``corpus_chrf(predictions, [targets])``)."""
    return float(_corpus("chrf", predictions, targets, weights, {"char_order": char_order, "beta": beta})[""])


def wer(predictions: Sequence[str], targets: Sequence[str], *, weights: Any = None) -> float:
    """Corpus word error rate (``jiwer.wer(targets, predictions)``)."""
    return float(_corpus("wer", predictions, targets, weights, {})[""])


def cer(predictions: Sequence[str], targets: Sequence[str], *, weights: Any = None) -> float:
    """Corpus character error rate (``jiwer.cer(targets, predictions)``)."""
    return float(_corpus("cer", predictions, targets, weights, {})[""])


def rouge_n(predictions: Sequence[str], targets: Sequence[str], *, n: int = 1, weights: Any = None) -> float:
    """Mean ROUGE-n F over pairs (rouge-score, no stemming)."""
    return float(_corpus("rouge_n", predictions, targets, weights, {"n": n})[""])


def rouge_l(predictions: Sequence[str], targets: Sequence[str], *, weights: Any = None) -> float:
    """Mean ROUGE-L F over pairs (rouge-score, no stemming)."""
    return float(_corpus("rouge_l", predictions, targets, weights, {})[""])


def distinct_n(
    predictions: Sequence[str], targets: Sequence[str] | None = None, *, n: int = 1, weights: Any = None
) -> float:
    """Distinct n-grams over all n-grams of the candidates (calibrax's ``distinct_n`` over the corpus); ``targets``
    are not read."""
    references = [""] * len(predictions) if targets is None else targets
    return float(_corpus("distinct_n", predictions, references, weights, {"n": n})[""])
