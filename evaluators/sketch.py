"""Per-row scores of any range: count, moments, extremes and a mergeable relative-error quantile sketch.

The sketch is a fixed array of log-spaced buckets (as DDSketch): a value ``x`` with
``|x| >= MIN_MAGNITUDE`` goes to bucket ``ceil(log(|x|) / log(gamma))`` of its sign, with
``gamma = (1 + alpha) / (1 - alpha)``, so every quantile read from the sketch is within a relative
error ``alpha`` of a value of the data. Smaller magnitudes share a zero bucket; magnitudes beyond
``MAX_MAGNITUDE`` are clipped into the last bucket. Buckets are weights, so merging is addition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluators.kernels import scatter_add
from evaluators.lazyjax import jnp
from evaluators.statistic import Batch, State, Statistic, merge_with_extremes, resample_with_extremes

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
MIN_MAGNITUDE = 1e-9
MAX_MAGNITUDE = 1e12
_LOG_GAMMA = float(np.log(GAMMA))
_OFFSET = int(np.ceil(np.log(MIN_MAGNITUDE) / _LOG_GAMMA))
BUCKETS = int(np.ceil(np.log(MAX_MAGNITUDE) / _LOG_GAMMA)) - _OFFSET + 1
"""Buckets per sign (about 2,400 for alpha = 1%)."""


def bucket_of(values: jnp.ndarray) -> jnp.ndarray:
    """Sketch cell of each value: ``0`` zero bucket, ``1 + k`` positive bucket k, ``1 + BUCKETS + k`` negative."""
    magnitude = jnp.abs(values)
    k = jnp.clip(jnp.ceil(jnp.log(jnp.maximum(magnitude, MIN_MAGNITUDE)) / _LOG_GAMMA) - _OFFSET, 0, BUCKETS - 1)
    k = k.astype(jnp.int32)
    return jnp.where(magnitude < MIN_MAGNITUDE, 0, jnp.where(values > 0, 1 + k, 1 + BUCKETS + k))


def _bucket_values() -> np.ndarray:
    """Representative value of every cell: the midpoint (in relative terms) of its range."""
    k = np.arange(BUCKETS) + _OFFSET
    upper = GAMMA**k
    middle = 2 * upper / (1 + GAMMA)
    return np.concatenate([[0.0], middle, -middle])


def sketch_quantiles(cells: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Quantiles ``qs`` (in [0, 1]) of the values a sketch ``cells [1 + 2 BUCKETS]`` holds."""
    values = _bucket_values()
    order = np.argsort(values, kind="stable")
    weights = np.asarray(cells, np.float64)[order]
    total = weights.sum()
    if total <= 0:
        return np.full(len(qs), np.nan)
    cumulative = np.cumsum(weights)
    index = np.searchsorted(cumulative, np.asarray(qs) * total, side="left")
    return values[order][np.clip(index, 0, len(values) - 1)]


