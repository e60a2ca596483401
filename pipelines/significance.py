"""Significance of a metric difference, from stored bootstrap replicates.

Replicate ``b`` of every metric, slice and run weights hash bucket ``g`` by the same Poisson
draw ``W[b, g]`` (fixed by ``confidence.seed``), and a row's bucket depends only on its key. So:

* two runs over the same rows with the same ``confidence`` settings and row keys have *paired*
  replicates: ``a*_b - b*_b`` is a bootstrap replicate of the difference, resampling rows jointly;
* two slices of one run are resampled jointly too (overlapping or not).

The test is the two-sided bootstrap test of "no difference": the replicate differences, shifted
to mean zero, are the null distribution of the observed difference ``d``;
``p = (1 + #{|D*_b - mean(D*)| >= |d|}) / (B + 1)``. It needs ``confidence.samples: true``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines.records import Metric, Run, SignificanceResult

METHOD = "paired_bootstrap"


def bootstrap_difference_test(first: Metric, second: Metric, alpha: float = 0.05) -> SignificanceResult:
    """Test ``first.value == second.value`` from paired replicate samples.

    Returns ``effect_size = first.value - second.value``, ``statistic`` = that difference over the
    replicates' standard deviation (a z-like score), the p-value above, and ``p < alpha``. NaN p-value and
    statistic (not significant) where fewer than two replicate differences are finite, the difference is not, or
    either side is a point of one resampled unit (its interval NaN: a slice of one row).
    """
    if first.samples is None or second.samples is None:
        raise ValueError("both metrics need bootstrap replicate samples (confidence.samples: true)")
    a, b = np.asarray(first.samples, np.float64), np.asarray(second.samples, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"replicate counts differ ({a.size} vs {b.size}): the runs were not bootstrapped alike")
    differences = a - b
    differences = differences[np.isfinite(differences)]
    effect = float(first.value - second.value)
    if differences.size < 2 or not np.isfinite(effect) or _one_unit(first) or _one_unit(second):
        return SignificanceResult(float("nan"), float("nan"), effect, False, METHOD)
    spread = float(np.std(differences, ddof=1))
    centred = np.abs(differences - differences.mean())
    p_value = float((1 + np.count_nonzero(centred >= abs(effect))) / (differences.size + 1))
    statistic = effect / spread if spread > 0 else (0.0 if effect == 0 else float("inf") * np.sign(effect))
    return SignificanceResult(p_value, float(statistic), effect, p_value < alpha, METHOD)


def smallest_p_value(replicates: int) -> float:
    """The smallest p-value of :func:`bootstrap_difference_test` over ``replicates`` replicates: ``1 / (B + 1)``."""
    return 1.0 / (replicates + 1)


def unreachable_alpha(alpha: float, replicates: int) -> str | None:
    """Why no paired test of ``replicates`` replicates can reach ``p < alpha`` (a regression gate at that ``alpha``
    would never fire), or None where one can."""
    if replicates <= 0 or alpha > smallest_p_value(replicates):
        return None
    needed = math.floor(1 / alpha)
    needed += smallest_p_value(needed) >= alpha
    return (
        f"{alpha:g} cannot be reached with {replicates} bootstrap replicates: the smallest p-value they give is "
        f"1/{replicates + 1} = {smallest_p_value(replicates):.3g}, so no difference could ever be significant and the "
        f"gate would never fire; raise it above that, or run with confidence.replicates of at least {needed}"
    )


def _one_unit(metric: Metric) -> bool:
    """Whether ``metric`` is of a point whose rows are one resampled unit (a slice of one row): a value and finite
    replicates but a NaN interval (see :func:`pipelines.reduce.build_points`). Its replicates are that unit's state
    scaled, so they say nothing of its variability, and a difference involving it cannot be tested."""
    if metric.lower is None or metric.upper is None or metric.samples is None or not np.isfinite(metric.value):
        return False
    return bool(np.isnan(metric.lower) and np.isnan(metric.upper) and np.isfinite(metric.samples).any())


PAIRING_KEYS = ("seed", "buckets", "replicates", "row_key")


def pairing(run: Run) -> Mapping[str, Any]:
    """The bootstrap settings that make replicates of two runs paired (from run metadata)."""
    found = run.metadata.get("bootstrap")
    if not found:
        raise ValueError(f"run {run.id} has no bootstrap intervals (set `confidence:` in the job)")
    return {k: found.get(k) for k in PAIRING_KEYS}


def over_other_rows(first: Run, second: Run) -> bool:
    """Whether both runs record a digest of their rows' keys (``metadata.rows_digest``) and the two differ: their
    replicates weigh unrelated rows alike, so they are not paired."""
    digests = first.metadata.get("rows_digest"), second.metadata.get("rows_digest")
    return None not in digests and digests[0] != digests[1]


def compare_runs(
    first: Run, second: Run, metric: str, point: str = "overall", alpha: float = 0.05
) -> SignificanceResult:
    """Paired test of ``metric`` on ``point`` between two runs over the same rows."""
    x, y = first.point(point), second.point(point)
    compared = x.metrics[metric], y.metrics[metric]  # (an unknown name first: a typo says so, not a pairing)
    a, b = pairing(first), pairing(second)
    if a != b:
        raise ValueError(
            f"runs {first.id} and {second.id} were bootstrapped differently ({dict(a)} vs {dict(b)}); "
            "paired comparison needs the same confidence seed, buckets, replicates and row key"
        )
    if over_other_rows(first, second):
        raise ValueError(
            f"runs {first.id} and {second.id} are over different rows (their row keys' digests, metadata.rows_digest, "
            f"differ: {first.metadata['rows_digest']} vs {second.metadata['rows_digest']}); a paired comparison needs "
            "the same rows"
        )
    if x.metrics["rows"].value != y.metrics["rows"].value:
        raise ValueError(
            f"point {point!r} has {x.metrics['rows'].value:.0f} rows in run {first.id} and "
            f"{y.metrics['rows'].value:.0f} in run {second.id}: a paired comparison needs the same rows"
        )
    return bootstrap_difference_test(*compared, alpha)


def compare_slices(run: Run, metric: str, first: str, second: str, alpha: float = 0.05) -> SignificanceResult:
    """Test of ``metric`` between two points (slices) of one run; their replicates share row weights."""
    pairing(run)
    return bootstrap_difference_test(run.point(first).metrics[metric], run.point(second).metrics[metric], alpha)
