"""One-pass Poisson bootstrap over hash buckets of stable row keys.

Every row gets a key: the ``data.columns.row_id`` value, or (file URL, row
position in the file) when there is no id column; in a ranking job, its query id
(:func:`key_role`), so that a query's rows share a bucket and replicates resample
whole queries. The key's 64-bit hash
(SplitMix64 of the key and the seed) puts the row in one of ``G`` buckets;
each work unit keeps one statistic state per (slice, bucket). Replicate ``b``
weights bucket ``g`` by ``W[b, g] ~ Poisson(1)`` drawn from the seed, so
replicate states are weighted sums of bucket states and need no second pass.

Buckets are random partitions of the rows, so re-weighting whole buckets is a
valid Poisson bootstrap of the row sample (a cluster bootstrap with
exchangeable clusters); with ``G = 128`` the interval's width varies by about
``sqrt(2/G)`` = 12% between seeds. Rows are assigned by key alone, so the
result does not depend on sharding, unit boundaries, runner, actor count or
retries.
"""

from __future__ import annotations

import hashlib

import numpy as np

from evaluators.adapters import adapter_for
from evaluators.task import Task

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def key_role(task: Task) -> str:
    """The ``data.columns`` role whose values key the buckets (the task adapter's): ``query_id`` for ranking
    tasks (their statistics are sums over queries), else ``row_id``."""
    return adapter_for(task).bucket_key_role


def row_keys(ids: np.ndarray | None, path: str, first_row: int, n: int) -> np.ndarray:
    """uint64 key of each row: from the id column, else from (file, row position)."""
    if ids is None:
        base = np.uint64(_text_hash(path))
        with np.errstate(over="ignore"):
            return splitmix64(np.arange(first_row, first_row + n, dtype=np.uint64) ^ base)
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64).view(np.uint64)
    if ids.dtype.kind == "f":
        return ids.astype(np.float64).view(np.uint64)
    uniq, inverse = np.unique(ids.astype(str), return_inverse=True)
    return np.array([_text_hash(u) for u in uniq], dtype=np.uint64)[inverse.reshape(-1)]


def buckets(keys: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Bucket in ``[0, count)`` of each key."""
    return (splitmix64(keys ^ splitmix64(np.array([seed], dtype=np.uint64))[0]) % np.uint64(count)).astype(np.int64)


DIGEST_MODULUS = 1 << 64


def key_digest(keys: np.ndarray) -> int:
    """An order-free digest of rows' uint64 ``keys``: the sum of their hashes modulo ``2**64``, so that the digest
    of rows split among units is the sum of the units' (and two runs over other rows almost surely differ)."""
    with np.errstate(over="ignore"):
        return int(np.sum(splitmix64(np.asarray(keys, np.uint64)), dtype=np.uint64))


def poisson_weights(replicates: int, count: int, seed: int) -> np.ndarray:
    """``[replicates, count]`` Poisson(1) weights, fixed by the seed."""
    return np.random.default_rng([seed, 0x5EED]).poisson(1.0, (replicates, count)).astype(np.float64)


def basic_interval(values: np.ndarray, level: float, estimate: float, centre: float) -> tuple[float, float]:
    """Basic (reflected) bootstrap interval ``[2 t - q_hi, 2 t - q_lo]``.

    ``t`` is the estimate; the replicate quantiles are taken relative to ``centre``, the
    replicates' own full-data value (equal to ``t`` unless replicates use a coarser statistic).
    Reflecting corrects the first-order bias of estimators such as the binned calibration
    error, whose replicates overshoot the estimate as the estimate overshoots the truth.
    """
    finite = values[np.isfinite(values)]
    if len(finite) < 2 or not np.isfinite(estimate):
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite - centre, [alpha, 1.0 - alpha])
    return float(estimate - hi), float(estimate - lo)


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile bootstrap interval ``[q_lo, q_hi]`` of replicate values (non-finite ones dropped)."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
