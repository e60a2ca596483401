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


def paired(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[list[float]]]:
    """Two scores per pair of rows: as many numbers as rows (for an even count), in the wrong shape."""
    return {"score": [[float(len(a)), float(len(b))] for a, b in zip(samples[::2], samples[1::2], strict=False)]}


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


def _actor_name() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_actor_name() or ""
    except Exception:
        return ""


def _stall_first(marker: str, mark: str, outputs: list[str], what: str) -> dict[str, list[float]]:
    """The first call anywhere writes ``mark`` to ``<marker>/started`` and stalls (for 120 s, until a test
    removes ``what``); later calls return the words per output at once."""
    import time
    from pathlib import Path

    try:
        with open(Path(marker) / "started", "x") as handle:
            handle.write(mark)
    except FileExistsError:
        return {"words": [float(len(o.split())) for o in outputs]}
    time.sleep(120)
    raise RuntimeError(f"this {what} should have been removed")


def stall_once_named(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """As :func:`stall_once`, but ``<marker>/started`` holds the Ray actor's name (for ``ray.kill``)."""
    return _stall_first(kwargs["marker"][0], _actor_name(), outputs, "actor")


def crash_on_poison(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """Kills its own process (as a segfaulting native library would) on a batch with a non-empty ``poison``
    value, after appending a line to that value's path (so a test can count the attempts)."""
    import os

    poison = [p for p in kwargs["poison"] if p]
    if poison:
        with open(poison[0], "a") as handle:
            handle.write(f"{os.getpid()}\n")
        os._exit(1)
    return {"words": [float(len(o.split())) for o in outputs]}


def raise_on_poison(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """Raises ValueError on a batch with a non-empty ``poison`` value, after appending a line to that path."""
    poison = [p for p in kwargs["poison"] if p]
    if poison:
        with open(poison[0], "a") as handle:
            handle.write("called\n")
        raise ValueError("cannot score this batch")
    return {"words": [float(len(o.split())) for o in outputs]}


def hold_while(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """Words per output; stalls (up to 120 s) while the file named by a non-empty ``hold`` value exists, so
    that a test can kill the driver with some units finished and others not."""
    import time
    from pathlib import Path

    hold = [h for h in kwargs["hold"] if h]
    deadline = time.monotonic() + 120
    while hold and Path(hold[0]).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"words": [float(len(o.split())) for o in outputs]}


@dataclass(frozen=True)
class BrokenStatistic(Statistic):
    """A user statistic whose update reads a feature the batch does not have."""

    direction = "info"

    def zero(self):
        return np.zeros((), np.float64)

    def update(self, state, batch):
        return state + jnp.sum(batch["confidence"])

    def finalize(self, state):
        return {"": float(state)}


def spend(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """Words per output; each call first spends 0.2 s busy on the CPU (``how`` column ``"busy"``) or
    asleep (any other value), so that a test knows a lower bound on a unit's CPU time."""
    import time

    seconds = 0.2
    if kwargs["how"][0] == "busy":
        stop = time.thread_time() + seconds
        while time.thread_time() < stop:
            pass
    else:
        time.sleep(seconds)
    return {"words": [float(len(o.split())) for o in outputs]}


def exits(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """Calls ``sys.exit(0)``, as a script's main would."""
    import sys

    sys.exit(0)


def interrupted(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    raise KeyboardInterrupt("stopped by the function")


def huge(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    return {"words": [1e308] + [1.0] * (len(samples) - 1)}


def complex_scores(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list]:
    return {"words": [complex(len(o), 1.0) for o in outputs]}


def word_count(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """Words of each sample (any task: the samples are the rows' values as strings)."""
    return {"words": [float(len(s.split())) for s in samples]}


def nan_scores(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    return {"words": [float("nan")] + [1.0] * (len(samples) - 1)}


def crash_until(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """Words per output; on a batch whose ``poison`` value is ``<path>|<n>``, appends a line to ``<path>`` and
    kills its own process while the file has at most ``n`` lines (so the first ``n`` tries die)."""
    import os

    poison = [p for p in kwargs["poison"] if p]
    if poison:
        path, _, times = poison[0].rpartition("|")
        with open(path, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        with open(path) as handle:
            if len(handle.read().splitlines()) <= int(times):
                os._exit(1)
    return {"words": [float(len(o.split())) for o in outputs]}


def stall_once_on_node(samples: list[str], prompts: list[str], outputs: list[str], **kwargs) -> dict[str, list[float]]:
    """As :func:`stall_once`, but ``<marker>/started`` holds the id of the Ray node the actor runs on (so that
    a test can remove that node)."""
    import ray

    return _stall_first(kwargs["marker"][0], ray.get_runtime_context().get_node_id(), outputs, "node")
