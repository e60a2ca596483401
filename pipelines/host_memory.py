"""How an evaluation process's C heap hands memory back to the system (glibc on Linux).

A worker allocates and frees the same temporaries batch after batch: NumPy's (a 16,384-row step's float64
columns are 128 KiB each) and XLA's (a compiled update's intermediates, up to tens of MB). glibc serves a block of
128 KiB or more with a fresh ``mmap`` (raising that limit only as it sees such blocks freed) and returns the free
top of its heap to the system once it exceeds twice that limit, so these temporaries come back as new pages that
the kernel faults in and zeroes again on first touch. Measured on a 1M x 100-class job, that was a fifth of the
process's time (1.0-1.2 s of system time). :func:`keep_freed_memory` sets the limits once per process: blocks up
to :data:`MMAP_THRESHOLD_BYTES` come from the heap, and up to :data:`TRIM_THRESHOLD_BYTES` of its free top stay
mapped for the next batch. Larger blocks are still mapped on their own and returned as soon as they are freed.

Nothing is changed where the process's environment already sets glibc's malloc variables (``MALLOC_*_``,
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
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_OPERATOR_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
OPT_OUT = "EVALPIPE_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Set the heap limits above for this process; whether they were set (False when left to the environment or
    the platform). Safe to call more than once."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT, "1") == "0":
        return False
    if any(name in os.environ for name in _OPERATOR_VARIABLES):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
