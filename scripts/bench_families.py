"""``python scripts/bench.py families``: ranking, fairness and corpus text metrics against their references.

Each part times, in this process and on the same arrays, evalpipe's statistics (the update a work unit runs,
batches of :data:`pipelines.job_statistics.BATCH_ROWS` rows, then the stored form and the compute) against the reference
library run once on all rows, fails if the values differ (beyond 1e-9; 1e-6 for torchmetrics, which computes in
float32), and reports the ratio and the size of the state:

* ``ranking``: ``--ranking-rows`` (1M) items in ``--queries`` (100k) queries; nDCG@10, MAP@10, precision@10,
  recall@10, MRR and hit rate@10 (one shared state). References: scikit-learn ``ndcg_score`` (one call on the
  ``[queries, items]`` matrix), torchmetrics ``RetrievalNormalizedDCG`` and ``RetrievalMRR`` (which keep every
  score).
* ``fairness``: ``--fairness-rows`` (1M) binary rows in 5 groups; the four fairness differences / ratios.
  Reference: fairlearn's functions of the same names.
* ``text``: ``--text-rows`` (1M) candidate / reference pairs; corpus BLEU and WER, each timed alone.
  References: ``sacrebleu.corpus_bleu``, ``jiwer.wer``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

TOLERANCE = 1e-9
FLOAT32_TOLERANCE = 1e-6
"""torchmetrics' retrieval metrics compute in float32."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", default="ranking,fairness,text", help="comma-separated: ranking, fairness, text")
    parser.add_argument("--ranking-rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--fairness-rows", type=int, default=1_000_000)
    parser.add_argument("--text-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _evalpipe(metrics: dict[str, Any], columns: dict[str, np.ndarray]) -> tuple[dict[str, float], int]:
    """Headline values of ``metrics`` over ``columns`` folded in worker-sized batches, and the stored states'
    bytes."""
    from evaluators.accumulate import Accumulator
    from pipelines.job_statistics import BATCH_ROWS

    acc = Accumulator.for_metrics(metrics.values())
    states = acc.zero()
    n = len(columns["targets"])
    for start in range(0, n, BATCH_ROWS):
        states = acc.update(states, {k: v[start : start + BATCH_ROWS] for k, v in columns.items()}, to_host=False)
    states = acc.to_host(states)
    size = sum(_nbytes(s) for s in states)
    return {key: float(m.compute(states[acc.index(m.statistic)])[""]) for key, m in metrics.items()}, size


def _nbytes(state: Any) -> int:
    if isinstance(state, dict):
        return sum(_nbytes(v) for v in state.values())
    if isinstance(state, tuple):
        return sum(_nbytes(v) for v in state)
    return int(np.asarray(state).nbytes)


def _part(name: str, ours: tuple[dict[str, float], int], ours_s: float, references: dict[str, tuple]) -> dict:
    values, state_bytes = ours
    out: dict[str, Any] = {"evalpipe_s": round(ours_s, 3), "state_bytes": state_bytes, "references": {}}
    for ref_name, (ref_values, seconds) in references.items():
        diffs = {k: abs(values[k] - v) for k, v in ref_values.items()}
        out["references"][ref_name] = {
            "seconds": round(seconds, 3),
            "ratio_evalpipe_over_reference": round(ours_s / seconds, 3),
            "max_abs_difference": max(diffs.values()),
        }
        tolerance = FLOAT32_TOLERANCE if ref_name == "torchmetrics" else TOLERANCE
        if max(diffs.values()) > tolerance:
            raise SystemExit(f"{name}: evalpipe's values differ from {ref_name}'s: {values} vs {ref_values}")
    out["values"] = values
    return {name: out}


def ranking(args: argparse.Namespace, rng: np.random.Generator) -> dict:
    import torch
    from sklearn.metrics import ndcg_score
    from torchmetrics.retrieval import RetrievalMRR, RetrievalNormalizedDCG

    from evaluators.catalog import build
    from evaluators.task import Task

    items = args.ranking_rows // args.queries
    relevance = ((rng.random((args.queries, items)) < 0.3) * rng.integers(1, 4, (args.queries, items))).astype(float)
    scores = rng.random((args.queries, items)) + 0.01  # torchmetrics counts an item with score <= 0 as irrelevant
    ids = np.repeat(np.arange(args.queries, dtype=np.int64), items)
    task = Task("ranking")
    names = {
        "ndcg@10": ("ndcg_at_k", 10),
        "map@10": ("mean_average_precision", 10),
        "precision@10": ("precision_at_k", 10),
        "recall@10": ("recall_at_k", 10),
        "mrr": ("mean_reciprocal_rank", None),
        "hit@10": ("hit_rate", 10),
    }
    metrics = {key: build(name, task, {"k": k}) for key, (name, k) in names.items()}
    columns = {"predictions": scores.ravel(), "targets": relevance.ravel(), "query_id": ids}
    ours, ours_s = _timed(lambda: _evalpipe(metrics, columns))
    sk, sk_s = _timed(lambda: {"ndcg@10": float(ndcg_score(relevance, scores, k=10))})

    def torchmetrics() -> dict[str, float]:
        preds, target = torch.tensor(scores.ravel()), torch.tensor(relevance.ravel() > 0)
        indexes = torch.tensor(ids)
        ndcg = RetrievalNormalizedDCG(top_k=10)(preds, torch.tensor(relevance.ravel()), indexes=indexes)
        return {"ndcg@10": float(ndcg), "mrr": float(RetrievalMRR()(preds, target, indexes=indexes))}

    tm, tm_s = _timed(torchmetrics)
    return _part("ranking", ours, ours_s, {"scikit-learn ndcg_score": (sk, sk_s), "torchmetrics": (tm, tm_s)})


def fairness(args: argparse.Namespace, rng: np.random.Generator) -> dict:
    from fairlearn import metrics as fl

    from evaluators.catalog import build
    from evaluators.task import Task

    n = args.fairness_rows
    groups = np.array(["DE", "FR", "JP", "US", "BR"], object)[rng.choice(5, n, p=[0.4, 0.2, 0.15, 0.15, 0.1])]
    y = (rng.random(n) < 0.3).astype(np.int64)
    predicted = ((rng.random(n) < 0.2 + 0.5 * y) ^ (groups == "JP") * (rng.random(n) < 0.1)).astype(np.int64)
    names = ("demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference")
    names += ("equal_opportunity_difference",)
    task = Task("binary", prediction="labels")
    metrics = {name: build(name, task) for name in names}
    ours, ours_s = _timed(lambda: _evalpipe(metrics, {"predictions": predicted, "targets": y, "sensitive": groups}))
    ref, ref_s = _timed(lambda: {m: float(getattr(fl, m)(y, predicted, sensitive_features=groups)) for m in names})
    return _part("fairness", ours, ours_s, {"fairlearn": (ref, ref_s)})


def text(args: argparse.Namespace, rng: np.random.Generator) -> dict:
    import jiwer
    import sacrebleu

    from evaluators.catalog import build
    from evaluators.task import Task

    words = np.array(
        [
            "the",
            "a",
            "cat",
            "dog",
            "sat",
            "ran",
            "on",
            "under",
            "mat",
            "house",
            "big",
            "small",
            "red",
            ",",
            ".",
            "!",
            "3.5",
            "naïve",
            "café",
        ],
        object,
    )
    n = args.text_rows
    lengths = rng.integers(3, 16, n)
    refs = [" ".join(rng.choice(words, k)) for k in lengths]
    hyps = [r if rng.random() < 0.3 else " ".join(rng.choice(words, k)) for r, k in zip(refs, lengths, strict=True)]
    task = Task("text")
    columns = {"predictions": np.asarray(hyps, object), "targets": np.asarray(refs, object)}
    bleu, bleu_s = _timed(lambda: _evalpipe({"bleu": build("bleu", task)}, columns))
    wer, wer_s = _timed(lambda: _evalpipe({"wer": build("wer", task)}, columns))
    bleu_ref = _timed(lambda: {"bleu": float(sacrebleu.corpus_bleu(hyps, [refs], force=True).score)})
    wer_ref = _timed(lambda: {"wer": float(jiwer.wer(refs, hyps))})
    return {
        **_part("text bleu", bleu, bleu_s, {"sacrebleu": bleu_ref}),
        **_part("text wer", wer, wer_s, {"jiwer": wer_ref}),
    }


PARTS = {"ranking": ranking, "fairness": fairness, "text": text}


def bench_families(args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {}
    for part in args.parts.split(","):
        out.update(PARTS[part.strip()](args, np.random.default_rng(args.seed)))
    return out
