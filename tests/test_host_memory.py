"""An evaluation process keeps the memory of its freed temporaries for the next batch (pipelines.host_memory)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pipelines import host_memory
from pipelines.host_memory import OPT_OUT, keep_freed_memory

LINUX = sys.platform.startswith("linux")

_FOLD = textwrap.dedent(
    """
    import resource, sys
    from pipelines.host_memory import keep_freed_memory
    kept = keep_freed_memory()
    import numpy as np
    step = np.random.default_rng(0).random(1 << 14)  # a host step's column: 128 KiB of float64
    batch = np.random.default_rng(1).random(1 << 18)  # a batch's: 2 MiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(300):
        a = step * 2.0; b = a + 1.0; c = np.round(b); d = c - a; del a, b, c, d
    for _ in range(100):
        a = batch * 2.0; b = a + 1.0; del a, b
    print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _page_faults(**env: str) -> tuple[bool, int]:
    """(whether the limits were set, the minor page faults of a fold's worth of temporaries) in a fresh process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", _FOLD], env={**clean, **env}, capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not LINUX, reason="glibc's allocator")
def test_freed_temporaries_are_not_faulted_in_again():
    """Column temporaries of a host step (128 KiB) and of a batch (2 MiB), allocated and freed again and again:
    with the limits set, their pages are reused (a few thousand faults in all); with glibc's defaults each batch
    faults them in anew (about a hundred thousand)."""
    kept, faults = _page_faults()
    default, default_faults = _page_faults(**{OPT_OUT: "0"})
    assert kept and not default
    assert faults * 10 < default_faults, (faults, default_faults)


@pytest.mark.parametrize(
    "variable, value",
    [
        (OPT_OUT, "0"),
        ("MALLOC_TOP_PAD_", "0"),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0"),
    ],
)
def test_the_environment_s_choice_is_left_alone(monkeypatch, variable, value):
    """An operator's malloc settings, or the opt-out, leave the process's allocator as it is."""
    monkeypatch.setenv(variable, value)
    assert keep_freed_memory() is False


@pytest.mark.skipif(not LINUX, reason="glibc's allocator")
def test_the_limits_are_set_on_linux(monkeypatch):
    for name in [OPT_OUT, "GLIBC_TUNABLES", *(name for name in os.environ if name.startswith("MALLOC_"))]:
        monkeypatch.delenv(name, raising=False)
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # (again: the same limits)
    assert host_memory.MMAP_THRESHOLD_BYTES <= 32 << 20  # (glibc's ceiling for its own moving limit)
