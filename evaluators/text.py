"""Text-pair metrics from a frozen sentence encoder: embedding similarity, BERTScore, Fréchet distance.

A ``text`` task has a candidate text column (``predictions``) and a reference text column
(``targets``). The worker runs the job's backbone once per batch (see :mod:`evaluators.features`)
and hands the statistics numeric features instead of strings:

* ``candidate`` / ``reference``: sentence embeddings ``[n, H]`` float32;
* ``bertscore``: per-row BERTScore ``[n, 3]`` (precision, recall, F1) from greedy matching of
  token embeddings (last layer, special tokens excluded);
* ``bertscore_idf``: the same with each token weighted by its idf over the job's reference texts
  (when a BERTScore metric sets ``idf: true``; the pipeline counts document frequencies first).

Statistics never keep features: per-row scores go into :class:`ScoreMoments` (count, exact
fixed-point sums, extremes and a histogram), embeddings into :class:`~evaluators.frechet.FeatureMoments`
(count, mean, centred co-moment matrix; Chan's parallel merge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.classification import require_kind
from evaluators.frechet import FeatureMoments, frechet_value
from evaluators.kernels import WeightBoundedSums, fixed_sum, from_fixed, scatter_add
from evaluators.lazyjax import jnp
from evaluators.statistic import (
    CORRELATION,
    NON_NEGATIVE,
    Batch,
    DerivedMetric,
    Direction,
    State,
    Statistic,
    merge_with_extremes,
    resample_with_extremes,
)
from evaluators.task import Task, TaskKind

HISTOGRAM_BINS = 400
"""Bins of the per-row score histogram over ``[-1, 1]`` (quantiles to 0.005)."""

_SCORES = {"cosine": None, "bertscore_precision": 0, "bertscore_recall": 1, "bertscore_f1": 2}


def row_scores(score: str, batch: Batch, idf: bool = False) -> jnp.ndarray:
    """Per-row score ``[n]`` in ``[-1, 1]``: cosine of the pair's embeddings, or a BERTScore column
    (``bertscore_idf`` with idf weighting)."""
    if score == "cosine":
        c, r = jnp.asarray(batch["candidate"], jnp.float32), jnp.asarray(batch["reference"], jnp.float32)
        norms = jnp.linalg.norm(c, axis=1) * jnp.linalg.norm(r, axis=1)
        return jnp.clip(jnp.sum(c * r, axis=1) / jnp.maximum(norms, 1e-12), -1.0, 1.0).astype(jnp.float64)
    return jnp.asarray(batch["bertscore_idf" if idf else "bertscore"], jnp.float64)[:, _SCORES[score]]


@dataclass(frozen=True)
class ScoreMoments(WeightBoundedSums, Statistic):
    """Distribution of a per-row score in ``[-1, 1]``.

    State: ``{"weight": float64, "sums": int64 [2, 2]`` (fixed-point sum of score and of its
    square), ``"lo"``/``"hi"``: float64 extremes, ``"histogram"``: float64 ``[HISTOGRAM_BINS]``}.
    """

    score: str
    idf: bool = False
    """BERTScore with each token weighted by its idf over the job's reference texts (feature ``bertscore_idf``)."""

    @property
    def features(self) -> tuple[str, ...]:  # type: ignore[override]
        if self.score == "cosine":  # embeddings alone: any backbone that gives candidate/reference serves
            return ("candidate", "reference")
        return ("candidate", "reference", "bertscore_idf" if self.idf else "bertscore")

    def zero(self) -> State:
        return {
            "weight": np.zeros((), np.float64),
            "sums": np.zeros((2, 2), np.int64),
            "lo": np.full((), np.inf),
            "hi": np.full((), -np.inf),
            "histogram": np.zeros(HISTOGRAM_BINS, np.float64),
        }

    def update(self, state: State, batch: Batch) -> State:
        s = row_scores(self.score, batch, self.idf)
        w = jnp.asarray(batch["weights"], jnp.float64)
        live = w > 0
        index = jnp.clip(((s + 1.0) / 2.0 * HISTOGRAM_BINS).astype(jnp.int32), 0, HISTOGRAM_BINS - 1)
        sums = jnp.stack([fixed_sum(w * s), fixed_sum(w * s * s)])
        return {
            "weight": state["weight"] + jnp.sum(w),
            "sums": state["sums"] + sums,
            "lo": jnp.minimum(state["lo"], jnp.min(jnp.where(live, s, jnp.inf))),
            "hi": jnp.maximum(state["hi"], jnp.max(jnp.where(live, s, -jnp.inf))),
            "histogram": state["histogram"] + scatter_add(HISTOGRAM_BINS, index, w),
        }

    @property
    def summed(self) -> str:  # type: ignore[override]
        return f"the {self.score} scores"

    def merge(self, a: State, b: State) -> State:
        merged = merge_with_extremes(a, b)
        self.refuse_state(merged)
        return merged

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        return resample_with_extremes(stacked, weights)


