"""Where a process's time goes: its age, and the seconds JAX spends tracing, lowering, compiling
and loading compiled executables from the persistent cache (summed over the process's life)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING

from evaluators import lazyjax

if TYPE_CHECKING:
    from pipelines.records import Run

COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
        "/jax/compilation_cache/cache_retrieval_time_sec",
    }
)
_compile_seconds = [0.0]
_watching = [False]


def _listen(event: str, seconds: float, **_: object) -> None:
    if event in COMPILE_EVENTS:
        _compile_seconds[0] += seconds


def watch_compiles() -> None:
    """Sum JAX's compile events in this process from now on, or from JAX's import if it is not imported yet
    (this does not import it: a job that never compiles never pays for JAX). Idempotent."""
    lazyjax.when_imported(_register)


def _register() -> None:
    if not _watching[0]:
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(_listen)
        _watching[0] = True


def compile_seconds() -> float:
    """Seconds of tracing, lowering, compiling and cache loading seen since :func:`watch_compiles`."""
    return _compile_seconds[0]


def process_age_seconds() -> float | None:
    """Wall seconds since this process started (Linux ``/proc``), None where that is unknown."""
    try:
        with open("/proc/self/stat") as handle:
            started_ticks = float(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return max(uptime - started_ticks / os.sysconf("SC_CLK_TCK"), 0.0)


def process_cpu_seconds() -> float:
    """CPU seconds (user + system, all threads) this process has used."""
    return time.process_time()


def with_process_timings(run: Run, commit_seconds: float) -> Run:
    """``run`` with, in ``metadata.timings``, the commit's seconds so far (states, metrics and extra files written;
    ``run.json`` and the manifest follow), the process's age and its CPU seconds: the last run a process commits
    accounts for the whole process up to its commit."""
    timings = dict(run.metadata["timings"], commit_seconds=round(commit_seconds, 6))
    age = process_age_seconds()
    if age is not None:
        timings["process_seconds"] = round(age, 6)
    timings["process_cpu_seconds"] = round(process_cpu_seconds(), 6)
    return dataclasses.replace(run, metadata={**run.metadata, "timings": timings})
