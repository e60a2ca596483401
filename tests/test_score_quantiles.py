"""The ``.p10/.p50/.p90`` of per-row scores read off mergeable states: NumPy's ``inverted_cdf`` percentile (a score
of the rows) to within the state's resolution, on few rows too, weighted or not."""

from __future__ import annotations

import numpy as np
import pytest

from evaluators.text import HISTOGRAM_BINS, histogram_quantile


def _state(scores: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    index = np.clip(((scores + 1.0) / 2.0 * HISTOGRAM_BINS).astype(int), 0, HISTOGRAM_BINS - 1)
    return {"lo": scores.min(), "hi": scores.max(), "histogram": np.bincount(index, weights, minlength=HISTOGRAM_BINS)}


@pytest.mark.parametrize("weighted", [False, True])
def test_histogram_quantiles_are_numpys_inverted_cdf_within_one_bin(weighted) -> None:
    # interpolating the cumulative histogram across its empty bins put the median of two rows anywhere between them
    # (1.05 off the inverted-CDF value; a 9-row job's p10 read 0.35 where the rows' lowest scores were near 0.5)
    rng = np.random.default_rng(7)
    for _ in range(2_000):
        n = int(rng.integers(1, 200))
        scores = np.clip(rng.normal(rng.uniform(-0.5, 0.8), rng.uniform(0.001, 0.5), n), -1, 1)
        weights = rng.choice([0.5, 1.0, 3.0], n) if weighted else np.ones(n)
        state = _state(scores, weights)
        for q in (0.1, 0.5, 0.9):
            expected = np.percentile(scores, 100 * q, method="inverted_cdf", weights=weights)
            assert abs(histogram_quantile(state, q) - expected) <= 2.0 / HISTOGRAM_BINS + 1e-12
            assert scores.min() <= histogram_quantile(state, q) <= scores.max()


def test_two_rows_have_the_lower_one_as_their_median() -> None:
    state = _state(np.array([0.2, 0.9]), np.ones(2))
    assert histogram_quantile(state, 0.5) == pytest.approx(0.2, abs=2.0 / HISTOGRAM_BINS + 1e-12)
