"""``python scripts/bench.py fused``: the fused compiled update against the sum of its parts.

The binary suite's statistics that take the compiled update (log loss is folded with NumPy: see
:class:`~evaluators.calibration.LogLossSum`) are updated over the same ``--rows`` rows, in batches of the
262,144 rows a worker folds at once, by one accumulator holding all of them (the fused update, one program)
and by one accumulator per statistic; each compiled first, outside the timing. Rounds alternate the fused
update and the parts; the figures are the medians over ``--repeats`` rounds on one core (this process pins
itself, and XLA runs single-threaded). Goal: the fused update at most 1.1x the sum of its parts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np

BATCH_ROWS = 1 << 18


def _rows(rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y = (rng.random(rows) < 0.3).astype(np.int8)
    score = (1 / (1 + np.exp(-(rng.normal(size=rows) + 1.5 * y - 1.0)))).astype(np.float32)
    return {"predictions": score, "targets": y}


def _seconds(acc: Any, columns: dict[str, np.ndarray]) -> float:
    """Seconds to fold ``columns`` into a zero state, batch by batch, on the compiled path."""
    import jax

    n = len(columns["targets"])
    start = time.perf_counter()
    state = acc.zero()
    for first in range(0, n, BATCH_ROWS):
        batch = {k: v[first : first + BATCH_ROWS] for k, v in columns.items()}
        state = acc.update(state, batch, to_host=False)
    jax.block_until_ready(state)
    return time.perf_counter() - start


def bench_fused(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {args.cpu})
    from bench_suites import BINARY_METRICS

    from evaluators import catalog
    from evaluators.accumulate import Accumulator
    from evaluators.task import Task

    task = Task("binary")
    statistics_ = dict.fromkeys(catalog.build(name.strip(), task).statistic for name in BINARY_METRICS.split(","))
    device = [s for s in statistics_ if s.jittable]
    fused = Accumulator(device, host_rows=0)
    parts = {type(s).__name__: Accumulator([s], host_rows=0) for s in device}
    columns = _rows(args.rows)
    for acc in (fused, *parts.values()):  # compile every shape first
        _seconds(acc, {k: v[: 2 * BATCH_ROWS + 1000] for k, v in columns.items()})
    fused_s: list[float] = []
    part_s: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.repeats):
        fused_s.append(_seconds(fused, columns))
        for name, acc in parts.items():
            part_s[name].append(_seconds(acc, columns))
    medians = {name: statistics.median(s) for name, s in part_s.items()}
    sums = [sum(s[i] for s in part_s.values()) for i in range(args.repeats)]
    return {
        "rows": args.rows,
        "statistics": list(parts),
        "fused_s": statistics.median(fused_s),
        "parts_s": medians,
        "sum_of_parts_s": statistics.median(sums),
        "ratio": statistics.median(f / s for f, s in zip(fused_s, sums, strict=True)),
        "goal_ratio": 1.1,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cpu", type=int, default=0, help="the core this process pins itself to")
