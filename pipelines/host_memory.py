"""How an evaluation process's C heap hands memory back to the system (glibc on Linux).

A worker allocates and frees the same temporaries batch after batch: NumPy's (a 16,384-row step's float64
columns are 128 KiB each) and XLA's (a compiled update's intermediates, up to tens of MB). glibc serves a block of
128 KiB or more with a fresh ``mmap`` (raising that limit only as it sees such blocks freed) and returns the free
top of its heap to the system once it exceeds twice that limit, so these temporaries come back as new pages that
the kernel faults in and zeroes again on first touch. Measured on a 1M x 100-class job, that was a fifth of the
process's time (1.0-1.2 s of system time). :func:`keep_freed_memory` sets the limits once per process: blocks up
to :data:`MMAP_THRESHOLD_BYTES` come from the heap, and up to :data:`TRIM_THRESHOLD_BYTES` of its free top stay
mapped for the next batch. Larger blocks are still mapped on their own and returned as soon as they are freed.
Threads started from then on (XLA's) allocate from the main heap too (:data:`ARENAS`): a thread's own arena is
made of 64 MB mappings that are unmapped once empty, so blocks of tens of MB faulted in anew on some runs and not
on others (100k to 600k page faults on the job above; 86k to 108k with one arena).

Nothing is changed where the process's environment already sets glibc's malloc variables (``MALLOC_*``,
``GLIBC_TUNABLES``: the operator chose), where ``EVALPIPE_KEEP_FREED_MEMORY=0``, or off glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD_BYTES = 32 << 20
"""Blocks below this size come from the heap (glibc's own ceiling for its moving limit)."""
TRIM_THRESHOLD_BYTES = 128 << 20
"""The heap keeps up to this much free memory at its top instead of returning it."""
ARENAS = 1
"""Heaps that threads allocate from: the main one alone."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt parameters (malloc.h)
OPT_OUT = "EVALPIPE_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Set the heap limits above for this process; whether they were set (False when left to the environment or
    the platform). Safe to call more than once."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT, "1") == "0":
        return False
    if "GLIBC_TUNABLES" in os.environ or any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        (_M_ARENA_MAX, ARENAS),
    )
    return all([bool(mallopt(parameter, value)) for parameter, value in settings])
