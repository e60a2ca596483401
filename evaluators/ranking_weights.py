"""Whether the weights of ranking rows can be counted in the fixed point of
:class:`~evaluators.ranking_statistics.ScoreHistogram` (units of ``2**-32`` in int64): not too heavy for a batch,
and not all too light to count at all."""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluators.kernels import FIXED_SUM_LIMIT, WeightRangeError, array_namespace
from evaluators.ranking_cells import SCALE_ADVICE, WEIGHT_BITS
from evaluators.statistic import State

BATCH_WEIGHT_LIMIT = FIXED_SUM_LIMIT
"""The rows of one batch folded into a ranking state weigh less than this in all: ``2**31`` times ``2**WEIGHT_BITS`` is
``2**63``, so no sum of a batch's fixed-point weights leaves int64, and a cell that does while batches and states add
up turns negative (checked: :func:`~evaluators.ranking_cells.check_counts`)."""


def check_batch_weights(weights: np.ndarray) -> None:
    """Refuse a batch whose ``weights`` (float64 ``[n]``, finite, ``>= 0``) sum to :data:`BATCH_WEIGHT_LIMIT` or
    more. (A positive weight below ``2**-33`` rounds to 0: counted in ``rounded`` and covered by the bound.)"""
    with np.errstate(over="ignore"):
        total = float(np.sum(weights))
    if not total < BATCH_WEIGHT_LIMIT:
        amount = f"{total:.6g}" if np.isfinite(total) else "more than float64 holds (1.8e308)"
        raise WeightRangeError(f"the rows of one batch weigh {amount} in all; {SCALE_ADVICE}")


def check_counted(state: State) -> None:
    """Refuse a stored state whose rows all had weights that rounded to 0 (below ``2**-33``): it counts no weight,
    so its values would be NaN where the rows define them."""
    counts = np.asarray(state["counts"])
    if "rounded" in state and not counts.any() and np.asarray(state["rounded"]).any():
        raise WeightRangeError(
            "every weight of these rows is below 2^-33, so none counts in ROC-AUC or average precision (their value "
            "would be NaN; they count weights exactly, in units of 2^-32); both metrics, and every weighted mean, are "
            "unchanged when all weights are multiplied by the same number: divide them by their mean, for instance"
        )


def fixed_weights(w: Any) -> Any:
    """Row weights (float, NumPy or JAX) -> int64 counts in units of ``2**-WEIGHT_BITS``."""
    xp = array_namespace(w)
    return xp.round(w.astype(xp.float64) * 2.0**WEIGHT_BITS).astype(xp.int64)