@dataclass(frozen=True)
class ScoreSketch(Statistic):
    """Summary of the per-row feature ``feature`` (``[n]`` float): weight, sum, sum of squares,
    extremes and the quantile sketch.

    State: ``{"weight": float64, "sums": float64 [2], "spread": float64, "lo", "hi": float64, "cells": float64
    [1 + 2 BUCKETS]}``: ``sums`` adds ``w x`` and ``w x^2``; ``spread`` is ``sum w (x - mean)^2`` about the state's own
    mean, computed per batch about the batch's mean and merged by Chan's formula, so that ``.std`` keeps its digits
    where the scores' mean dwarfs their spread (``x^2`` sums then cancel: N(1e8, 0.01) read 1.41). A state stored
    before ``spread`` reads ``.std`` from the sums, as it did.
    """

    feature: str

    @property
    def features(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.feature,)

    def zero(self) -> State:
        return {
            "weight": np.zeros((), np.float64),
            "sums": np.zeros(2, np.float64),
            "spread": np.zeros((), np.float64),
            "lo": np.full((), np.inf),
            "hi": np.full((), -np.inf),
            "cells": np.zeros(1 + 2 * BUCKETS, np.float64),
        }

    def update(self, state: State, batch: Batch) -> State:
        x = jnp.asarray(batch[self.feature], jnp.float64)
        w = jnp.asarray(batch["weights"], jnp.float64)
        live = w > 0
        weight, total = jnp.sum(w), jnp.sum(w * x)
        mean = jnp.where(weight > 0, total / jnp.where(weight > 0, weight, 1.0), 0.0)
        spread = jnp.sum(jnp.where(live, w * (x - mean) ** 2, 0.0))
        batch_state = {"weight": weight, "sums": jnp.stack([total, 0.0]), "spread": spread}
        return {
            "weight": state["weight"] + weight,
            "sums": state["sums"] + jnp.stack([total, jnp.sum(w * x * x)]),
            "spread": _merged_spread(state, batch_state, jnp),
            "lo": jnp.minimum(state["lo"], jnp.min(jnp.where(live, x, jnp.inf))),
            "hi": jnp.maximum(state["hi"], jnp.max(jnp.where(live, x, -jnp.inf))),
            "cells": state["cells"] + scatter_add(1 + 2 * BUCKETS, bucket_of(x), w),
        }

    def merge(self, a: State, b: State) -> State:
        if "spread" in a and "spread" in b:
            return {**merge_with_extremes(a, b), "spread": _merged_spread(a, b, np)}
        # a state stored before the spread, on either side: the merge reads .std from the sums, as that state did
        a, b = ({k: v for k, v in s.items() if k != "spread"} for s in (a, b))
        return merge_with_extremes(a, b)

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        replicates = resample_with_extremes(stacked, weights)
        if "spread" not in stacked:
            return replicates
        # each replicate's spread about its own mean: the buckets' spreads plus their means' distance to it, weighted
        w = np.asarray(weights, np.float64)
        weight = np.asarray(stacked["weight"], np.float64)
        bucket_mean = _mean(weight, np.asarray(stacked["sums"], np.float64)[:, 0], np)
        for b, replicate in enumerate(replicates):
            mean = _mean(replicate["weight"], replicate["sums"][0], np)
            replicate["spread"] = np.asarray(
                w[b] @ (np.asarray(stacked["spread"]) + weight * (bucket_mean - mean) ** 2)
            )
        return replicates


def _mean(weight: Any, total: Any, xp: Any) -> Any:
    """``total / weight``, 0 where the weight is 0."""
    return xp.where(weight > 0, total / xp.where(weight > 0, weight, 1.0), 0.0)


def _merged_spread(a: Mapping[str, Any], b: Mapping[str, Any], xp: Any) -> Any:
    """Chan's merge of two ``sum w (x - mean)^2`` about their own means (``sums``: ``[..., 2]``, ``sum w x`` first;
    states stacked on leading axes merge bucket by bucket)."""
    first, second = (xp.asarray(s["sums"])[..., 0] for s in (a, b))
    wa, wb = a["weight"], b["weight"]
    gap = _mean(wa, first, xp) - _mean(wb, second, xp)
    whole = wa + wb
    return a["spread"] + b["spread"] + xp.where(whole > 0, gap * gap * wa * wb / xp.where(whole > 0, whole, 1.0), 0.0)


def summary(state: State) -> dict[str, float]:
    """Mean (headline), ``.std``, ``.min``, ``.max``, ``.p10``, ``.p50``, ``.p90`` and ``.count``."""
    weight = float(state["weight"])
    if weight <= 0:
        return {"": float("nan"), ".count": 0.0}
    total, squares = (float(v) for v in state["sums"])
    mean = total / weight
    p10, p50, p90 = sketch_quantiles(state["cells"], np.array([0.1, 0.5, 0.9]))
    variance = float(state["spread"]) / weight if "spread" in state else squares / weight - mean * mean
    return {
        "": mean,
        ".std": float(np.sqrt(max(variance, 0.0))),
        ".min": float(state["lo"]),
        ".max": float(state["hi"]),
        ".p10": float(p10),
        ".p50": float(p50),
        ".p90": float(p90),
        ".count": weight,
    }


def mean_and_std(state: State) -> dict[str, float]:
    """The values that get bootstrap intervals."""
    values = summary(state)
    return {k: values[k] for k in ("", ".std") if k in values}