def histogram_quantile(state: State, q: float) -> float:
    """The ``q`` quantile (``0 < q < 1``) of the scores of a :class:`ScoreMoments` state: NumPy's
    ``percentile(..., method="inverted_cdf")`` (the smallest score whose share of the weight at or below it reaches
    ``q``) to within one bin (0.005): the first bin whose cumulative weight reaches ``q``, read at the share of that
    bin's weight ``q`` needs, and kept within the exact lowest and highest score. (Interpolating the cumulative
    histogram across empty bins put the median of two rows anywhere between them: 1.05 off on few rows.)"""
    counts = np.asarray(state["histogram"], np.float64)
    cdf = np.cumsum(counts) / max(float(counts.sum()), 1e-300)
    b = min(int(np.searchsorted(cdf, q * (1.0 - 1e-12))), HISTOGRAM_BINS - 1)  # (a share that rounds down: its bin)
    before = float(cdf[b - 1]) if b else 0.0
    share = float(np.clip((q - before) / max(float(cdf[b]) - before, 1e-300), 0.0, 1.0))
    value = -1.0 + (b + share) * (2.0 / HISTOGRAM_BINS)
    return float(np.clip(value, float(state["lo"]), float(state["hi"])))


def _score_summary(state: State) -> dict[str, float | np.ndarray]:
    weight = float(state["weight"])
    if weight <= 0:
        return {"": float("nan")}
    total, squares = from_fixed(np.asarray(state["sums"]))
    mean = total / weight
    variance = max(squares / weight - mean * mean, 0.0)
    quantiles = {q: histogram_quantile(state, q) for q in (0.1, 0.5, 0.9)}
    return {
        "": float(mean),
        ".std": float(np.sqrt(variance)),
        ".min": float(state["lo"]),
        ".max": float(state["hi"]),
        ".p10": quantiles[0.1],
        ".p50": quantiles[0.5],
        ".p90": quantiles[0.9],
    }


def _mean_only(state: State) -> dict[str, float]:
    return {"": _score_summary(state)[""]}


def _mean_and_std(state: State) -> dict[str, float | np.ndarray]:
    """The values that get bootstrap intervals (extremes and quantiles do not)."""
    summary = _score_summary(state)
    return {k: summary[k] for k in ("", ".std") if k in summary}


def _require_text(task: Task, name: str) -> None:
    require_kind(task, name, TaskKind.TEXT)


def embedding_similarity(task: Task) -> DerivedMetric:
    """Cosine similarity of candidate and reference sentence embeddings: mean, std, min, max, p10/p50/p90."""
    _require_text(task, "embedding_similarity")
    return DerivedMetric(
        "embedding_similarity", ScoreMoments("cosine"), _score_summary, Direction.HIGHER, interval_values=_mean_and_std
    )


def _bertscore(task: Task, name: str, idf: bool) -> DerivedMetric:
    _require_text(task, name)
    # precision and recall: means of cosine similarities; F1 (2PR / (P + R) per row) is unbounded where P + R nears 0
    bounds = None if name == "bertscore_f1" else CORRELATION
    return DerivedMetric(name, ScoreMoments(name, bool(idf)), _mean_only, Direction.HIGHER, value_range=bounds)


def bertscore_precision(task: Task, *, idf: bool = False) -> DerivedMetric:
    """Mean BERTScore precision (greedy token matching, last layer; ``idf``: tokens weighted by their idf
    over the job's reference texts)."""
    return _bertscore(task, "bertscore_precision", idf)


def bertscore_recall(task: Task, *, idf: bool = False) -> DerivedMetric:
    """Mean BERTScore recall (greedy token matching, last layer; ``idf`` as for precision)."""
    return _bertscore(task, "bertscore_recall", idf)


def bertscore_f1(task: Task, *, idf: bool = False) -> DerivedMetric:
    """Mean per-row BERTScore F1 (greedy token matching, last layer; ``idf`` as for precision)."""
    return _bertscore(task, "bertscore_f1", idf)


def frechet_embedding_distance(task: Task, *, dimension: int = 384) -> DerivedMetric:
    """Fréchet distance between the candidate and reference embedding distributions (lower is better)."""
    _require_text(task, "frechet_embedding_distance")
    stat = FeatureMoments(int(dimension))
    return DerivedMetric("frechet_embedding_distance", stat, frechet_value, Direction.LOWER, value_range=NON_NEGATIVE)
