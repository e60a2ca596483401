"""Metric functions with trlx's interface, used by the user-function tests (imported by dotted path)."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from evaluators.statistic import Statistic


def lengths(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """Words in the output, and whether the output repeats the reference given as an extra column."""
    reference = kwargs.get("reference", [""] * len(outputs))
    return {
        "output_words": [float(len(o.split())) for o in outputs],
        "exact": [float(o == r) for o, r in zip(outputs, reference, strict=True)],
        "sample_chars": [float(len(s)) for s in samples],
    }


def broken(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    return {"score": [1.0] * (len(samples) - 1)}


@dataclass(frozen=True)
class PositiveRate(Statistic):
    """Weighted fraction of rows whose prediction is above the threshold."""

    threshold: float = 0.5
    direction = "info"

    def zero(self):
        return (np.zeros((), np.float64), np.zeros((), np.float64))

    def update(self, state, batch):
        weight, above = state
        w = jnp.asarray(batch["weights"], jnp.float64)
        p = jnp.asarray(batch["predictions"], jnp.float64)
        return weight + jnp.sum(w), above + jnp.sum(w * (p > self.threshold))

    def finalize(self, state):
        weight, above = state
        return {"": float(above / weight) if weight > 0 else float("nan"), ".rows": float(weight)}


def stall_once(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """Output lengths; the first call anywhere writes its process id to ``<marker>/started`` and then stalls,
    so that a test can kill that worker mid-unit. Later calls (the retry) return at once."""
    import os
    import time
    from pathlib import Path

    started = Path(kwargs["marker"][0]) / "started"
    try:
        with open(started, "x") as handle:
            handle.write(str(os.getpid()))
    except FileExistsError:
        return {"words": [float(len(o.split())) for o in outputs]}
    time.sleep(120)
    raise RuntimeError("this worker should have been killed")
